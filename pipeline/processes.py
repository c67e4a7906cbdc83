"""Process entry points behind `kallelse scheduler`, `worker` and `run`."""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading

import dramatiq

from pipeline import actors
from pipeline.broker import is_in_process, make_broker
from pipeline.errors import ConfigError
from pipeline.runtime import Runtime
from pipeline.scheduler import Scheduler
from pipeline.settings import Settings

log = logging.getLogger(__name__)


def _require_broker(settings: Settings, what: str) -> None:
    if not settings.broker_url:
        raise ConfigError(
            f"BROKER_URL is not set: `kallelse {what}` talks to a shared broker; on one machine "
            "without Redis use `kallelse run`, which keeps scheduler and workers in one process"
        )


def run_scheduler(settings: Settings) -> None:
    _require_broker(settings, "scheduler")
    broker = make_broker(settings)
    rt = Runtime(settings)
    deliver = actors.declare(rt, broker)
    scheduler = Scheduler(rt, deliver.send)
    _stop_on_signals(scheduler.stop)
    scheduler.run()


def run_worker_process(settings: Settings, threads: int) -> None:
    broker = make_broker(settings)
    rt = Runtime(settings)
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


def run_all(settings: Settings, *, web: bool = True) -> None:
    """Scheduler and workers (and the web app) in one process, on the embedded defaults."""
    broker = make_broker(settings)
    rt = Runtime(settings)
    deliver = actors.declare(rt, broker)
    broker.emit_after("process_boot")
    worker = dramatiq.Worker(broker, queues={actors.QUEUE}, worker_threads=settings.worker_threads)
    worker.start()
    scheduler = Scheduler(rt, deliver.send)
    server = _web_server(settings) if web else None
    stoppers = [scheduler.stop] + ([server.stop] if server else [])
    _stop_on_signals(lambda: [stop() for stop in stoppers])
    if server:
        server.start()
    where = "in-process broker" if is_in_process(broker) else "shared broker"
    log.warning("kallelse is running (%s); Ctrl-C stops it", where)
    try:
        scheduler.run()
    finally:
        worker.stop()
        broker.close()


def _web_server(settings: Settings):
    try:
        from pipeline.web.server import WebServer
    except ImportError:  # the web app is optional for a laptop run
        return None
    return WebServer(settings)


def _stop_on_signals(stop) -> None:
    def handler(signum, frame):
        stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)
