"""Staying up: the scheduler loop survives outages, one of two schedulers is active, the last good event
file stays in force, commands end in one line, /healthz and /metrics say how things are."""

from __future__ import annotations

import logging
import shutil
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import select

from pipeline.cli import main
from pipeline.delegates import Delegate
from pipeline.planner import PlannedSend
from pipeline.runtime import Runtime
from pipeline.sending.scheduler import Scheduler
from pipeline.settings import Settings
from pipeline.store import leases, ledger, open_store
from pipeline.store.models import LedgerRow
from pipeline.store.people import upsert_delegates
from pipeline.web.app import create_app

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2021, 10, 20, 8, 0, tzinfo=UTC)
ANNA = Delegate("anna", "Anna Berg", email="anna@example.se", phone="+46701740601", stop="hotel")


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_settings(tmp_path: Path, **overrides) -> Settings:
    event_file = tmp_path / "event.toml"
    if not event_file.exists():
        shutil.copy(ROOT / "config" / "event.toml", event_file)
    values = {
        "_env_file": None,
        "data_dir": tmp_path,
        "database_url": f"sqlite:///{tmp_path / 'kallelse.sqlite3'}",
        "event_file": event_file,
        "templates_dir": ROOT / "templates",
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
def rt(tmp_path: Path):
    runtime = Runtime(make_settings(tmp_path), clock=Clock(NOW))
    with runtime.store.session() as session:
        upsert_delegates(session, [ANNA], NOW - timedelta(days=30))
    yield runtime
    runtime.close()


def queued_ids(rt: Runtime) -> set[int]:
    with rt.store.session() as session:
        return set(session.scalars(select(LedgerRow.id).where(LedgerRow.state == "queued")))


# -- the scheduler never dies --------------------------------------------------------------------


def test_a_broker_outage_is_logged_once_and_its_rows_are_enqueued_when_it_is_back(rt, caplog) -> None:
    """While enqueueing fails the loop backs off (one log line for the whole outage); once the broker
    answers, every queued row is handed to it."""
    import redis.exceptions

    down, sent = [True], []

    def enqueue(ids: list[int]) -> None:  # one broker message per batch of ids
        if down[0]:
            raise redis.exceptions.ConnectionError("Connection refused")
        sent.extend(ids)

    scheduler = Scheduler(rt, enqueue)
    with caplog.at_level(logging.ERROR, logger="pipeline.sending.scheduler"):
        waits = [scheduler.step() for _ in range(4)]
    assert waits == [0.5, 1.0, 2.0, 4.0]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        "scheduler: broker: Redis unreachable (ConnectionError: Connection refused); "
        "retrying until it is back"
    ]
    down[0] = False
    scheduler.step()
    assert set(sent) == queued_ids(rt) and sent


def test_a_database_outage_does_not_end_the_loop(rt, tmp_path) -> None:
    """A pass whose database fails says so and returns a back-off; the next good pass goes on."""
    scheduler = Scheduler(rt, lambda row_id: None)
    good_store = rt._store
    rt._store = open_store(f"postgresql://nobody@127.0.0.1:{closed_port()}/x", migrate=False)
    assert scheduler.step() == 0.5
    assert scheduler._failure is not None and scheduler._failure.startswith("database: unreachable")
    rt._store = good_store
    assert scheduler.step() <= 1.0
    assert scheduler._failure is None


# -- two schedulers, one active ------------------------------------------------------------------


def test_of_two_schedulers_one_is_active_and_the_standby_takes_over_when_the_lease_runs_out(rt) -> None:
    """The second scheduler waits while the first renews its lease; once the first stops renewing, the
    lease (SCHEDULER_LEASE_SECONDS) runs out and the second takes over."""
    clock = rt.clock
    first, second = Scheduler(rt, lambda row_id: None), Scheduler(rt, lambda row_id: None)
    first.step()
    second.step()
    assert (first.active, second.active) == (True, False)
    clock.now += timedelta(seconds=5)
    second.step()
    assert not second.active
    clock.now += timedelta(seconds=rt.settings.scheduler_lease_seconds)
    second.step()
    assert second.active
    first.step()
    assert not first.active
    with rt.store.session() as session:
        beat = leases.heartbeat(session)
    assert beat is not None and beat.holder == second.holder and beat.last_tick_at == clock.now


def test_a_scheduler_stopping_cleanly_hands_over_at_once(rt) -> None:
    first, second = Scheduler(rt, lambda row_id: None), Scheduler(rt, lambda row_id: None)
    first.step()
    first._release()
    second.step()
    assert second.active


