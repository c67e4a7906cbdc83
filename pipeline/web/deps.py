"""What a route gets from the app it runs in: the one `Runtime` (settings, store, event, templates, signer,
clock) that `create_app` was built with."""

from __future__ import annotations

from fastapi import Request

from pipeline.runtime import Runtime


def runtime(request: Request) -> Runtime:
    return request.app.state.runtime
