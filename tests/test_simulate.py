"""`kallelse simulate`: the seed event end to end on a virtual clock, through real actors and the outbox."""

from __future__ import annotations

import json
import socket
import threading
from datetime import datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path
from zoneinfo import ZoneInfo

import icalendar
import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.sms import sms_segments
from pipeline.timetable import load_event

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "delegates.example.csv"


@pytest.fixture
def simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[dict, Path]:
    """Import the example delegates, then simulate the whole plan; returns the JSON report and outbox."""
    monkeypatch.chdir(ROOT)
    for name in ("BROKER_URL", "DATABASE_URL", "EMAIL_BACKEND", "SMS_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    runner = CliRunner()
    imported = runner.invoke(main, ["delegates", "import", str(EXAMPLE)])
    assert imported.exit_code == 0, imported.output
    result = runner.invoke(main, ["simulate", "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{") :])
    return report, tmp_path / "simulation" / "outbox"


def test_every_planned_message_ends_sent_expired_or_skipped_with_a_reason_and_none_failed(simulated):
    """The simulation finishes the whole plan: nothing failed, nothing left behind, reasons for the rest."""
    report, _ = simulated
    assert report["totals"].get("failed", 0) == 0
    assert set(report["totals"]) <= {"sent", "expired", "skipped"}
    assert report["totals"]["sent"] > 50
    for rule in report["rules"]:
        for state, count in rule["counts"].items():
            if state in ("expired", "skipped"):
                assert sum(rule["reasons"][state].values()) == count, rule


def test_the_simulation_covers_every_rule_of_the_plan(simulated):
    """Each rule of the shipped communication plan sends at least one message to the example delegates."""
    report, _ = simulated
    event = load_event(ROOT / "config" / "event.toml")
    sent_rules = {r["rule"] for r in report["rules"] if r["counts"].get("sent")}
    assert sent_rules == {rule.id for rule in event.rules}


def test_the_emails_are_valid_mime_with_text_and_html_and_swedish_characters_intact(simulated):
    """Every .eml parses; it has text and HTML parts; å ä ö survive in subject and body."""
    _, outbox = simulated
    emails = sorted((outbox / "email").glob("*.eml"))
    assert emails
    swedish_subjects = 0
    for path in emails:
        mail = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        assert mail.defects == []
        plain = mail.get_body(("plain",)).get_content()
        html = mail.get_body(("html",)).get_content()
        assert plain.strip() and "<html" in html.lower()
        assert "\ufffd" not in plain + html + mail["Subject"]
        swedish_subjects += any(c in mail["Subject"] for c in "åäöÅÄÖ")
    assert swedish_subjects > 0
    invitation = next(p for p in emails if ":invitation:" in p.name or "_invitation_" in p.name)
    text = (
        BytesParser(policy=policy.default)
        .parsebytes(invitation.read_bytes())
        .get_body(("plain",))
        .get_content()
    )
    assert "Skellefteå" in text and "Välkommen" in text


def calendars(outbox: Path) -> dict[str, str]:
    """Every .ics in the outbox's emails, by the delegate id in the message's ledger key."""
    found = {}
    for path in (outbox / "email").glob("*.eml"):
        mail = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        for part in mail.walk():
            if part.get_content_type() == "text/calendar":
                key = mail["X-Kallelse-Key"] or path.stem
                found[key] = part.get_content()
    return found


def _delegate_of(key: str) -> str:
    return next(
        part for part in key.replace("_", ":").split(":") if part.startswith("d") and part[1:].isdigit()
    )