def test_planning_the_same_sends_twice_inserts_each_key_once(database_url) -> None:
    """INSERT … ON CONFLICT DO NOTHING: a second scheduler planning the same rows adds nothing, no error."""
    store = open_store(database_url)
    send = PlannedSend(
        key="e:r:-:anna:sms",
        rule="r",
        occurrence="-",
        delegate="anna",
        channel="sms",
        due_at=NOW,
        expires_at=None,
        status="due",
        reason="",
    )
    row = ledger._insert_values(send, "planned", NOW)
    with store.session() as session:
        assert ledger.insert_new(session, [row]) == 1
    with store.session() as session:
        assert ledger.insert_new(session, [row, {**row, "key": "e:r:-:bo:sms"}]) == 1
        assert ledger.count_rows(session) == 2
    store.close()


def test_the_lease_and_the_error_counter_work_on_both_databases(database_url) -> None:
    store = open_store(database_url)
    lease = timedelta(seconds=10)
    with store.session() as session:
        assert leases.take_lease(session, "a", NOW, lease)
        assert not leases.take_lease(session, "b", NOW, lease)
        assert leases.take_lease(session, "b", NOW + lease, lease)
        leases.count_provider_error(session, "sms", "20429")
        leases.count_provider_error(session, "sms", "20429")
        assert leases.provider_errors(session) == {("sms", "20429"): 2}
    store.close()


# -- the last good event file stays in force -----------------------------------------------------


