"""The organiser's day 1, on the database the real pipeline leaves at 08:45: the hotel list, the dinner
count, a reply that needs a person, a delegate's messages before they go, and a broadcast by ticking boxes.
"""

from __future__ import annotations

import csv
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from twilio.request_validator import RequestValidator

from pipeline.cli import main
from pipeline.runtime import Runtime
from pipeline.store.ledger import states_of
from pipeline.store.models import DelegateRow, InboundRow, LedgerRow, RsvpRow
from pipeline.timetable import load_event
from pipeline.web.app import create_app
from tests.fixtures.dashboard import PASSWORD
from tests.fixtures.day import MORNING, PUBLIC_URL, TWILIO_TOKEN, example_rows

LATE_FLIGHT = "Flyget är 20 min sent, väntar bussen?"


@pytest.fixture
def client(morning) -> Iterator[TestClient]:
    """The dashboard at 08:45, logged in."""
    settings, store = morning
    app = create_app(Runtime(settings, store=store, clock=lambda: MORNING))
    with TestClient(app) as client:
        token = csrf_of(client.get("/admin/login").text)
        assert client.post("/admin/login", data={"password": PASSWORD, "csrf": token}).status_code == 200
        yield client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found
    return found.group(1)


def post(client: TestClient, path: str, **form) -> httpx.Response:
    token = csrf_of(client.get("/admin").text)
    return client.post(path, data={"csrf": token, **form}, follow_redirects=False)


def text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def hotel_riders_by_csv() -> list[dict[str, str]]:
    return [r for r in example_rows() if r["stop"] == "hotel" and r["rsvp"] == "yes"]


def signed_sms(client: TestClient, sender: str, body: str, sid: str) -> httpx.Response:
    params = {"MessageSid": sid, "From": sender, "To": "+46700000000", "Body": body}
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC_URL + "/twilio/sms", params)
    return client.post("/twilio/sms", data=params, headers={"X-Twilio-Signature": signature})


def waiting(client: TestClient) -> int:
    found = re.search(r'id="waiting".*?class="n">(\d+)<', client.get("/admin").text, re.S)
    return int(found.group(1)) if found else 0


# -- lists for the day ----------------------------------------------------------------------------


def test_the_hotel_list_shows_the_hotel_riders_with_phone_links_pickup_texts_and_the_count(client) -> None:
    """At 08:45 the four who said yes at the hotel are listed with tel: links; their pickup text went."""
    page = client.get("/admin/stops/hotel").text
    expected = hotel_riders_by_csv()
    assert re.search(r'data-count="yes"><span class="n">(\d+)<', page).group(1) == str(len(expected)) == "4"
    for row in expected:
        rider = page.split(f'data-delegate="{row["id"]}"')[1].split("</tr>")[0]
        digits = re.sub(r"\D", "", row["phone"])[1:]  # 070-174 06 05 → +46701740605
        assert row["name"] in rider and row["organisation"] in rider
        assert f'href="tel:+46{digits}"' in rider and "skickad" in rider
    unanswered = page.split('data-delegate="d11"')[1].split("</tr>")[0]  # Lars: no answer, no pickup text
    assert "inte svarat" in unanswered and "skickad" not in unanswered
    assert 'data-delegate="d13"' not in page  # Nils said no: he does not board
    assert "Skriv ut" in page and "@media print" in page


def test_the_airport_list_at_0845_shows_pickup_texts_still_planned(client) -> None:
    """The airport's texts go at 09:00: at 08:45 none has been sent."""
    page = client.get("/admin/stops/airport").text
    assert re.search(r'data-count="texted"><span class="n">(\d+)<', page).group(1) == "0"
    assert "planerad" in page


