"""The web app over real HTTP: Twilio webhooks signed as Twilio signs them, and the RSVP and survey pages."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote_plus, urlencode

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from itsdangerous.encoding import base64_encode
from pydantic import SecretStr
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from pipeline.export import export_rows
from pipeline.links import RSVP_MAX_AGE, LinkSigner
from pipeline.planner import plan
from pipeline.runtime import Runtime
from pipeline.settings import Settings
from pipeline.store import Store, open_store
from pipeline.store.models import InboundRow, LedgerRow, RsvpRow, SurveyAnswerRow
from pipeline.store.people import load_delegates
from pipeline.timetable import load_event
from pipeline.web.app import create_app
from pipeline.web.server import WebServer
from tests.test_inbound import (
    AFTER_EVENT,
    ANNA,
    BOB,
    EVENT_FILE,
    NOW,
    UNKNOWN_PHONE,
    add_delegates,
    ask,
    count,
    delegate,
)

PUBLIC_URL = "https://kallelse.example.org"
TOKEN = "twilio-auth-token"
SECRET = "test-secret-key"


def make_settings(tmp_path: Path, **overrides) -> Settings:
    values = {
        "public_url": PUBLIC_URL,
        "twilio_auth_token": SecretStr(TOKEN),
        "secret_key": SecretStr(SECRET),
        "event_file": EVENT_FILE,
        "data_dir": tmp_path,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]  # pydantic-settings' init option


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = open_store(f"sqlite:///{tmp_path / 'kallelse.sqlite3'}")
    add_delegates(store, ANNA, BOB)
    yield store
    store.close()


@pytest.fixture
def app(tmp_path: Path, store: Store) -> FastAPI:
    app = create_app(Runtime(make_settings(tmp_path), store=store))
    app.state.runtime.clock = lambda: NOW
    return app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


def signature(path: str, params: dict[str, str], token: str = TOKEN, base: str = PUBLIC_URL) -> str:
    return RequestValidator(token).compute_signature(base + path, params)


def post_signed(client: TestClient, path: str, params: dict[str, str]) -> httpx.Response:
    return client.post(path, data=params, headers={"X-Twilio-Signature": signature(path, params)})


def text_in(sid: str, body: str, sender: str = ANNA.phone or "") -> dict[str, str]:
    """The fields Twilio posts for an inbound SMS (the ones we read, and a few we do not)."""
    return {
        "MessageSid": sid, "SmsSid": sid, "AccountSid": "AC123", "From": sender, "To": "+46766861234",
        "Body": body, "NumMedia": "0", "FromCountry": "SE",
    }  # fmt: skip


def sms(client: TestClient, body: str, sid: str = "SM1", sender: str = ANNA.phone or "") -> httpx.Response:
    return post_signed(client, "/twilio/sms", text_in(sid, body, sender))


# -- inbound SMS ---------------------------------------------------------------------------------


def test_a_signed_inbound_sms_is_recorded_and_answered_with_twiml(client, store) -> None:
    """A correctly signed text is stored, acted on, and confirmed in a TwiML <Message>."""
    ask(store, "anna", "invitation")
    response = sms(client, "Ja")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    assert "<Message>Tack Anna! Vi har noterat att du kommer.</Message>" in response.text
    assert count(store, InboundRow) == 1 and delegate(store, "anna").rsvp == "yes"


def test_a_signed_ja_tack_jag_kommer_from_a_delegate_never_asked_by_sms_exports_as_yes(client, store) -> None:
    """Anna got the invitation by email only; her signed SMS "Ja tack, jag kommer!" is a yes by SMS in the
    RSVP export (issue 9, 2: must show)."""
    ask(store, "anna", "invitation", channel="email")
    response = sms(client, "Ja tack, jag kommer!")
    assert "<Message>Tack Anna! Vi har noterat att du kommer.</Message>" in response.text
    with store.session() as session:
        _, rows = export_rows(session, load_event(EVENT_FILE), "rsvps")
    assert [row[4:7] for row in rows if row[0] == "anna"] == [["yes", NOW, "sms"]]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Twilio-Signature": ""},
        {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"},
        {"X-Twilio-Signature": signature("/twilio/sms", text_in("SM1", "Ja"), token="another-token")},
        {"X-Twilio-Signature": signature("/twilio/sms", text_in("SM1", "Ja"), base="http://testserver")},
        {"X-Twilio-Signature": signature("/twilio/sms", text_in("SM1", "Nej"))},  # the body was changed
    ],
    ids=["missing", "empty", "garbage", "other-token", "internal-url", "tampered-body"],
)
def test_an_inbound_sms_without_a_valid_signature_is_refused_and_nothing_is_stored(
    client, store, headers
) -> None:
    """Missing, wrong, or for other content: 403, no inbound row, the delegate untouched."""
    ask(store, "anna", "invitation")
    response = client.post("/twilio/sms", data=text_in("SM1", "Ja"), headers=headers)
    assert response.status_code == 403
    assert count(store, InboundRow) == 0 and count(store, RsvpRow) == 0
    assert delegate(store, "anna").rsvp == "none"


def test_webhooks_are_refused_when_no_auth_token_is_configured(tmp_path, store) -> None:
    """Without TWILIO_AUTH_TOKEN nothing can be verified, so nothing is accepted (not even unsigned)."""
    app = create_app(Runtime(make_settings(tmp_path, twilio_auth_token=SecretStr("")), store=store))
    params = text_in("SM1", "Ja")
    with TestClient(app) as client:
        response = client.post("/twilio/sms", data=params, headers={"X-Twilio-Signature": "x"})
    assert response.status_code == 403 and count(store, InboundRow) == 0


def test_the_same_message_sid_twice_changes_things_once(client, store) -> None:
    """Twilio's retry gets an empty <Response/>; one inbound row, one RSVP."""
    ask(store, "anna", "invitation")
    first, second = sms(client, "Ja", sid="SMretry"), sms(client, "Ja", sid="SMretry")
    assert "<Message>" in first.text and "<Message>" not in second.text
    assert second.status_code == 200 and "<Response" in second.text
    assert (count(store, InboundRow), count(store, RsvpRow)) == (1, 1)


