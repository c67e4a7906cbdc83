"""The organisers' login: a signed session cookie that carries a CSRF token, and the gate on every page.

The session is stateless: itsdangerous signs `{"csrf": token, "who": fingerprint}` with SECRET_KEY, and
the cookie (path /admin, HttpOnly, SameSite=Lax, Secure over https) expires after `MAX_AGE`. The
fingerprint is an HMAC of ADMIN_PASSWORD, so changing the password logs everybody out; an empty
ADMIN_PASSWORD closes the dashboard. An anonymous session (no fingerprint) carries only the CSRF token the
login form needs. Logging in issues a fresh token, so a token planted before the login is worthless.

Login attempts are limited per client address (`LOGIN_RATE_LIMIT`, 10 a minute): past that, 429 with a
Swedish message and Retry-After, before the password is even compared.

Without a valid session, a browser's GET (one that accepts text/html) is sent to the login page (303);
everything else — a POST, a script, the chart image — gets 401. Every POST also needs the session's CSRF
token echoed in the form field `csrf`, else 403.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Form, HTTPException, Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from pipeline.settings import Settings
from pipeline.web.deps import runtime

COOKIE = "kallelse_admin"
COOKIE_PATH = "/admin"
MAX_AGE = 12 * 3600  # one working day on site; then log in again
_SALT = "kallelse-admin-session"


@dataclass(frozen=True)
class AdminSession:
    csrf: str
    logged_in: bool


def is_open(settings: Settings) -> bool:
    return bool(settings.admin_password.get_secret_value())


def password_matches(settings: Settings, given: str) -> bool:
    expected = settings.admin_password.get_secret_value()
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def _fingerprint(settings: Settings) -> str:
    password = settings.admin_password.get_secret_value()
    if not password:
        return ""
    key = settings.secret_key.get_secret_value().encode()
    return hmac.new(key, password.encode(), hashlib.sha256).hexdigest()[:32]


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret_key.get_secret_value(), salt=_SALT)


class LoginLimiter:
    """At most `rate` login attempts ("10/minute") per client address, in a moving window (`limits`).

    Counted in this process's memory: each web process keeps its own count, and a restart forgets it.
    Behind a reverse proxy the address is the one uvicorn takes from X-Forwarded-For (trusted from
    127.0.0.1 only, uvicorn's default)."""

    def __init__(self, rate: str):
        self.item: RateLimitItem = parse(rate)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def attempt(self, request: Request) -> bool:
        """Count one attempt; False when the address has used up its attempts."""
        address = request.client.host if request.client else "unknown"
        return self._limiter.hit(self.item, "admin-login", address)

    def retry_after(self, request: Request) -> int:
        """Seconds until the address may try again."""
        address = request.client.host if request.client else "unknown"
        reset, _ = self._limiter.get_window_stats(self.item, "admin-login", address)
        return max(1, int(reset - time.time()) + 1)


def login_limiter(request: Request) -> LoginLimiter:
    """The app's one limiter (made with the app, so each app counts on its own)."""
    return request.app.state.login_limiter


def read_session(request: Request) -> AdminSession | None:
    """The request's session, or None when there is none or it is forged, expired or malformed."""
    settings: Settings = runtime(request).settings
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        data = _serializer(settings).loads(raw, max_age=MAX_AGE)
    except BadSignature:  # SignatureExpired is one too
        return None
    if not isinstance(data, dict) or not isinstance(data.get("csrf"), str):
        return None
    fingerprint = _fingerprint(settings)
    logged_in = bool(fingerprint) and hmac.compare_digest(str(data.get("who", "")), fingerprint)
    return AdminSession(data["csrf"], logged_in)


def new_session(logged_in: bool) -> AdminSession:
    return AdminSession(secrets.token_urlsafe(32), logged_in)


def set_session_cookie(request: Request, response: Response, session: AdminSession) -> None:
    settings: Settings = runtime(request).settings
    who = _fingerprint(settings) if session.logged_in else ""
    value = _serializer(settings).dumps({"csrf": session.csrf, "who": who})
    response.set_cookie(
        COOKIE,
        value,
        max_age=MAX_AGE,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",  # behind a proxy: uvicorn reads X-Forwarded-Proto
    )


def end_session(response: Response) -> None:
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax")


def csrf_matches(session: AdminSession | None, token: str) -> bool:
    return session is not None and bool(token) and hmac.compare_digest(token.encode(), session.csrf.encode())


def safe_next(target: str) -> str:
    """Where to go after logging in: only a page of the dashboard, never another site (`//evil`)."""
    ok = target.startswith(COOKIE_PATH) and "\\" not in target and not target.startswith("//")
    return target if ok else COOKIE_PATH


def _wants_html(request: Request) -> bool:
    return request.method in ("GET", "HEAD") and "text/html" in request.headers.get("accept", "")


def require_admin(request: Request) -> AdminSession:
    """The logged-in session, else 303 to the login page (a browser's GET) or 401 (anything else)."""
    session = read_session(request)
    if session is not None and session.logged_in:
        return session
    if _wants_html(request):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise HTTPException(303, "log in first", headers={"Location": f"/admin/login?next={quote(target)}"})
    raise HTTPException(
        401, "log in at /admin/login", headers={"WWW-Authenticate": 'Cookie realm="kallelse"'}
    )


def require_csrf(
    session: Annotated[AdminSession, Depends(require_admin)], csrf: Annotated[str, Form()] = ""
) -> AdminSession:
    """A logged-in POST that carries the session's CSRF token; 403 otherwise (a forged cross-site form)."""
    if not csrf_matches(session, csrf):
        raise HTTPException(403, "the form is stale or forged: reload the page and try again")
    return session


Admin = Annotated[AdminSession, Depends(require_admin)]
AdminPost = Annotated[AdminSession, Depends(require_csrf)]
