"""Sending benchmarks: how fast and how punctually due messages leave, end to end.

Real processes as in production: `kallelse scheduler`, `kallelse worker --processes P --threads T`,
PostgreSQL and Redis; SMS through the twilio library to the Twilio-like server of the tests
(bench/servers.py, in a process of its own), email to an SMTP sink.

    python bench/sending.py burst --count 50000 --over 120 --latency 0.2   # due evenly over 120 s
    python bench/sending.py drain --count 10000 --latency 0                # all due at once
    python bench/sending.py ceiling --count 20000                          # dramatiq's no-op actor
    python bench/sending.py email --count 2000                             # invitation emails
    python bench/sending.py memory --count 100000                          # worker RSS
    python bench/sending.py idle --delegates 100000                        # scheduler CPU, nothing due

burst and drain also measure, in the same run, the server's own capacity (at the same latency) and
dramatiq's no-op ceiling (`--no-baselines` skips them). Each prints one line per figure, with the load
average, and writes JSON to bench/results/. DATABASE_URL (default: a scratch database on the local
PostgreSQL, dropped and made anew) and BROKER_URL (default redis://127.0.0.1:6379/11, flushed) say where.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402

from pipeline.delegates import Delegate  # noqa: E402
from pipeline.store import Store, open_store  # noqa: E402
from pipeline.store.models import LedgerRow  # noqa: E402
from pipeline.store.people import upsert_delegates  # noqa: E402

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/kallelse_bench11")
BROKER_URL = os.environ.get("BROKER_URL", "redis://127.0.0.1:6379/11")
RESULTS = ROOT / "bench" / "results"
RULE = "broadcast:bench"
NEVER = 300.0  # seconds late that count as "not sent within 5 minutes"


def say(name: str, value, unit: str = "") -> None:
    print(f"{name:<44} {value}{(' ' + unit) if unit else ''}   load {' '.join(load_avg())}", flush=True)


def load_avg() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


def machine() -> dict:
    """What ran the figures: the same benchmark on another machine of the same kind has differed by 2×,
    so a figure is compared with the ceilings measured in its own run, never with another machine's."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {"cpu": model, "cores": os.cpu_count(), "commit": commit.stdout.strip() or "unknown"}


# -- the set-up ---------------------------------------------------------------------------------------


def fresh_database(url: str) -> Store:
    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/test"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return open_store(url)


def flush_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


class Provider:
    """bench/servers.py in a child process."""

    def __init__(self, kind: str, latency: float = 0.0):
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "servers.py"), kind, "--latency", str(latency)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.fields = self.process.stdout.readline().split()

    def summary(self) -> dict:
        import urllib.request

        with urllib.request.urlopen(f"{self.fields[0]}/bench/summary", timeout=60) as answer:
            return json.loads(answer.read())

    def stop(self) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        rest = self.process.stdout.read()
        self.process.wait(30)
        return rest


def environment(tmp: Path, twilio: Provider | None = None, smtp: Provider | None = None, **extra) -> dict:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=DATABASE_URL,
        BROKER_URL=BROKER_URL,
        DATA_DIR=str(tmp),
        EVENT_FILE=str(ROOT / "config" / "event.toml"),
        TEMPLATES_DIR=str(ROOT / "templates"),
        SECRET_KEY=secrets.token_urlsafe(48),
        PUBLIC_URL="http://127.0.0.1:8000",
    )
    if twilio is not None:
        url, sid, token = twilio.fields
        env.update(
            SMS_BACKEND="twilio",
            TWILIO_API_URL=url,
            TWILIO_ACCOUNT_SID=sid,
            TWILIO_AUTH_TOKEN=token,
            TWILIO_FROM="+46700000000",
        )
    if smtp is not None:
        host, port = smtp.fields
        env.update(EMAIL_BACKEND="smtp", SMTP_HOST=host, SMTP_PORT=port, SMTP_SECURITY="none")
    env.update({k.upper(): str(v) for k, v in extra.items()})
    return env


def kallelse(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    out = log.open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args], env=env, stdout=out, stderr=out, cwd=ROOT
    )


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


