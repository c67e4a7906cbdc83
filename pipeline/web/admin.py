"""The organisers' dashboard under /admin: who is coming, the plan, each delegate's history, failures,
unread replies, survey results and broadcasts. Server-rendered, Swedish, nothing loaded from elsewhere.

Every page but the login needs a session (see `admin_auth`): a browser's GET without one is redirected to
the login (303), anything else gets 401; every POST also needs the session's CSRF token.

Routes (all under /admin; tests/test_admin.py checks this list against the router):
    GET, POST /login; POST /logout         the login form (ADMIN_PASSWORD) and logging out
    GET /admin                             RSVP counts and the delegates, filtered by `?svar=yes`, no, none
    GET /plan                              the plan as a timeline by state, rule and local due time
    GET /delegates/{id}                    one delegate's messages, answers, replies and survey answers
    GET /failures; POST /failures/{row}/retry   failed and unknown rows; retry one
    GET /replies                           replies we could not read
    GET /survey, /survey.png               survey results and their chart
    GET /broadcast; POST /broadcast/preview, /broadcast/send; GET /broadcasts/{id}   a broadcast
"""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from pipeline.broadcast import (
    BroadcastError,
    BroadcastRequest,
    create_broadcast,
    make_request,
    preview_broadcast,
)
from pipeline.reports import survey_report, write_chart
from pipeline.settings import Settings
from pipeline.states import LedgerState
from pipeline.status import event_status
from pipeline.store import ledger
from pipeline.timetable import Event
from pipeline.web import admin_data
from pipeline.web.admin_auth import (
    Admin,
    AdminPost,
    AdminSession,
    csrf_matches,
    end_session,
    is_open,
    login_limiter,
    new_session,
    password_matches,
    read_session,
    safe_next,
    set_session_cookie,
)
from pipeline.web.deps import runtime
from pipeline.web.pages import HEADERS, templates

router = APIRouter(prefix="/admin")
S = LedgerState

# The personal pages' headers, plus same-origin images (the survey chart) and no framing (clickjacking).
ADMIN_HEADERS = HEADERS | {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
}
STATES = {
    S.PLANNED: "planerad",
    S.QUEUED: "i kö",
    S.SENDING: "skickas",
    S.SENT: "skickad",
    S.DELIVERED: "levererad",
    S.FAILED: "misslyckad",
    S.EXPIRED: "för sent",
    S.SKIPPED: "hoppas över",
    S.UNKNOWN: "okänd",
}
BUCKETS = {
    "upcoming": "Kommande",
    "sent": "Skickade",
    "failed": "Misslyckade",
    "expired": "För sent / hoppas över",
}
ANSWERS = {"yes": "ja", "no": "nej", "none": "inte svarat"}
CHANNELS = {"auto": "sms, annars e-post", "sms": "sms", "email": "e-post", "both": "sms och e-post"}
LANGUAGES = {"sv": "svenska", "en": "engelska"}


# -- logging in ---------------------------------------------------------------------------------

TOO_MANY_ATTEMPTS = "För många inloggningsförsök. Vänta en minut och försök igen."


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/admin") -> Response:
    session = read_session(request)
    if session is not None and session.logged_in:
        return RedirectResponse(safe_next(next), 303)
    return _login(request, next, None, 200)


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    password: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/admin",
) -> Response:
    settings: Settings = runtime(request).settings
    limiter = login_limiter(request)
    if not limiter.attempt(request):
        response = _login(request, next, TOO_MANY_ATTEMPTS, 429)
        response.headers["Retry-After"] = str(limiter.retry_after(request))
        return response
    if not is_open(settings):
        return _login(request, next, None, 403)
    if not csrf_matches(read_session(request), csrf):
        return _login(request, next, "Formuläret var för gammalt. Försök igen.", 403)
    if not password_matches(settings, password):
        return _login(request, next, "Fel lösenord.", 401)
    response = RedirectResponse(safe_next(next), 303)
    # A fresh CSRF token: a token planted before the login is worth nothing after it.
    set_session_cookie(request, response, new_session(logged_in=True))
    return response