def test_the_dinner_count_matches_the_csv_and_the_rsvps(client) -> None:
    """Those with dinner=yes who said yes: 8 in the example file, on the dinner page and the overview."""
    expected = [r for r in example_rows() if r["dinner"] == "yes" and r["rsvp"] == "yes"]
    page = client.get("/admin/dinner").text
    assert re.search(r'data-count="coming"><span class="n">(\d+)<', page).group(1) == str(len(expected))
    assert sorted(re.findall(r'<tr data-delegate="(\w+)"', page)) == sorted(r["id"] for r in expected)
    assert f'id="dinner-card"><span class="n">{len(expected)}<' in client.get("/admin").text


@pytest.mark.parametrize(
    ("query", "ids"),
    [
        ("hallplats=hotel&svar=yes", {"d01", "d03", "d05", "d14"}),
        ("hallplats=-", {"d06", "d07", "d09", "d12"}),
        ("roll=kso&middag=yes", {"d01", "d02", "d06", "d13"}),
        ("middag=no&svar=yes", {"d03", "d07", "d09"}),
    ],
)
def test_the_delegate_list_filters_by_stop_role_answer_and_dinner(client, query, ids) -> None:
    """The overview's filters combine: each shows exactly the matching delegates."""
    page = client.get(f"/admin?{query}").text
    table = page.split('id="delegates"')[1]
    assert set(re.findall(r'href="/admin/delegates/(\w+)"', table)) == ids


# -- replies that need a person -------------------------------------------------------------------


def test_a_late_flight_sms_needs_a_person_until_it_is_marked_handled(client, morning) -> None:
    """The signed SMS is flagged on the overview with a count and listed with its actions; after
    "Klar" it is gone from the count, and the sender was told whom to call meanwhile."""
    _, store = morning
    assert waiting(client) == 0
    answer = signed_sms(client, "+46701740606", LATE_FLIGHT, "SMlate1")  # Björn, airport
    assert "070-919 71 35" in answer.text  # the secretariat's phone, from the event file
    assert waiting(client) == 1
    replies = client.get("/admin/replies").text
    card = replies.split('data-reply="')[1]
    assert LATE_FLIGHT in card and "Björn Åkesson" in card and 'href="tel:+46701740606"' in card
    reply_id = int(card.split('"')[0])
    for action in ("handled", "rsvp", "answer"):
        assert f'action="/admin/replies/{reply_id}/{action}"' in card
    assert post(client, f"/admin/replies/{reply_id}/handled").status_code == 303
    assert waiting(client) == 0
    assert LATE_FLIGHT not in client.get("/admin/replies").text.split("Senast hanterade")[0]
    with store.session() as session:
        assert session.get(InboundRow, reply_id).handled_how == "handled"


def test_any_reply_on_the_event_days_is_flagged_even_when_understood(client) -> None:
    """A plain "Ja" at 08:45 on day 1 is read as an RSVP, and still shown to a person."""
    signed_sms(client, "+46701740614", "Ja", "SMja")  # Lars, who had not answered
    assert waiting(client) == 1


def test_recording_a_reply_as_ja_stores_the_organisers_rsvp_and_clears_it(client, morning) -> None:
    """ "Record as JA" records yes with source organiser and the reply's text as the note."""
    _, store = morning
    signed_sms(client, "+46701740614", "Jo, jag hoppar på vid hotellet", "SMjo")
    reply_id = int(client.get("/admin/replies").text.split('data-reply="')[1].split('"')[0])
    assert post(client, f"/admin/replies/{reply_id}/rsvp", answer="yes").status_code == 303
    with store.session() as session:
        assert session.get(DelegateRow, "d11").rsvp == "yes"
        last = session.scalars(
            select(RsvpRow).where(RsvpRow.delegate_id == "d11").order_by(RsvpRow.id)
        ).all()[-1]
    assert (last.answer, last.channel, last.note) == ("yes", "organiser", "Jo, jag hoppar på vid hotellet")
    assert waiting(client) == 0