def add_delegates(store: Store, count: int, email: bool = False) -> list[str]:
    people = [
        Delegate(
            id=f"b{i:06d}",
            name=f"Delegat {i}",
            email=f"delegat{i}@example.org" if email else None,
            phone=None if email else f"+4670{i:07d}",
            stop="hotel" if i % 2 else "airport",
            rsvp="yes",
        )
        for i in range(count)
    ]
    for start in range(0, count, 10_000):
        with store.session() as session:
            upsert_delegates(session, people[start : start + 10_000], datetime.now(UTC))
    return [p.id for p in people]


def wait_planned(store: Store, log: Path, limit: float = 900.0) -> int:
    """Until the scheduler's start-up planning is done (its log says "planned N delegates")."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and "planned " not in log.read_text(errors="replace"):
        time.sleep(0.5)
    time.sleep(2)
    with store.session() as session:
        return session.scalar(select(func.count()).select_from(LedgerRow)) or 0


def insert_due(store: Store, ids: list[str], channel: str, template: str, dues: list[datetime]) -> None:
    """The benchmark's rows, as a broadcast would store them (payload rows: no re-plan cancels them)."""
    payload = json.dumps({"template": template, "extra": {"text": "Bussen går kl. 09.00 från hotellet."}})
    now = datetime.now(UTC)
    rows = [
        {
            "key": f"sik-2021:{RULE}:-:{delegate}:{channel}",
            "event_id": "sik-2021",
            "rule": RULE,
            "occurrence": "-",
            "delegate_id": delegate,
            "channel": channel,
            "due_at": due,
            "expires_at": due + timedelta(hours=1),
            "state": "planned",
            "reason": "",
            "attempts": 0,
            "payload": payload,
            "created_at": now,
            "updated_at": now,
        }
        for delegate, due in zip(ids, dues, strict=True)
    ]
    for start in range(0, len(rows), 10_000):
        with store.session() as session:
            session.execute(insert(LedgerRow), rows[start : start + 10_000])


def wait_sent(store: Store, until: float) -> None:
    while time.time() < until:
        with store.session() as session:
            pending = session.scalar(
                select(func.count())
                .select_from(LedgerRow)
                .where(LedgerRow.rule == RULE, LedgerRow.state.in_(["planned", "queued", "sending"]))
            )
        if not pending:
            return
        time.sleep(1.0)


def outcome(store: Store) -> list[tuple[datetime, datetime | None, str]]:
    with store.session() as session:
        return list(
            session.execute(
                select(LedgerRow.due_at, LedgerRow.sent_at, LedgerRow.state)
                .where(LedgerRow.rule == RULE)
                .order_by(LedgerRow.due_at, LedgerRow.id)
            )
        )


# -- figures ------------------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2
        i = j + 1
    return out


def spearman(xs: list[float], ys: list[float]) -> float:
    rx, ry = ranks(xs), ranks(ys)
    n = len(xs)
    mx, my = sum(rx) / n, sum(ry) / n
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sx = sum((a - mx) ** 2 for a in rx) ** 0.5
    sy = sum((b - my) ** 2 for b in ry) ** 0.5
    return cov / (sx * sy) if sx and sy else float("nan")


def punctuality(rows, start: float) -> dict:
    sent = [(due, at) for due, at, state in rows if at is not None]
    late = [(at - due).total_seconds() for due, at in sent]
    last = max((at.timestamp() for _, at in sent), default=start)
    return {
        "rows": len(rows),
        "sent": len(sent),
        "not_sent_within_5_min": sum(1 for x in late if x > NEVER) + len(rows) - len(sent),
        "lateness_s": {p: round(percentile(late, p), 3) for p in (50, 90, 99, 100)},
        # x: place in due order (ties by id, as queued), y: when it was recorded sent
        "rank_correlation_due_vs_sent": round(
            spearman([float(i) for i in range(len(sent))], [a.timestamp() for _, a in sent]), 4
        ),
        "drain_per_s": round(len(sent) / max(last - start, 1e-9), 1),
        "states": {s: sum(1 for *_, st in rows if st == s) for s in {st for *_, st in rows}},
    }


