"""The clock process: plan → ledger → enqueue what is due.

One pass (`tick`) expires what can no longer be worth sending, moves due rows to `queued` (a
compare-and-set, so two schedulers never queue a row twice), hands their ids to the broker after the
commit, re-enqueues rows the broker lost, and marks rows a crashed worker left in `sending` as `unknown`.
Re-planning happens at start, when the event file changes, and for delegates changed since the last pass.
A changed event file re-plans at once; change notices wait for `kallelse apply` (a warning says how many).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from pipeline.changes import check_event_file
from pipeline.planner import plan
from pipeline.runtime import Runtime
from pipeline.store import ledger
from pipeline.store.ledger import SyncCounts
from pipeline.store.models import DelegateRow
from pipeline.store.people import load_delegates

log = logging.getLogger(__name__)

Enqueue = Callable[[int], object]
MAX_SLEEP = 1.0  # seconds: the longest a due message waits for the scheduler to notice it
SENDING_GRACE = timedelta(minutes=10)  # longer than any provider call with its timeout
REPLAN_CHUNK = 5000  # delegates per re-plan step


@dataclass
class TickResult:
    queued: list[int] = field(default_factory=list)
    requeued: list[int] = field(default_factory=list)
    expired: int = 0
    unknown: list[int] = field(default_factory=list)
    next_due: datetime | None = None


def replan(rt: Runtime, now: datetime, delegate_ids: Iterable[str] | None = None) -> SyncCounts:
    """Plan for every delegate (or only those given) and write the result to the ledger."""
    event = rt.event
    ids = None if delegate_ids is None else list(delegate_ids)
    with rt.store.session() as session:
        delegates = load_delegates(session, ids)
        view = ledger.ledger_view(session, event.event.id, ids)
        sends = plan(event, delegates, view, now)
        return ledger.sync_plan(session, event.event.id, sends, now, ids)


def tick(rt: Runtime, now: datetime, enqueue: Enqueue) -> TickResult:
    result = TickResult()
    with rt.store.session() as session:
        result.expired = ledger.expire_overdue(session, now)
        result.queued = ledger.queue_due(session, now)
        result.requeued = ledger.stale_queued(
            session, now, timedelta(seconds=rt.settings.requeue_after_seconds)
        )
        result.unknown = ledger.stuck_sending(session, now, SENDING_GRACE)
    # Enqueue only after the commit: a worker must find the row queued when the message arrives.
    for row_id in result.queued + result.requeued:
        enqueue(row_id)
    with rt.store.session() as session:
        result.next_due = ledger.next_due(session)
    if result.requeued:
        log.warning("re-enqueued %d rows the broker had not delivered", len(result.requeued))
    if result.unknown:
        log.warning("%d rows left in 'sending' by a stopped worker are now 'unknown'", len(result.unknown))
    return result


class Scheduler:
    """The long-running loop behind `kallelse scheduler` and `kallelse run`."""

    def __init__(self, rt: Runtime, enqueue: Enqueue):
        self.rt = rt
        self.enqueue = enqueue
        self.stopping = threading.Event()
        self._event_mtime: float | None = None
        self._delegates_seen: datetime | None = None

    def run(self) -> None:
        log.info("scheduler started")
        while not self.stopping.is_set():
            now = self.rt.clock()
            self.refresh_plan(now)
            result = tick(self.rt, now, self.enqueue)
            if result.queued:
                log.info("queued %d messages", len(result.queued))
            self.stopping.wait(self._sleep_for(result.next_due))
        log.info("scheduler stopped")

    def stop(self) -> None:
        self.stopping.set()

    def refresh_plan(self, now: datetime) -> None:
        mtime = self.rt.settings.event_file.stat().st_mtime
        changed_since = self._delegates_seen
        with self.rt.store.session() as session:
            newest = session.scalar(select(func.max(DelegateRow.updated_at)))
        if mtime != self._event_mtime:
            with self.rt.store.session() as session:
                ids = session.scalars(select(DelegateRow.id).order_by(DelegateRow.id)).all()
            self._replan_in_chunks(ids, now)
            self._event_mtime = mtime
            self._check_applied(now, mtime)
        elif newest is not None and (changed_since is None or newest > changed_since):
            with self.rt.store.session() as session:
                ids = session.scalars(
                    select(DelegateRow.id).where(DelegateRow.updated_at >= (changed_since or newest))
                ).all()
            self._replan_in_chunks(ids, now)
        self._delegates_seen = newest

    def _replan_in_chunks(self, ids: Sequence[str], now: datetime) -> None:
        """Re-plan a few thousand delegates at a time, sending what is due in between: a full re-plan of a
        national event takes about a minute, and due messages must not wait for it."""
        total = SyncCounts()
        for start in range(0, len(ids), REPLAN_CHUNK):
            counts = replan(self.rt, now, ids[start : start + REPLAN_CHUNK])
            for name in ("added", "moved", "cancelled", "unchanged"):
                setattr(total, name, getattr(total, name) + getattr(counts, name))
            if start + REPLAN_CHUNK < len(ids):
                tick(self.rt, self.rt.clock(), self.enqueue)
        log.info("planned %d delegates: %s", len(ids), total)

    def _check_applied(self, now: datetime, mtime: float) -> None:
        # Sends follow the file at once; change notices wait for an organiser's `kallelse apply`.
        text = self.rt.settings.event_file.read_text(encoding="utf-8")
        with self.rt.store.session() as session:
            waiting = check_event_file(session, self.rt.event, text, now, datetime.fromtimestamp(mtime, UTC))
        if waiting:
            log.warning("event file changed; run `kallelse apply` to notify %d delegates", waiting)

    def _sleep_for(self, next_due: datetime | None) -> float:
        if next_due is None:
            return MAX_SLEEP
        seconds = (next_due - self.rt.clock()).total_seconds()
        return min(MAX_SLEEP, max(0.01, seconds))