def test_answering_a_reply_by_sms_sends_one_text_to_that_delegate(client, morning) -> None:
    """The answer goes through the ledger as a one-person SMS, delivered from the web process."""
    _, store = morning
    signed_sms(client, "+46701740606", LATE_FLIGHT, "SMlate2")
    reply_id = int(client.get("/admin/replies").text.split('data-reply="')[1].split('"')[0])
    response = post(client, f"/admin/replies/{reply_id}/answer", text="Bussen väntar på flyget.")
    assert response.status_code == 303
    rule = "broadcast:" + response.headers["location"].split("/")[-1].split("?")[0]
    deadline = time.monotonic() + 20  # delivered in the background by the web process itself
    while time.monotonic() < deadline:
        with store.session() as session:
            rows = session.scalars(select(LedgerRow).where(LedgerRow.rule == rule)).all()
        if [r.state for r in rows] == ["sent"]:
            break
        time.sleep(0.05)
    assert [(r.delegate_id, r.channel, r.state) for r in rows] == [("d02", "sms", "sent")]
    assert waiting(client) == 0


def test_an_unknown_number_is_told_the_secretariats_phone(client) -> None:
    """A number we do not know learns whom to call, in both languages."""
    answer = signed_sms(client, "+46709999999", LATE_FLIGHT, "SMstranger").text
    assert (
        "Vi hittar inte ditt nummer" in answer and "070-919 71 35" in answer and "+46 70 919 71 35" in answer
    )


# -- a broadcast by ticking boxes -----------------------------------------------------------------


def test_a_broadcast_ticking_the_hotel_bus_reaches_exactly_the_hotel_riders(client, morning) -> None:
    """ "Bussen från hotellet" (and the preset "ja"): the preview names the four, and only they get it."""
    _, store = morning
    form = client.get("/admin/broadcast").text
    assert re.search(r'value="stop:hotel"\s*>\s*Bussen från hotellet', form)
    groups = ["stop:hotel", "rsvp:yes"]
    preview = post(client, "/admin/broadcast/preview", grupp=groups, text="Bussen är 10 minuter sen.")
    expected = {r["id"] for r in hotel_riders_by_csv()}
    assert set(re.findall(r'<li data-delegate="(\w+)">', preview.text)) == expected
    sent = post(client, "/admin/broadcast/send", grupp=groups, text="Bussen är 10 minuter sen.")
    rule = "broadcast:" + sent.headers["location"].split("/")[-1].split("?")[0]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with store.session() as session:
            states = states_of(session, "sik-2021", rule)
        if set(states) <= {"sent", "failed", "skipped"}:
            break
        time.sleep(0.05)
    with store.session() as session:
        rows = session.scalars(select(LedgerRow).where(LedgerRow.rule == rule)).all()
    assert {r.delegate_id for r in rows} == expected and {r.state for r in rows} == {"sent"}


# -- a delegate's messages before they go ---------------------------------------------------------


def test_preview_of_a_hotel_rider_prints_the_pickup_sms_and_the_invitation(tmp_path: Path, morning) -> None:
    """`kallelse preview d01`: the pickup SMS in full (one segment, her stop and time) and the
    invitation's subject and text."""
    settings, _ = morning
    html = tmp_path / "d01.html"
    result = CliRunner().invoke(main, ["preview", "d01", "--html", str(html)], obj=settings)
    assert result.exit_code == 0, result.output
    pickup = result.output.split("(pickup) · sms")[1].split("===")[0]
    assert "Hej Astrid! Bussen går kl. 09.00 från The Wood Hotel, Torggatan 3" in pickup
    assert "[1 SMS part(s), GSM-7" in pickup
    invitation = result.output.split("(invitation) · email")[1].split("===")[0]
    assert "Subject: Inbjudan: Innovationsmötet med Svenska industrikommuner" in invitation
    assert "Kommer du? Svara senast torsdag 11 november" in invitation and "BEGIN:VCALENDAR" in invitation
    assert list(tmp_path.glob("d01-*.html")), "the emails' HTML was written"