def server_capacity(provider: Provider, threads: int, requests: int) -> float:
    """The Twilio-like server alone: `requests` creates from `threads` twilio clients at once."""
    from pipeline.channels.base import SmsMessage
    from pipeline.channels.twilio import TwilioSms

    url, sid, token = provider.fields
    per = requests // threads
    barrier = threading.Barrier(threads + 1)
    failed = []

    def client(n: int) -> None:
        sms = TwilioSms(sid, token, from_number="+46700000000", api_url=url, timeout=30)
        barrier.wait()
        for i in range(per):
            try:
                sms.send(SmsMessage(f"cap:{n}:{i}", f"+4671{n:03d}{i:05d}", "Kapacitetsmätning"))
            except Exception:  # counted out of the figure, not fatal
                failed.append(1)

    workers = [threading.Thread(target=client, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    started = time.perf_counter()
    for w in workers:
        w.join()
    return (per * threads - len(failed)) / (time.perf_counter() - started)


def ceiling(count: int, processes: int, threads: int, tmp: Path) -> float:
    """dramatiq's no-op actor on the same Redis: `count` messages enqueued, then drained by P × T."""
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    flush_redis(BROKER_URL)
    broker = RedisBroker(url=BROKER_URL, namespace="bench-noop")
    noop = dramatiq.actor(lambda: None, actor_name="noop", queue_name="noop", broker=broker)
    for _ in range(count):
        noop.send()
    env = dict(os.environ, BENCH_BROKER_URL=BROKER_URL, PYTHONPATH=str(ROOT))
    log = (tmp / "noop.log").open("w")
    workers = subprocess.Popen(
        [sys.executable, "-m", "dramatiq", "bench.noop", "-p", str(processes), "-t", str(threads)],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=log,
    )
    first = None
    try:
        while True:
            left = broker.do_qsize("noop")
            if first is None and left < count:
                first = (time.perf_counter(), left)
            if left == 0:
                break
            time.sleep(0.05)
        assert first is not None
        return (first[1]) / (time.perf_counter() - first[0])
    finally:
        stop(workers)
        broker.close()


# -- the benchmarks -----------------------------------------------------------------------------------


def run_sms(args, spread: float) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="kallelse-bench-"))
    store = fresh_database(DATABASE_URL)
    flush_redis(BROKER_URL)
    provider = Provider("twilio", args.latency)
    env = environment(tmp, twilio=provider, worker_processes=args.processes, worker_threads=args.threads)
    if args.sms_rate:
        env["SMS_RATE_PER_SECOND"] = str(args.sms_rate)  # set: enforced
    ids = add_delegates(store, args.count)
    scheduler = kallelse(["-v", "scheduler"], env, tmp / "scheduler.log")
    workers = kallelse(["worker"], env, tmp / "workers.log")
    result: dict = {
        "sms_rate_per_second": args.sms_rate,
        "count": args.count,
        "over_s": spread,
        "latency_s": args.latency,
        "load_before": load_avg(),
    }
    try:
        result["ledger_rows_before"] = wait_planned(store, tmp / "scheduler.log")
        time.sleep(3)
        start = time.time() + 5
        dues = [datetime.fromtimestamp(start + spread * i / args.count, UTC) for i in range(args.count)]
        parts = {"workers": workers.pid, "scheduler": scheduler.pid, "server": provider.process.pid}
        cpu_before = cpu_by_part(parts)
        insert_due(store, ids, "sms", "broadcast", dues)
        wait_sent(store, start + spread + NEVER + 10)
        result["cpu_ms_per_message"] = cpu_ms_per_message(cpu_before, cpu_by_part(parts), args.count)
        result.update(punctuality(outcome(store), start))
        result["load_after"] = load_avg()
    finally:
        stop(workers)
        stop(scheduler)
    summary = provider.summary()
    result["server_accepted"] = summary["accepted"]
    result["duplicates"] = summary["accepted"] - summary["distinct_to"]
    result["server_max_in_flight"] = summary["max_in_flight"]
    if args.baselines:
        concurrency = min(128, args.processes * int(env.get("SMS_CONCURRENCY", 64)))
        result["server_capacity_per_s"] = round(server_capacity(provider, concurrency, 4000), 1)
    provider.stop()
    if args.baselines:
        result["noop_ceiling_per_s"] = round(ceiling(20_000, args.processes, args.threads, tmp), 1)
        result["ratio_to_noop"] = round(result["drain_per_s"] / result["noop_ceiling_per_s"], 3)
    store.close()
    return result


def burst(args) -> dict:
    return run_sms(args, args.over)


