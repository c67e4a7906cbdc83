"""`kallelse simulate`: the whole plan on a virtual clock, through the real actors and channels.

It works in its own folder, DATA_DIR/simulation/: a scratch database (made anew each run) so the real
ledger is untouched, and the outbox channels writing into DATA_DIR/simulation/outbox/ (emptied each run),
whatever EMAIL_BACKEND and SMS_BACKEND say: a simulation never reaches SMTP or Twilio. It jumps the clock
from one due time to the next: at each, the scheduler's own `tick` queues what is due and in-process
dramatiq workers deliver it. Nothing waits for real time except retry backoffs.
"""

from __future__ import annotations

import shutil
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.delegates import Delegate
from pipeline.runtime import Runtime
from pipeline.sending import actors
from pipeline.sending.scheduler import replan, tick
from pipeline.settings import Settings
from pipeline.states import LedgerState
from pipeline.store import ledger, open_store
from pipeline.store.people import upsert_delegates

Progress = Callable[[int, int], None]  # (handled so far, total)
SIMULATION_DIR = "simulation"  # under DATA_DIR


class VirtualClock:
    def __init__(self, start: datetime):
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, at: datetime) -> None:
        with self._lock:
            self._now = max(self._now, at)


@dataclass
class Report:
    start: datetime
    end: datetime
    outbox: Path | None = None  # where the simulated messages are
    totals: dict[str, int] = field(default_factory=dict)
    # (rule, channel) → state → count, and (rule, channel, state) → reason → count
    by_rule: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    reasons: dict[tuple[str, str, str], dict[str, int]] = field(default_factory=dict)

    def as_json(self) -> dict:
        return {
            "from": self.start.isoformat(),
            "until": self.end.isoformat(),
            "outbox": str(self.outbox) if self.outbox else None,
            "totals": self.totals,
            "rules": [
                {
                    "rule": rule,
                    "channel": channel,
                    "counts": counts,
                    "reasons": {
                        state: reasons
                        for (r, c, state), reasons in self.reasons.items()
                        if (r, c) == (rule, channel)
                    },
                }
                for (rule, channel), counts in sorted(self.by_rule.items())
            ],
        }


def simulation_settings(settings: Settings) -> Settings:
    """The settings a simulation runs with: its own folder, database and outbox, the in-process broker."""
    folder = settings.data_dir / SIMULATION_DIR
    return settings.model_copy(
        update={
            "data_dir": folder,
            "database_url": f"sqlite:///{folder / 'simulation.sqlite3'}",
            "broker_url": "",
            "email_backend": "outbox",
            "sms_backend": "outbox",
        }
    )


def simulate(
    settings: Settings,
    delegates: list[Delegate],
    start: datetime | None = None,
    until: datetime | None = None,
    progress: Progress | None = None,
) -> Report:
    sim_settings = simulation_settings(settings)
    scratch = sim_settings.data_dir / "simulation.sqlite3"
    for path in (scratch, scratch.with_name(scratch.name + "-wal"), scratch.with_name(scratch.name + "-shm")):
        path.unlink(missing_ok=True)
    shutil.rmtree(sim_settings.outbox_dir, ignore_errors=True)  # only this run's messages in it
    store = open_store(sim_settings.effective_database_url)
    clock = VirtualClock(start or datetime(1970, 1, 1, tzinfo=UTC))
    rt = Runtime(sim_settings, store=store, clock=clock)
    with store.session() as session:
        upsert_delegates(session, delegates, clock())
    # Without --from, plan "as of long ago" (nothing is late or expired yet), then start the clock just
    # before the first due message: one planning pass, not one to find the start and another to plan.
    replan(rt, clock())
    if start is None:
        with store.session() as session:
            first = ledger.next_due(session)
        clock.set((first or clock()) - timedelta(seconds=1))
    began = clock()
    try:
        _run(rt, clock, until, progress)
        return _report(rt, clock(), began, until)
    finally:
        store.close()


def _run(rt: Runtime, clock: VirtualClock, until: datetime | None, progress: Progress | None) -> None:
    total = _count(rt, None)
    with actors.in_process_workers(rt) as workers:
        while True:
            with rt.store.session() as session:
                due = ledger.next_due(session)
            if due is None or (until is not None and due > until):
                break
            clock.set(due)
            tick(rt, clock(), workers.actor.send)
            workers.drain()
            if progress:
                progress(total - _count(rt, LedgerState.PLANNED), total)


def _count(rt: Runtime, state: LedgerState | None) -> int:
    with rt.store.session() as session:
        return ledger.count_rows(session, state)


def _report(rt: Runtime, end: datetime, start: datetime, until: datetime | None) -> Report:
    report = Report(start=start, end=until or end, outbox=rt.settings.outbox_dir)
    by_rule: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    reasons: dict[tuple[str, str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    totals: dict[str, int] = defaultdict(int)
    with rt.store.session() as session:
        counts = ledger.counts_with_reasons(session)
    for rule, channel, state, reason, n in counts:
        by_rule[(rule, channel)][state] += n
        totals[state] += n
        if state != LedgerState.SENT and reason:
            reasons[(rule, channel, state)][reason] += n
    report.totals = dict(totals)
    report.by_rule = {k: dict(v) for k, v in by_rule.items()}
    report.reasons = {k: dict(v) for k, v in reasons.items()}
    return report