def test_preview_of_one_rule_prints_only_that_rule(morning) -> None:
    """`--rule pickup` prints one message; an unknown rule is named."""
    settings, _ = morning
    result = CliRunner().invoke(main, ["preview", "d01", "--rule", "pickup"], obj=settings)
    assert result.exit_code == 0 and result.output.count("===") == 1 and "1 messages" in result.output
    wrong = CliRunner().invoke(main, ["preview", "d01", "--rule", "bus"], obj=settings)
    assert wrong.exit_code == 1 and "unknown rule 'bus'" in wrong.output


def test_the_delegate_page_shows_each_message_with_a_view_of_it(client) -> None:
    """ "Visa" on the pickup row shows the SMS as Astrid got it, with its parts and sent time."""
    page = client.get("/admin/delegates/d01").text
    row = page.split("Bussens sms före varje hållplats")[1].split("</tr>")[0]
    assert "tors 25 nov kl. 08.30" in row and "skickad" in row
    view = client.get("/admin/messages/" + re.search(r'href="/admin/messages/(\d+)"', row).group(1)).text
    assert "Hej Astrid! Bussen går kl. 09.00 från The Wood Hotel" in view and "1 del, GSM-7" in view


# -- exports --------------------------------------------------------------------------------------


def test_the_rsvp_export_to_a_file_has_phone_stop_and_dinner(tmp_path: Path, morning) -> None:
    """`kallelse export rsvps --output FILE`: one row per delegate with the columns the day needs."""
    settings, _ = morning
    target = tmp_path / "svar.csv"
    result = CliRunner().invoke(main, ["export", "rsvps", "--output", str(target)], obj=settings)
    assert result.exit_code == 0, result.output
    with target.open(encoding="utf-8-sig", newline="") as f:
        rows = {row["delegate_id"]: row for row in csv.DictReader(f, delimiter=";")}
    assert len(rows) == len(example_rows())
    astrid, greta = rows["d01"], rows["d07"]
    assert (astrid["phone"], astrid["stop"], astrid["dinner"]) == ("'+46701740605", "hotel", "ja")
    assert (greta["stop"], greta["dinner"]) == ("", "")  # no bus, dinner not given


def test_an_export_to_a_folder_that_does_not_exist_says_so(tmp_path: Path, morning) -> None:
    """A clear error naming the file, exit 1."""
    settings, _ = morning
    target = tmp_path / "saknas" / "svar.csv"
    result = CliRunner().invoke(main, ["export", "rsvps", "-o", str(target)], obj=settings)
    assert result.exit_code == 1 and f"{target}: cannot write" in result.output


# -- acting on one person -------------------------------------------------------------------------


def ledger_of(store, delegate_id: str) -> dict[str, str]:
    with store.session() as session:
        rows = session.scalars(select(LedgerRow).where(LedgerRow.delegate_id == delegate_id)).all()
    return {f"{r.rule}:{r.channel}": r.state for r in rows}


def test_an_answer_given_by_phone_is_recorded_as_the_organisers(client, morning) -> None:
    """Lars rang to say yes: the button records it with source organiser and a note."""
    _, store = morning
    response = post(client, "/admin/delegates/d11/rsvp", answer="yes", note="efter telefonsamtal")
    assert response.headers["location"] == "/admin/delegates/d11?sparat=svar"
    with store.session() as session:
        last = session.scalars(select(RsvpRow).where(RsvpRow.delegate_id == "d11").order_by(RsvpRow.id)).all()
    assert (last[-1].answer, last[-1].channel, last[-1].note) == ("yes", "organiser", "efter telefonsamtal")
    assert "Svaret är registrerat." in client.get(response.headers["location"]).text


