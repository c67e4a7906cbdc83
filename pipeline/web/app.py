"""The FastAPI app: shared state (store, event, link signer, clock, templates) and the routers."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from pipeline.links import LinkSigner
from pipeline.settings import Settings
from pipeline.store import Store, open_store
from pipeline.timetable import Event, load_event
from pipeline.web import admin, pages, twilio


def utc_now() -> datetime:
    return datetime.now(UTC)


class EventFile:
    """The event, re-read when its file changes (as in `Runtime.event`): organisers edit it live."""

    def __init__(self, path: Path):
        self._path = Path(path)
        self._event: Event | None = None
        self._mtime = -1.0
        self._lock = threading.Lock()

    def __call__(self) -> Event:
        mtime = self._path.stat().st_mtime
        with self._lock:
            if self._event is None or mtime != self._mtime:
                self._event = load_event(self._path)
                self._mtime = mtime
            return self._event


def create_app(
    settings: Settings, store: Store | None = None, event_loader: Callable[[], Event] | None = None
) -> FastAPI:
    """The web app. Tests pass their own store and may replace `app.state.clock`."""
    owns_store = store is None
    store = store or open_store(settings.effective_database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if owns_store:
            store.close()

    app = FastAPI(title="kallelse", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.settings = settings
    app.state.store = store
    app.state.event = event_loader or EventFile(settings.event_file)
    app.state.signer = LinkSigner(settings.secret_key.get_secret_value(), settings.public_url)
    app.state.clock = utc_now
    app.include_router(twilio.router)
    app.include_router(pages.router)
    app.include_router(admin.router)

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> str:
        return "ok"

    return app
