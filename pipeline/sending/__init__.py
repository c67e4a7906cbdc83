"""How a ledger row goes out: the broker, the `deliver` actor, what a worker does with one row, sending a
batch now, the scheduler, the long-running processes and the simulation.

This is the package's face: `cli.py` and `web/` use only what is defined here. Importing it loads nothing
else (no dramatiq): each function imports what it needs when it is called.

    sending/
      broker.py     the dramatiq broker from BROKER_URL (Redis, RabbitMQ, in-process)
      actors.py     the thin `deliver(id)` actor, bound to a Runtime; in-process workers
      worker.py     `send_row`: claim → render → channel → record; retry and reconcile decisions
      batch.py      a broadcast's or an apply's rows, now: enqueued, or delivered before returning
      scheduler.py  `replan`, `tick` and the `Scheduler` loop
      processes.py  `kallelse scheduler`, `worker`, `run`
      simulation.py the whole plan on a virtual clock (`simulate`)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.delegates import Delegate
    from pipeline.runtime import Runtime
    from pipeline.sending.processes import Service
    from pipeline.sending.simulation import Report
    from pipeline.settings import Settings

Progress = Callable[[int, int], None]  # (done so far, total)


@dataclass(frozen=True)
class BatchResult:
    enqueued: int | None = None  # with a broker: how many ids went to the workers
    states: dict[str, int] = field(default_factory=dict)  # without one: how the batch ended, by state


def send_batch(rt: Runtime, event_id: str, rule: str, progress: Progress | None = None) -> BatchResult:
    """Send one batch of rows (a broadcast, change notices) now: to the workers when BROKER_URL is set,
    else with in-process workers before returning."""
    from pipeline.sending.batch import enqueue_batch, send_batch_now

    if rt.settings.broker_url:
        return BatchResult(enqueued=enqueue_batch(rt, event_id, rule))
    return BatchResult(states=send_batch_now(rt, event_id, rule, progress))


def send_batch_in_background(rt: Runtime, event_id: str, rule: str) -> None:
    """Send one batch without making the caller (a dashboard request) wait: to the workers when
    BROKER_URL is set, else by in-process workers on a thread of this process. The ledger shows how it
    goes; a batch that cannot be sent here stays queued for a scheduler or a retry."""
    from pipeline.sending.batch import enqueue_batch, send_batch_behind

    if rt.settings.broker_url:
        enqueue_batch(rt, event_id, rule)
    else:
        send_batch_behind(rt, event_id, rule)


def run_scheduler(rt: Runtime) -> None:
    from pipeline.sending.processes import run_scheduler as run

    run(rt)


def run_workers(settings: Settings, processes: int, threads: int) -> None:
    from pipeline.sending.processes import run_workers as run

    run(settings, processes, threads)


def run_all(rt: Runtime, beside: Service | None = None) -> None:
    from pipeline.sending.processes import run_all as run

    run(rt, beside)


def simulate(
    settings: Settings,
    delegates: list[Delegate],
    start: datetime | None = None,
    until: datetime | None = None,
    progress: Progress | None = None,
) -> Report:
    from pipeline.sending.simulation import simulate as run

    return run(settings, delegates, start, until, progress)
