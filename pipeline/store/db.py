"""Opening the database: engine, migrations (Alembic, applied on open) and sessions."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# Alembic's `context` is one process-wide proxy: two threads migrating at once would share a connection
# and deadlock on the advisory lock. Threads take turns here; processes take turns on the advisory lock.
_UPGRADE_LOCK = threading.Lock()


class Store:
    """An engine and a session factory. One per process; sessions are short-lived, one per unit of work."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on error."""
        with self.sessions() as session, session.begin():
            yield session

    def close(self) -> None:
        self.engine.dispose()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, hide_parameters=True
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    # hide_parameters: a failed statement's error must not carry phone numbers or message bodies into logs.
    # prepare_threshold=None: psycopg would otherwise make a statement server-side prepared after 5 runs,
    # and PostgreSQL may then keep a generic plan made while the ledger was empty. The due query planned
    # that way scans the ledger once per due row (seconds per tick at 50,000 rows): plan every run instead.
    return create_engine(
        url,
        pool_size=10,
        max_overflow=20,
        pool_pre_ping=True,
        hide_parameters=True,
        connect_args={"prepare_threshold": None},
    )


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets the web app read while a worker writes; a busy timeout instead of "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to `revision`. Safe to run from several processes at once on PostgreSQL."""
    config = alembic_config()
    with _UPGRADE_LOCK, engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def open_store(url: str, *, migrate: bool = True) -> Store:
    engine = make_engine(url)
    if migrate:
        upgrade(engine)
    return Store(engine)
