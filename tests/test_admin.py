"""The organisers' dashboard over HTTP: the login gate on every route, CSRF, and each page on real data."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from pipeline.runtime import Runtime
from pipeline.store import Store, open_store
from pipeline.store.leases import take_lease
from pipeline.store.ledger import queue_due, retry_failed, states_of
from pipeline.store.models import LedgerRow
from pipeline.web import admin as admin_routes
from pipeline.web import admin_auth
from pipeline.web.app import create_app
from tests.fixtures.dashboard import NOW, PASSWORD, UNREAD_REPLY, Seeded, make_settings, seed

# Every organiser route, with a concrete path. A new route that is not listed here fails
# `test_the_route_table_lists_every_organiser_route`, so none can slip past the login tests.
GET_ROUTES = [
    "/admin",
    "/admin/plan",
    "/admin/delegates/anna",
    "/admin/failures",
    "/admin/replies",
    "/admin/stops/hotel",
    "/admin/dinner",
    "/admin/messages/1",
    "/admin/messages/1/html",
    "/admin/charts",
    "/admin/charts/rsvps.png",
    "/admin/delegates/new",
    "/admin/delegates/anna/edit",
    "/admin/survey",
    "/admin/survey.png",
    "/admin/broadcast",
    "/admin/broadcasts/0123456789",
]
POST_ROUTES = [
    "/admin/logout",
    "/admin/failures/1/retry",
    "/admin/replies/1/handled",
    "/admin/replies/1/rsvp",
    "/admin/replies/1/answer",
    "/admin/delegates/anna/rsvp",
    "/admin/delegates/new",
    "/admin/delegates/anna/edit",
    "/admin/delegates/anna/cancel",
    "/admin/messages/1/email",
    "/admin/broadcast/preview",
    "/admin/broadcast/send",
]
PUBLIC_ROUTES = {("GET", "/admin/login"), ("POST", "/admin/login")}
BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
BUS_LATE = "Bussen är 15 minuter försenad."
BUS_LATE_EN = "The bus is 15 minutes late."


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = open_store(f"sqlite:///{tmp_path / 'kallelse.sqlite3'}")
    yield store
    store.close()


@pytest.fixture
def seeded(store: Store) -> Seeded:
    return seed(store)


@pytest.fixture
def app(tmp_path: Path, store: Store, seeded: Seeded) -> FastAPI:
    app = create_app(Runtime(make_settings(tmp_path), store=store))
    app.state.runtime.clock = lambda: NOW
    return app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


@pytest.fixture
def admin(client: TestClient) -> TestClient:
    """A client logged in as an organiser."""
    assert login(client).status_code == 303
    return client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def login(client: TestClient, password: str = PASSWORD, next: str = "/admin") -> httpx.Response:
    token = csrf_of(client.get("/admin/login").text)
    form = {"password": password, "csrf": token, "next": next}
    return client.post("/admin/login", data=form, follow_redirects=False)


def post(client: TestClient, path: str, **form: str) -> httpx.Response:
    """A form POST carrying the session's CSRF token, as the dashboard's own forms do."""
    token = csrf_of(client.get("/admin").text)
    return client.post(path, data={"csrf": token, **form}, follow_redirects=False)


def ledger_row(store: Store, row_id: int) -> LedgerRow:
    with store.session() as session:
        row = session.get(LedgerRow, row_id)
        assert row is not None
        return row


def cells(html: str, table_id: str) -> str:
    """The text of one table, tags removed, to read what a person sees."""
    found = re.search(rf'<(table|dl|ul)[^>]*id="{table_id}".*?</\1>', html, re.S)
    assert found, f"no #{table_id} on the page"
    return " ".join(re.sub(r"<[^>]+>", " ", found.group(0)).split())


# -- the gate -------------------------------------------------------------------------------------


def test_the_route_table_lists_every_organiser_route() -> None:
    """Every route of the dashboard's router is in GET_ROUTES, POST_ROUTES or the public login."""
    listed = {("GET", p) for p in GET_ROUTES} | {("POST", p) for p in POST_ROUTES} | PUBLIC_ROUTES
    concrete = {
        (method, route.path)
        for route in admin_routes.router.routes
        if isinstance(route, APIRoute)
        for method in route.methods - {"HEAD"}
    }
    patterns = {(m, re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", p) + "$")) for m, p in concrete}
    assert len(concrete) == len(listed)
    assert all(any(m == lm and rx.match(lp) for lm, lp in listed) for m, rx in patterns)


@pytest.mark.parametrize(
    ("method", "path"), [("GET", p) for p in GET_ROUTES] + [("POST", p) for p in POST_ROUTES]
)
def test_every_organiser_route_without_a_session_answers_401(client, store, seeded, method, path) -> None:
    """A script (or any POST) without a session gets 401 and changes nothing."""
    response = client.request(method, path, data={"to": "all", "text": "x"}, follow_redirects=False)
    assert response.status_code == 401
    assert ledger_row(store, seeded.failed_id).state == "failed"


@pytest.mark.parametrize("path", GET_ROUTES)
def test_a_browser_opening_an_organiser_page_without_a_session_is_sent_to_the_login(client, path) -> None:
    """A browser's GET without a session is redirected (303) to the login, which comes back to the page."""
    response = client.get(path + "?x=1", headers=BROWSER, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/admin/login?next={path}%3Fx%3D1"


def test_a_wrong_password_is_refused_and_opens_nothing(client) -> None:
    """401 with the form again; the organiser pages stay closed."""
    response = login(client, password="gissning")
    assert response.status_code == 401 and "Fel lösenord." in response.text
    assert client.get("/admin", follow_redirects=False).status_code == 401


def test_the_eleventh_login_attempt_in_a_minute_gets_429_in_swedish_even_with_the_right_password(
    client,
) -> None:
    """Ten tries a minute per address (LOGIN_RATE_LIMIT), then 429 with a Swedish message and Retry-After:
    guessing ADMIN_PASSWORD gets slow (issue 9, 11)."""
    assert [login(client, password=f"gissning{n}").status_code for n in range(10)] == [401] * 10
    response = login(client)
    assert response.status_code == 429
    assert "För många inloggningsförsök. Vänta en minut och försök igen." in response.text
    assert 1 <= int(response.headers["retry-after"]) <= 61
    assert client.get("/admin", follow_redirects=False).status_code == 401


def test_the_login_limit_counts_each_address_on_its_own(tmp_path, store, seeded) -> None:
    """Another address still gets in while one is being refused."""
    app = create_app(Runtime(make_settings(tmp_path, login_rate_limit="2/minute"), store=store))
    with (
        TestClient(app, client=("10.0.0.1", 5000)) as guesser,
        TestClient(app, client=("10.0.0.2", 5000)) as ok,
    ):
        assert [login(guesser, password="x").status_code for _ in range(3)] == [401, 401, 429]
        assert login(ok).status_code == 303


def test_the_right_password_logs_in_and_returns_to_the_page_asked_for(client) -> None:
    """After logging in the organiser lands where they were going, and the pages open."""
    response = login(client, next="/admin/plan")
    assert (response.status_code, response.headers["location"]) == (303, "/admin/plan")
    assert client.get("/admin/plan").status_code == 200


@pytest.mark.parametrize(
    "target", ["//evil.example/admin", "https://evil.example/", "/r/token", "/admin\\@x"]
)
def test_a_next_address_outside_the_dashboard_is_replaced_by_the_overview(client, target) -> None:
    """No open redirect: only /admin pages are places to return to."""
    assert login(client, next=target).headers["location"] == "/admin"


def test_the_session_cookie_is_httponly_samesite_lax_scoped_and_expiring(client) -> None:
    """The login's cookie cannot be read by scripts, is not sent cross-site, and ends."""
    cookie = login(client).headers["set-cookie"]
    assert f"{admin_auth.COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Path=/admin" in cookie and f"Max-Age={admin_auth.MAX_AGE}" in cookie


def test_the_dashboard_is_closed_when_no_admin_password_is_set(tmp_path, store, seeded) -> None:
    """Without ADMIN_PASSWORD the login says so and no password, not even an empty one, opens it."""
    app = create_app(Runtime(make_settings(tmp_path, admin_password=SecretStr("")), store=store))
    with TestClient(app) as client:
        page = client.get("/admin/login")
        assert "Översikten är stängd" in page.text and 'type="password"' not in page.text
        response = client.post("/admin/login", data={"password": ""})
        assert response.status_code == 403
        assert client.get("/admin", follow_redirects=False).status_code == 401


def test_a_session_signed_with_another_key_is_not_a_login(tmp_path, store, seeded, admin) -> None:
    """A cookie from another installation (or forged) opens nothing."""
    other = create_app(Runtime(make_settings(tmp_path, secret_key=SecretStr("another-key")), store=store))
    with TestClient(other) as client:
        client.cookies.set(admin_auth.COOKIE, admin.cookies[admin_auth.COOKIE], path="/admin")
        assert client.get("/admin", follow_redirects=False).status_code == 401


def test_an_expired_session_is_not_a_login(admin, monkeypatch) -> None:
    """Past its age the cookie's signature no longer counts."""
    monkeypatch.setattr(admin_auth, "MAX_AGE", -1)
    assert admin.get("/admin", follow_redirects=False).status_code == 401


def test_changing_the_admin_password_ends_every_session(tmp_path, store, seeded, admin) -> None:
    """The session is bound to the password: a new ADMIN_PASSWORD logs everybody out."""
    other = create_app(Runtime(make_settings(tmp_path, admin_password=SecretStr("nytt")), store=store))
    with TestClient(other) as client:
        client.cookies.set(admin_auth.COOKIE, admin.cookies[admin_auth.COOKIE], path="/admin")
        assert client.get("/admin", follow_redirects=False).status_code == 401


def test_logging_out_ends_the_session(admin) -> None:
    """After the logout POST the pages are closed again."""
    response = post(admin, "/admin/logout")
    assert (response.status_code, response.headers["location"]) == (303, "/admin/login")
    assert admin.get("/admin", follow_redirects=False).status_code == 401


# -- CSRF -----------------------------------------------------------------------------------------


def test_a_login_without_the_forms_token_is_refused(client) -> None:
    """The login form, too, needs the token its page set: a cross-site login POST fails."""
    response = client.post("/admin/login", data={"password": PASSWORD}, follow_redirects=False)
    assert response.status_code == 403
    assert client.get("/admin", follow_redirects=False).status_code == 401


@pytest.mark.parametrize("token", [None, "", "not-the-token"])
def test_a_post_without_the_sessions_csrf_token_is_refused_and_changes_nothing(
    admin, store, seeded, token
) -> None:
    """A logged-in POST with a missing or wrong token is 403: the failed row stays failed."""
    form = {} if token is None else {"csrf": token}
    response = admin.post(f"/admin/failures/{seeded.failed_id}/retry", data=form, follow_redirects=False)
    assert response.status_code == 403
    assert ledger_row(store, seeded.failed_id).state == "failed"


def test_the_login_token_no_longer_works_after_logging_in(client, store, seeded) -> None:
    """Logging in issues a new token: one planted or read before the login is worthless."""
    before = csrf_of(client.get("/admin/login").text)
    assert login(client).status_code == 303
    response = client.post(f"/admin/failures/{seeded.failed_id}/retry", data={"csrf": before})
    assert response.status_code == 403


# -- pages ----------------------------------------------------------------------------------------


def test_the_overview_shows_the_rsvp_counts_and_every_delegate_with_a_link(admin) -> None:
    """2 yes, 1 no, 2 not answered; each delegate links to their page, names escaped."""
    page = admin.get("/admin")
    assert page.status_code == 200
    assert cells(page.text, "rsvp-counts").startswith("2 ja 1 nej 2 inte svarat 5 deltagare")
    for delegate_id in ("anna", "bob", "cecilia", "david", "eva"):
        assert f'href="/admin/delegates/{delegate_id}"' in page.text
    assert "David &lt;i&gt;Öhman&lt;/i&gt;" in page.text and "<i>Öhman" not in page.text


@pytest.mark.parametrize(
    ("answer", "shown", "hidden"),
    [("yes", {"anna", "bob"}, {"cecilia", "eva"}), ("no", {"cecilia"}, {"anna"}), ("none", {"eva"}, {"bob"})],
)
def test_the_delegate_list_filters_by_answer(admin, answer, shown, hidden) -> None:
    """`?svar=` shows only the delegates with that answer."""
    table = admin.get(f"/admin?svar={answer}").text
    assert all(f"/admin/delegates/{d}" in table for d in shown)
    assert not any(f'/admin/delegates/{d}"' in table for d in hidden)


def test_the_delegate_list_can_be_searched_by_name_or_organisation(admin) -> None:
    """`?q=` finds delegates by part of their name or organisation, case-insensitively."""
    table = admin.get("/admin?q=SANDVIK").text
    assert "/admin/delegates/cecilia" in table and '/admin/delegates/anna"' not in table


def test_a_long_delegate_list_is_cut_with_a_note_saying_how_many_matched(admin, store, monkeypatch) -> None:
    """A national event has 100,000 delegates: the page shows the first LIST_LIMIT and says so."""
    from pipeline.web import admin_data

    monkeypatch.setattr(admin_data, "LIST_LIMIT", 2)
    page = admin.get("/admin").text
    assert "Visar 2 av 5" in page
    assert page.split('id="delegates"')[1].count('href="/admin/delegates/') == 2


def test_the_plan_groups_the_ledger_by_state_rule_and_local_time(admin, store) -> None:
    """Each part counts its rows; the invitation's failure shows at its local due time (09:00)."""
    page = admin.get("/admin/plan")
    with store.session() as session:
        total = len(session.scalars(select(LedgerRow.id)).all())
    counts = [int(n) for n in re.findall(r'class="n">(\d+)<', page.text)]
    assert sum(counts) == total and counts[1:3] == [2, 2]  # sent + delivered, failed + unknown
    failed = page.text.split('id="failed"')[1].split('id="expired"')[0]
    assert "tors 7 okt kl. 09.00" in failed and "Inbjudan med programmet" in failed
    assert "1 misslyckad" in failed


def test_a_delegates_page_shows_their_messages_answers_replies_and_survey(admin) -> None:
    """Every ledger row with state and provider id, the RSVP history, what they wrote (escaped), ratings."""
    page = admin.get("/admin/delegates/anna").text
    messages = cells(page, "messages")
    assert (
        "Inbjudan med programmet och en begäran om svar JA/NEJ e-post tors 7 okt kl. 09.00 "
        "fre 8 okt kl. 14.00 levererad SMinvanna" in messages
    )
    assert "En vecka före: praktisk information" in messages and "planerad" in messages
    assert "ja importerat" in cells(page, "rsvps")
    assert "Kan jag ta med &lt;b&gt;min hund&lt;/b&gt;?" in page and UNREAD_REPLY not in page
    assert "Vad tyckte du om mötet som helhet? (1–5) 5" in cells(page, "survey")


def test_a_failed_delegates_page_shows_the_reason(admin) -> None:
    """Cecilia's failed invitation carries the provider's reason; her NEJ by SMS is in the history."""
    page = admin.get("/admin/delegates/cecilia").text
    assert "misslyckad" in cells(page, "messages") and "21211: not a valid phone number" in page
    assert "nej sms Nej tyvärr" in cells(page, "rsvps")


def test_an_unknown_delegate_gets_a_404_page(admin) -> None:
    """Not a 500, not an empty page."""
    response = admin.get("/admin/delegates/nobody")
    assert response.status_code == 404 and "deltagaren nobody" in response.text


def test_the_failures_page_lists_failed_and_unknown_rows_with_reasons_and_retry_buttons(
    admin, seeded
) -> None:
    """Both rows, their reasons, and a retry form per row."""
    page = admin.get("/admin/failures").text
    table = cells(page, "failures")
    assert "Cecilia Näslund" in table and "21211: not a valid phone number (21211)" in table
    assert "Eva Berg" in table and "okänd" in table
    for row_id in (seeded.failed_id, seeded.unknown_id):
        assert f'action="/admin/failures/{row_id}/retry"' in page


@pytest.mark.parametrize("which", ["failed_id", "unknown_id"])
def test_retry_moves_the_row_to_planned_due_now_and_the_scheduler_then_queues_it(
    admin, store, seeded, which
) -> None:
    """The button's POST resets the row (attempts, reason); the scheduler's next step queues it."""
    row_id = getattr(seeded, which)
    response = post(admin, f"/admin/failures/{row_id}/retry")
    assert response.headers["location"] == f"/admin/failures?retried={row_id}"
    row = ledger_row(store, row_id)
    assert (row.state, row.due_at, row.attempts, row.reason) == ("planned", NOW, 0, "")
    assert "skickas igen" in admin.get(response.headers["location"]).text
    with store.session() as session:
        assert row_id in queue_due(session, NOW + timedelta(seconds=1))


def test_retrying_a_row_that_did_not_fail_changes_nothing(admin, store, seeded) -> None:
    """A delivered message is never re-sent from the failures page (a stale page, a crafted POST)."""
    response = post(admin, f"/admin/failures/{seeded.sent_id}/retry")
    assert response.headers["location"] == f"/admin/failures?refused={seeded.sent_id}"
    assert ledger_row(store, seeded.sent_id).state == "delivered"


def test_retry_failed_is_a_compare_and_set(store, seeded) -> None:
    """Only failed and unknown rows move; a second retry of the same row does nothing."""
    with store.session() as session:
        assert retry_failed(session, seeded.failed_id, NOW)
        assert not retry_failed(session, seeded.failed_id, NOW)
        assert not retry_failed(session, seeded.sent_id, NOW)


def test_the_replies_page_shows_only_replies_not_understood_escaped(admin) -> None:
    """The unread question is there with its sender; the understood NEJ is not."""
    table = cells(admin.get("/admin/replies").text, "replies")
    assert "Anna Lindqvist" in table and "Kan jag ta med &lt;b&gt;min hund&lt;/b&gt;?" in table
    assert "Nej" not in table


def test_the_survey_page_shows_counts_bars_and_a_chart(admin) -> None:
    """2 of 2 who said yes answered, mean 4,0; the chart is a PNG served by the app."""
    page = admin.get("/admin/survey").text
    assert "2 av 2 som tackat ja har svarat" in page and "medel 4,0" in page
    assert 'src="/admin/survey.png"' in page
    chart = admin.get("/admin/survey.png")
    assert chart.headers["content-type"] == "image/png" and chart.content.startswith(b"\x89PNG")


def test_admin_pages_load_nothing_from_elsewhere(admin) -> None:
    """A strict CSP; no script, no address outside the app in any page."""
    # An email's HTML part (/html) carries the delegate's own links as its content; its CSP loads nothing.
    pages = [p for p in GET_ROUTES if not p.endswith((".png", "/html"))]
    pages += ["/admin/login", "/admin/delegates/david"]
    for path in pages:
        page = admin.get(path)
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert "<script" not in page.text and not re.search(r'(src|href)="(https?:)?//', page.text)


# -- broadcasts -----------------------------------------------------------------------------------


def settled(store: Store, rule: str, timeout: float = 20.0) -> dict[str, int]:
    """The batch's states once nothing is pending: the dashboard delivers in the background."""
    deadline = time.monotonic() + timeout
    while True:
        with store.session() as session:
            states = states_of(session, "sik-2021", rule)
        if not any(states.get(s, 0) for s in ("planned", "queued", "sending")) or time.monotonic() > deadline:
            return states
        time.sleep(0.05)


def broadcast_id_of(response: httpx.Response) -> str:
    return response.headers["location"].split("/")[-1].split("?")[0]


def test_the_broadcast_form_offers_stops_roles_and_answers_as_boxes_with_counts(admin) -> None:
    """No segment syntax: a box per stop, role and answer, each with how many delegates it holds."""
    text = " ".join(re.sub(r"<[^>]+>", " ", admin.get("/admin/broadcast").text).split())
    page = admin.get("/admin/broadcast").text
    assert "Bussen från hotellet 1" in text and "Bussen från flygplatsen 1" in text
    assert "KSO (politiker) 1" in text and "tjänsteperson 4" in text
    assert 'value="role:kso"' in page and 'value="rsvp:yes" checked' in page  # yes is ticked to start
    assert "attending" not in page and "stop:hotel |" not in page


@pytest.mark.parametrize(
    ("groups", "segments"),
    [
        (["stop:hotel", "rsvp:yes"], ["attending,stop:hotel"]),
        (["stop:hotel", "stop:airport", "rsvp:yes"], ["attending,stop:airport", "attending,stop:hotel"]),
        (["role:kso"], ["role:kso"]),
        (["rsvp:none", "rsvp:no"], ["declined", "not-responded"]),
    ],
)
def test_ticked_boxes_of_one_kind_are_alternatives_and_kinds_combine(groups, segments) -> None:
    """Boxes → segments: the same kind ORs, different kinds AND."""
    assert admin_routes.audience_of(groups) == segments


def test_the_broadcast_preview_names_the_recipients_and_shows_both_languages(admin) -> None:
    """Those who said yes: Anna (sv) and Bob (en) by SMS, named; each language's own text; parts."""
    page = post(admin, "/admin/broadcast/preview", grupp=["rsvp:yes"], text=BUS_LATE, text_en=BUS_LATE_EN)
    assert page.status_code == 200
    assert cells(page.text, "preview-counts") == "2 mottagare 2 meddelanden 2 sms"
    assert re.findall(r'<li data-delegate="(\w+)">([^<]+)</li>', page.text) == [
        ("anna", "Anna Lindqvist"),
        ("bob", "Bob Smith"),
    ]
    sv, en = page.text.split('data-language="sv" data-channel="sms"')[1].split('data-language="en"')
    assert BUS_LATE in sv and BUS_LATE_EN not in sv and BUS_LATE_EN in en
    assert "Sms: 1 del." in page.text and 'id="confirm"' in page.text


def test_a_broadcast_preview_of_both_channels_shows_the_email_subject(admin) -> None:
    """Both channels to those who said yes: each gets an SMS and an email, with a subject."""
    page = post(admin, "/admin/broadcast/preview", grupp=["rsvp:yes"], text=BUS_LATE, channel="both").text
    assert 'data-language="en" data-channel="email"' in page and "Ämne:" in page
    assert cells(page, "preview-counts").startswith("2 mottagare 4 meddelanden")


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"text": BUS_LATE}, "Kryssa i vilka som ska få meddelandet."),
        ({"grupp": ["rsvp:yes"], "text": "  "}, "Skriv meddelandet på svenska."),
        ({"grupp": ["stop:nowhere"], "text": BUS_LATE}, "unknown stop"),
    ],
)
def test_a_broadcast_form_with_a_mistake_comes_back_with_the_reason(admin, form, error) -> None:
    """422, the form again with the reason, and nothing to confirm."""
    page = post(admin, "/admin/broadcast/preview", **form)
    assert page.status_code == 422 and error in page.text and 'id="confirm"' not in page.text


