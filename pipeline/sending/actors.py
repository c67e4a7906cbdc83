"""The dramatiq actor: a thin wrapper; what it does lives in `sending.worker`.

`declare(runtime, broker)` binds the `deliver` actor to a broker and to the runtime it sends with (a
closure, not a module global: each process, and each test, binds its own). Messages carry ledger ids only:
one id, or a batch of ids in due order (the scheduler sends batches; one id is what older messages hold).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import dramatiq
from dramatiq.brokers.stub import StubBroker

from pipeline.runtime import Runtime
from pipeline.sending.broker import middleware
from pipeline.sending.rate import sms_rate
from pipeline.sending.scheduler import BATCH
from pipeline.sending.worker import send_rows

QUEUE = "deliver"
ACTOR_NAME = "deliver"  # what the broker's messages name: keep it, or queued messages lose their actor
DRAMATIQ_MAX_RETRIES = 10_000  # 12 hours of validity at a 5-minute backoff is ~150 retries


def declare(runtime: Runtime, broker: dramatiq.Broker) -> dramatiq.Actor:
    """Bind the `deliver` actor. `send_rows` decides when to give up (a row's validity, or MAX_ATTEMPTS when
    it has none), and a row to retry goes out again as a delayed message of its own; dramatiq's max_retries
    only bounds the retries of a message that failed as a whole (the database unreachable), far above it
    (a row it drops stays `queued` and the scheduler enqueues it again)."""

    rate = sms_rate(runtime.settings, broker)

    def deliver(ids: int | list[int]) -> None:
        for outcome in send_rows(runtime, [ids] if isinstance(ids, int) else ids, rate):
            if outcome.retry_ms is not None:
                # The row is back in `queued` with its retry time: a message of its own, delayed.
                bound.send_with_options(args=([outcome.row_id],), delay=outcome.retry_ms)

    bound: dramatiq.Actor = dramatiq.actor(
        actor_name=ACTOR_NAME,
        queue_name=QUEUE,
        broker=broker,
        max_retries=DRAMATIQ_MAX_RETRIES,
        min_backoff=runtime.settings.retry_min_backoff_ms,
        max_backoff=runtime.settings.retry_max_backoff_ms,
    )(deliver)
    return bound


def send_ids(actor: dramatiq.Actor, ids: list[int], batch: int = BATCH) -> None:
    """Hand `ids` to the broker in batches, in the order given."""
    for start in range(0, len(ids), batch):
        actor.send(ids[start : start + batch])


@dataclass(frozen=True)
class InProcess:
    broker: StubBroker
    actor: dramatiq.Actor  # the bound `deliver` actor: `actor.send(row_id)`
    worker: dramatiq.Worker

    def drain(self) -> None:
        """Wait until every message sent so far (retries included) has been handled."""
        self.broker.join(QUEUE)
        self.worker.join()


@contextmanager
def in_process_workers(runtime: Runtime, threads: int = 4) -> Iterator[InProcess]:
    """An in-process broker with worker threads, for simulate and for CLI sends without BROKER_URL."""
    broker = StubBroker(middleware=middleware(), fail_fast_default=False)
    broker.emit_after("process_boot")
    dramatiq.set_broker(broker)
    actor = declare(runtime, broker)
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=50)
    worker.start()
    try:
        yield InProcess(broker, actor, worker)
    finally:
        worker.stop()
        broker.close()