def test_every_calendar_in_the_outbox_is_published_in_the_readers_language_from_their_own_pickup(simulated):
    """No .ics is an invitation without attendees (METHOD:REQUEST); David (English, airport) gets an English
    calendar whose first day starts at the airport pickup, 09.30; Astrid (Swedish, hotel) at 09.00."""
    _, outbox = simulated
    found = calendars(outbox)
    assert found
    for key, ics in found.items():
        cal = icalendar.Calendar.from_ical(ics)
        attendees = [v for v in cal.walk("VEVENT") if "ATTENDEE" in v]
        assert str(cal["METHOD"]) != "REQUEST" or attendees, key
        assert str(cal["METHOD"]) == "PUBLISH", key
    by_delegate = {_delegate_of(key): ics for key, ics in found.items()}
    david = icalendar.Calendar.from_ical(by_delegate["d04"]).walk("VEVENT")[0]
    assert "day 1" in str(david["SUMMARY"]) and "THURSDAY 25 NOVEMBER" in str(david["DESCRIPTION"])
    assert david.decoded("DTSTART") == datetime(2021, 11, 25, 9, 30, tzinfo=ZoneInfo("Europe/Stockholm"))
    assert str(david["LOCATION"]).startswith("Skellefteå flygplats")
    astrid = icalendar.Calendar.from_ical(by_delegate["d01"]).walk("VEVENT")[0]
    assert "dag 1" in str(astrid["SUMMARY"])
    assert astrid.decoded("DTSTART") == datetime(2021, 11, 25, 9, 0, tzinfo=ZoneInfo("Europe/Stockholm"))


def test_every_sms_is_within_its_rules_segment_limit(simulated):
    """Logistics texts are one segment, everything else at most the event's limit of two."""
    _, outbox = simulated
    event = load_event(ROOT / "config" / "event.toml")
    limits = {rule.id: rule.max_segments or event.event.sms_max_segments for rule in event.rules}
    texts = [json.loads(p.read_text(encoding="utf-8")) for p in (outbox / "sms").glob("*.json")]
    assert texts
    for sms in texts:
        rule = sms["key"].split(":")[1]
        assert sms_segments(sms["body"]).segments <= limits[rule], (rule, sms["body"])
    pickups = [s for s in texts if ":pickup:" in s["key"]]
    assert pickups and all(sms_segments(s["body"]).segments == 1 for s in pickups)
    surveys = [s for s in texts if ":survey:" in s["key"] or ":survey-reminder:" in s["key"]]
    assert surveys and all(sms_segments(s["body"]).segments == 1 for s in surveys), surveys


def test_the_survey_goes_to_each_delegate_by_one_channel_only(simulated):
    """A delegate with both a phone and an email gets the survey once, by SMS, never also by email."""
    _, outbox = simulated
    texts = {json.loads(p.read_text(encoding="utf-8"))["key"] for p in (outbox / "sms").glob("*.json")}
    by_sms = {_delegate_of(k) for k in texts if ":survey:" in k}
    by_email = {_delegate_of(p.stem) for p in (outbox / "email").glob("*.eml") if "_survey_" in p.stem}
    assert by_sms and by_email and not by_sms & by_email


class CountingListener:
    """A TCP server on 127.0.0.1 that only counts the connections made to it (and answers nothing)."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.socket.settimeout(0.2)
        self.port = self.socket.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.socket.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.socket.close()


def test_simulate_with_twilio_and_smtp_settings_reaches_neither_and_fills_its_own_outbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, twilio_server
) -> None:
    """SMS_BACKEND=twilio and EMAIL_BACKEND=smtp pointing at listening local servers: 0 requests, 0
    connections, and every message in DATA_DIR/simulation/outbox/ (issue 9, 5: must show)."""
    smtp = CountingListener()
    monkeypatch.chdir(ROOT)
    for name in ("BROKER_URL", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    env = {
        "DATA_DIR": str(tmp_path), "SMS_BACKEND": "twilio", "TWILIO_API_URL": twilio_server.url,
        "TWILIO_ACCOUNT_SID": twilio_server.account_sid, "TWILIO_AUTH_TOKEN": twilio_server.auth_token,
        "TWILIO_FROM": "+46700000000", "EMAIL_BACKEND": "smtp", "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp.port), "SMTP_SECURITY": "none", "SMTP_TIMEOUT": "1", "TWILIO_TIMEOUT": "1",
    }  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        runner = CliRunner()
        assert runner.invoke(main, ["delegates", "import", str(EXAMPLE)]).exit_code == 0
        result = runner.invoke(main, ["simulate", "--format", "json"])
    finally:
        smtp.stop()
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{") :])
    outbox = tmp_path / "simulation" / "outbox"
    assert (twilio_server.requests, twilio_server.messages, smtp.accepted) == ([], [], 0)
    assert report["outbox"] == str(outbox) and report["totals"]["sent"] > 0
    files = list((outbox / "email").glob("*.eml")) + list((outbox / "sms").glob("*.json"))
    assert len(files) == report["totals"]["sent"]
    assert not (tmp_path / "outbox").exists()