def _login(request: Request, next: str, error: str | None, status: int) -> Response:
    """The login form. An anonymous session keeps its token, so two open login tabs both work."""
    session = read_session(request) or new_session(logged_in=False)
    session = session if not session.logged_in else new_session(logged_in=False)
    open_ = is_open(runtime(request).settings)
    html = _render(request, "admin_login.html", session, next=safe_next(next), error=error, open=open_)
    response = HTMLResponse(html, status_code=status, headers=ADMIN_HEADERS)
    set_session_cookie(request, response, session)
    return response


@router.post("/logout")
def logout(_session: AdminPost) -> Response:
    response = RedirectResponse("/admin/login", 303)
    end_session(response)
    return response


# -- overview, plan, delegates ------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def overview(request: Request, session: Admin, svar: str = "", q: str = "") -> HTMLResponse:
    answer = svar if svar in ANSWERS else ""
    search = q.strip()[:100]
    event = _event(request)
    with runtime(request).store.session() as db:
        status = event_status(db, event)
        people, matched = admin_data.delegates(db, answer or None, search)
    return _page(
        request,
        "admin_overview.html",
        session,
        status=status,
        people=people,
        answer=answer,
        search=search,
        matched=matched,
    )


@router.get("/plan", response_class=HTMLResponse)
def plan_page(request: Request, session: Admin) -> HTMLResponse:
    event = _event(request)
    with runtime(request).store.session() as db:
        status = event_status(db, event)
        groups = admin_data.timeline(db, event)
    return _page(request, "admin_plan.html", session, status=status, groups=groups)


@router.get("/delegates/{delegate_id}", response_class=HTMLResponse)
def delegate_page(request: Request, session: Admin, delegate_id: str) -> HTMLResponse:
    with runtime(request).store.session() as db:
        history = admin_data.history(db, delegate_id)
    if history is None:
        return _page(request, "admin_missing.html", session, 404, what=f"deltagaren {delegate_id}")
    return _page(request, "admin_delegate.html", session, h=history)


# -- failures and replies -----------------------------------------------------------------------


@router.get("/failures", response_class=HTMLResponse)
def failures_page(request: Request, session: Admin, retried: int = 0, refused: int = 0) -> HTMLResponse:
    event = _event(request)
    with runtime(request).store.session() as db:
        rows = admin_data.failures(db, event)
    now = runtime(request).clock()
    return _page(
        request, "admin_failures.html", session, rows=rows, now=now, retried=retried, refused=refused
    )


@router.post("/failures/{row_id}/retry")
def retry(request: Request, _session: AdminPost, row_id: int) -> Response:
    with runtime(request).store.session() as db:
        moved = ledger.retry_failed(db, row_id, runtime(request).clock())
    # Post/redirect/get: a reload of the result page must not post again.
    return RedirectResponse(f"/admin/failures?{'retried' if moved else 'refused'}={row_id}", 303)


@router.get("/replies", response_class=HTMLResponse)
def replies_page(request: Request, session: Admin) -> HTMLResponse:
    with runtime(request).store.session() as db:
        rows = admin_data.unread_replies(db)
    return _page(request, "admin_replies.html", session, rows=rows)


# -- survey -------------------------------------------------------------------------------------


@router.get("/survey", response_class=HTMLResponse)
def survey_page(request: Request, session: Admin) -> HTMLResponse:
    with runtime(request).store.session() as db:
        report = survey_report(db, _event(request))
    return _page(request, "admin_survey.html", session, report=report)


@router.get("/survey.png")
def survey_chart(request: Request, _session: Admin) -> Response:
    with runtime(request).store.session() as db:
        report = survey_report(db, _event(request))
    with tempfile.TemporaryDirectory() as folder:
        png = write_chart(report, Path(folder) / "survey.png").read_bytes()
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


# -- broadcasts ---------------------------------------------------------------------------------


def _broadcast_fields(
    to: Annotated[str, Form()] = "",
    template: Annotated[str, Form()] = "",
    text: Annotated[str, Form()] = "",
    subject: Annotated[str, Form()] = "",
    channel: Annotated[str, Form()] = "auto",
) -> dict[str, str]:
    """The broadcast form's fields, shared by the form, its preview and its confirmation."""
    return {"to": to, "template": template, "text": text, "subject": subject, "channel": channel}


BroadcastFields = Annotated[dict[str, str], Depends(_broadcast_fields)]


