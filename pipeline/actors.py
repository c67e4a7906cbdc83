"""Dramatiq actors: thin wrappers; the logic lives in pipeline.delivery.

`declare(runtime, broker)` binds the actors to a broker and to the runtime they deliver with. Messages
carry ledger ids only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import dramatiq
from dramatiq.brokers.stub import StubBroker

from pipeline import delivery
from pipeline.broker import middleware
from pipeline.runtime import Runtime

QUEUE = "deliver"
_runtime: Runtime | None = None


def _deliver(row_id: int) -> None:
    assert _runtime is not None, "pipeline.actors.declare() was not called"
    try:
        delivery.deliver(_runtime, row_id)
    except delivery.RetryLater as e:
        raise dramatiq.Retry(str(e), delay=e.delay_ms) from None


def declare(runtime: Runtime, broker: dramatiq.Broker) -> dramatiq.Actor:
    """Bind the `deliver` actor. Our own attempt counter (MAX_ATTEMPTS) decides when to give up; dramatiq's
    max_retries is only a backstop above it."""
    global _runtime
    _runtime = runtime
    return dramatiq.actor(
        actor_name="deliver",
        queue_name=QUEUE,
        broker=broker,
        max_retries=runtime.settings.max_attempts + 2,
        min_backoff=runtime.settings.retry_min_backoff_ms,
        max_backoff=runtime.settings.retry_max_backoff_ms,
    )(_deliver)


@dataclass(frozen=True)
class InProcess:
    broker: StubBroker
    deliver: dramatiq.Actor
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
    deliver = declare(runtime, broker)
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=50)
    worker.start()
    try:
        yield InProcess(broker, deliver, worker)
    finally:
        worker.stop()
        broker.close()
