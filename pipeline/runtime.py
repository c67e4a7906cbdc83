"""What a worker needs to deliver one ledger row: settings, store, event, templates, channels, a clock.

Built once per process at an entry point. Channels are per thread (the twilio HTTP client and an SMTP
connection are not thread-safe). The event file is re-read when it changes, so workers follow edits.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pipeline.channels.base import EmailChannel, SmsChannel
from pipeline.links import LinkSigner
from pipeline.settings import Settings
from pipeline.store import Store, open_store
from pipeline.timetable import Event, load_event


def utc_now() -> datetime:
    return datetime.now(UTC)


class Runtime:
    def __init__(
        self, settings: Settings, store: Store | None = None, clock: Callable[[], datetime] = utc_now
    ):
        self.settings = settings
        self.store = store or open_store(settings.effective_database_url)
        self.clock = clock
        self.signer = LinkSigner(settings.secret_key.get_secret_value(), settings.public_url)
        self._event_path = Path(settings.event_file)
        self._event: Event | None = None
        self._event_mtime = -1.0
        self._local = threading.local()
        self._cache: dict = {}
        self._lock = threading.Lock()
        from pipeline.render import make_env

        self.templates = make_env(Path(settings.templates_dir))

    @property
    def event(self) -> Event:
        mtime = self._event_path.stat().st_mtime
        with self._lock:
            if self._event is None or mtime != self._event_mtime:
                self._event = load_event(self._event_path)
                self._event_mtime = mtime
                self._cache = {}
            return self._event

    def cached(self, key, make):
        """A value derived from the current event only (the .ics), made once per version of the file."""
        self.event  # noqa: B018 - reloads the event, and clears the cache, when the file changed
        value = self._cache.get(key)
        if value is None:
            value = self._cache[key] = make()
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
