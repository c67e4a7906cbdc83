"""The composition root: what the CLI, the web app and the workers share.

One `Runtime` is built at each entry point from one `Settings` and passed down: settings, the store
(opened on first use, so `kallelse check` needs no database), the event (re-read when its file changes,
so every process follows an organiser's edits), templates, the link signer, the clock, and per-thread
channels (the twilio HTTP client and an SMTP connection are not thread-safe).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from pipeline.channels.base import EmailChannel, SmsChannel
from pipeline.errors import ConfigError
from pipeline.links import LinkSigner
from pipeline.settings import Settings
from pipeline.timetable import Event, load_event, parse_event

if TYPE_CHECKING:
    from pipeline.store import Store


log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


class EventFile:
    """The event, re-read when its file changes: organisers edit it while everything runs.

    The last good version stays in force: a file that does not load (saved half-way, a typo) is reported
    once (`problem`, the log) and ignored until it loads again, so no message fails and no page breaks
    because of it. Only a process that has never had a good version (and no `fallback`) raises.

    With `check_every` (workers: 1 s) the file is looked at no more often than that: a worker asks for
    the event once per message. `refresh()` looks at once (the scheduler, when it saw the file change)."""

    def __init__(
        self,
        path: Path,
        fallback: Callable[[], tuple[Event, str] | None] | None = None,
        check_every: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.path = Path(path)
        self.fallback = fallback  # the event as last applied (the database's snapshot), for a cold start
        self.check_every = check_every
        self._monotonic = monotonic
        self._checked = -math.inf
        self._event: Event | None = None
        self._seen: tuple[int, int] | None = None  # (mtime_ns, size) of the file last read
        self._lock = threading.Lock()
        self.version = 0  # bumped on every reload: what caches derived from the event compare against
        self.problem: str | None = None  # why the file on disk is not the version in force
        self.loaded_mtime = 0.0  # of the version in force
        self.loaded_text = ""

    def load(self) -> Event:
        event = self._event
        if event is not None and self._monotonic() - self._checked < self.check_every:
            return event
        return self.refresh()

    def refresh(self) -> Event:
        try:
            stat = self.path.stat()
            seen = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            seen = None
        with self._lock:
            if self._event is None or seen != self._seen:
                self._read(seen)
            assert self._event is not None
            self._checked = self._monotonic()
            return self._event

    def _read(self, seen: tuple[int, int] | None) -> None:
        try:
            text = self.path.read_text(encoding="utf-8") if seen else ""
            event = load_event(self.path) if not seen else parse_event(text, str(self.path))
        except (ConfigError, OSError, UnicodeDecodeError) as e:
            self._keep_last_good(seen, e)
            return
        if self.problem:
            log.warning("%s loads again; it is in force now", self.path)
        self._event, self._seen, self.problem = event, seen, None
        self.loaded_mtime, self.loaded_text = (seen[0] / 1e9 if seen else 0.0), text
        self.version += 1

    def _keep_last_good(self, seen: tuple[int, int] | None, error: Exception) -> None:
        problem = "; ".join(error.problems) if isinstance(error, ConfigError) else f"{self.path}: {error}"
        if self._event is None and self.fallback is not None:
            applied = self.fallback()
            if applied is not None:
                self._event, self.loaded_text = applied
                self.version += 1
        if self._event is None:
            raise error if isinstance(error, ConfigError) else ConfigError(problem)
        if problem != self.problem:
            log.error("%s; the last good version stays in force until the file is fixed", problem)
        self._seen, self.problem = seen, problem


class Runtime:
    def __init__(
        self, settings: Settings, store: Store | None = None, clock: Callable[[], datetime] = utc_now
    ):
        self.settings = settings
        self.clock = clock
        self.signer = LinkSigner(settings.secret_key.get_secret_value(), settings.public_url)
        self.event_file = EventFile(settings.event_file, self._applied_event)
        self._store = store
        self._owns_store = store is None
        self._local = threading.local()
        self._cache: dict = {}
        self._cache_version = 0
        self._lock = threading.Lock()
        # The SMS provider's recent answer time (seconds), kept by sending.worker to share out its pool.
        self.sms_answer_seconds = 0.2

    @property
    def store(self) -> Store:
        with self._lock:
            if self._store is None:
                from pipeline.store import open_store

                self._store = open_store(self.settings.effective_database_url)
            return self._store

    @property
    def event(self) -> Event:
        """The event file as it is now; a file that does not load raises ConfigError."""
        return self.event_file.load()

    def _applied_event(self) -> tuple[Event, str] | None:
        """The event as last applied (stored in the database), when the file has never loaded here."""
        from pipeline.store.snapshots import latest_applied

        try:
            with self.store.session() as session:
                snapshot = latest_applied(session)
        except Exception:  # no database either: the file's own error is the one to report
            return None
        if snapshot is None:
            return None
        source = f"the event as applied (sequence {snapshot.sequence})"
        return parse_event(snapshot.toml, source), snapshot.toml

    @cached_property
    def templates(self) -> jinja2.Environment:
        from pipeline.render import make_env

        # Templates are looked at for changes as often as the event file is (workers: once a second).
        return make_env(Path(self.settings.templates_dir), check_every=self.event_file.check_every)

    def cached(self, key, make, fresh: Callable[[Any], bool] | None = None):
        """A value derived from the current event (the .ics, an email per profile), made once per version
        of the file; made anew, too, when `fresh` says it no longer is (a template file was edited)."""
        self.event  # noqa: B018 - reloads the event when the file changed
        with self._lock:
            if self._cache_version != self.event_file.version:
                self._cache, self._cache_version = {}, self.event_file.version
            value = self._cache.get(key)
        if value is None or (fresh is not None and not fresh(value)):
            value = make()
            with self._lock:
                self._cache[key] = value
        return value

    @cached_property
    def send_pool(self) -> ThreadPoolExecutor:
        """Threads that wait on the SMS provider, SMS_CONCURRENCY of them: many requests in flight per
        process whatever the number of worker threads (each pool thread has its own channel)."""
        return ThreadPoolExecutor(max(1, self.settings.sms_concurrency), thread_name_prefix="send")

    def email_channel(self) -> EmailChannel:
        channel = getattr(self._local, "email", None)
        if channel is None:
            from pipeline.channels.factory import email_channel

            channel = self._local.email = email_channel(self.settings)
        return channel

    def sms_channel(self) -> SmsChannel:
        channel = getattr(self._local, "sms", None)
        if channel is None:
            from pipeline.channels.factory import sms_channel

            channel = self._local.sms = sms_channel(self.settings)
        return channel

    def status_callback_url(self) -> str | None:
        if self.settings.sms_backend != "twilio":
            return None
        return f"{self.settings.public_url.rstrip('/')}/twilio/status"

    def close(self) -> None:
        """Close the store if this runtime opened it; stop the send pool."""
        if "send_pool" in self.__dict__:
            self.send_pool.shutdown(wait=True)
            del self.__dict__["send_pool"]
        if self._owns_store and self._store is not None:
            self._store.close()
            self._store = None
