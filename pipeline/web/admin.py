"""The organisers' dashboard under /admin: who is coming, the plan, each delegate's history, failures,
unread replies, survey results and broadcasts. Server-rendered, Swedish, nothing loaded from elsewhere.

Every page but the login needs a session (see `admin_auth`): a browser's GET without one is redirected to
the login (303), anything else gets 401; every POST also needs the session's CSRF token.

Routes (all under /admin; tests/test_admin.py checks this list against the router):
    GET, POST /login; POST /logout         the login form (ADMIN_PASSWORD) and logging out
    GET /admin                             RSVP counts, the day's lists, replies waiting, and the delegates
                                           (`?svar=yes|no|none&hallplats=<stop>|-&roll=<role>&middag=yes|no&q=`)
    GET /stops/{id}, /dinner               who boards at a stop (printable), who eats dinner
    GET /plan                              the plan as a timeline by state, rule and local due time
    GET /delegates/{id}                    one delegate's messages, answers, replies and survey answers
    GET /failures; POST /failures/{row}/retry   failed and unknown rows; retry one
    GET /replies                           replies that need a person; POST /replies/{id}/handled,
                                           /replies/{id}/rsvp (JA/NEJ), /replies/{id}/answer (an SMS)
    GET /survey, /survey.png               survey results and their chart
    GET /broadcast; POST /broadcast/preview, /broadcast/send; GET /broadcasts/{id}   a broadcast
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import product
from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from pipeline import charts
from pipeline.broadcast import (
    BroadcastError,
    BroadcastRequest,
    Preview,
    create_broadcast,
    make_request,
    preview_broadcast,
)
from pipeline.planner import send_key
from pipeline.preview import Planned, show
from pipeline.render import message_template, phone, short_when
from pipeline.reports import survey_report, write_chart
from pipeline.sending import send_batch_in_background
from pipeline.settings import Settings
from pipeline.states import ATTENTION_STATES, PENDING_STATES
from pipeline.status import event_status
from pipeline.store import ledger
from pipeline.store.leases import heartbeat
from pipeline.store.models import DelegateRow, InboundRow, LedgerRow
from pipeline.store.people import as_fields, cancel_delegate, load_delegates, record_rsvp, save_one
from pipeline.store.responses import (
    count_replies_needing_a_person,
    mark_reply_handled,
    replies_needing_a_person,
)
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
from pipeline.web.labels import ANSWERS, ROLES, STATES, words
from pipeline.web.pages import HEADERS, templates

router = APIRouter(prefix="/admin")

# The personal pages' headers, plus same-origin images (the survey chart) and no framing (clickjacking).
ADMIN_HEADERS = HEADERS | {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
}
BUCKETS = {
    "upcoming": "Kommande",
    "sent": "Skickade",
    "failed": "Misslyckade",
    "expired": "För sent / hoppas över",
}


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
def overview(
    request: Request,
    session: Admin,
    svar: str = "",
    hallplats: str = "",
    roll: str = "",
    middag: str = "",
    q: str = "",
) -> HTMLResponse:
    event = _event(request)
    filters = admin_data.Filters(
        answer=svar if svar in ANSWERS else "",
        stop=hallplats if hallplats == "-" or hallplats in {s.id for s in event.stops} else "",
        role=roll.strip()[:50],
        dinner=middag if middag in ("yes", "no") else "",
        search=q.strip()[:100],
    )
    with runtime(request).store.session() as db:
        status = event_status(db, event)
        people, matched = admin_data.delegates(db, filters)
        waiting = count_replies_needing_a_person(db, event.days)
        day = admin_data.day_counts(db)
        role_codes = admin_data.roles(db)
    context: dict[str, Any] = {"status": status, "people": people, "f": filters, "matched": matched}
    context["waiting"] = waiting
    context |= {"day": day, "role_codes": role_codes}
    return _page(request, "admin_overview.html", session, **context)


# -- lists for the day ----------------------------------------------------------------------------


@router.get("/stops/{stop_id}", response_class=HTMLResponse)
def stop_page(request: Request, session: Admin, stop_id: str) -> HTMLResponse:
    """Who boards at one stop; prints on one sheet for whoever stands at the bus door."""
    event = _event(request)
    stop = next((s for s in event.stops if s.id == stop_id), None)
    if stop is None:
        return _page(request, "admin_missing.html", session, 404, what=f"hållplatsen {stop_id}")
    with runtime(request).store.session() as db:
        riders = admin_data.stop_list(db, event, stop_id)
    return _page(request, "admin_stop.html", session, stop=stop, list=riders)


@router.get("/dinner", response_class=HTMLResponse)
def dinner_page(request: Request, session: Admin) -> HTMLResponse:
    with runtime(request).store.session() as db:
        dinner = admin_data.dinner_list(db)
    return _page(request, "admin_dinner.html", session, dinner=dinner, item=_dinner_item(_event(request)))


def _dinner_item(event: Event):
    return next((i for i in event.items if i.kind == "dinner"), None)


@router.get("/plan", response_class=HTMLResponse)
def plan_page(request: Request, session: Admin) -> HTMLResponse:
    event = _event(request)
    with runtime(request).store.session() as db:
        status = event_status(db, event)
        groups = admin_data.timeline(db, event)
    return _page(request, "admin_plan.html", session, status=status, groups=groups)


@router.get("/delegates/new", response_class=HTMLResponse)
def new_delegate_form(request: Request, session: Admin) -> HTMLResponse:
    return _delegate_form(request, session, {"language": "sv", "role": "official"}, new=True)


@router.post("/delegates/new", response_class=HTMLResponse)
def new_delegate(request: Request, session: AdminPost, fields: DelegateFields) -> Response:
    return _save_delegate(request, session, fields, new=True)


@router.get("/delegates/{delegate_id}/edit", response_class=HTMLResponse)
def edit_delegate_form(request: Request, session: Admin, delegate_id: str) -> HTMLResponse:
    with runtime(request).store.session() as db:
        row = db.get(DelegateRow, delegate_id)
        values = as_fields(row) if row is not None else None
    if values is None:
        return _page(request, "admin_missing.html", session, 404, what=f"deltagaren {delegate_id}")
    return _delegate_form(request, session, values, new=False)


@router.post("/delegates/{delegate_id}/edit", response_class=HTMLResponse)
def edit_delegate(request: Request, session: AdminPost, delegate_id: str, fields: DelegateFields) -> Response:
    return _save_delegate(request, session, fields | {"id": delegate_id}, new=False)


@router.post("/delegates/{delegate_id}/cancel")
def cancel_delegate_route(request: Request, session: AdminPost, delegate_id: str) -> Response:
    """Avanmäld: their planned messages are stopped; what was sent stays on their page."""
    rt = runtime(request)
    with rt.store.session() as db:
        stopped = cancel_delegate(db, delegate_id, rt.clock())
    if stopped is None:
        return _page(request, "admin_missing.html", session, 404, what=f"deltagaren {delegate_id}")
    return RedirectResponse(f"/admin/delegates/{delegate_id}?sparat=avanmald", 303)


def _delegate_fields(
    id: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "",
    phone: Annotated[str, Form()] = "",
    language: Annotated[str, Form()] = "sv",
    organisation: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "",
    stop: Annotated[str, Form()] = "",
    dinner: Annotated[str, Form()] = "",
) -> dict[str, str]:
    values = {"id": id, "name": name, "email": email, "phone": phone, "language": language}
    return values | {"organisation": organisation, "role": role, "stop": stop, "dinner": dinner}


DelegateFields = Annotated[dict[str, str], Depends(_delegate_fields)]
FIELD_NAMES = {
    "id": "Id",
    "name": "Namn",
    "email": "E-post",
    "phone": "Telefon",
    "language": "Språk",
    "organisation": "Organisation",
    "role": "Roll",
    "stop": "Buss",
    "dinner": "Middag",
}


def _save_delegate(request: Request, session: AdminSession, fields: dict[str, str], *, new: bool) -> Response:
    rt, event = runtime(request), _event(request)
    stops = {s.id for s in event.stops}
    with rt.store.session() as db:
        problems = save_one(db, fields, stops, rt.clock(), "formuläret", new=new)
        if problems:
            db.rollback()
    if problems:
        return _delegate_form(
            request, session, fields, new=new, problems=_fields_in_swedish(problems), code=422
        )
    return RedirectResponse(f"/admin/delegates/{fields['id']}?sparat={'ny' if new else 'uppgifter'}", 303)


def _fields_in_swedish(problems: list[str]) -> list[str]:
    """ "formuläret: email: 'x@' is not a valid …" → "E-post: 'x@' is not a valid …" (the column in
    Swedish; the reason as the import words it)."""
    out = []
    for problem in problems:
        _, _, rest = problem.partition(": ")
        column, _, reason = rest.partition(": ")
        out.append(f"{FIELD_NAMES.get(column, column)}: {reason}" if reason else problem)
    return out


def _delegate_form(
    request: Request,
    session: AdminSession,
    values: dict[str, str],
    *,
    new: bool,
    problems: list[str] | None = None,
    code: int = 200,
) -> HTMLResponse:
    context: dict[str, Any] = {"values": values, "new": new, "problems": problems or []}
    return _page(request, "admin_delegate_form.html", session, code, field_names=FIELD_NAMES, **context)


@router.get("/delegates/{delegate_id}", response_class=HTMLResponse)
def delegate_page(request: Request, session: Admin, delegate_id: str, sparat: str = "") -> HTMLResponse:
    with runtime(request).store.session() as db:
        history = admin_data.history(db, delegate_id)
    if history is None:
        return _page(request, "admin_missing.html", session, 404, what=f"deltagaren {delegate_id}")
    saved = SAVED.get(sparat, "")
    return _page(request, "admin_delegate.html", session, h=history, saved=saved)


SAVED = {
    "svar": "Svaret är registrerat.",
    "uppgifter": "Uppgifterna är sparade.",
    "avanmald": "Deltagaren är avanmäld: planerade meddelanden är stoppade.",
    "ny": "Deltagaren är tillagd.",
    "epost": "Meddelandet skickas nu med e-post.",
}


@router.get("/messages/{row_id}", response_class=HTMLResponse)
def message_page(request: Request, session: Admin, row_id: int) -> HTMLResponse:
    """One ledger row as the delegate sees (or saw) it: rendered now from the same templates."""
    event = _event(request)
    with runtime(request).store.session() as db:
        row = db.get(LedgerRow, row_id)
        people = load_delegates(db, [row.delegate_id]) if row is not None else []
    if row is None or not people:
        return _page(request, "admin_missing.html", session, 404, what=f"meddelandet {row_id}")
    planned = Planned(row.key, row.rule, row.channel, row.due_at, row.state, row.payload)
    links = runtime(request).signer.links_for(people[0].id)
    shown = show(_message_env(request), event, people[0], planned, links)
    return _page(request, "admin_message.html", session, m=shown, row=row, d=people[0])


@router.get("/messages/{row_id}/html")
def message_html(request: Request, session: Admin, row_id: int) -> Response:
    """An email's HTML part on its own, as the mail program shows it: nothing it links may load."""
    rt, event = runtime(request), _event(request)
    with rt.store.session() as db:
        row = db.get(LedgerRow, row_id)
        people = load_delegates(db, [row.delegate_id]) if row is not None else []
    if row is None or not people or row.channel != "email":
        return _page(request, "admin_missing.html", session, 404, what=f"e-postmeddelandet {row_id}")
    planned = Planned(row.key, row.rule, row.channel, row.due_at, row.state, row.payload)
    shown = show(rt.templates, event, people[0], planned, rt.signer.links_for(people[0].id))
    headers = ADMIN_HEADERS | {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"}
    return HTMLResponse(shown.html or shown.problem, headers=headers)


@router.post("/delegates/{delegate_id}/rsvp")
def delegate_rsvp(
    request: Request,
    session: AdminPost,
    delegate_id: str,
    answer: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
) -> Response:
    """An answer given by phone or in the corridor, recorded as the organiser's."""
    with runtime(request).store.session() as db:
        if db.get(DelegateRow, delegate_id) is None or answer not in ("yes", "no"):
            return _page(request, "admin_missing.html", session, 404, what=f"deltagaren {delegate_id}")
        record_rsvp(db, delegate_id, answer, "organiser", runtime(request).clock(), note=note[:200])
    return RedirectResponse(f"/admin/delegates/{delegate_id}?sparat=svar", 303)


@router.post("/messages/{row_id}/email")
def message_by_email(request: Request, session: AdminPost, row_id: int) -> Response:
    """A failed SMS (a landline, a number that is wrong): the same message again, by email, now."""
    rt, event = runtime(request), _event(request)
    now = rt.clock()
    with rt.store.session() as db:
        row = db.get(LedgerRow, row_id)
        people = load_delegates(db, [row.delegate_id]) if row is not None else []
        stale = row is not None and row.expires_at is not None and row.expires_at <= now
        if row is None or stale or row.state not in ATTENTION_STATES or not people or not people[0].email:
            return RedirectResponse(f"/admin/failures?refused={row_id}", 303)
        message = _by_email(event, row, now)
        ledger.add_payload_messages(db, event.event.id, [message], now)
        rule = message.rule
    _send_soon(request, rule)
    return RedirectResponse(f"/admin/delegates/{row.delegate_id}?sparat=epost", 303)


def _by_email(event: Event, row: LedgerRow, now: datetime) -> ledger.PayloadMessage:
    """The row's message as an email of its own (rule `resend:<row id>`), valid as long as the original."""
    template, extra = message_template(event, row.rule, row.payload)
    rule = f"resend:{row.id}"
    payload = json.dumps({"template": template, "extra": extra}, ensure_ascii=False)
    key = send_key(event.event.id, rule, "-", row.delegate_id, "email")
    return ledger.PayloadMessage(
        key, rule, row.delegate_id, "email", payload, row.expires_at or now + RESEND_VALIDITY
    )


RESEND_VALIDITY = timedelta(hours=12)  # as a broadcast: a message nobody could deliver in half a day is stale


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
def replies_page(request: Request, session: Admin, klar: int = 0) -> HTMLResponse:
    return _replies(request, session, done=klar)


def _replies(
    request: Request, session: AdminSession, done: int = 0, error: str = "", code: int = 200
) -> HTMLResponse:
    event = _event(request)
    with runtime(request).store.session() as db:
        rows = replies_needing_a_person(db, event.days, admin_data.LIST_LIMIT)
        handled = admin_data.recently_handled(db)
        phones = admin_data.phones_of(db, [row.delegate_id for row, _ in rows])
    context = {"rows": rows, "handled": handled, "phones": phones, "done": done, "error": error}
    return _page(request, "admin_replies.html", session, code, **context)


@router.post("/replies/{reply_id}/handled")
def reply_handled(request: Request, _session: AdminPost, reply_id: int) -> Response:
    with runtime(request).store.session() as db:
        mark_reply_handled(db, reply_id, "handled", runtime(request).clock())
    return RedirectResponse(f"/admin/replies?klar={reply_id}", 303)


@router.post("/replies/{reply_id}/rsvp")
def reply_rsvp(
    request: Request, session: AdminPost, reply_id: int, answer: Annotated[str, Form()] = ""
) -> Response:
    """The organiser read "Ja, men jag kommer med tåget" as a yes: record it, and the reply is done."""
    now = runtime(request).clock()
    with runtime(request).store.session() as db:
        reply = db.get(InboundRow, reply_id)
        if reply is None or reply.delegate_id is None or answer not in ("yes", "no"):
            return _page(request, "admin_missing.html", session, 404, what=f"svaret {reply_id}")
        record_rsvp(db, reply.delegate_id, answer, "organiser", now, note=reply.body[:200])
        mark_reply_handled(db, reply_id, "rsvp", now)
    return RedirectResponse(f"/admin/replies?klar={reply_id}", 303)


@router.post("/replies/{reply_id}/answer", response_class=HTMLResponse)
def reply_answer(
    request: Request, session: AdminPost, reply_id: int, text: Annotated[str, Form()] = ""
) -> Response:
    """Answer one reply by SMS: a broadcast to that one delegate, through the ledger like any other."""
    rt, event = runtime(request), _event(request)
    with rt.store.session() as db:
        reply = db.get(InboundRow, reply_id)
    if reply is None or reply.delegate_id is None:
        return _page(request, "admin_missing.html", session, 404, what=f"svaret {reply_id}")
    if not text.strip():
        return _replies(request, session, error="Skriv svaret innan du skickar det.", code=422)
    try:
        wanted = make_request([f"delegate:{reply.delegate_id}"], event, text=text, channel="sms")
        with rt.store.session() as db:
            created = create_broadcast(db, event, _message_env(request), rt.settings, wanted, rt.clock())
            mark_reply_handled(db, reply_id, "answered", rt.clock())
    except BroadcastError as e:
        return _replies(request, session, error=_swedish(str(e)), code=422)
    _send_soon(request, created.rule)
    return RedirectResponse(f"/admin/broadcasts/{created.id}?nya={created.new_rows}", 303)


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


# -- pictures -------------------------------------------------------------------------------------

CHART_WORDS = {
    "yes": "ja",
    "no": "nej",
    "deadline": "sista svarsdag",
    "total": "alla deltagare ({n})",
    "axis": "antal svar",
    "expected": "ska kliva på (svarat ja)",
    "texted": "har fått bussens sms",
    "months": "jan feb mar apr maj jun jul aug sep okt nov dec",
}


RSVP_CHART_SPAN = timedelta(weeks=8)  # invitations go out about seven weeks ahead


@router.get("/charts", response_class=HTMLResponse)
def charts_page(request: Request, session: Admin) -> HTMLResponse:
    return _page(request, "admin_charts.html", session)


@router.get("/charts/{name}.png")
def chart(request: Request, _session: Admin, name: str) -> Response:
    """One picture, drawn now from the database."""
    event = _event(request)
    with runtime(request).store.session() as db:
        if name == "rsvps":
            total = sum(event_status(db, event).rsvp.values())
            deadline, start = event.local(event.event.rsvp_deadline), event.local(event.event.start)
            window = (start - RSVP_CHART_SPAN, start)
            answers = admin_data.answer_times(db, event)
            png = charts.rsvp_chart(answers, window, deadline, total, CHART_WORDS)
        elif name == "messages":
            hours = [(short_when(h)[:-3], counts) for h, counts in admin_data.messages_per_hour(db, event)]
            words = {str(state): word for state, word in STATES.items()}
            png = charts.hourly_chart(hours, words, "Meddelanden per timme, efter läge")
        elif name == "stops":
            lists = [(s.name, admin_data.stop_list(db, event, s.id)) for s in event.stops]
            png = charts.stops_chart([(n, lst.count("yes"), lst.texted) for n, lst in lists], CHART_WORDS)
        else:
            return _page(request, "admin_missing.html", _session, 404, what=f"bilden {name}")
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


# -- broadcasts ---------------------------------------------------------------------------------


@dataclass
class BroadcastForm:
    """The broadcast form's fields, shared by the form, its preview and its confirmation."""

    groups: list[str] = field(default_factory=lambda: ["rsvp:yes"])  # ticked boxes: stop:…, role:…
    text: str = ""
    text_en: str = ""
    subject: str = ""
    channel: str = "auto"

    def hidden(self) -> list[tuple[str, str]]:
        """The fields as (name, value) pairs, to carry them through the preview unchanged."""
        fields = {
            "text": self.text,
            "text_en": self.text_en,
            "subject": self.subject,
            "channel": self.channel,
        }
        return [("grupp", g) for g in self.groups] + list(fields.items())


def _broadcast_fields(
    grupp: Annotated[list[str] | None, Form()] = None,
    text: Annotated[str, Form()] = "",
    text_en: Annotated[str, Form()] = "",
    subject: Annotated[str, Form()] = "",
    channel: Annotated[str, Form()] = "auto",
) -> BroadcastForm:
    return BroadcastForm(list(grupp or []), text, text_en, subject, channel)


BroadcastFields = Annotated[BroadcastForm, Depends(_broadcast_fields)]
_RSVP_SEGMENT = {"yes": "attending", "none": "not-responded", "no": "declined"}


def audience_of(groups: list[str]) -> list[str]:
    """Ticked boxes → `--to` segments: boxes of one kind are alternatives (OR), kinds combine (AND):
    "Bussen från hotellet" + "ja" is `attending,stop:hotel`."""
    kinds: dict[str, list[str]] = {"stop": [], "role": [], "rsvp": []}
    for group in groups:
        kind, _, value = group.partition(":")
        if kind in kinds and value:
            kinds[kind].append(_RSVP_SEGMENT.get(value, "") if kind == "rsvp" else f"{kind}:{value}")
    choices = [[c for c in values if c] or [""] for values in kinds.values()]
    segments = {",".join(sorted(t for t in combo if t)) for combo in product(*choices)}
    return sorted(seg or "all" for seg in segments)


@router.get("/broadcast", response_class=HTMLResponse)
def broadcast_form(request: Request, session: Admin) -> HTMLResponse:
    return _broadcast_form(request, session, BroadcastForm())


@router.post("/broadcast/preview", response_class=HTMLResponse)
def broadcast_preview(request: Request, session: AdminPost, form: BroadcastFields) -> HTMLResponse:
    rt, event = runtime(request), _event(request)
    try:
        wanted = _request(form, event)
        with rt.store.session() as db:
            preview = preview_broadcast(db, event, _message_env(request), rt.settings, wanted)
            earlier = ledger.states_of(db, event.event.id, f"broadcast:{preview.broadcast_id}")
            names = admin_data.names_of(db, [d for d, _ in preview.recipients])
    except BroadcastError as e:
        return _broadcast_form(request, session, form, str(e))
    problems = _problems_in_swedish(preview, event)
    context: dict[str, Any] = {"form": form, "p": preview, "people": names, "earlier": earlier}
    context["problems"] = problems
    context["who_sends"] = _who_sends(request)
    return _page(request, "admin_broadcast_preview.html", session, **context)


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
        return _broadcast_form(request, session, form, _swedish(str(e)))
    _send_soon(request, created.rule)
    return RedirectResponse(f"/admin/broadcasts/{created.id}?nya={created.new_rows}", 303)


@router.get("/broadcasts/{broadcast_id}", response_class=HTMLResponse)
def broadcast_result(request: Request, session: Admin, broadcast_id: str, nya: int = -1) -> HTMLResponse:
    event = _event(request)
    with runtime(request).store.session() as db:
        counts = ledger.states_of(db, event.event.id, f"broadcast:{broadcast_id}")
    if not counts:
        return _page(request, "admin_missing.html", session, 404, what=f"utskicket {broadcast_id}")
    pending = sum(counts.get(s, 0) for s in PENDING_STATES)
    context: dict[str, Any] = {"id": broadcast_id, "counts": counts, "new": nya, "pending": pending}
    return _page(request, "admin_broadcast_result.html", session, who_sends=_who_sends(request), **context)


def _request(form: BroadcastForm, event: Event) -> BroadcastRequest:
    """The form as the library's request. Mistakes are named in Swedish before the library sees them."""
    if not form.groups:
        raise BroadcastError("Kryssa i vilka som ska få meddelandet.")
    if not form.text.strip():
        raise BroadcastError("Skriv meddelandet på svenska.")
    return make_request(
        audience_of(form.groups),
        event,
        text=form.text,
        subject=form.subject.strip() or None,
        channel=form.channel if form.channel in CHANNEL_CHOICES else "auto",
        text_en=form.text_en,
    )


CHANNEL_CHOICES = ("auto", "sms", "email", "both")


def _problems_in_swedish(preview: Preview, event: Event) -> list[str]:
    problems = []
    limit = event.event.sms_max_segments
    if preview.sms_segments > limit:
        problems.append(f"Sms:et blir {preview.sms_segments} delar; högst {limit} är tillåtet. Korta texten.")
    if not preview.recipients:
        problems.append("Ingen av de valda kan ta emot meddelandet. Kryssa i fler grupper.")
    if preview.problems and not problems:
        problems.append("Meddelandet kan inte skickas: " + "; ".join(preview.problems))
    return problems


def _swedish(error: str) -> str:
    return error if error[:1].isupper() else f"Utskicket kunde inte skapas: {error}"


def _broadcast_form(
    request: Request, session: AdminSession, form: BroadcastForm, error: str | None = None
) -> HTMLResponse:
    event = _event(request)
    with runtime(request).store.session() as db:
        counts = admin_data.group_counts(db)
    stops = [(f"stop:{s.id}", s.bus_label("sv"), counts.get(f"stop:{s.id}", 0)) for s in event.stops]
    roles = [(f"role:{r}", ROLES.get(r, r), n) for r, n in _kinds(counts, "role")]
    answers = [(f"rsvp:{a}", ANSWERS[a], counts.get(f"rsvp:{a}", 0)) for a in ("yes", "none", "no")]
    boxes = [("Buss", stops), ("Roll", roles), ("Svar på inbjudan", answers)]
    context: dict[str, Any] = {"form": form, "error": error, "boxes": boxes, "who_sends": _who_sends(request)}
    return _page(request, "admin_broadcast.html", session, 422 if error else 200, **context)


def _kinds(counts: dict[str, int], kind: str) -> list[tuple[str, int]]:
    return sorted((k.split(":", 1)[1], n) for k, n in counts.items() if k.startswith(f"{kind}:"))


# -- sending from the dashboard -------------------------------------------------------------------


def _who_sends(request: Request) -> str:
    """ "here": this process delivers at once (no BROKER_URL); "workers": the broker's workers do, and a
    scheduler's heartbeat is fresh; "nobody": a broker, but no scheduler has been heard from lately."""
    rt = runtime(request)
    if not rt.settings.broker_url:
        return "here"
    with rt.store.session() as db:
        beat = heartbeat(db)
    return "workers" if beat is not None and beat.expires_at > rt.clock() else "nobody"


def _send_soon(request: Request, rule: str) -> None:
    """Deliver a batch created on the dashboard now, even when `kallelse web` is the only process."""
    send_batch_in_background(runtime(request), _event(request).event.id, rule)


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
        if at is None:
            return ""
        at = at.astimezone(event.tz)
        return short_when(at, year=at.year != event.event.start.year)

    return templates.get_template(name).render(
        lang="sv",
        event_name=event.event.name("sv"),
        path=request.url.path,
        csrf=session.csrf,
        logged_in=session.logged_in,
        event_file_problem=runtime(request).event_file.problem,
        local=local,
        buckets=BUCKETS,
        event=event,
        phone=phone,
        **words(event),
        **context,
    )
