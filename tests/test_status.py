"""`kallelse status`: RSVP counts, ledger counts per rule and channel by state, failures, the next sends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import update

from pipeline.cli import main
from pipeline.delegates import Delegate
from pipeline.planner import plan
from pipeline.status import event_status, format_status
from pipeline.store import Store, ledger, open_store
from pipeline.store.models import LedgerRow
from pipeline.store.people import load_delegates, upsert_delegates
from pipeline.timetable import Event, load_event

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2021, 10, 1, 7, 0, tzinfo=UTC)
DELEGATES = [
    Delegate("anna", "Anna Berg", "anna@example.se", None, rsvp="yes"),
    Delegate("bo", "Bo Ek", None, "+46701740602", rsvp="yes"),
    Delegate("cecilia", "Cecilia Hall", "cecilia@example.org", None, "en", rsvp="no"),
    Delegate("david", "David Moss", "david@example.org", None, "en"),
]


@pytest.fixture(scope="module")
def event() -> Event:
    return load_event(ROOT / "config" / "event.toml")


@pytest.fixture
def store(tmp_path: Path, event: Event) -> Iterator[Store]:
    """Planned as of 1 October; Anna's invitation sent, Bo's failed for a bad number."""
    store = open_store(f"sqlite:///{tmp_path / 'kallelse.sqlite3'}")
    with store.session() as session:
        upsert_delegates(session, DELEGATES, NOW)
        sends = plan(event, load_delegates(session), {}, NOW)
        ledger.sync_plan(session, "sik-2021", sends, NOW)
        set_state(session, "invitation:-:anna:email", state="sent", sent_at=NOW)
        set_state(session, "invitation:-:bo:sms", state="failed", reason="invalid number (21211)")
    yield store
    store.close()


def set_state(session, key_end: str, **values) -> None:
    session.execute(update(LedgerRow).where(LedgerRow.key == f"sik-2021:{key_end}").values(**values))


def test_the_status_counts_rsvps_and_messages_per_rule_channel_and_state(store, event):
    """Two yes, one no, one not answered; the invitation row counts by channel and state."""
    with store.session() as session:
        status = event_status(session, event)
    assert status.rsvp == {"yes": 2, "no": 1, "none": 1}
    assert status.by_rule[("invitation", "email")] == {"sent": 1, "planned": 2}
    assert status.by_rule[("invitation", "sms")] == {"failed": 1}
    assert status.failures == [("invalid number (21211)", 1)]


def test_the_next_sends_are_the_earliest_planned_in_local_time(store, event):
    """Ten at most, earliest first, in the event's zone: the invitations of 7 October at 09.00."""
    with store.session() as session:
        status = event_status(session, event)
    assert len(status.next_sends) == 10
    first, second = status.next_sends[:2]
    assert (first.rule, first.due_at) == ("invitation", datetime(2021, 10, 7, 9, 0, tzinfo=event.tz))
    assert {first.name, second.name} == {"Cecilia Hall", "David Moss"}  # Anna's is sent, Bo's failed
    assert [s.due_at for s in status.next_sends] == sorted(s.due_at for s in status.next_sends)


def test_the_terminal_summary_shows_rsvps_states_failures_and_next_sends(store, event):
    """One readable block per part."""
    with store.session() as session:
        text = "\n".join(format_status(event_status(session, event), event))
    assert "RSVP: 2 yes, 1 no, 1 not answered (4 delegates)" in text
    assert "1 × invalid number (21211)" in text
    assert "2021-10-07 09:00  invitation" in text
    assert "total: " in text and "1 sent" in text and "1 failed" in text


def test_the_status_command_prints_the_summary_or_json(store, tmp_path, monkeypatch):
    """`kallelse status` and `kallelse status --format json`."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'kallelse.sqlite3'}")
    monkeypatch.delenv("EVENT_FILE", raising=False)
    table = CliRunner().invoke(main, ["status"])
    data = json.loads(CliRunner().invoke(main, ["status", "--format", "json"]).output)
    assert "RSVP: 2 yes, 1 no, 1 not answered" in table.output
    assert data["rsvp"] == {"yes": 2, "no": 1, "none": 1}
    assert {"rule": "invitation", "channel": "sms", "counts": {"failed": 1}} in data["rules"]
