"""The pages behind the links in our messages: RSVP (`/r/<token>`), survey (`/s/<token>`), opt-out
(`/u/<token>`), and the public programme (`/program`, `?lang=en`) that SMS readers are sent.

A GET only shows a page: mail scanners and link previews open links, so only a button's POST records.
A link that cannot be read (tampered, expired, or for a delegate since removed) gets a page saying so and
whom to contact, and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from pipeline.inbound import OWN_WAY, InvalidRsvp, InvalidSurvey, record_web_rsvp_form, record_web_survey
from pipeline.links import OPTOUT_MAX_AGE, RSVP_MAX_AGE, SURVEY_MAX_AGE, InvalidLink
from pipeline.render import clock, day, day_span, phone, programme_view, tel
from pipeline.store.models import DelegateRow
from pipeline.store.responses import set_email_opt_out, set_sms_opt_out
from pipeline.timetable import Event
from pipeline.web.deps import runtime
from pipeline.web.texts import PROBLEMS, TEXTS

router = APIRouter()
templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
# Personal pages: never cached, the token never leaks as a referrer, nothing loads from elsewhere.
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "X-Robots-Tag": "noindex",
}


@dataclass(frozen=True)
class Person:
    """What a page shows of a delegate, read inside the request's session."""

    id: str
    first_name: str
    lang: str
    rsvp: str
    survey_answered: bool
    opted_out: bool = False
    dinner: bool | None = None
    stop: str | None = None
    dietary: str = ""
    comment: str = ""
    chosen: frozenset[str] = frozenset()  # fields the delegate set on the RSVP page


# -- RSVP ----------------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def home(request: Request) -> HTMLResponse:
    """Someone who types the bare address: the event's name, where delegates find their links, and the
    organisers' login."""
    return _page(request, "home.html", "sv")


@router.get("/r/{token}", response_class=HTMLResponse)
def rsvp_page(request: Request, token: str) -> HTMLResponse:
    person = _person(request, token, "rsvp", RSVP_MAX_AGE)
    if isinstance(person, HTMLResponse):
        return person
    return _rsvp_form(request, person, 200, None, _current_answers(person))


@router.post("/r/{token}", response_class=HTMLResponse)
async def rsvp_answer(request: Request, token: str) -> HTMLResponse:
    form = {key: value for key, value in (await request.form()).items() if isinstance(value, str)}
    return await run_in_threadpool(_rsvp_answer, request, token, form)


def _rsvp_answer(request: Request, token: str, form: dict[str, str]) -> HTMLResponse:
    person = _person(request, token, "rsvp", RSVP_MAX_AGE)
    if isinstance(person, HTMLResponse):
        return person
    rt = runtime(request)
    try:
        with rt.store.session() as session:
            answer = record_web_rsvp_form(session, rt.event, person.id, form, rt.clock())
    except InvalidRsvp as e:
        error = "rsvp_bad_answer" if "answer" in e.fields else "rsvp_bad_details"
        return _rsvp_form(request, person, 400, error, form)
    person = _person(request, token, "rsvp", RSVP_MAX_AGE)
    assert isinstance(person, Person)
    return _page(
        request,
        "done.html",
        person.lang,
        message=f"rsvp_done_{answer}",
        next_steps=_next_steps(rt.event, person) if answer == "yes" else [],
        again=request.url.path,
    )


def _rsvp_form(
    request: Request, person: Person, status: int, error: str | None, answers: dict[str, str]
) -> HTMLResponse:
    event = runtime(request).event
    view = programme_view(event, person.lang)
    dinner = next((i for d in view["days"] for i in d.items if i.kind == "dinner"), None)
    meet = next((i for d in view["days"] for i in d.items if i.kind != "bus"), None)
    return _page(
        request,
        "rsvp.html",
        person.lang,
        status,
        person=person,
        error=error,
        answers=answers,
        stops=view["stops"],
        dinner=dinner,
        meet=meet,
        clock=clock,
        day=day,
        own_way=OWN_WAY,
    )


