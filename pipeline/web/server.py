"""Serving the web app with uvicorn: in a thread beside the scheduler (`kallelse run`) or on its own
(`kallelse web`, the Procfile's `web`)."""

from __future__ import annotations

import logging
import threading

import uvicorn

from pipeline.runtime import Runtime
from pipeline.web.app import create_app

log = logging.getLogger(__name__)
DEFAULT_HOST = "127.0.0.1"  # behind a reverse proxy; a platform that routes to the process wants 0.0.0.0


def _config(rt: Runtime, host: str | None) -> uvicorn.Config:
    host = host or rt.settings.web_host or DEFAULT_HOST
    # log_level "warning" also keeps uvicorn's access log (which shows /r/<token> paths) quiet.
    return uvicorn.Config(create_app(rt), host=host, port=rt.settings.port, log_level="warning")


class WebServer:
    """uvicorn in a thread. `start()` returns once it listens; `stop()` lets requests in flight finish."""

    def __init__(self, rt: Runtime, host: str | None = None):
        self._server = uvicorn.Server(_config(rt, host))
        self._thread = threading.Thread(target=self._server.run, name="kallelse-web", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        for _ in range(int(timeout * 20)):
            if self._server.started or not self._thread.is_alive():
                break
            self._thread.join(0.05)
        if not self._server.started:
            raise RuntimeError(f"the web app did not start on {self.url} (is the port in use?)")
        log.warning("web app listening on %s", self.url)

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def url(self) -> str:
        config = self._server.config
        return f"http://{config.host}:{config.port}"


def serve(rt: Runtime, host: str | None = None) -> None:
    """Run the web app in the foreground until Ctrl-C or SIGTERM (uvicorn handles the signals)."""
    config = _config(rt, host)
    log.warning("web app listening on http://%s:%d", config.host, config.port)
    uvicorn.Server(config).run()
