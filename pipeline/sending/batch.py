"""Send one batch of ledger rows now: a broadcast or the change notices of one `kallelse apply`.

The rows go through the same ledger states and the same `deliver` actor as everything else. Only the
batch's own rows are queued (planned → queued, compare-and-set): an organiser's broadcast must not also
push out whatever else happens to be overdue while no scheduler runs.

With a broker (`BROKER_URL`) the ids are enqueued and the workers deliver them (`enqueue_batch`); without
one, dramatiq worker threads on an in-process broker deliver them before `send_batch_now` returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from pipeline.errors import BrokerUnavailable
from pipeline.outages import describe
from pipeline.runtime import Runtime
from pipeline.sending import actors
from pipeline.sending.broker import make_broker
from pipeline.states import PENDING_STATES
from pipeline.store import ledger

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]  # (done so far, total)
POLL_SECONDS = 0.05
# One in-process batch at a time in a process: each starts its own stub broker and worker threads.
_one_batch_at_a_time = threading.Lock()


def enqueue_batch(rt: Runtime, event_id: str, rule: str) -> int:
    """Queue the batch and hand the ids to the configured broker; workers elsewhere deliver them."""
    with rt.store.session() as session:
        ids = ledger.queue_rule(session, event_id, rule, rt.clock())
    broker = make_broker(rt.settings)
    try:
        actors.send_ids(actors.declare(rt, broker), ids)
    except Exception as e:
        what = describe(e)
        if what is None or not what.startswith("broker"):
            raise
        raise BrokerUnavailable(
            f"{what}: the {len(ids)} messages are stored and queued; the scheduler hands them to the "
            f"workers once the broker is back (REQUEUE_AFTER_SECONDS={rt.settings.requeue_after_seconds})"
        ) from None
    finally:
        broker.close()
    return len(ids)


def send_batch_now(rt: Runtime, event_id: str, rule: str, progress: Progress | None = None) -> dict[str, int]:
    """Queue the batch and deliver it with in-process workers; return the batch's final states."""
    with rt.store.session() as session:
        ids = ledger.queue_rule(session, event_id, rule, rt.clock())
    with actors.in_process_workers(rt) as workers:
        actors.send_ids(workers.actor, ids)
        return _wait(rt, event_id, rule, progress)


def send_batch_behind(rt: Runtime, event_id: str, rule: str) -> threading.Thread:
    """`send_batch_now` on a thread of its own (the web process: a request must not wait for it)."""

    def send() -> None:
        with _one_batch_at_a_time:
            try:
                send_batch_now(rt, event_id, rule)
            except Exception:  # the rows stay queued: the scheduler's requeue or a retry takes them
                log.exception("batch %s could not be sent from this process", rule)

    thread = threading.Thread(target=send, name=f"send-{rule}", daemon=True)
    thread.start()
    return thread


def _wait(rt: Runtime, event_id: str, rule: str, progress: Progress | None) -> dict[str, int]:
    # The ledger, not the broker, says when a row is done: a retry puts it back to `queued` for a while.
    while True:
        with rt.store.session() as session:
            states = ledger.states_of(session, event_id, rule)
        total = sum(states.values())
        pending = sum(states.get(s, 0) for s in PENDING_STATES)
        if progress:
            progress(total - pending, total)
        if not pending:
            return states
        time.sleep(POLL_SECONDS)
