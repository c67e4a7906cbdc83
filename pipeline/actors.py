"""Dramatiq actors: thin wrappers; the logic lives in pipeline.delivery.

`declare(runtime, broker)` binds the actors to a broker and to the runtime they deliver with. Messages
carry ledger ids only.
"""

from __future__ import annotations

import dramatiq

from pipeline import delivery
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