@pytest.mark.parametrize(
    ("body", "answer"),
    [("Ja", "yes"), ("ja tack!", "yes"), ("JA", "yes"), ("Kommer", "yes"), ("Yes", "yes"),
     ("Nej", "no"), ("kan inte", "no"), ("no thanks", "no")],
)  # fmt: skip
def test_every_reply_variant_after_an_invitation_is_read_as_intended(client, store, body, answer) -> None:
    """The ways people really answer, through the webhook, end as the right RSVP from channel sms."""
    ask(store, "anna", "invitation")
    sms(client, body)
    with store.session() as session:
        history = [(row.answer, row.channel) for row in session.scalars(select(RsvpRow))]
    assert history == [(answer, "sms")]
    assert delegate(store, "anna").rsvp == answer


def test_a_rating_after_a_survey_prompt_is_stored(client, store) -> None:
    """ "4" after the survey SMS is the overall rating."""
    ask(store, "anna", "survey", at=AFTER_EVENT)
    response = sms(client, "4")
    with store.session() as session:
        answer = session.scalars(select(SurveyAnswerRow)).one()
    assert (answer.question, answer.rating, answer.channel) == ("overall", 4, "sms")
    assert "Tack för ditt betyg 4!" in response.text


def test_stop_opts_out_and_a_planned_sms_is_then_skipped_as_opted_out(client, store) -> None:
    """After STOP (answered by Twilio, so our TwiML is empty) the planner skips Anna's SMS."""
    ask(store, "anna", "invitation")
    sms(client, "Ja", sid="SM1")
    response = sms(client, "STOP", sid="SM2")
    assert "<Message>" not in response.text
    with store.session() as session:
        (anna,) = load_delegates(session, ["anna"])
    assert anna.sms_opt_out
    event = client.app.state.runtime.event  # type: ignore[attr-defined]
    sends = plan(event, [anna], {}, NOW)
    assert all((s.status, s.reason) == ("skipped", "opted out of SMS") for s in sends if s.channel == "sms")
    assert {s.channel for s in sends if s.rule == "day-before"} == {"email"}  # SMS first, until STOP


def test_start_reverses_an_opt_out(client, store) -> None:
    """START after STOPP lets texts go again."""
    sms(client, "STOPP", sid="SM1")
    assert delegate(store, "anna").sms_opt_out
    sms(client, "START", sid="SM2")
    assert not delegate(store, "anna").sms_opt_out


