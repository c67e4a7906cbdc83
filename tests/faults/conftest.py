"""Real processes for the fault tests: a Redis server of the test's own (so it can be flushed, killed and
restarted), `kallelse worker` / `scheduler` / `web` started as the Procfile starts them, the local
Twilio-like server and an SMTP server (aiosmtpd) in this process.

Outages are shorter than on the day (20 s instead of 60 s) with short backoffs (RETRY_*_BACKOFF_MS,
REQUEUE_AFTER_SECONDS, SCHEDULER_LEASE_SECONDS below): the same code paths, a CI-sized wait.
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, select

from pipeline.store.models import LedgerRow
from tests.fixtures.services import unavailable

ROOT = Path(__file__).resolve().parents[2]
SECRET = "fault-tests-" + "k" * 40  # long enough for safety.refusal; never leaves loopback
FAST = {
    "RETRY_MIN_BACKOFF_MS": "500",
    "RETRY_MAX_BACKOFF_MS": "4000",
    "REQUEUE_AFTER_SECONDS": "10",
    "SCHEDULER_LEASE_SECONDS": "5",
}
RESULTS: list[str] = []  # one line per fault, printed at the end of the run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


def wait_for(done: Callable[[], bool], timeout: float, what: str, every: float = 0.2) -> float:
    """Wait until done(); return how long it took."""
    start = time.monotonic()
    while not done():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)
    return time.monotonic() - start


class RedisProcess:
    """redis-server on a free port, without persistence: a restart comes back empty."""

    def __init__(self, workdir: Path):
        self.port, self.workdir = free_port(), workdir
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--dir", str(self.workdir)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: port_open(self.port), 10, "redis-server to listen")
        return self

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def flush(self) -> None:
        import redis

        client = redis.Redis(port=self.port)
        client.flushall()
        client.close()


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[RedisProcess]:
    if not shutil.which("redis-server"):  # these tests kill and restart their own server
        unavailable("redis-server on PATH", FileNotFoundError("redis-server"))
    server = RedisProcess(tmp_path).start()
    yield server
    server.kill()


@dataclass
class Kallelse:
    """`kallelse` commands and processes sharing one environment (database, broker, providers)."""

    tmp: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def database_url(self) -> str:
        return self.env["DATABASE_URL"]

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.env['PORT']}"

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pipeline", *args],
            env=self.env,
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = (self.tmp / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "-v", *args],
            env=self.env,
            cwd=self.tmp,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes[name] = process
        return process

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(encoding="utf-8", errors="replace")

    def running(self, name: str) -> bool:
        return self.processes[name].poll() is None

    def kill(self, name: str) -> None:
        self.processes[name].send_signal(signal.SIGKILL)
        self.processes[name].wait(10)

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)

    def wait_for_web(self) -> None:
        wait_for(lambda: port_open(int(self.env["PORT"])), 30, "kallelse web to listen")

    def healthz(self) -> httpx.Response:
        return httpx.get(f"{self.web_url}/healthz", timeout=10)

    # -- the ledger, read directly ----------------------------------------------------------------
    def rows(self, rule_prefix: str = "broadcast:") -> list[LedgerRow]:
        engine = create_engine(self.database_url.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            with engine.connect() as conn:
                query = select(LedgerRow).where(LedgerRow.rule.like(f"{rule_prefix}%"))
                return list(conn.execute(query))  # type: ignore[arg-type]
        finally:
            engine.dispose()

    def states(self, rule_prefix: str = "broadcast:") -> collections.Counter:
        return collections.Counter(row.state for row in self.rows(rule_prefix))

    def settled(self, rule_prefix: str = "broadcast:", stuck_before: datetime | None = None) -> bool:
        """No row waiting or being sent; rows claimed before `stuck_before` (by a killed worker) aside."""
        rows = self.rows(rule_prefix)
        busy = [
            row
            for row in rows
            if row.state in ("planned", "queued")
            or (row.state == "sending" and (stuck_before is None or row.sending_at >= stuck_before))
        ]
        return bool(rows) and not busy


def delegates_csv(path: Path, n: int, *, phones: bool = True, emails: bool = False) -> Path:
    lines = ["id,name,email,phone,language,stop"]
    for i in range(n):
        email = f"d{i:05d}@example.se" if emails else ""
        phone = f"+4670{1000000 + i:07d}" if phones else ""
        lines.append(f"d{i:05d},Delegat {i},{email},{phone},sv,hotel")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def kallelse(tmp_path: Path, twilio_server, smtp_server) -> Iterator[Kallelse]:
    """The environment every process of one fault test shares; SQLite unless a test overrides
    DATABASE_URL. Stops every process it started."""
    shutil.copy(ROOT / "config" / "event.toml", tmp_path / "event.toml")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("TWILIO_", "SMTP_"))}
    env.update(
        {
            "DATA_DIR": str(tmp_path / "var"),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'kallelse.sqlite3'}",
            "EVENT_FILE": str(tmp_path / "event.toml"),
            "TEMPLATES_DIR": str(ROOT / "templates"),
            "BROKER_URL": "",
            "EMAIL_BACKEND": "smtp",
            "SMTP_HOST": smtp_server.host,
            "SMTP_PORT": str(smtp_server.port),
            "SMTP_SECURITY": "none",
            "SMTP_TIMEOUT": "5",
            "SMS_BACKEND": "twilio",
            "TWILIO_ACCOUNT_SID": twilio_server.account_sid,
            "TWILIO_AUTH_TOKEN": twilio_server.auth_token,
            "TWILIO_FROM": "+46700000000",
            "TWILIO_API_URL": twilio_server.url,
            "TWILIO_TIMEOUT": "5",
            "PORT": str(free_port()),
            "SECRET_KEY": SECRET,
            "WORKER_PROCESSES": "1",
            "WORKER_THREADS": "8",
            **FAST,
        }
    )
    env["PUBLIC_URL"] = f"http://127.0.0.1:{env['PORT']}"
    running = Kallelse(tmp_path, env)
    yield running
    running.stop_all()


def report(fault: str, **figures) -> None:
    """One line per fault: printed now (-s) and again in the run's summary."""
    line = f"{fault}: " + ", ".join(
        f"{name.replace('_', ' ')} {value:.1f} s"
        if isinstance(value, float)
        else f"{name.replace('_', ' ')} {value}"
        for name, value in figures.items()
    )
    RESULTS.append(line)
    print(line)


def pytest_terminal_summary(terminalreporter) -> None:
    if RESULTS:
        terminalreporter.section("faults: recovery")
        for line in RESULTS:
            terminalreporter.write_line(line)
