"""The composition root: what the CLI, the web app and the workers share.

One `Runtime` is built at each entry point from one `Settings` and passed down: settings, the store
(opened on first use, so `kallelse check` needs no database), the event (re-read when its file changes,
so every process follows an organiser's edits), templates, the link signer, the clock, and per-thread
channels (the twilio HTTP client and an SMTP connection are not thread-safe).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2

from pipeline.channels.base import EmailChannel, SmsChannel
from pipeline.links import LinkSigner
from pipeline.settings import Settings
from pipeline.timetable import Event, load_event

if TYPE_CHECKING:
    from pipeline.store import Store


def utc_now() -> datetime:
    return datetime.now(UTC)


class EventFile:
    """The event, re-read when its file changes: organisers edit it while everything runs."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._event: Event | None = None
        self._mtime = -1.0
        self._lock = threading.Lock()
        self.version = 0  # bumped on every reload: what caches derived from the event compare against

    def load(self) -> Event:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return load_event(self.path)  # raises the ConfigError that names the missing file
        with self._lock:
            if self._event is None or mtime != self._mtime:
                self._event = load_event(self.path)
                self._mtime = mtime
                self.version += 1
            return self._event


class Runtime:
    def __init__(
        self, settings: Settings, store: Store | None = None, clock: Callable[[], datetime] = utc_now
    ):
        self.settings = settings
        self.clock = clock
        self.signer = LinkSigner(settings.secret_key.get_secret_value(), settings.public_url)
        self.event_file = EventFile(settings.event_file)
        self._store = store
        self._owns_store = store is None
        self._local = threading.local()
        self._cache: dict = {}
        self._cache_version = 0
        self._lock = threading.Lock()

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

    @cached_property
    def templates(self) -> jinja2.Environment:
        from pipeline.render import make_env

        return make_env(Path(self.settings.templates_dir))

    def cached(self, key, make):
        """A value derived from the current event only (the .ics), made once per version of the file."""
        self.event  # noqa: B018 - reloads the event when the file changed
        with self._lock:
            if self._cache_version != self.event_file.version:
                self._cache, self._cache_version = {}, self.event_file.version
            value = self._cache.get(key)
        if value is None:
            value = make()
            with self._lock:
                self._cache[key] = value
        return value

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
        """Close the store if this runtime opened it."""
        if self._owns_store and self._store is not None:
            self._store.close()
            self._store = None
