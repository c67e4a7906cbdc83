"""The clock process: plan → ledger → enqueue what is due.

One pass (`tick`) expires what can no longer be worth sending, moves due rows to `queued` (a
compare-and-set, so two schedulers never queue a row twice), hands their ids to the broker after the
commit in due order and in batches, and, as housekeeping, re-enqueues rows the broker lost and marks rows
a crashed worker left in `sending` as `unknown`. The loop coalesces: it passes at most every
`COALESCE` seconds, so a burst of rows due a few milliseconds apart costs one pass, not one per row.
Re-planning happens at start, when the event file changes, and for delegates changed since the last pass.
A changed event file re-plans at once; change notices wait for `kallelse apply` (a warning says how many).

The loop never dies: an error in a pass (database, broker, event file) is logged once, saying what failed,
and the loop backs off and tries again; the rows wait in the ledger. Only the scheduler holding the lease
(`store.leases`) runs passes; a standby polls and takes over when the lease runs out.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from pipeline.changes import check_event_file
from pipeline.outages import describe
from pipeline.planner import plan
from pipeline.runtime import Runtime
from pipeline.sending.reconcile import check_unknown
from pipeline.store import leases, ledger
from pipeline.store.ledger import SyncCounts
from pipeline.store.models import DelegateRow
from pipeline.store.people import load_delegates

log = logging.getLogger(__name__)

Enqueue = Callable[[list[int]], object]  # one broker message for a batch of ids (the `deliver` actor's send)
Backlog = Callable[[], int | None]  # messages waiting in the broker, None when it cannot tell
MAX_SLEEP = 1.0  # seconds: the longest a due message waits for the scheduler to notice it
COALESCE = 0.2  # seconds: the shortest pause between passes; a due message waits at most this long
HOUSEKEEPING_EVERY = 5.0  # seconds between looks for lost and stuck rows (they are minutes old by then)
BATCH = 25  # ids per broker message: one claim and one record statement in the worker
SENDING_GRACE = timedelta(minutes=10)  # longer than any provider call with its timeout
REPLAN_CHUNK = 5000  # delegates per re-plan step
FIRST_BACKOFF, MAX_BACKOFF = 0.5, 5.0  # seconds between passes while something is down


class EnqueueFailed(Exception):
    """The broker refused ids after their rows were queued: `remaining` still need enqueueing."""

    def __init__(self, remaining: list[int]):
        self.remaining = remaining
        super().__init__(f"{len(remaining)} queued rows not handed to the broker")


@dataclass
class TickResult:
    queued: list[int] = field(default_factory=list)
    requeued: list[int] = field(default_factory=list)
    expired: int = 0
    unknown: list[int] = field(default_factory=list)
    resent: list[int] = field(default_factory=list)  # unknown rows Twilio never got: sent now
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


def tick(
    rt: Runtime, now: datetime, enqueue: Enqueue, *, housekeeping: bool = True, backlog: Backlog | None = None
) -> TickResult:
    result = TickResult()
    with rt.store.session() as session:
        result.expired = ledger.expire_overdue(session, now)
        result.queued = ledger.queue_due(session, now)
        if housekeeping:
            result.requeued = _lost_rows(rt, session, now, backlog)
            result.unknown = ledger.stuck_sending(session, now, SENDING_GRACE)
    result.resent = check_unknown(rt, now)  # asks Twilio's list: outside any transaction
    # Enqueue only after the commit: a worker must find the row queued when the message arrives.
    enqueue_all(enqueue, result.queued + result.requeued + result.resent)
    with rt.store.session() as session:
        result.next_due = ledger.next_due(session)
    if result.requeued:
        log.warning("re-enqueued %d rows the broker had not delivered", len(result.requeued))
    if result.unknown:
        log.warning("%d rows left in 'sending' by a stopped worker are now 'unknown'", len(result.unknown))
    return result


def _lost_rows(rt: Runtime, session, now: datetime, backlog: Backlog | None) -> list[int]:
    """Queued rows older than the requeue grace, unless the broker still holds messages: then they are
    merely waiting in a long queue, and sending their ids again would only lengthen it."""
    if backlog is not None and (backlog() or 0) > 0:
        return []
    return ledger.stale_queued(session, now, timedelta(seconds=rt.settings.requeue_after_seconds))


def enqueue_all(enqueue: Enqueue, ids: list[int]) -> None:
    """Hand `ids` to the broker in batches of BATCH, in the order given."""
    for start in range(0, len(ids), BATCH):
        try:
            enqueue(ids[start : start + BATCH])
        except Exception as e:
            raise EnqueueFailed(ids[start:]) from e


class Scheduler:
    """The long-running loop behind `kallelse scheduler` and `kallelse run`."""

    def __init__(self, rt: Runtime, enqueue: Enqueue, backlog: Backlog | None = None):
        self.rt = rt
        self.enqueue = enqueue
        self.backlog = backlog
        self._housekept = -HOUSEKEEPING_EVERY
        self.stopping = threading.Event()
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.active = False
        self._event_mtime: float | None = None
        self._delegates_seen: datetime | None = None
        self._not_enqueued: list[int] = []
        self._failure: str | None = None  # what is down, while it is down
        self._failed_since = 0.0
        self._backoff = FIRST_BACKOFF
        self._broker_was_down = False

    def run(self) -> None:
        log.info("scheduler %s started", self.holder)
        while not self.stopping.is_set():
            self.stopping.wait(self.step())
        self._release()
        log.info("scheduler stopped")

    def stop(self) -> None:
        self.stopping.set()

    def step(self) -> float:
        """One pass if this scheduler holds the lease; the seconds to wait before the next."""
        try:
            if not self._hold_lease():
                return MAX_SLEEP
            started, now = time.monotonic(), self.rt.clock()
            self._enqueue_left_over(now)
            self.refresh_plan(now)
            result = self.pass_once(now)
            with self.rt.store.session() as session:
                leases.record_tick(session, self.holder, now, time.monotonic() - started)
        except Exception as e:
            return self._failed(e)
        self._recovered()
        if result.queued:
            log.info("queued %d messages", len(result.queued))
        return self._sleep_for(result.next_due)

    def pass_once(self, now: datetime) -> TickResult:
        """One tick; housekeeping (lost and stuck rows) only every HOUSEKEEPING_EVERY seconds."""
        housekeeping = time.monotonic() - self._housekept >= HOUSEKEEPING_EVERY
        if housekeeping:
            self._housekept = time.monotonic()
        return tick(self.rt, now, self.enqueue, housekeeping=housekeeping, backlog=self.backlog)

    def _hold_lease(self) -> bool:
        lease = timedelta(seconds=self.rt.settings.scheduler_lease_seconds)
        with self.rt.store.session() as session:
            held = leases.take_lease(session, self.holder, self.rt.clock(), lease)
        if held != self.active:
            log.warning("scheduler %s is %s", self.holder, "active" if held else "standing by")
            self.active = held
        return held

    def _enqueue_left_over(self, now: datetime) -> None:
        if self._broker_was_down:
            # The broker may have come back empty (restarted): hand it every queued row again. A duplicate
            # message is harmless; the claim lets one worker send the row.
            with self.rt.store.session() as session:
                self._not_enqueued += ledger.stale_queued(session, now, timedelta(0))
            self._broker_was_down = False
        ids, self._not_enqueued = list(dict.fromkeys(self._not_enqueued)), []  # in the order queued
        enqueue_all(self.enqueue, ids)

    def _failed(self, error: Exception) -> float:
        if isinstance(error, EnqueueFailed):
            self._not_enqueued += error.remaining
            self._broker_was_down = True
            what = describe(error.__cause__ or error) or f"broker: {error.__cause__!r}"
        else:
            what = describe(error) or f"{type(error).__name__}: {error}"
        self._broker_was_down |= what.startswith("broker")
        if what != self._failure:
            log.error("scheduler: %s; retrying until it is back", what, exc_info=describe(error) is None)
            if self._failure is None:
                self._failed_since = time.monotonic()
            self._failure = what
        wait, self._backoff = self._backoff, min(MAX_BACKOFF, self._backoff * 2)
        return wait

    def _recovered(self) -> None:
        if self._failure is not None:
            down = time.monotonic() - self._failed_since
            log.warning("scheduler: going on after %.1f s (was: %s)", down, self._failure)
        self._failure, self._backoff = None, FIRST_BACKOFF

    def _release(self) -> None:
        try:
            with self.rt.store.session() as session:
                leases.release_lease(session, self.holder, self.rt.clock())
        except Exception as e:  # stopping anyway: the lease runs out by itself
            log.warning("scheduler: could not release the lease (%s)", describe(e) or e)

    def refresh_plan(self, now: datetime) -> None:
        event = self.rt.event  # the last good version while the file does not load
        if self.rt.event_file.problem:
            return  # re-planned once the file loads again (its mtime differs from the last one planned)
        mtime = self.rt.event_file.loaded_mtime
        changed_since = self._delegates_seen
        with self.rt.store.session() as session:
            newest = session.scalar(select(func.max(DelegateRow.updated_at)))
        if mtime != self._event_mtime:
            with self.rt.store.session() as session:
                ids = session.scalars(select(DelegateRow.id).order_by(DelegateRow.id)).all()
            self._replan_in_chunks(ids, now)
            self._event_mtime = mtime
            self._check_applied(event, now, mtime)
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
            if start + REPLAN_CHUNK < len(ids) and self._hold_lease():
                self.pass_once(self.rt.clock())
        log.info("planned %d delegates: %s", len(ids), total)

    def _check_applied(self, event, now: datetime, mtime: float) -> None:
        # Sends follow the file at once; change notices wait for an organiser's `kallelse apply`.
        text = self.rt.event_file.loaded_text
        with self.rt.store.session() as session:
            waiting = check_event_file(session, event, text, now, datetime.fromtimestamp(mtime, UTC))
        if waiting:
            log.warning("event file changed; run `kallelse apply` to notify %d delegates", waiting)

    def _sleep_for(self, next_due: datetime | None) -> float:
        if next_due is None:
            return MAX_SLEEP
        seconds = (next_due - self.rt.clock()).total_seconds()
        return min(MAX_SLEEP, max(COALESCE, seconds))
