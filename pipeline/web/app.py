"""The FastAPI app and its routers. Everything a route needs comes from the one `Runtime` it is built
with (`request.app.state.runtime`: settings, store, event, templates, signer, clock)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from pipeline.health import check_health, metrics_text
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

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        """200 when the database, the broker and the scheduler's heartbeat are fine; else 503 and why."""
        health = check_health(rt)
        body = {"ok": health.ok, **health.checks, "scheduler_tick_age_seconds": health.tick_age}
        return JSONResponse(body, status_code=200 if health.ok else 503)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(metrics_text(rt), media_type=CONTENT_TYPE_LATEST)

    return app
