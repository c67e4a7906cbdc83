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

import pytest
from sqlalchemy import select

from pipeline.runtime import Runtime
from pipeline.store import Store, open_store
from pipeline.store.models import LedgerRow
from pipeline.web.server import WebServer
from tests.fixtures.dashboard import PASSWORD, ROOT, make_settings, seed
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
DESKTOP = {"viewport": {"width": 1280, "height": 900}}
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
        page.fill("#to", "attending")
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
        assert "2" in page.inner_text("#broadcast-counts")
        shot(page, "phone-5-sent")
    finally:
        context.close()
    with store.session() as session:
        rows = session.scalars(select(LedgerRow).where(LedgerRow.rule == f"broadcast:{broadcast_id}")).all()
    assert sorted((r.delegate_id, r.channel, r.state) for r in rows) == [
        ("anna", "sms", "planned"),
        ("bob", "sms", "planned"),
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
