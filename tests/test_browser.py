"""The dashboard in a real headless Chromium (Debian's), driven by Playwright, against the app served by
uvicorn on a free local port: log in, read the RSVP counts, open a delegate's history, preview and send a
broadcast. Screenshots of each step, on a phone (375×812) and a desktop, go to test-artifacts/screenshots/.

Playwright's own browser downloads are never used (`playwright install` cannot run here): the test drives
/usr/bin/chromium. Without it or the playwright package the tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from pipeline.runtime import Runtime
from pipeline.store import Store, open_store
from pipeline.store.models import DelegateRow, LedgerRow
from pipeline.web.server import WebServer
from tests.fixtures.dashboard import PASSWORD, ROOT, make_settings, seed
from tests.fixtures.day import PUBLIC_URL, TWILIO_TOKEN
from tests.fixtures.services import unavailable

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
# Headless and quiet: no GPU, no QUIC, no first-run, and no calls home (updates, sync, field trials).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
PHONE = {
    "viewport": {"width": 375, "height": 812},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}
DESKTOP = {"viewport": {"width": 1200, "height": 900}}
BUS_LATE = "Bussen är 15 minuter försenad."


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium under Playwright; skipped (failed under CI) when either is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        unavailable("the playwright package", e)
    if not CHROMIUM.exists():
        unavailable("Chromium", FileNotFoundError(f"{CHROMIUM} (apt-get install chromium)"))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = open_store(f"sqlite:///{tmp_path / 'kallelse.sqlite3'}")
    seed(store)
    yield store
    store.close()


@pytest.fixture
def server(tmp_path: Path, store: Store) -> Iterator[str]:
    """The app as `kallelse web` serves it, over the seeded database in tmp_path."""
    server = WebServer(Runtime(make_settings(tmp_path, port=free_port())))
    server.start()
    yield server.url
    server.stop()


def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def log_in(page: Any, url: str, screenshot: str | None = None) -> None:
    page.goto(f"{url}/admin/plan")
    assert page.url == f"{url}/admin/login?next=/admin/plan"  # the gate sent the browser to the login
    if screenshot:
        shot(page, screenshot)
    page.fill("#password", PASSWORD)
    page.click("button:has-text('Logga in')")
    page.wait_for_url(f"{url}/admin/plan")
    page.click("nav >> text=Deltagare")
    page.wait_for_url(f"{url}/admin")


def test_an_organiser_on_a_phone_logs_in_reads_the_answers_and_sends_a_broadcast(
    browser, server, store
) -> None:
    """The whole round on a 375-px screen, from the login to ledger rows of the broadcast."""
    context = browser.new_context(**PHONE)
    page = context.new_page()
    try:
        log_in(page, server, screenshot="phone-1-login")
        counts = {a: page.inner_text(f"#rsvp-counts [data-answer={a}] .n") for a in ("yes", "no", "none")}
        assert counts == {"yes": "2", "no": "1", "none": "2"}
        shot(page, "phone-2-overview")

        page.click("#delegates >> text=Cecilia Näslund")
        page.wait_for_url(f"{server}/admin/delegates/cecilia")
        assert "misslyckad" in page.inner_text("#messages")
        assert "Nej tyvärr" in page.inner_text("#rsvps")
        shot(page, "phone-3-delegate")

        page.click("nav >> text=Utskick")
        assert page.is_checked("input[value='rsvp:yes']")  # those who come, to start with
        page.fill("#text", BUS_LATE)
        page.select_option("#channel", "auto")
        page.click("button:has-text('Förhandsgranska')")
        assert page.inner_text("#people") == "2"
        assert page.locator("h3.sample").count() == 2  # Swedish and English
        assert page.locator("pre.message", has_text=BUS_LATE).count() == 2
        shot(page, "phone-4-preview")

        page.click("#confirm")
        page.wait_for_url(f"{server}/admin/broadcasts/**")
        broadcast_id = page.inner_text("#broadcast-id")
        page.wait_for_selector("#broadcast-counts [data-state=sent]")  # the page refreshes itself
        assert page.inner_text("#broadcast-counts [data-state=sent] .n") == "2"
        shot(page, "phone-5-sent")
    finally:
        context.close()
    with store.session() as session:
        rows = session.scalars(select(LedgerRow).where(LedgerRow.rule == f"broadcast:{broadcast_id}")).all()
    assert sorted((r.delegate_id, r.channel, r.state) for r in rows) == [
        ("anna", "sms", "sent"),
        ("bob", "sms", "sent"),
    ]


def test_the_plan_and_failures_read_well_on_a_desktop(browser, server) -> None:
    """A wide screen shows the tables as tables, with a retry button per failed row."""
    context = browser.new_context(**DESKTOP)
    page = context.new_page()
    try:
        log_in(page, server)
        shot(page, "desktop-1-overview")
        page.click("nav >> text=Plan")
        assert page.locator("#failed + table tbody tr").count() >= 1
        shot(page, "desktop-2-plan")
        page.click("nav >> text=Fel")
        assert page.locator("#failures tbody tr").count() == 2
        shot(page, "desktop-3-failures")
    finally:
        context.close()


def test_without_logging_in_the_browser_gets_the_login_page_not_the_data(browser, server) -> None:
    """Every organiser page sends a fresh browser to the login; nothing of the data shows."""
    context = browser.new_context(**PHONE)
    page = context.new_page()
    try:
        for path in ("/admin", "/admin/delegates/anna", "/admin/failures", "/admin/broadcast"):
            page.goto(server + path)
            assert page.url.startswith(f"{server}/admin/login?next=")
            assert "Anna" not in page.content()
    finally:
        context.close()


# -- the morning of day 1, on the database the real pipeline leaves at 08:45 ---------------------


@pytest.fixture
def morning_server(morning) -> Iterator[str]:
    settings, _ = morning
    rt = Runtime(settings.model_copy(update={"port": free_port()}))
    server = WebServer(rt)
    server.start()
    yield server.url
    server.stop()
    rt.close()


def signed_sms(url: str, sender: str, body: str, sid: str) -> None:
    params = {"MessageSid": sid, "From": sender, "To": "+46700000000", "Body": body}
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC_URL + "/twilio/sms", params)
    response = httpx.post(f"{url}/twilio/sms", data=params, headers={"X-Twilio-Signature": signature})
    assert response.status_code == 200


def test_on_a_phone_the_morning_reply_is_handled_the_hotel_list_read_and_the_hotel_bus_told(
    browser, morning_server, morning
) -> None:
    """375 px: the flagged late-flight SMS, "Klar"; the hotel list with phone links; the dinner count;
    a broadcast by ticking "Bussen från hotellet" that reaches the four riders."""
    url, (_, store) = morning_server, morning
    signed_sms(url, "+46701740606", "Flyget är 20 min sent, väntar bussen?", "SMbrowser1")
    context = browser.new_context(**PHONE)
    page = context.new_page()
    try:
        log_in(page, url)
        assert page.inner_text("#waiting .n") == "1"
        shot(page, "phone-day-1-overview")
        page.click("#waiting a")
        page.wait_for_url(f"{url}/admin/replies")
        assert page.locator("li.reply").count() == 1
        assert page.get_attribute("li.reply a.call", "href") == "tel:+46701740606"
        shot(page, "phone-day-2-reply")
        page.click("li.reply button.handled")
        page.wait_for_url(f"{url}/admin/replies?klar=*")
        assert page.locator("li.reply").count() == 0
        shot(page, "phone-day-3-handled")

        page.click("nav >> text=Deltagare")
        assert page.locator("#waiting").count() == 0
        page.click("a[data-stop=hotel]")
        page.wait_for_url(f"{url}/admin/stops/hotel")
        assert page.inner_text("[data-count=yes] .n") == "4"
        assert page.locator("#riders a[href^='tel:+46']").count() == 5  # four riders and one unanswered
        shot(page, "phone-day-4-hotel-list")
        page.click("nav >> text=Middag")
        assert page.inner_text("[data-count=coming] .n") == "8"
        shot(page, "phone-day-5-dinner")

        page.click("nav >> text=Utskick")
        page.check("label:has-text('Bussen från hotellet') input")
        page.fill("#text", "Bussen är 10 minuter sen. Vänta i lobbyn.")
        page.fill("#text_en", "The bus is 10 minutes late. Please wait in the lobby.")
        shot(page, "phone-day-6-broadcast-form")
        page.click("button:has-text('Förhandsgranska')")
        names = page.locator("#recipients li").all_inner_texts()
        assert sorted(names) == ["Astrid Lövgren", "Cecilia Näslund", "Elin Sjöström", "Sofia Älmqvist"]
        shot(page, "phone-day-7-broadcast-preview")
        page.click("#confirm")
        page.wait_for_selector("#broadcast-counts [data-state=sent]")
        assert page.inner_text("#broadcast-counts [data-state=sent] .n") == "4"
        shot(page, "phone-day-8-broadcast-sent")
    finally:
        context.close()
    with store.session() as session:
        riders = session.scalars(select(LedgerRow.delegate_id).where(LedgerRow.rule.like("broadcast:%")))
        assert sorted(riders) == ["d01", "d03", "d05", "d14"]


def test_on_a_desktop_the_lists_filter_print_and_show_a_delegates_messages(browser, morning_server) -> None:
    """1200 px: the overview's filters, a delegate's messages with "Visa", and the stop list as printed."""
    url = morning_server
    context = browser.new_context(**DESKTOP)
    page = context.new_page()
    try:
        log_in(page, url)
        page.select_option("select[name=hallplats]", "airport")
        page.select_option("select[name=svar]", "yes")
        page.click("#filters button")
        assert page.locator("#delegates tbody tr").count() == 4  # d02, d04, d08, d10
        shot(page, "desktop-day-1-filtered")
        page.goto(f"{url}/admin/delegates/d01")
        row = page.locator("#messages tr", has_text="Bussens sms")
        assert "skickad" in row.inner_text() and "tors 25 nov kl. 08.30" in row.inner_text()
        shot(page, "desktop-day-2-delegate")
        row.locator("text=Visa").click()
        assert "Bussen går kl. 09.00 från The Wood Hotel" in page.inner_text("#body")
        shot(page, "desktop-day-3-message")
        page.goto(f"{url}/admin/stops/hotel")
        page.emulate_media(media="print")
        assert not page.is_visible("nav.admin-nav") and page.is_visible("#riders")
        shot(page, "desktop-day-4-hotel-print")
        page.emulate_media(media="screen")
        page.click("nav >> text=Bilder")
        page.wait_for_load_state("load")  # the three pictures, drawn by the server, loaded by the browser
        widths = page.eval_on_selector_all("img.chart", "images => images.map(i => i.naturalWidth)")
        assert widths == [800, 800, 800]
        shot(page, "desktop-day-5-charts")
    finally:
        context.close()


def test_on_a_phone_a_delegate_is_added_edited_and_cancelled(browser, morning_server, morning) -> None:
    """375 px: a wrong phone is named in Swedish; the person is added, moved to the hotel bus, and
    cancelled with their planned messages stopped."""
    url, (_, store) = morning_server, morning
    context = browser.new_context(**PHONE)
    page = context.new_page()
    try:
        log_in(page, url)
        page.click("#add-delegate")
        page.fill("#f-id", "d15")
        page.fill("#f-name", "Ulla Berg")
        page.fill("#f-phone", "070-1")
        page.click("#save")
        assert "Telefon:" in page.inner_text("[role=alert]")
        shot(page, "phone-person-1-error")
        page.fill("#f-phone", "070-174 06 99")
        page.select_option("#f-dinner", "yes")
        page.click("#save")
        page.wait_for_url(f"{url}/admin/delegates/d15?sparat=ny")
        page.click("#edit")
        page.select_option("#f-stop", "hotel")
        page.click("#save")
        page.wait_for_url(f"{url}/admin/delegates/d15?sparat=uppgifter")
        assert "The Wood Hotel" in page.inner_text("#delegate")
        shot(page, "phone-person-2-saved")
        page.click("summary:has-text('Avanmäl')")
        page.click("#cancel")
        page.wait_for_url(f"{url}/admin/delegates/d15?sparat=avanmald")
        assert "Avanmäld" in page.inner_text("#delegate")
        shot(page, "phone-person-3-cancelled")
    finally:
        context.close()
    with store.session() as session:
        assert session.get(DelegateRow, "d15").cancelled_at is not None


# -- what delegates see on a phone ---------------------------------------------------------------

NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= document.documentElement.clientWidth"


def test_the_programme_and_rsvp_pages_fit_a_phone_without_sideways_scrolling(browser, server) -> None:
    """At 375 px the public programme and the RSVP form need no horizontal scrolling, and the form's
    choices are all there."""
    from pipeline.links import LinkSigner
    from tests.fixtures.dashboard import SECRET

    context = browser.new_context(**PHONE)
    page = context.new_page()
    page.goto(f"{server}/program")
    assert page.evaluate(NO_SIDEWAYS_SCROLL)
    # "12.00–13.00" fits its column instead of running into the title beside it.
    assert page.evaluate("[...document.querySelectorAll('.time')].every(e => e.scrollWidth <= e.clientWidth)")
    assert "Skellefteå flygplats, mötesplatsen meddelas senare" in page.inner_text("main")
    shot(page, "programme-phone")
    page.goto(f"{server}/r/{LinkSigner(SECRET, server).token('rsvp', 'anna')}")
    assert page.evaluate(NO_SIDEWAYS_SCROLL)
    assert (
        page.locator('input[name="stop"]').count() == 3 and page.locator('input[name="dinner"]').count() == 2
    )
    shot(page, "rsvp-phone")
    context.close()


def test_a_phone_number_in_an_email_stays_on_one_line_at_375_px(browser) -> None:
    """The practical email's HTML on a phone: no sideways scrolling, and every tel: link is one line box
    (non-breaking spaces hold)."""
    from pipeline.delegates import Delegate
    from pipeline.render import make_env, render_email
    from pipeline.timetable import load_event

    anna = Delegate("anna", "Anna Lindqvist", "anna@example.se", role="kso", stop="hotel")
    links = {
        k: f"https://kallelse.example.org/{k}"
        for k in ("rsvp_url", "survey_url", "optout_url", "programme_url")
    }
    html = render_email(
        make_env(ROOT / "templates"),
        load_event(ROOT / "config" / "event.toml"),
        anna,
        "practical",
        key="k",
        links=links,
    ).html
    context = browser.new_context(**PHONE)
    page = context.new_page()
    page.set_content(html)
    assert page.evaluate(NO_SIDEWAYS_SCROLL)  # the programme's long Swedish words wrap inside the cell
    lines = page.evaluate(
        "[...document.querySelectorAll('a[href^=\"tel:\"]')].map(a => a.getClientRects().length)"
    )
    assert lines and all(n == 1 for n in lines), lines
    shot(page, "practical-email-phone")
    context.close()