def test_a_text_too_long_for_the_event_is_refused_in_swedish(admin) -> None:
    """Three SMS parts where the event allows two: said in Swedish, no confirm button."""
    page = post(admin, "/admin/broadcast/preview", grupp=["rsvp:yes"], text="Bussen är sen. " * 25)
    assert "delar; högst 2 är tillåtet. Korta texten." in page.text and 'id="confirm"' not in page.text


def test_confirming_a_broadcast_delivers_it_from_the_web_process_and_shows_the_counts(admin, store) -> None:
    """With only the web app running (no broker), the rows are due now and delivered at once."""
    response = post(admin, "/admin/broadcast/send", grupp=["rsvp:yes"], text=BUS_LATE)
    assert response.status_code == 303
    broadcast_id = broadcast_id_of(response)
    assert settled(store, f"broadcast:{broadcast_id}") == {"sent": 2}
    with store.session() as session:
        rows = session.scalars(select(LedgerRow).where(LedgerRow.rule == f"broadcast:{broadcast_id}")).all()
    assert sorted((r.delegate_id, r.channel, r.due_at) for r in rows) == [
        ("anna", "sms", NOW),
        ("bob", "sms", NOW),
    ]
    result = admin.get(response.headers["location"]).text
    assert broadcast_id in result and cells(result, "broadcast-counts") == "2 skickad"
    assert "Alla meddelanden är hanterade" in result