def drain(args) -> dict:
    return run_sms(args, 0.0)


def email(args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="kallelse-bench-"))
    store = fresh_database(DATABASE_URL)
    flush_redis(BROKER_URL)
    sink = Provider("smtp")
    env = environment(tmp, smtp=sink, worker_processes=args.processes, worker_threads=args.threads)
    ids = add_delegates(store, args.count, email=True)
    scheduler = kallelse(["-v", "scheduler"], env, tmp / "scheduler.log")
    workers = kallelse(["worker"], env, tmp / "workers.log")
    result: dict = {"count": args.count, "load_before": load_avg()}
    try:
        wait_planned(store, tmp / "scheduler.log")
        start = time.time() + 5
        parts = {"workers": workers.pid, "scheduler": scheduler.pid, "sink": sink.process.pid}
        cpu_before = cpu_by_part(parts)
        insert_due(store, ids, "email", "invitation", [datetime.fromtimestamp(start, UTC)] * args.count)
        wait_sent(store, start + NEVER + 600)
        result["cpu_ms_per_message"] = cpu_ms_per_message(cpu_before, cpu_by_part(parts), args.count)
        result.update(punctuality(outcome(store), start))
        result["load_after"] = load_avg()
    finally:
        stop(workers)
        stop(scheduler)
    result["sink"] = json.loads(sink.stop().strip().splitlines()[-1])
    store.close()
    return result


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def memory(args) -> dict:
    """One worker process (no children: `--processes 1`), RSS sampled every second."""
    tmp = Path(tempfile.mkdtemp(prefix="kallelse-bench-"))
    store = fresh_database(DATABASE_URL)
    flush_redis(BROKER_URL)
    provider = Provider("twilio", 0.0)
    env = environment(tmp, twilio=provider, worker_processes=1, worker_threads=args.threads)
    ids = add_delegates(store, args.count)
    scheduler = kallelse(["-v", "scheduler"], env, tmp / "scheduler.log")
    workers = kallelse(["worker"], env, tmp / "workers.log")
    result: dict = {"count": args.count, "load_before": load_avg()}
    try:
        wait_planned(store, tmp / "scheduler.log")
        time.sleep(5)
        result["rss_idle_mb"] = round(rss_mb(workers.pid), 1)
        start = time.time() + 5
        insert_due(store, ids, "sms", "broadcast", [datetime.fromtimestamp(start, UTC)] * args.count)
        peak = 0.0
        while time.time() < start + 3600:
            peak = max(peak, rss_mb(workers.pid))
            with store.session() as session:
                left = session.scalar(
                    select(func.count()).where(LedgerRow.rule == RULE, LedgerRow.state != "sent")
                )
            if not left:
                break
            time.sleep(1.0)
        time.sleep(3)
        result["rss_peak_mb"] = round(peak, 1)
        result["rss_after_mb"] = round(rss_mb(workers.pid), 1)
        result["rss_growth_mb"] = round(result["rss_after_mb"] - result["rss_idle_mb"], 1)
        result.update(punctuality(outcome(store), start))
    finally:
        stop(workers)
        stop(scheduler)
        provider.stop()
    store.close()
    return result


