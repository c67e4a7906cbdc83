"""The dramatiq actor: a thin wrapper; what it does lives in `sending.worker`.

`declare(runtime, broker)` binds the `deliver` actor to a broker and to the runtime it sends with (a
closure, not a module global: each process, and each test, binds its own). Messages carry ledger ids only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import dramatiq
from dramatiq.brokers.stub import StubBroker

from pipeline.runtime import Runtime
from pipeline.sending.broker import middleware
from pipeline.sending.worker import RetryLater, send_row

QUEUE = "deliver"
ACTOR_NAME = "deliver"  # what the broker's messages name: keep it, or queued messages lose their actor
DRAMATIQ_MAX_RETRIES = 10_000  # 12 hours of validity at a 5-minute backoff is ~150 retries


def declare(runtime: Runtime, broker: dramatiq.Broker) -> dramatiq.Actor:
    """Bind the `deliver` actor. `send_row` decides when to give up (a row's validity, or MAX_ATTEMPTS when
    it has none); dramatiq's max_retries is only a backstop far above it (a row it drops stays `queued` and
    the scheduler enqueues it again)."""

    def deliver(row_id: int) -> None:
        try:
            send_row(runtime, row_id)
        except RetryLater as e:
            raise dramatiq.Retry(str(e), delay=e.delay_ms) from None

    return dramatiq.actor(
        actor_name=ACTOR_NAME,
        queue_name=QUEUE,
        broker=broker,
        max_retries=DRAMATIQ_MAX_RETRIES,
        min_backoff=runtime.settings.retry_min_backoff_ms,
        max_backoff=runtime.settings.retry_max_backoff_ms,
    )(deliver)


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