def _current_answers(person: Person) -> dict[str, str]:
    """The form as the delegate last left it (or as the organiser's list has it)."""
    dinner = {True: "yes", False: "no"}.get(person.dinner, "") if person.dinner is not None else ""
    stop = person.stop or (OWN_WAY if "stop" in person.chosen else "")
    answer = person.rsvp if person.rsvp in ("yes", "no") else ""
    return {
        "answer": answer,
        "dinner": dinner,
        "stop": stop,
        "dietary": person.dietary,
        "comment": person.comment,
    }


def _next_steps(event: Event, person: Person) -> list[str]:
    """What comes next, as the confirmation says it: the practical letter, their pickup, dinner."""
    t, lang = TEXTS[person.lang], person.lang
    steps = [t["next_practical"]]
    if person.stop:
        stop = event.stop(person.stop)
        about = f"{t['about']} " if stop.approximate else ""
        steps.append(t["next_bus"].format(time=_at(event.local(stop.time), lang, about), stop=stop.name))
    else:
        meet = next(i for i in sorted(event.items, key=lambda i: i.start) if i.kind != "bus")
        steps.append(
            t["next_meet"].format(time=_at(event.local(meet.start), lang), place=event.event.venue.name)
        )
    if person.dinner:
        dinner = next((i for i in event.items if i.kind == "dinner"), None)
        if dinner is not None:
            steps.append(t["next_dinner"].format(time=_at(event.local(dinner.start), lang)))
    return steps


def _at(moment: datetime, lang: str, about: str = "") -> str:
    """ "torsdag 25 november ca kl. 09.30" / "on Thursday 25 November at about 09:30"."""
    if lang == "en":
        return f"on {day(moment, lang)} at {about}{clock(moment, lang)}"
    return f"{day(moment, lang)} {about}kl. {clock(moment, lang)}"


# -- the public programme ------------------------------------------------------------------------


@router.get("/program", response_class=HTMLResponse)
def programme_page(request: Request, lang: str = "sv") -> HTMLResponse:
    """The programme for anyone with the link (SMS readers have no email to read it in): no login."""
    lang = "en" if lang == "en" else "sv"
    view = programme_view(runtime(request).event, lang)
    return _page(request, "programme.html", lang, programme=view, clock=clock, day=day, phone=phone, tel=tel)


# -- survey --------------------------------------------------------------------------------------


@router.get("/s/{token}", response_class=HTMLResponse)
def survey_page(request: Request, token: str) -> HTMLResponse:
    person = _person(request, token, "survey", SURVEY_MAX_AGE)
    if isinstance(person, HTMLResponse):
        return person
    return _page(request, "survey.html", person.lang, person=person, invalid=[], answers={})


@router.post("/s/{token}", response_class=HTMLResponse)
async def survey_answer(request: Request, token: str) -> HTMLResponse:
    form = {key: value for key, value in (await request.form()).items() if isinstance(value, str)}
    return await run_in_threadpool(_survey_answer, request, token, form)


def _survey_answer(request: Request, token: str, form: dict[str, str]) -> HTMLResponse:
    person = _person(request, token, "survey", SURVEY_MAX_AGE)
    if isinstance(person, HTMLResponse):
        return person
    rt = runtime(request)
    try:
        with rt.store.session() as session:
            stored = record_web_survey(session, rt.event, person.id, form, rt.clock())
    except InvalidSurvey as e:
        return _survey_again(request, person, form, "survey_invalid", e.questions)
    if not stored:
        return _survey_again(request, person, form, "survey_empty", [])
    return _page(request, "done.html", person.lang, message="survey_done", again=None)


def _survey_again(
    request: Request, person: Person, form: dict[str, str], error: str, invalid: list[str]
) -> HTMLResponse:
    return _page(
        request, "survey.html", person.lang, 422, person=person, error=error, invalid=invalid, answers=form
    )


