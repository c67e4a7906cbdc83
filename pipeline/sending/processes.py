"""Process entry points behind `kallelse scheduler`, `worker` and `run`."""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
from typing import Protocol

import dramatiq

from pipeline.errors import ConfigError
from pipeline.runtime import Runtime
from pipeline.sending import actors
from pipeline.sending.broker import is_in_process, make_broker, waiting
from pipeline.sending.scheduler import Scheduler
from pipeline.settings import Settings

log = logging.getLogger(__name__)
# A worker asks for the event once per message; looking at the file's mtime once a second is enough.
EVENT_FILE_CHECK_SECONDS = 1.0


def _require_broker(settings: Settings, what: str) -> None:
    if not settings.broker_url:
        raise ConfigError(
            f"BROKER_URL is not set: `kallelse {what}` talks to a shared broker; on one machine "
            "without Redis use `kallelse run`, which keeps scheduler and workers in one process"
        )


def run_scheduler(rt: Runtime) -> None:
    _require_broker(rt.settings, "scheduler")
    broker = make_broker(rt.settings)
    deliver = actors.declare(rt, broker)
    scheduler = Scheduler(rt, deliver.send, backlog=lambda: waiting(broker, actors.QUEUE))
    _stop_on_signals(scheduler.stop)
    scheduler.run()


def run_worker_process(settings: Settings, threads: int) -> None:
    """One worker process; under `run_workers` a spawned child, so it builds its own Runtime."""
    broker = make_broker(settings)
    rt = Runtime(settings)
    rt.event_file.check_every = EVENT_FILE_CHECK_SECONDS
    _warm_up(rt)
    actors.declare(rt, broker)
    broker.emit_after("process_boot")
    worker = dramatiq.Worker(broker, queues={actors.QUEUE}, worker_threads=threads)
    stopping = threading.Event()
    _stop_on_signals(stopping.set)
    worker.start()
    log.info("worker started with %d threads", threads)
    stopping.wait()
    worker.stop()
    broker.close()


def _warm_up(rt: Runtime) -> None:
    """Open the database (migrations checked) and read the event before the first message, so the first
    batch does not wait for them; what is down now is waited out by the messages' own retries."""
    try:
        rt.store.engine.connect().close()
        rt.event  # noqa: B018 - loads the event file
    except Exception as e:
        log.warning("worker starts without a warm start: %s", e)


def run_workers(settings: Settings, processes: int, threads: int) -> None:
    _require_broker(settings, "worker")
    if processes <= 1:
        run_worker_process(settings, threads)
        return
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(target=run_worker_process, args=(settings, threads)) for _ in range(processes)
    ]
    for child in children:
        child.start()

    def stop_children() -> None:
        for child in children:
            child.terminate()

    _stop_on_signals(stop_children)
    for child in children:
        child.join()


class Service(Protocol):
    """Something that runs beside the scheduler in `kallelse run` (the web server)."""

    def start(self) -> None: ...
    def stop(self) -> None: ...


def run_all(rt: Runtime, beside: Service | None = None) -> None:
    """Scheduler and workers (and `beside`, the web app) in one process, on the embedded defaults."""
    broker = make_broker(rt.settings)
    deliver = actors.declare(rt, broker)
    broker.emit_after("process_boot")
    worker = dramatiq.Worker(broker, queues={actors.QUEUE}, worker_threads=rt.settings.worker_threads)
    worker.start()
    scheduler = Scheduler(rt, deliver.send, backlog=lambda: waiting(broker, actors.QUEUE))
    stoppers = [scheduler.stop] + ([beside.stop] if beside else [])
    _stop_on_signals(lambda: [stop() for stop in stoppers])
    if beside:
        beside.start()
    where = "in-process broker" if is_in_process(broker) else "shared broker"
    log.warning("kallelse is running (%s); Ctrl-C stops it", where)
    try:
        scheduler.run()
    finally:
        worker.stop()
        broker.close()


def _stop_on_signals(stop) -> None:
    def handler(signum, frame):
        stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)