def test_with_a_broker_the_form_says_the_workers_send_and_does_not_claim_it_was_sent(
    tmp_path, store, seeded, redis_url
) -> None:
    """BROKER_URL set: the form says whether a scheduler is heard from (its lease heartbeat) and that the
    workers deliver; the result page does not claim it was sent: the rows wait queued."""
    app = create_app(Runtime(make_settings(tmp_path, broker_url=redis_url), store=store))
    app.state.runtime.clock = lambda: NOW
    with TestClient(app) as client:
        assert login(client).status_code == 303
        assert "Ingen schemaläggare är igång" in client.get("/admin/broadcast").text
        with store.session() as session:  # a scheduler takes its lease: the form says so
            assert take_lease(session, "scheduler-1", NOW, timedelta(seconds=30))
        assert "schemaläggaren är igång" in client.get("/admin/broadcast").text
        response = post(client, "/admin/broadcast/send", grupp=["role:kso"], text=BUS_LATE)
        result = client.get(response.headers["location"]).text
    assert "1 meddelanden är inte skickade än" in result and "kallelse worker" in result
    assert cells(result, "broadcast-counts") == "1 i kö"


def test_confirming_the_same_broadcast_twice_creates_nothing_new_unless_asked(admin, store) -> None:
    """The id is deterministic: a second confirm stores nothing; `again` makes a new broadcast."""
    form = {"grupp": ["rsvp:yes"], "text": BUS_LATE, "channel": "auto"}
    first = post(admin, "/admin/broadcast/send", **form).headers["location"]
    second = post(admin, "/admin/broadcast/send", **form).headers["location"]
    assert second.split("?")[0] == first.split("?")[0] and second.endswith("?nya=0")
    assert "redan skapats" not in admin.get(second).text and "fanns redan" in admin.get(second).text
    preview = post(admin, "/admin/broadcast/preview", **form).text
    assert "Det här utskicket finns redan" in preview and 'name="again"' in preview
    third = post(admin, "/admin/broadcast/send", again="1", **form).headers["location"]
    assert third.split("?")[0].endswith("-2")
    settled(store, f"broadcast:{third.split('?')[0].split('/')[-1]}")
    with store.session() as session:
        assert len(session.scalars(select(LedgerRow).where(LedgerRow.rule.like("broadcast:%"))).all()) == 4


def test_a_delegates_page_shows_what_they_said_on_the_rsvp_page(admin, store) -> None:
    """Dinner, dietary needs and the comment from the RSVP page are on the organiser's delegate page."""
    from pipeline.store.people import RsvpDetails, record_rsvp_details

    with store.session() as session:
        record_rsvp_details(
            session, "anna", RsvpDetails(False, "hotel", False, "Laktosfri", "Ringer om tåget"), NOW
        )
    facts = cells(admin.get("/admin/delegates/anna").text, "delegate")
    assert (
        "Middag äter inte middag" in facts
        and "Specialkost Laktosfri" in facts
        and "Övrigt Ringer om tåget" in facts
    )