# -- opting out ---------------------------------------------------------------------------------


@router.get("/u/{token}", response_class=HTMLResponse)
def optout_page(request: Request, token: str) -> HTMLResponse:
    person = _person(request, token, "optout", OPTOUT_MAX_AGE)
    if isinstance(person, HTMLResponse):
        return person
    return _page(request, "optout.html", person.lang, person=person, opted_out=person.opted_out)


@router.post("/u/{token}", response_class=HTMLResponse)
def optout_confirm(request: Request, token: str) -> HTMLResponse:
    person = _person(request, token, "optout", OPTOUT_MAX_AGE)
    if isinstance(person, HTMLResponse):
        return person
    rt = runtime(request)
    with rt.store.session() as session:
        set_email_opt_out(session, person.id, True, rt.clock())
        set_sms_opt_out(session, person.id, True, rt.clock())
    return _page(request, "done.html", person.lang, message="optout_done", again=None)


# -- shared --------------------------------------------------------------------------------------


def _person(request: Request, token: str, purpose: str, max_age: int) -> Person | HTMLResponse:
    """The delegate a link is for, or the page to show instead."""
    rt = runtime(request)
    try:
        delegate_id = read_link(request, token, purpose, max_age)
    except InvalidLink as e:
        return _problem(request, e.reason, 410 if e.reason == "expired" else 400)
    with rt.store.session() as session:
        row = session.get(DelegateRow, delegate_id)
        if row is None:
            return _problem(request, "unknown", 404)
        lang = "en" if row.language == "en" else "sv"
        first_name = row.name.split()[0] if row.name.strip() else ""
        opted_out = row.email_opt_out and row.sms_opt_out
        chosen = frozenset(n for n in row.set_by_delegate.split(",") if n)
        return Person(
            row.id,
            first_name,
            lang,
            row.rsvp,
            row.survey_answered,
            opted_out,
            row.dinner,
            row.stop,
            row.dietary,
            row.comment,
            chosen,
        )


def read_link(request: Request, token: str, purpose: str, max_age: int) -> str:
    """Read a token as of the app's clock. The signer measures age on the real clock, so the difference
    between the two moves the limit: a test clock 61 days ahead sees a 60-day link as expired."""
    rt = runtime(request)
    skew = (rt.clock() - datetime.now(UTC)).total_seconds()
    return str(rt.signer.read(token, purpose, int(max_age - skew)))


def _problem(request: Request, reason: str, status: int) -> HTMLResponse:
    names = {code: runtime(request).event.event.name(code) for code in ("sv", "en")}
    return _page(request, "problem.html", "sv", status, problem=PROBLEMS[reason], names=names)


def _page(request: Request, name: str, lang: str, status: int = 200, **context: Any) -> HTMLResponse:
    event: Event = runtime(request).event
    context.setdefault("error", None)
    context.setdefault("next_steps", [])
    html = templates.get_template(name).render(
        lang=lang, t=TEXTS[lang], texts=TEXTS, ev=_event_view(event, lang), contact=_contact(event), **context
    )
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def _event_view(event: Event, lang: str) -> dict[str, Any]:
    meta = event.event
    return {
        "name": meta.name(lang),
        "dates": day_span(meta.start.date(), meta.end.date(), lang),
        "place": f"{meta.venue.name}, {meta.venue.city}",
        "venue": meta.venue.name,
        "deadline": day(meta.rsvp_deadline.date(), lang),
        "survey": event.survey,
    }


def _contact(event: Event) -> dict[str, Any]:
    duty = event.duty_contact
    digits = "".join(c for c in phone(duty.phone, "en") if c.isdigit() or c == "+")
    return {"name": duty.name, "role": duty.role, "phone": duty.phone, "tel": digits, "email": duty.email}