def test_cancelling_a_delegate_stops_what_is_planned_and_keeps_what_was_sent(client, morning) -> None:
    """Astrid is cancelled at 08:45: her pickup text stays sent; dinner, day 2 and survey are skipped;
    she leaves the hotel list."""
    _, store = morning
    before = ledger_of(store, "d01")
    assert before["pickup:sms"] == "sent" and before["dinner:sms"] == "planned"
    assert post(client, "/admin/delegates/d01/cancel").status_code == 303
    after = ledger_of(store, "d01")
    assert after["pickup:sms"] == "sent" and after["invitation:email"] == before["invitation:email"]
    assert {after[k] for k, v in before.items() if v == "planned"} == {"skipped"}
    assert 'data-delegate="d01"' not in client.get("/admin/stops/hotel").text
    page = client.get("/admin/delegates/d01").text
    assert "Avanmäld" in page and "Bussens sms" in page


def test_a_delegate_added_on_the_dashboard_is_checked_like_an_imported_row(client, morning) -> None:
    """A wrong phone comes back in Swedish with the field named; a right one is stored and listed."""
    _, store = morning
    form = {"id": "d15", "name": "Ulla Berg", "phone": "070-1", "stop": "hotel", "dinner": "yes"}
    bad = post(client, "/admin/delegates/new", **form)
    assert bad.status_code == 422 and "Telefon: &#39;070-1&#39; is not a valid phone number" in bad.text
    good = post(client, "/admin/delegates/new", **(form | {"phone": "070-174 06 99"}))
    assert good.headers["location"] == "/admin/delegates/d15?sparat=ny"
    with store.session() as session:
        row = session.get(DelegateRow, "d15")
        assert (row.phone, row.stop, row.dinner, row.rsvp) == ("+46701740699", "hotel", True, "none")
    assert 'data-delegate="d15"' in client.get("/admin/stops/hotel").text


def test_editing_a_delegate_changes_the_fields_and_keeps_their_answer(client, morning) -> None:
    """Björn moves from the airport bus to the hotel bus; his JA stays."""
    _, store = morning
    form = client.get("/admin/delegates/d02/edit").text
    assert 'value="Björn Åkesson"' in form
    values = {"name": "Björn Åkesson", "phone": "070-174 06 06", "stop": "hotel", "dinner": "yes"}
    assert post(client, "/admin/delegates/d02/edit", **values).status_code == 303
    with store.session() as session:
        row = session.get(DelegateRow, "d02")
        assert (row.stop, row.rsvp, row.email) == ("hotel", "yes", None)


def test_a_failed_sms_can_be_sent_by_email_instead(client, morning) -> None:
    """Cecilia's pickup SMS failed: "by email instead" delivers the same text as an email at once."""
    _, store = morning
    with store.session() as session:
        row = session.scalars(
            select(LedgerRow).where(LedgerRow.delegate_id == "d03", LedgerRow.rule == "day2-room-officials")
        ).one()
        session.execute(update(LedgerRow).where(LedgerRow.id == row.id).values(state="failed"))
        row_id = row.id
    assert f'action="/admin/messages/{row_id}/email"' in client.get("/admin/delegates/d03").text
    response = post(client, f"/admin/messages/{row_id}/email")
    assert response.headers["location"] == "/admin/delegates/d03?sparat=epost"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and ledger_of(store, "d03").get(f"resend:{row_id}:email") != "sent":
        time.sleep(0.05)
    assert ledger_of(store, "d03")[f"resend:{row_id}:email"] == "sent"
    assert "Skickat igen med e-post" in client.get("/admin/delegates/d03").text