def test_a_broken_event_file_is_reported_and_the_last_good_version_stays_in_force(rt, caplog) -> None:
    good = rt.event
    path = rt.settings.event_file
    text = path.read_text(encoding="utf-8")
    path.write_text(text[: len(text) // 2], encoding="utf-8")  # saved half-way
    with caplog.at_level(logging.ERROR, logger="pipeline.runtime"):
        assert rt.event is good
        assert rt.event is good
    assert rt.event_file.problem and str(path) in rt.event_file.problem
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
    path.write_text(text.replace("Wood Hotel", "Wood Hotel & Spa"), encoding="utf-8")
    assert rt.event is not good
    assert rt.event_file.problem is None


def test_a_process_starting_while_the_file_is_broken_uses_the_event_as_last_applied(rt, tmp_path) -> None:
    """A worker started during the broken moment renders from the snapshot in the database."""
    scheduler = Scheduler(rt, lambda row_id: None)
    scheduler.step()  # stores the first snapshot
    path = rt.settings.event_file
    path.write_text("[event\n", encoding="utf-8")
    fresh = Runtime(rt.settings)
    assert fresh.event.event.id == "sik-2021"
    assert fresh.event_file.problem is not None
    fresh.close()


def test_the_scheduler_does_not_replan_from_a_broken_file(rt) -> None:
    scheduler = Scheduler(rt, lambda row_id: None)
    scheduler.step()
    with rt.store.session() as session:
        before = ledger.count_rows(session)
    rt.settings.event_file.write_text("not toml [", encoding="utf-8")
    assert scheduler.step() <= 1.0
    assert scheduler._failure is None
    with rt.store.session() as session:
        assert ledger.count_rows(session) == before


def test_status_and_the_dashboard_say_the_event_file_does_not_load(rt, tmp_path) -> None:
    Scheduler(rt, lambda row_id: None).step()
    rt.settings.event_file.write_text("[event\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["status"], obj=rt.settings)
    assert result.exit_code == 0, result.output
    assert "Event file does not load, the last good version is in force" in result.output


# -- one line, not a traceback -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mysql+nodriver://x/y", "database: DATABASE_URL is not a database URL"),
        ("not a url", "database: DATABASE_URL is not a database URL"),
        (f"postgresql://nobody@127.0.0.1:{closed_port()}/x", "database: unreachable or refusing"),
    ],
)
def test_a_bad_or_unreachable_database_ends_a_command_in_one_line(tmp_path, url, says) -> None:
    result = CliRunner().invoke(main, ["status"], obj=make_settings(tmp_path, database_url=url))
    assert result.exit_code == 1
    assert result.output.startswith(f"kallelse: {says}")
    assert result.output.count("\n") == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_postgres_url_as_hosting_platforms_write_it_is_accepted(tmp_path) -> None:
    settings = make_settings(tmp_path, database_url="postgres://u:p@db.example:5432/kallelse")
    assert settings.effective_database_url == "postgresql://u:p@db.example:5432/kallelse"


def test_a_broken_event_file_ends_a_command_in_one_line(tmp_path) -> None:
    settings = make_settings(tmp_path)
    settings.event_file.write_text("[event\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["status"], obj=settings)
    assert result.exit_code == 1
    assert "event.toml" in result.output and "Traceback" not in result.output


def test_a_broadcast_with_the_broker_down_says_so_and_leaves_its_rows_queued(rt) -> None:
    settings = rt.settings.model_copy(update={"broker_url": f"redis://127.0.0.1:{closed_port()}/0"})
    result = CliRunner().invoke(
        main, ["broadcast", "--to", "all", "--text", "Bussen går 09.15.", "--yes"], obj=settings
    )
    assert result.exit_code == 1, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("kallelse: broker: Redis unreachable")
    assert "messages are stored and queued" in line
    with rt.store.session() as session:
        assert ledger.count_rows(session, "queued") >= 1


# -- /healthz and /metrics -----------------------------------------------------------------------


def test_healthz_is_503_naming_the_broker_when_redis_does_not_answer(rt) -> None:
    Scheduler(rt, lambda row_id: None).step()
    rt.settings = rt.settings.model_copy(update={"broker_url": f"redis://127.0.0.1:{closed_port()}/0"})
    response = TestClient(create_app(rt)).get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert (body["database"], body["scheduler"]) == ("ok", "ok")
    assert body["broker"].startswith("broker: Redis unreachable")


@pytest.mark.redis
def test_healthz_is_200_with_redis_the_database_and_a_fresh_tick(rt, redis_url) -> None:
    Scheduler(rt, lambda row_id: None).step()
    rt.settings = rt.settings.model_copy(update={"broker_url": redis_url})
    response = TestClient(create_app(rt)).get("/healthz")
    assert response.status_code == 200, response.json()
    rt.clock.now += timedelta(minutes=5)
    late = TestClient(create_app(rt)).get("/healthz")
    assert late.status_code == 503
    assert late.json()["scheduler"] == "the scheduler's last tick was 300 s ago"


def test_metrics_lists_messages_lateness_provider_errors_and_tick_duration(rt) -> None:
    Scheduler(rt, lambda row_id: None).step()
    with rt.store.session() as session:
        row = session.scalars(select(LedgerRow).where(LedgerRow.state == "queued")).first()
        assert row is not None
        ledger.claim(session, row.id, NOW)
        ledger.mark_sent(session, row.id, "SM1", row.due_at + timedelta(seconds=3))
        leases.count_provider_error(session, "sms", "20429")
    text = TestClient(create_app(rt)).get("/metrics").text
    assert f'kallelse_messages{{channel="{row.channel}",state="sent"}} 1.0' in text
    assert 'kallelse_lateness_seconds_bucket{le="1.0"} 0.0' in text
    assert 'kallelse_lateness_seconds_bucket{le="5.0"} 1.0' in text
    assert 'kallelse_provider_errors_total{channel="sms",code="20429"} 2.0' not in text
    assert 'kallelse_provider_errors_total{channel="sms",code="20429"} 1.0' in text
    assert "kallelse_scheduler_tick_seconds " in text
    assert "kallelse_scheduler_last_tick_age_seconds 0.0" in text


# -- imports validate what the database enforces -------------------------------------------------


def test_a_file_with_a_nul_byte_and_an_overlong_cell_stores_its_good_rows_on_either_database(
    tmp_path, database_url
) -> None:
    """The bad rows are named `FILE:LINE: column: reason`; the ten good rows are stored, PostgreSQL too."""
    rows = [f"d{i},Delegat {i},d{i}@example.se,,sv" for i in range(10)]
    rows[3:3] = ["bad1,Nul\x00Person,nul@example.se,,sv", f"bad2,{'x' * 300},long@example.se,,sv"]
    path = tmp_path / "delegates.csv"
    path.write_text("id,name,email,phone,language\n" + "\n".join(rows) + "\n", encoding="utf-8")
    settings = make_settings(tmp_path, database_url=database_url)
    result = CliRunner().invoke(main, ["delegates", "import", str(path)], obj=settings)
    assert f"{path}:5: name: contains a NUL character" in result.output
    assert f"{path}:6: name: too long (300 characters, at most 200)" in result.output
    assert "10 added" in result.output
    store = open_store(database_url)
    with store.session() as session:
        from pipeline.store.people import load_delegates

        assert len(load_delegates(session)) == 10
    store.close()


def test_the_dashboard_says_the_event_file_does_not_load_and_keeps_working(tmp_path) -> None:
    from tests.fixtures.dashboard import make_settings as dashboard_settings
    from tests.fixtures.dashboard import seed
    from tests.test_admin import login

    event_file = tmp_path / "event.toml"
    shutil.copy(ROOT / "config" / "event.toml", event_file)
    store = open_store(f"sqlite:///{tmp_path / 'kallelse.sqlite3'}")
    seed(store)
    rt = Runtime(dashboard_settings(tmp_path, event_file=event_file), store=store)
    with TestClient(create_app(rt)) as client:
        assert login(client).status_code == 303
        assert "Eventfilen går inte att läsa" not in client.get("/admin").text
        event_file.write_text("[event\n", encoding="utf-8")
        page = client.get("/admin")
    assert page.status_code == 200
    assert "Eventfilen går inte att läsa" in page.text and "event.toml" in page.text
    store.close()