def test_help_answers_with_the_duty_contacts_phone(client) -> None:
    """HJÄLP gets the secretariat's name and number."""
    response = sms(client, "HJÄLP")
    assert "Johan Scherlin" in response.text and "070-919 71 35" in response.text


def test_an_unknown_number_is_answered_politely_and_nothing_changes(client, store) -> None:
    """A stranger's JA is kept without a delegate, answered in Swedish and English, and moves no RSVP."""
    response = sms(client, "JA", sender=UNKNOWN_PHONE)
    assert "Vi hittar inte ditt nummer bland deltagarna" in response.text
    assert count(store, InboundRow) == 1 and count(store, RsvpRow) == 0
    assert (delegate(store, "anna").rsvp, delegate(store, "bob").rsvp) == ("none", "none")


@pytest.mark.parametrize(
    "body",
    ["Ja 😊🎉👍🏽", "ja " + "å" * 1997, "\u202eja\u200d\ufeff", "ja\x00tack", "💩" * 800],
    ids=["emoji", "2000-chars", "bidi-and-bom", "nul", "astral-2000-units"],
)
def test_odd_texts_are_stored_and_answered_never_a_500(client, store, body) -> None:
    """Emoji, 2,000 characters and control characters are kept (NUL replaced) and answered."""
    response = sms(client, body)
    assert response.status_code == 200 and "<Message>" in response.text
    with store.session() as session:
        stored = session.scalars(select(InboundRow.body)).one()
    assert stored == body.replace("\x00", "\ufffd")