def _stat(text: str) -> tuple[int, str, float]:
    """/proc/<pid>/stat as (parent pid, name, CPU seconds: user + system)."""
    name, rest = text[text.index("(") + 1 : text.rindex(")")], text.rsplit(")", 1)[1].split()
    return int(rest[1]), name, (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    return _stat(Path(f"/proc/{pid}/stat").read_text())[2]


def _stats() -> dict[int, tuple[int, str, float]]:
    """pid → (parent pid, name, CPU seconds) for every process on the machine."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                out[int(entry.name)] = _stat((entry / "stat").read_text())
            except OSError:  # it ended meanwhile
                continue
    return out


def cpu_by_part(parts: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each named process with its children, by the PostgreSQL backends of the
    benchmark's database, and by Redis (all of it: other users of the same server count too)."""
    stats = _stats()

    def tree(root: int) -> float:
        pids, total = {root}, 0.0
        for _ in range(3):  # children, grandchildren
            pids |= {pid for pid, (parent, _, _) in stats.items() if parent in pids}
        for pid in pids:
            total += stats.get(pid, (0, "", 0.0))[2]
        return total

    out = {name: tree(pid) for name, pid in parts.items()}
    database = DATABASE_URL.rsplit("/", 1)[1]
    out["postgres"] = sum(stats[pid][2] for pid in stats if _serves(pid, database))
    out["redis"] = sum(cpu for _, name, cpu in stats.values() if name.startswith("redis-server"))
    return out


def _serves(pid: int, database: str) -> bool:
    try:
        return f" {database} ".encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def cpu_ms_per_message(before: dict[str, float], after: dict[str, float], count: int) -> dict[str, float]:
    return {name: round(1000 * (after[name] - before[name]) / max(count, 1), 3) for name in before}


def idle(args) -> dict:
    """The scheduler with `--delegates` planned and nothing due: its share of one core."""
    tmp = Path(tempfile.mkdtemp(prefix="kallelse-bench-"))
    store = fresh_database(DATABASE_URL)
    flush_redis(BROKER_URL)
    env = environment(tmp)
    add_delegates(store, args.delegates)
    scheduler = kallelse(["-v", "scheduler"], env, tmp / "scheduler.log")
    result: dict = {"delegates": args.delegates, "load_before": load_avg()}
    try:
        result["ledger_rows"] = wait_planned(store, tmp / "scheduler.log")
        time.sleep(5)
        before, started = cpu_seconds(scheduler.pid), time.monotonic()
        time.sleep(args.seconds)
        share = (cpu_seconds(scheduler.pid) - before) / (time.monotonic() - started)
        result["scheduler_idle_core_share_pct"] = round(100 * share, 2)
        result["load_after"] = load_avg()
    finally:
        stop(scheduler)
    store.close()
    return result


def noop_ceiling(args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="kallelse-bench-"))
    return {
        "count": args.count,
        "noop_per_s": round(ceiling(args.count, args.processes, args.threads, tmp), 1),
    }


COMMANDS = {
    "burst": burst,
    "drain": drain,
    "email": email,
    "memory": memory,
    "idle": idle,
    "ceiling": noop_ceiling,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--over", type=float, default=120.0, help="burst: seconds the due times span")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds the SMS provider takes to answer")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--delegates", type=int, default=100_000, help="idle: delegates planned")
    parser.add_argument("--seconds", type=float, default=60.0, help="idle: how long to watch")
    parser.add_argument("--sms-rate", type=float, default=0.0, help="burst/drain: SMS_RATE_PER_SECOND")
    parser.add_argument("--no-baselines", dest="baselines", action="store_false")
    parser.add_argument("--label", default="", help="a note kept in the JSON (the commit, say)")
    parser.add_argument("--times", type=int, default=1, help="run it this many times; print the medians")
    args = parser.parse_args()
    runs = []
    for run in range(args.times):
        if args.times > 1:
            print(f"-- run {run + 1} of {args.times}", flush=True)
        result = COMMANDS[args.command](args)
        result.update(
            command=args.command,
            label=args.label,
            at=datetime.now(UTC).isoformat(timespec="seconds"),
            machine=machine(),
        )
        for name, value in result.items():
            say(name, value)
        runs.append(result)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    size = args.delegates if args.command == "idle" else args.count
    path = RESULTS / f"{args.command}-{size}-{args.latency:g}-{stamp}.json"
    if args.times > 1:
        summary = {"median_of": args.times, **medians(runs), "runs": runs}
        print(f"-- medians of {args.times} runs")
        for name, value in summary.items():
            if name != "runs":
                say(name, value)
        path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    else:
        path.write_text(json.dumps(runs[0], indent=2, default=str) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


def medians(runs: list[dict]) -> dict:
    """The median of every figure over the runs (per key for figures that are dicts); the first run's value
    for what is not a number (labels, states); the load averages as a list, one per run."""
    out: dict = {}
    for name, first in runs[0].items():
        values = [run.get(name) for run in runs]
        if str(name).startswith("load_"):
            out[name] = values
        elif isinstance(first, bool) or not isinstance(first, int | float | dict):
            out[name] = first
        elif isinstance(first, dict):
            out[name] = medians([v if isinstance(v, dict) else {} for v in values])
        else:
            out[name] = statistics.median(v for v in values if isinstance(v, int | float))
    return out


if __name__ == "__main__":
    main()
