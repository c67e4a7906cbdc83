"""Scale benchmark: a national event with 100,000 delegates.

Measures, on the database in DATABASE_URL (default: a scratch SQLite file):
  import     upsert N delegates
  plan       the pure planner over all of them
  sync       the first replan (plan + ledger insert) and a second one that finds nothing to change
  queue      queue_due for the invitation wave (every delegate due at once)
  deliver    --deliver M rows through the broker in BROKER_URL (default: in-process) with outbox channels

    python bench/scale.py --delegates 100000
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bench BROKER_URL=redis://127.0.0.1:6379/3 \\
        python bench/scale.py --delegates 100000 --deliver 20000 --threads 8

Prints one line per step with seconds and rows per second, and peak memory.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.delegates import Delegate  # noqa: E402
from pipeline.planner import plan  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.store import ledger, open_store  # noqa: E402
from pipeline.store.people import load_delegates, upsert_delegates  # noqa: E402
from pipeline.timetable import load_event  # noqa: E402

INVITATION_DUE = datetime(2021, 10, 7, 7, 0, 1, tzinfo=UTC)


def synthetic_delegates(n: int, seed: int = 7) -> list[Delegate]:
    rng = random.Random(seed)
    people = []
    for i in range(n):
        has_phone, has_email = rng.random() < 0.9, rng.random() < 0.95 or i % 20 == 0
        people.append(
            Delegate(
                id=f"b{i:06d}",
                name=f"Delegat {i}",
                email=f"delegat{i}@example.org" if has_email else None,
                phone=f"+4670{i:07d}" if has_phone or not has_email else None,
                language="en" if rng.random() < 0.1 else "sv",
                role="kso" if rng.random() < 0.3 else "official",
                stop=rng.choice(["hotel", "airport", None, None]),
                dinner=rng.random() < 0.8,
                rsvp=rng.choice(["yes", "yes", "yes", "none", "no"]),
            )
        )
    return people


def step(name: str, rows: int, started: float) -> None:
    seconds = time.perf_counter() - started
    rate = rows / seconds if seconds else float("inf")
    print(f"{name:10} {rows:>9} rows {seconds:8.2f} s {rate:>10.0f} rows/s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--delegates", type=int, default=100_000)
    parser.add_argument("--deliver", type=int, default=0, help="rows to push through broker and workers")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument(
        "--processes",
        type=int,
        default=0,
        help="deliver with `kallelse worker` subprocesses instead of in-process threads",
    )
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="kallelse-bench-"))
    url = os.environ.get("DATABASE_URL") or f"sqlite:///{scratch / 'bench.sqlite3'}"
    if url.startswith("postgresql"):
        _reset_postgres(url)
    event = load_event(ROOT / "config" / "event.toml")
    store = open_store(url)
    print(f"database: {url.split('@')[-1]}  delegates: {args.delegates}", flush=True)

    people = synthetic_delegates(args.delegates)
    started = time.perf_counter()
    with store.session() as session:
        upsert_delegates(session, people, INVITATION_DUE)
    step("import", len(people), started)

    started = time.perf_counter()
    sends = plan(event, people, {}, INVITATION_DUE)
    step("plan", len(sends), started)

    for label in ("sync-1st", "sync-2nd"):
        started = time.perf_counter()
        with store.session() as session:
            loaded = load_delegates(session)
            view = ledger.ledger_view(session, event.event.id)
            sends = plan(event, loaded, view, INVITATION_DUE)
            counts = ledger.sync_plan(session, event.event.id, sends, INVITATION_DUE)
        step(label, len(sends), started)
        print(f"{'':10} {counts}", flush=True)

    started = time.perf_counter()
    queued: list[int] = []
    with store.session() as session:
        while batch := ledger.queue_due(session, INVITATION_DUE, limit=5000):
            queued.extend(batch)
    step("queue", len(queued), started)

    if args.deliver and args.processes:
        deliver_with_workers(url, scratch, queued[: args.deliver], args.processes, args.threads)
    elif args.deliver:
        deliver(url, scratch, queued[: args.deliver], args.threads)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory {peak_mb:.0f} MB", flush=True)


def deliver(url: str, scratch: Path, ids: list[int], threads: int) -> None:
    import dramatiq

    from pipeline.runtime import Runtime
    from pipeline.sending import actors
    from pipeline.sending.broker import make_broker

    settings = Settings(
        _env_file=None,
        database_url=url,
        data_dir=scratch,
        broker_url=os.environ.get("BROKER_URL", ""),
        event_file=ROOT / "config" / "event.toml",
        templates_dir=ROOT / "templates",
    )
    broker = make_broker(settings)
    if hasattr(broker, "flush_all"):
        broker.flush_all()
    rt = Runtime(settings, clock=lambda: INVITATION_DUE)
    actor = actors.declare(rt, broker)
    broker.emit_after("process_boot")
    started = time.perf_counter()
    for row_id in ids:
        actor.send(row_id)
    step("enqueue", len(ids), started)
    worker = dramatiq.Worker(broker, queues={actors.QUEUE}, worker_threads=threads)
    started = time.perf_counter()
    worker.start()
    broker.join(actors.QUEUE)
    worker.join()
    step("deliver", len(ids), started)
    worker.stop()
    broker.close()


def deliver_with_workers(url: str, scratch: Path, ids: list[int], processes: int, threads: int) -> None:
    """Real `kallelse worker` processes on the real clock: the rows' validity is lifted for the run."""
    import subprocess

    from sqlalchemy import func, select, update

    from pipeline.runtime import Runtime
    from pipeline.sending import actors
    from pipeline.sending.broker import make_broker
    from pipeline.store.models import LedgerRow

    broker_url = os.environ.get("BROKER_URL", "")
    if not broker_url:
        sys.exit("--processes needs BROKER_URL (redis://… or amqp://…)")
    settings = Settings(
        _env_file=None,
        database_url=url,
        data_dir=scratch,
        broker_url=broker_url,
        event_file=ROOT / "config" / "event.toml",
        templates_dir=ROOT / "templates",
    )
    rt = Runtime(settings)
    with rt.store.session() as session:
        for start in range(0, len(ids), 5000):
            session.execute(
                update(LedgerRow).where(LedgerRow.id.in_(ids[start : start + 5000])).values(expires_at=None)
            )
    broker = make_broker(settings)
    broker.flush_all()
    actor = actors.declare(rt, broker)
    for row_id in ids:
        actor.send(row_id)
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DATA_DIR": str(scratch),
        "BROKER_URL": broker_url,
        "EVENT_FILE": str(ROOT / "config" / "event.toml"),
        "TEMPLATES_DIR": str(ROOT / "templates"),
    }
    command = [
        sys.executable,
        "-m",
        "pipeline",
        "worker",
        "--processes",
        str(processes),
        "--threads",
        str(threads),
    ]
    started = time.perf_counter()
    worker = subprocess.Popen(command, env=env, cwd=ROOT)
    try:
        done = 0
        while done < len(ids):
            time.sleep(0.5)
            with rt.store.session() as session:
                done = (
                    session.scalar(
                        select(func.count()).where(
                            LedgerRow.id.in_(ids[:50_000]), LedgerRow.state != "queued"
                        )
                    )
                    or 0
                )
    finally:
        worker.terminate()
        worker.wait(30)
    step(f"deliver{processes}p", len(ids), started)


def _reset_postgres(url: str) -> None:
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


if __name__ == "__main__":
    main()