@pytest.mark.parametrize(
    "raw_body", [b"%FF%FEja+%C3", b"ja+\xe5\xe4\xf6", b"%ED%A0%80"], ids=["bad-utf8", "latin1", "surrogate"]
)
def test_bytes_that_are_not_utf8_are_stored_and_answered_never_a_500(client, store, raw_body) -> None:
    """A Body in an unknown encoding is decoded with replacements, stored and answered."""
    fields = text_in("SMbytes", "")
    decoded = unquote_plus(raw_body.decode("latin-1"))  # what the app's form parser makes of the bytes
    content = urlencode({k: v for k, v in fields.items() if k != "Body"}).encode() + b"&Body=" + raw_body
    headers = {
        "X-Twilio-Signature": signature("/twilio/sms", {**fields, "Body": decoded}),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    response = client.post("/twilio/sms", content=content, headers=headers)
    assert response.status_code == 200 and "<Message>" in response.text
    assert count(store, InboundRow) == 1


# -- delivery status -----------------------------------------------------------------------------


def status(client: TestClient, sid: str, value: str, error_code: str = "") -> httpx.Response:
    params = {"MessageSid": sid, "MessageStatus": value, "AccountSid": "AC123", "To": ANNA.phone or ""}
    if error_code:
        params["ErrorCode"] = error_code
    return post_signed(client, "/twilio/status", params)


def ledger_row(store: Store) -> LedgerRow:
    with store.session() as session:
        return session.scalars(select(LedgerRow)).one()


def test_a_status_callback_moves_a_sent_message_to_delivered(client, store) -> None:
    """delivered after sent: the row is delivered with a time."""
    ask(store, "anna", "invitation", provider_id="SMout")
    assert status(client, "SMout", "delivered").status_code == 204
    row = ledger_row(store)
    assert row.state == "delivered" and row.delivered_at is not None


def test_a_late_sent_after_delivered_is_ignored(client, store) -> None:
    """Out of order and repeated callbacks never move a row back."""
    ask(store, "anna", "invitation", provider_id="SMout")
    responses = [status(client, "SMout", s).status_code for s in ("delivered", "sent", "delivered", "queued")]
    assert responses == [204] * 4 and ledger_row(store).state == "delivered"


def test_a_failed_callback_stores_twilios_error_code(client, store) -> None:
    """30003 (unreachable handset) is kept on the row for the organisers."""
    ask(store, "anna", "invitation", provider_id="SMout")
    status(client, "SMout", "undelivered", "30003")
    row = ledger_row(store)
    assert (row.state, row.error_code) == ("failed", "30003") and "30003" in row.reason
    assert not delegate(store, "anna").sms_opt_out


def test_a_failure_with_error_21610_records_an_opt_out(client, store) -> None:
    """21610: the recipient opted out at Twilio, so we stop planning texts to them too."""
    ask(store, "anna", "invitation", provider_id="SMout")
    status(client, "SMout", "failed", "21610")
    assert delegate(store, "anna").sms_opt_out


def test_a_status_callback_for_an_unknown_message_is_acknowledged(client) -> None:
    """A status for a message we never sent is accepted (204) and changes nothing."""
    assert status(client, "SMnobody", "delivered").status_code == 204


def test_an_unsigned_status_callback_is_refused(client, store) -> None:
    """Only Twilio moves the ledger: without a signature, 403 and the row stays sent."""
    ask(store, "anna", "invitation", provider_id="SMout")
    response = client.post("/twilio/status", data={"MessageSid": "SMout", "MessageStatus": "delivered"})
    assert response.status_code == 403 and ledger_row(store).state == "sent"


# -- RSVP page -----------------------------------------------------------------------------------


def link(purpose: str, delegate_id: str = "anna") -> str:
    return LinkSigner(SECRET, PUBLIC_URL).token(purpose, delegate_id)


def test_opening_an_rsvp_link_shows_the_event_and_two_buttons_and_changes_nothing(client, store) -> None:
    """A GET (a mail scanner, a preview) only shows the page: no RSVP row, no change."""
    page = client.get(f"/r/{link('rsvp')}")
    assert page.status_code == 200 and '<html lang="sv">' in page.text
    assert "Innovationsmötet med Svenska industrikommuner" in page.text and "25–26 november 2021" in page.text
    assert "Hej Anna!" in page.text
    assert 'method="post"' in page.text and 'value="yes"' in page.text and 'value="no"' in page.text
    assert count(store, RsvpRow) == 0 and delegate(store, "anna").rsvp == "none"


def test_an_english_delegates_rsvp_page_is_in_english(client) -> None:
    """Bob reads the page in English."""
    page = client.get(f"/r/{link('rsvp', 'bob')}")
    assert '<html lang="en">' in page.text and "Are you coming?" in page.text and "Hi Bob!" in page.text


@pytest.mark.parametrize(("answer", "thanks"), [("yes", "du kommer"), ("no", "du inte kommer")])
def test_pressing_a_button_records_the_answer_from_the_web(client, store, answer, thanks) -> None:
    """The POST records the answer with channel web and thanks the delegate."""
    page = client.post(f"/r/{link('rsvp')}", data={"answer": answer})
    assert page.status_code == 200 and thanks in page.text
    with store.session() as session:
        assert [(r.answer, r.channel) for r in session.scalars(select(RsvpRow))] == [(answer, "link")]
    assert delegate(store, "anna").rsvp == answer


def test_the_rsvp_page_asks_what_the_day_needs(client) -> None:
    """Besides yes/no: dinner, which stop (or own way), dietary needs and a free comment."""
    page = client.get(f"/r/{link('rsvp')}").text
    assert "Äter du middag med oss torsdag 25 november kl. 18.00?" in page
    assert 'name="stop" value="hotel"' in page and 'name="stop" value="airport"' in page
    assert (
        'name="stop" value="own"' in page
        and "Jag tar mig dit själv (vi ses kl. 12.00 på The Wood Hotel)" in page
    )
    assert 'name="dietary"' in page and 'name="comment"' in page


def test_the_rsvp_page_stores_dinner_stop_dietary_needs_and_comment_and_says_what_comes_next(
    client, store
) -> None:
    """Anna comes, skips dinner, boards at the airport, is vegetarian: all stored with the web answer; the
    confirmation names the practical letter and her own pickup, and no dinner."""
    form = {
        "answer": "yes",
        "dinner": "no",
        "stop": "airport",
        "dietary": "Vegetarisk",
        "comment": "Kommer 09.20",
    }
    page = client.post(f"/r/{link('rsvp')}", data=form)
    assert page.status_code == 200
    assert "En vecka före mötet får du praktisk information." in page.text
    assert "Bussen hämtar dig torsdag 25 november ca kl. 09.30 vid Skellefteå flygplats." in page.text
    assert "Middagen" not in page.text
    row = delegate(store, "anna")
    assert (row.rsvp, row.dinner, row.stop, row.dietary, row.comment) == (
        "yes",
        False,
        "airport",
        "Vegetarisk",
        "Kommer 09.20",
    )
    with store.session() as session:
        assert [(r.answer, r.channel) for r in session.scalars(select(RsvpRow))] == [("yes", "link")]
    again = client.get(f"/r/{link('rsvp')}").text  # the form opens as she left it
    assert 'value="airport" checked' in again and 'value="no" checked' in again and "Vegetarisk" in again


def test_own_way_on_the_rsvp_page_clears_the_stop_and_an_import_does_not_put_it_back(client, store) -> None:
    """ "I come by myself": no stop, so no pickup texts; re-importing the CSV with a stop keeps her choice,
    as it keeps her answer."""
    from pipeline.store.people import upsert_delegates

    add_delegates(store, delegate_with(ANNA, stop="hotel", dinner=True))
    client.post(f"/r/{link('rsvp')}", data={"answer": "yes", "stop": "own", "dinner": "yes"})
    assert delegate(store, "anna").stop is None
    with store.session() as session:
        upsert_delegates(session, [delegate_with(ANNA, stop="hotel", dinner=False)], NOW)
    row = delegate(store, "anna")
    assert (row.stop, row.dinner) == (None, True)
    page = client.post(f"/r/{link('rsvp')}", data={"answer": "yes", "stop": "own", "dinner": "yes"})
    assert "Vi ses torsdag 25 november kl. 12.00 på The Wood Hotel." in page.text
    assert "Middagen börjar torsdag 25 november kl. 18.00." in page.text


def test_an_rsvp_form_naming_an_unknown_stop_stores_nothing(client, store) -> None:
    """A stop the event does not have: 400, the page again, and no answer stored."""
    page = client.post(f"/r/{link('rsvp')}", data={"answer": "yes", "stop": "harbour"})
    assert page.status_code == 400 and "Välj bland alternativen" in page.text
    assert count(store, RsvpRow) == 0 and delegate(store, "anna").stop is None


def delegate_with(person, **changes):
    import dataclasses

    return dataclasses.replace(person, **changes)


def test_a_post_without_a_valid_answer_records_nothing(client, store) -> None:
    """An answer other than yes/no shows the page again with 400."""
    page = client.post(f"/r/{link('rsvp')}", data={"answer": "maybe"})
    assert page.status_code == 400 and count(store, RsvpRow) == 0


@pytest.mark.parametrize("method", ["get", "post"])
def test_an_expired_rsvp_link_gets_a_clear_page_and_changes_nothing(app, client, store, method) -> None:
    """61 days on (the app's clock moved), the link says it has expired and whom to call, with 410."""
    token = link("rsvp")
    app.state.runtime.clock = lambda: datetime.now(UTC) + timedelta(seconds=RSVP_MAX_AGE + 86400)
    page = getattr(client, method)(f"/r/{token}", **({"data": {"answer": "yes"}} if method == "post" else {}))
    assert page.status_code == 410
    assert "Länken har gått ut" in page.text and "The link has expired" in page.text
    assert "070-919 71 35" in page.text
    assert count(store, RsvpRow) == 0 and delegate(store, "anna").rsvp == "none"


def test_an_rsvp_link_shortly_before_it_expires_still_works(app, client) -> None:
    """The same trick one day short of the limit: the page opens, so the test above measures expiry."""
    token = link("rsvp")
    app.state.runtime.clock = lambda: datetime.now(UTC) + timedelta(seconds=RSVP_MAX_AGE - 86400)
    assert client.get(f"/r/{token}").status_code == 200


def edited(token: str) -> str:
    """The token with its payload rewritten to another delegate, keeping the original signature."""
    _, timestamp, mac = token.split(".")
    payload = base64_encode(json.dumps({"p": "rsvp", "d": "bob"}, separators=(",", ":"))).decode()
    return f"{payload}.{timestamp}.{mac}"


@pytest.mark.parametrize(
    "token",
    [link("rsvp")[:-2] + "xx", edited(link("rsvp")), link("survey"), "nonsense", "a.b.c"],
    ids=["bad-signature", "edited", "survey-token", "nonsense", "dots"],
)
def test_a_tampered_rsvp_link_gets_a_clear_page_and_changes_nothing(client, store, token) -> None:
    """A token that does not verify (or is for the survey) gets 400 and a page saying the link is broken."""
    for response in (client.get(f"/r/{token}"), client.post(f"/r/{token}", data={"answer": "yes"})):
        assert response.status_code == 400 and "Länken fungerar inte" in response.text
    assert count(store, RsvpRow) == 0


def test_a_link_for_a_delegate_no_longer_listed_gets_a_clear_page(client) -> None:
    """A valid link for a removed delegate: 404 and a page saying we cannot find them."""
    page = client.get(f"/r/{link('rsvp', 'removed')}")
    assert page.status_code == 404 and "Vi hittar dig inte" in page.text


def test_pages_load_nothing_from_elsewhere_and_escape_what_they_show(client, store) -> None:
    """No external URLs in the page, a strict CSP, and a name with markup shown as text."""
    with store.session() as session:
        delegate_row = session.get(type(delegate(store, "anna")), "anna")
        assert delegate_row is not None
        delegate_row.name = "<script>alert(1)</script> Anna"
    page = client.get(f"/r/{link('rsvp')}")
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text
    assert "http://" not in page.text and "https://" not in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")


# -- survey page ---------------------------------------------------------------------------------


def test_the_survey_form_shows_every_question_of_the_event(client, store) -> None:
    """Each rating is five radio buttons, the free-text question a textarea, and nothing is stored."""
    page = client.get(f"/s/{link('survey')}")
    event = client.app.state.runtime.event  # type: ignore[attr-defined]
    assert page.status_code == 200
    for question in event.survey:
        assert question.text("sv") in page.text
    ratings = [q for q in event.survey if q.kind == "rating"]
    assert page.text.count('type="radio"') == 5 * len(ratings)
    assert page.text.count("<textarea") == len(event.survey) - len(ratings)
    assert count(store, SurveyAnswerRow) == 0


def test_posting_the_survey_stores_the_answers_and_marks_the_delegate_answered(client, store) -> None:
    """Answered questions are stored with channel web; unknown fields are ignored."""
    form = {"overall": "5", "tour": "4", "comments": "Mer om vätgas", "is_admin": "1"}
    page = client.post(f"/s/{link('survey')}", data=form)
    assert page.status_code == 200 and "Tack för dina svar!" in page.text
    with store.session() as session:
        stored = {a.question: (a.rating, a.text) for a in session.scalars(select(SurveyAnswerRow))}
    assert stored == {"overall": (5, None), "tour": (4, None), "comments": (None, "Mer om vätgas")}
    assert delegate(store, "anna").survey_answered


@pytest.mark.parametrize(("form", "message"), [({"overall": "7"}, "1 till 5"), ({}, "minst en fråga")])
def test_a_survey_with_an_invalid_or_no_answer_is_shown_again_and_stores_nothing(
    client, store, form, message
) -> None:
    """A rating of 7, or an empty form, gets the form back (422) with a message; nothing is stored."""
    page = client.post(f"/s/{link('survey')}", data=form)
    assert page.status_code == 422 and message in page.text
    assert count(store, SurveyAnswerRow) == 0 and not delegate(store, "anna").survey_answered


def test_an_rsvp_token_does_not_open_the_survey(client) -> None:
    """Tokens are bound to their purpose."""
    assert client.get(f"/s/{link('rsvp')}").status_code == 400


# -- the server ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_web_server_serves_the_app_on_its_port_and_stops(tmp_path) -> None:
    """WebServer runs uvicorn in a thread: /healthz answers over real HTTP, and stop() ends it."""
    server = WebServer(Runtime(make_settings(tmp_path, port=free_port())))
    server.start()
    try:
        assert httpx.get(f"{server.url}/healthz", timeout=5).json()["database"] == "ok"
    finally:
        server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/healthz", timeout=2)


def test_a_text_arriving_while_the_event_file_is_broken_is_still_stored_and_answered(tmp_path, store) -> None:
    """If reading the text fails (here: an event file mid-edit), it is kept unread and acknowledged."""

    half_saved = tmp_path / "event.toml"
    half_saved.write_text('[event]\nid = "sik-2021"\nname = ', encoding="utf-8")
    app = create_app(Runtime(make_settings(tmp_path, event_file=half_saved), store=store))
    with TestClient(app) as client:
        response = sms(client, "Ja")
    assert response.status_code == 200 and "vi har tagit emot ditt meddelande" in response.text
    with store.session() as session:
        row = session.scalars(select(InboundRow)).one()
    assert (row.delegate_id, row.kind, row.body) == ("anna", "unknown", "Ja")


# -- opting out ----------------------------------------------------------------------------------


def test_opening_the_opt_out_link_asks_first_and_changes_nothing(client, store) -> None:
    """The footer's opt-out link shows a button; a mail scanner's GET does not opt anyone out."""
    page = client.get(f"/u/{link('optout')}")
    assert page.status_code == 200 and "Avsluta utskicken" in page.text and 'method="post"' in page.text
    person = delegate(store, "anna")
    assert (person.email_opt_out, person.sms_opt_out) == (False, False)


def test_confirming_the_opt_out_stops_both_email_and_sms(client, store) -> None:
    """The POST opts the delegate out of both channels, and the planner then skips their messages."""
    page = client.post(f"/u/{link('optout')}")
    assert page.status_code == 200 and "inga fler mejl eller sms" in page.text
    person = delegate(store, "anna")
    assert (person.email_opt_out, person.sms_opt_out) == (True, True)


def test_an_rsvp_token_does_not_work_as_an_opt_out_link(client, store) -> None:
    """Tokens are bound to their purpose: an RSVP link cannot opt someone out."""
    page = client.post(f"/u/{link('rsvp')}")
    assert page.status_code == 400
    assert delegate(store, "anna").email_opt_out is False


def test_an_email_names_the_opt_out_page_in_list_unsubscribe_and_a_one_click_post_there_opts_out(
    client, store
) -> None:
    """RFC 8058: the mail client's own unsubscribe button POSTs `List-Unsubscribe=One-Click` to the URL in
    `List-Unsubscribe`; that POST opts the delegate out of both channels."""
    from pipeline.render import make_env, render_email
    from pipeline.store.people import load_delegates as load
    from pipeline.timetable import load_event

    links = LinkSigner(SECRET, PUBLIC_URL).links_for("anna")
    with store.session() as session:
        anna = load(session, ["anna"])[0]
    email = render_email(
        make_env(EVENT_FILE.parent.parent / "templates"),
        load_event(EVENT_FILE),
        anna,
        "invitation",
        key="k",
        links=links,
    )
    assert email.headers["List-Unsubscribe"] == f"<{links['optout_url']}>"
    assert email.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = email.headers["List-Unsubscribe"].strip("<>").removeprefix(PUBLIC_URL)
    assert client.post(url, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    person = delegate(store, "anna")
    assert (person.email_opt_out, person.sms_opt_out) == (True, True)


# -- the public programme ------------------------------------------------------------------------


def test_the_public_programme_needs_no_login_and_lists_both_days_the_stops_and_whom_to_call(client) -> None:
    """`/program` (the link in the SMS) shows the whole programme to anyone, sized for a phone."""
    page = client.get("/program")
    assert page.status_code == 200 and 'name="viewport"' in page.text
    for expected in (
        "Torsdag 25 november",
        "Fredag 26 november",
        "ca kl. 09.30: Skellefteå flygplats, mötesplatsen meddelas senare",
        "Samtal för KSO-er (politiker): lokalen meddelas senare",
        "Karin Bodin",
        'href="tel:+46709197135"',
    ):
        assert expected in page.text, expected


def test_the_public_programme_in_english(client) -> None:
    """`?lang=en` gives the same programme in English, with a link back to Swedish."""
    page = client.get("/program?lang=en")
    assert page.status_code == 200 and '<html lang="en">' in page.text
    assert "Thursday 25 November" in page.text and "meeting point to be announced" in page.text
    assert "På svenska" in page.text


def test_an_organisers_edit_changes_a_stop_the_delegate_chose_and_an_untouched_field_stays_theirs(
    client, store
) -> None:
    """Anna chose the airport and no dinner on her page; the secretariat, after a call, moves her to the
    hotel: the edit counts. Her dinner choice, untouched by the edit, still beats a later import."""
    from pipeline.store.people import save_one, upsert_delegates

    client.post(f"/r/{link('rsvp')}", data={"answer": "yes", "stop": "airport", "dinner": "no"})
    with store.session() as session:
        problems = save_one(
            session,
            {"id": "anna", "stop": "hotel", "dinner": "no"},
            {"hotel", "airport"},
            NOW,
            "edit",
            new=False,
        )
    assert problems == [] and delegate(store, "anna").stop == "hotel"
    with store.session() as session:
        upsert_delegates(session, [delegate_with(ANNA, stop="airport", dinner=True)], NOW)
    row = delegate(store, "anna")
    assert (row.stop, row.dinner) == ("airport", False)  # the import may set the stop again, not her dinner
