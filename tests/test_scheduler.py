"""The scheduler loop's planning: it follows replies and edits of the event file without a restart."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from pipeline.delegates import Delegate
from pipeline.runtime import Runtime
from pipeline.sending.scheduler import Scheduler
from pipeline.settings import Settings
from pipeline.store.models import LedgerRow
from pipeline.store.people import record_rsvp, upsert_delegates

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2021, 10, 20, 8, 0, tzinfo=UTC)  # after the invitation, before the RSVP reminder
ANNA = Delegate("anna", "Anna Berg", email="anna@example.se", phone="+46701740601", stop="hotel")


@pytest.fixture
def scheduler(tmp_path: Path) -> Scheduler:
    event_file = tmp_path / "event.toml"
    shutil.copy(ROOT / "config" / "event.toml", event_file)
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'kallelse.sqlite3'}",
        event_file=event_file,
        templates_dir=ROOT / "templates",
    )
    rt = Runtime(settings, clock=lambda: NOW)
    with rt.store.session() as session:
        upsert_delegates(session, [ANNA], NOW - timedelta(days=30))
    return Scheduler(rt, lambda row_id: None)


def states(scheduler: Scheduler) -> dict[str, str]:
    with scheduler.rt.store.session() as session:
        rows = session.scalars(select(LedgerRow)).all()
        return {row.key.split(":", 1)[1]: row.state for row in rows}


def test_an_rsvp_yes_stops_the_reminder_and_starts_the_attending_messages_at_the_next_pass(scheduler):
    """After a JA, the next refresh skips the RSVP reminder and plans the pickup text."""
    scheduler.refresh_plan(NOW)
    before = states(scheduler)
    assert before["rsvp-reminder:-:anna:email"] == "planned"
    assert "pickup:hotel:anna:sms" not in before
    with scheduler.rt.store.session() as session:
        record_rsvp(session, "anna", "yes", "sms", NOW + timedelta(seconds=1))
    scheduler.refresh_plan(NOW + timedelta(seconds=2))
    after = states(scheduler)
    assert after["rsvp-reminder:-:anna:email"] == "skipped"
    assert after["pickup:hotel:anna:sms"] == "planned"


def test_an_edited_event_file_moves_planned_messages_at_the_next_pass(scheduler):
    """Moving the RSVP deadline a day later moves the unsent reminder with it, no restart needed."""
    scheduler.refresh_plan(NOW)
    with scheduler.rt.store.session() as session:
        due = session.scalar(select(LedgerRow.due_at).where(LedgerRow.rule == "rsvp-reminder"))
    path = scheduler.rt.settings.event_file
    text = path.read_text(encoding="utf-8").replace("2021-11-11T23:59:00", "2021-11-12T23:59:00")
    path.write_text(text, encoding="utf-8")
    os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 5))  # a new mtime even on coarse clocks
    scheduler.refresh_plan(NOW + timedelta(seconds=5))
    with scheduler.rt.store.session() as session:
        moved = session.scalar(select(LedgerRow.due_at).where(LedgerRow.rule == "rsvp-reminder"))
    assert moved - due == timedelta(days=1)
