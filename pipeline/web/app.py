"""The FastAPI app and its routers. Everything a route needs comes from the one `Runtime` it is built
with (`request.app.state.runtime`: settings, store, event, templates, signer, clock)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from pipeline.runtime import Runtime
from pipeline.web import admin, pages, twilio
from pipeline.web.admin_auth import LoginLimiter


def create_app(rt: Runtime) -> FastAPI:
    """The web app. The caller owns `rt` (and closes it); tests may replace `rt.clock`."""
    app = FastAPI(title="kallelse", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.runtime = rt
    app.state.login_limiter = LoginLimiter(rt.settings.login_rate_limit)
    app.include_router(twilio.router)
    app.include_router(pages.router)
    app.include_router(admin.router)

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> str:
        return "ok"

    return app