@router.get("/broadcast", response_class=HTMLResponse)
def broadcast_form(request: Request, session: Admin) -> HTMLResponse:
    return _broadcast_form(request, session, _broadcast_fields())


@router.post("/broadcast/preview", response_class=HTMLResponse)
def broadcast_preview(request: Request, session: AdminPost, form: BroadcastFields) -> HTMLResponse:
    rt, event = runtime(request), _event(request)
    try:
        wanted = _request(form, event)
        with rt.store.session() as db:
            preview = preview_broadcast(db, event, _message_env(request), rt.settings, wanted)
            earlier = ledger.states_of(db, event.event.id, f"broadcast:{preview.broadcast_id}")
    except BroadcastError as e:
        return _broadcast_form(request, session, form, str(e))
    people = len({d for d, _ in preview.recipients})
    return _page(
        request, "admin_broadcast_preview.html", session, form=form, p=preview, people=people, earlier=earlier
    )


@router.post("/broadcast/send")
def broadcast_send(
    request: Request, session: AdminPost, form: BroadcastFields, again: Annotated[str, Form()] = ""
) -> Response:
    rt, event = runtime(request), _event(request)
    try:
        wanted = _request(form, event)
        with rt.store.session() as db:
            created = create_broadcast(
                db, event, _message_env(request), rt.settings, wanted, rt.clock(), again=bool(again)
            )
    except BroadcastError as e:
        return _broadcast_form(request, session, form, str(e))
    return RedirectResponse(f"/admin/broadcasts/{created.id}?nya={created.new_rows}", 303)


@router.get("/broadcasts/{broadcast_id}", response_class=HTMLResponse)
def broadcast_result(request: Request, session: Admin, broadcast_id: str, nya: int = -1) -> HTMLResponse:
    event = _event(request)
    with runtime(request).store.session() as db:
        counts = ledger.states_of(db, event.event.id, f"broadcast:{broadcast_id}")
    if not counts:
        return _page(request, "admin_missing.html", session, 404, what=f"utskicket {broadcast_id}")
    return _page(request, "admin_broadcast_result.html", session, id=broadcast_id, counts=counts, new=nya)


def _request(form: dict[str, str], event: Event) -> BroadcastRequest:
    """The form as the library's request: a template, or free text for the `broadcast` template."""
    to = [part.strip() for part in form["to"].split("|") if part.strip()]
    text = form["text"] if form["text"].strip() or not form["template"] else None
    return make_request(
        to,
        event,
        text=text,
        template=form["template"] or None,
        subject=form["subject"].strip() or None,
        channel=form["channel"],
    )


def _broadcast_form(
    request: Request, session: AdminSession, form: dict[str, str], error: str | None = None
) -> HTMLResponse:
    event = _event(request)
    names = sorted({rule.template for rule in event.rules})
    segments = ["all", "attending", "not-responded", "declined"]
    segments += [f"stop:{s.id}" for s in event.stops] + [f"language:{code}" for code in LANGUAGES]
    context = {"form": form, "error": error, "template_names": names, "segments": segments}
    return _page(request, "admin_broadcast.html", session, 422 if error else 200, **context)


def _message_env(request: Request) -> jinja2.Environment:
    """The message templates, loaded once per runtime (jinja2 caches compiled templates in them)."""
    return runtime(request).templates


# -- rendering ----------------------------------------------------------------------------------


def _event(request: Request) -> Event:
    return runtime(request).event


def _page(
    request: Request, name: str, session: AdminSession, code: int = 200, **context: Any
) -> HTMLResponse:
    html = _render(request, name, session, **context)
    return HTMLResponse(html, status_code=code, headers=ADMIN_HEADERS)


def _render(request: Request, name: str, session: AdminSession, **context: Any) -> str:
    event = _event(request)

    def local(at: datetime | None) -> str:
        return at.astimezone(event.tz).strftime("%Y-%m-%d %H:%M") if at else ""

    return templates.get_template(name).render(
        lang="sv",
        event_name=event.event.name("sv"),
        path=request.url.path,
        csrf=session.csrf,
        logged_in=session.logged_in,
        local=local,
        states=STATES,
        buckets=BUCKETS,
        answers=ANSWERS,
        channels=CHANNELS,
        languages=LANGUAGES,
        **context,
    )