def test_the_delegates_command_adds_edits_and_cancels_one_delegate(morning) -> None:
    """`kallelse delegates add|edit|cancel`: checked as an import row, errors name the field."""
    settings, store = morning
    run = CliRunner()
    bad = run.invoke(main, ["delegates", "add", "d15", "--name", "Ulla", "--stop", "bussen"], obj=settings)
    assert bad.exit_code == 1 and "command line: stop: unknown stop 'bussen'" in bad.output
    added = run.invoke(
        main,
        ["delegates", "add", "d15", "--name", "Ulla Berg", "--phone", "070-174 06 99", "--stop", "hotel"],
        obj=settings,
    )
    assert added.exit_code == 0, added.output
    taken = run.invoke(main, ["delegates", "add", "d01", "--name", "Someone"], obj=settings)
    assert taken.exit_code == 1 and "'d01' is already Astrid Lövgren" in taken.output
    edited = run.invoke(main, ["delegates", "edit", "d15", "--dinner", "yes"], obj=settings)
    assert edited.exit_code == 0, edited.output
    cancelled = run.invoke(main, ["delegates", "cancel", "d13", "--yes"], obj=settings)
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.output
    with store.session() as session:
        ulla, nils = session.get(DelegateRow, "d15"), session.get(DelegateRow, "d13")
        assert (ulla.name, ulla.stop, ulla.dinner) == ("Ulla Berg", "hotel", True)
        assert nils.cancelled_at is not None


def test_the_bare_address_names_the_event_and_links_to_the_login(client) -> None:
    """`/` is a page, not a JSON 404."""
    page = client.get("/")
    assert page.status_code == 200 and "Innovationsmötet med Svenska industrikommuner" in page.text
    assert 'href="/admin/login"' in page.text


# -- pictures -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["rsvps", "messages", "stops"])
def test_each_chart_is_a_png_drawn_by_the_server(client, name) -> None:
    """The pictures page shows three images served by the app itself; each is a real PNG."""
    assert f'src="/admin/charts/{name}.png"' in client.get("/admin/charts").text
    png = client.get(f"/admin/charts/{name}.png")
    assert png.headers["content-type"] == "image/png" and png.content.startswith(b"\x89PNG")
    assert len(png.content) > 5000  # drawn, not an empty canvas


def test_the_chart_data_is_what_the_ledger_and_answers_say(morning) -> None:
    """12 answers that count (11 yes, 1 no); at 08:00 on day 1 the hotel's pickup texts went; the stop
    picture compares 4 expected with 4 texted at the hotel and 4 with 0 at the airport."""
    from pipeline.web import admin_data

    settings, store = morning
    event = load_event(settings.event_file)
    with store.session() as session:
        answers = admin_data.answer_times(session, event)
        hours = dict(admin_data.messages_per_hour(session, event))
        lists = {s.id: admin_data.stop_list(session, event, s.id) for s in event.stops}
    assert sorted(a for _, a in answers).count("yes") == 11 and [a for _, a in answers].count("no") == 1
    pickup_hour = next(h for h in hours if (h.day, h.hour) == (25, 8))
    assert hours[pickup_hour].get("sent", 0) >= 4
    assert (lists["hotel"].count("yes"), lists["hotel"].texted) == (4, 4)
    assert (lists["airport"].count("yes"), lists["airport"].texted) == (4, 0)


def test_an_emails_view_links_to_its_html_shown_with_nothing_loaded_from_elsewhere(client) -> None:
    """Astrid's invitation: subject and text on the page, the HTML part on its own address, locked down."""
    page = client.get("/admin/delegates/d01").text
    row = page.split("Inbjudan med programmet")[1].split("</tr>")[0]
    row_id = re.search(r'href="/admin/messages/(\d+)"', row).group(1)
    view = client.get(f"/admin/messages/{row_id}").text
    assert "Inbjudan: Innovationsmötet med Svenska industrikommuner" in view
    assert f'href="/admin/messages/{row_id}/html"' in view and "kalenderfil" in view
    html = client.get(f"/admin/messages/{row_id}/html")
    assert html.status_code == 200 and "Hej Astrid!" in html.text and "<html" in html.text.lower()
    assert html.headers["content-security-policy"].startswith("default-src 'none'")
