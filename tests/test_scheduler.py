"""The scheduler: it follows replies and edits of the event file without a restart, hands due rows to the
broker in due order and in batches, and tells rows the broker lost from rows merely waiting in its queue."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from pipeline.delegates import Delegate
from pipeline.runtime import Runtime
from pipeline.sending.scheduler import COALESCE, MAX_SLEEP, Scheduler, tick
from pipeline.settings import Settings
from pipeline.store.ledger import PayloadMessage, add_payload_messages
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


def _payload_rows(rt: Runtime, prefix: str, count: int, due: datetime) -> None:
    messages = [
        PayloadMessage(
            key=f"sik-2021:{prefix}:-:d{n}:sms",
            rule=prefix,
            delegate_id=f"d{n}",
            channel="sms",
            payload=json.dumps({"template": "broadcast", "extra": {}}),
            expires_at=due + timedelta(hours=1),
        )
        for n in range(count)
    ]
    with rt.store.session() as session:
        add_payload_messages(session, "sik-2021", messages, due)


def test_a_tick_hands_due_rows_to_the_broker_in_batches_earliest_due_first(scheduler):
    """60 due rows go out as three messages of at most 25 ids, the rows due earliest in the first."""
    rt = scheduler.rt
    _payload_rows(rt, "late", 30, NOW - timedelta(minutes=1))
    _payload_rows(rt, "early", 30, NOW - timedelta(minutes=2))
    sent: list[list[int]] = []
    result = tick(rt, NOW, sent.append)
    assert [len(batch) for batch in sent] == [25, 25, 10]
    with rt.store.session() as session:
        due = {row_id: at for row_id, at in session.execute(select(LedgerRow.id, LedgerRow.due_at))}
    order = [row_id for batch in sent for row_id in batch]
    assert order == result.queued
    assert [due[i] for i in order] == sorted(due[i] for i in order)
    assert {due[i] for i in order[:30]} == {NOW - timedelta(minutes=2)}


def test_rows_waiting_in_a_long_broker_queue_are_not_enqueued_again(scheduler):
    """Queued 10 minutes ago and not yet claimed: while the broker still holds messages the rows are only
    waiting their turn; once it is empty they were lost, and go out again."""
    rt = scheduler.rt
    _payload_rows(rt, "wave", 3, NOW)
    assert len(tick(rt, NOW, lambda ids: None).queued) == 3
    later = NOW + timedelta(seconds=rt.settings.requeue_after_seconds + 600)
    assert tick(rt, later, lambda ids: None, backlog=lambda: 40_000).requeued == []
    sent: list[list[int]] = []
    assert len(tick(rt, later, sent.append, backlog=lambda: 0).requeued) == 3
    assert len(sent) == 1


def test_the_loop_passes_at_most_every_coalesce_seconds_however_close_the_next_due_row(scheduler):
    """Rows due a millisecond apart cost one pass per COALESCE, not one pass per row."""
    assert scheduler._sleep_for(NOW + timedelta(milliseconds=1)) == COALESCE
    assert scheduler._sleep_for(NOW + timedelta(seconds=0.5)) == pytest.approx(0.5)
    assert scheduler._sleep_for(None) == MAX_SLEEP
