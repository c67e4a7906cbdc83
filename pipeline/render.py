"""Render messages: jinja2 templates for email and SMS, and the check of every template.

SMS counting lives in `pipeline/sms.py`, the calendar file in `pipeline/ics.py`.

Pure apart from reading template files. Templates live in `templates/<lang>/<name>.subject.txt`, `.txt`,
`.html` (email) and `.sms.txt` (SMS); HTML parts extend the shared `templates/base.html`.

Templates see local, aware datetimes only (the context builder converts them) and format them with the
filters below: `{{ at|clock }}` gives "09.00" in Swedish and "09:00" in English, `{{ at|day }}` "torsdag 25
november" / "Thursday 25 November", `{{ phone|phone }}` a readable number.

SMS text is written like a short paragraph: lines of a template are joined with one space and a blank
line makes a real line break, so templates can stay readable while texts stay inside one segment.
"""

from __future__ import annotations

import contextvars
import dataclasses
import json
import re
import secrets
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
import phonenumbers
from jinja2 import nodes

from pipeline.channels.base import Attachment, EmailMessage, SmsMessage
from pipeline.delegates import Delegate
from pipeline.links import LINK_NAMES
from pipeline.sms import one_line, sms_segments, sms_text
from pipeline.timetable import Contact, Event, Item, Language, Rule, Stop, Text

LANGUAGES: tuple[Language, ...] = ("sv", "en")

# -- local times in words ------------------------------------------------------------------------

_DAYS = {
    "sv": ("måndag", "tisdag", "onsdag", "torsdag", "fredag", "lördag", "söndag"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
}
_SHORT_DAYS = {
    "sv": ("mån", "tis", "ons", "tors", "fre", "lör", "sön"),
    "en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
}
_MONTHS = {
    "sv": (
        "januari",
        "februari",
        "mars",
        "april",
        "maj",
        "juni",
        "juli",
        "augusti",
        "september",
        "oktober",
        "november",
        "december",
    ),
    "en": (
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ),
}


def clock(at: datetime, lang: str = "sv") -> str:
    """ "09.00" in Swedish (the template writes "kl."), "09:00" in English."""
    sep = ":" if lang == "en" else "."
    return f"{at.hour:02d}{sep}{at.minute:02d}"


def day(at: date, lang: str = "sv") -> str:
    """ "torsdag 25 november" / "Thursday 25 November" (no year: messages are about this year)."""
    return f"{_DAYS[language_code(lang)][at.weekday()]} {at.day} {_MONTHS[language_code(lang)][at.month - 1]}"


def day_span(start: date, end: date, lang: str = "sv") -> str:
    """ "25–26 november 2021", or "30 november – 1 december 2021" across a month."""
    months = _MONTHS[language_code(lang)]
    if start == end:
        return f"{start.day} {months[start.month - 1]} {start.year}"
    if (start.year, start.month) == (end.year, end.month):
        return f"{start.day}–{end.day} {months[end.month - 1]} {end.year}"
    return f"{start.day} {months[start.month - 1]} – {end.day} {months[end.month - 1]} {end.year}"


def short_when(at: datetime, lang: str = "sv", *, year: bool = False) -> str:
    """ "tors 25 nov kl. 09.00" / "Thu 25 Nov 09:00": a time on a dashboard line or a list; with the
    year ("tors 1 jan 1970 kl. 01.00") for a time outside the event's year."""
    code = language_code(lang)
    weekday = _SHORT_DAYS[code][at.weekday()]
    month = _MONTHS[code][at.month - 1][:3] + (f" {at.year}" if year else "")
    if code == "en":
        return f"{weekday} {at.day} {month} {clock(at, lang)}"
    return f"{weekday} {at.day} {month} kl. {clock(at, lang)}"


def when(value: Any, lang: str = "sv", relative_to: Any = None) -> str:
    """A time in words; the day is left out when it is the same day as `relative_to`. Strings pass."""
    if not isinstance(value, datetime):
        return str(value)
    at = f"kl. {clock(value, lang)}" if lang != "en" else f"at {clock(value, lang)}"
    if isinstance(relative_to, datetime) and relative_to.date() == value.date():
        return at
    return f"{day(value, lang)} {at}"


def phone(number: str | None, lang: str = "sv") -> str:
    """Swedish readers get "070-919 71 35", others "+46 70 919 71 35" (they may be abroad)."""
    if not number:
        return ""
    return _phone(number, lang)


@lru_cache(maxsize=4096)
def _phone(number: str, lang: str) -> str:
    # An email shows the same few contact numbers ten times: parsing them was a third of its rendering.
    try:
        parsed = phonenumbers.parse(number, "SE")
    except phonenumbers.NumberParseException:
        return number  # show what the organiser wrote rather than nothing
    fmt = phonenumbers.PhoneNumberFormat
    national = lang != "en" and parsed.country_code == 46
    # Non-breaking spaces: a number split over two lines on a phone is misdialled (SMS gets plain ones).
    return phonenumbers.format_number(parsed, fmt.NATIONAL if national else fmt.INTERNATIONAL).replace(
        " ", NBSP
    )


def tel(number: str | None) -> str:
    """The number for a `tel:` link: "+46709197135"."""
    return "".join(c for c in phone(number, "en") if c.isdigit() or c == "+")


def in_room(session: Any, lang: str = "sv") -> str:
    """What follows a session's title: " i Sal Kåge", or ", lokalen meddelas senare" while unconfirmed."""
    if is_unconfirmed(session.room):
        return f", {session.room}"
    return f" {'in' if lang == 'en' else 'i'} {session.room}"


NBSP, NB_HYPHEN = "\u00a0", "\u2011"
# "KSO-er": an abbreviation with a Swedish ending must not break at its hyphen on a narrow screen.
_ABBREVIATION_ENDING = re.compile(r"\b([A-ZÅÄÖ]{2,})-([a-zåäö]{1,4})\b")


def keep_together(value: Any) -> Any:
    """For HTML output: abbreviation endings joined by a non-breaking hyphen."""
    if type(value) is str:  # Markup (equal to its str) keeps the uncached path: never mix the two
        return _kept_together(value)
    if isinstance(value, str):
        return _join_endings(value)
    return value


def _join_endings(value: str) -> str:
    if "://" in value:  # never touch a link: its token may match
        return value
    return _ABBREVIATION_ENDING.sub(lambda m: f"{m[1]}{NB_HYPHEN}{m[2]}", value)


# Every value an HTML part prints passes here; most are the event's own words, the same each time.
_kept_together = lru_cache(maxsize=4096)(_join_endings)


def language_code(lang: str) -> str:
    return lang if lang in LANGUAGES else "sv"


def _ctx_lang(ctx: jinja2.runtime.Context, lang: str | None) -> str:
    return lang or ctx.get("lang") or "sv"


class _CheckedLoader(jinja2.FileSystemLoader):
    """Looks at a template file for changes at most once every `check_every` seconds: jinja's own check
    is a stat() per render, and a worker renders hundreds of messages a second."""

    def __init__(self, templates_dir: Path, check_every: float):
        super().__init__(templates_dir)
        self.check_every = check_every

    def get_source(self, environment, template):
        source, filename, uptodate = super().get_source(environment, template)
        if not self.check_every or uptodate is None:
            return source, filename, uptodate
        checked = [time.monotonic()]

        def checked_uptodate() -> bool:
            now = time.monotonic()
            if now - checked[0] < self.check_every:
                return True
            checked[0] = now
            return uptodate()

        return source, filename, checked_uptodate


# Partials that print the event alone, and the only names they see: each is rendered once per version of
# the event file and language (its `days` and `stops` are those of `event_context`) and reused by every
# message that includes it. A partial that reads anything else fails (StrictUndefined), so `kallelse
# check` says so, instead of one delegate's value being shown to the next.
SHARED_PARTIALS: dict[str, tuple[str, ...]] = {
    "_programme.txt": ("days", "stops", "lang"),
    "_programme.html": ("days", "stops", "lang"),
}


class _Loader(_CheckedLoader):
    def load(self, environment, name, globals=None):
        # BaseLoader.load without a bytecode cache (we configure none), keeping the parse tree: whether the
        # template prints a delegate's own values and nothing more is read off the very source compiled.
        source, filename, uptodate = self.get_source(environment, name)
        tree = environment.parse(source, name, filename)
        code = environment.compile(tree, name, filename)
        template = environment.template_class.from_code(environment, code, globals or {}, uptodate)
        if name in SHARED_PARTIALS:
            template.root_render_func = _rendered_once(template, SHARED_PARTIALS[name])
        _PRINTS_PERSONAL_ONLY[template] = _prints_personal_only(tree)
        template.root_render_func = _recorded(template, template.root_render_func)
        return template


def _rendered_once(template: jinja2.Template, names: tuple[str, ...]) -> Callable[..., Iterable[str]]:
    """The partial's render function, made to render once per (days, stops, lang) objects and replay
    the text and the unconfirmed facts it showed. A new version of the partial's file is a new template,
    so a new cache."""
    render = template.root_render_func
    made: dict[tuple[int, ...], tuple[tuple[Any, ...], str, frozenset[str]]] = {}

    def root(context: jinja2.runtime.Context) -> Iterable[str]:
        values = tuple(context.get(name) for name in names)
        key = tuple(map(id, values))
        hit = made.get(key)
        # The values are kept with the text, so an id is never reused for other objects while cached.
        if hit is None or any(a is not b for a, b in zip(hit[0], values, strict=True)):
            own = template.new_context(dict(zip(names, values, strict=True)))
            text, shown = facts_shown(lambda: "".join(render(own)))
            if len(made) >= 32:  # old versions of the event: a worker runs for weeks
                made.clear()
            made[key] = hit = (values, text, frozenset(shown))
        seen = _shown.get()
        if seen is not None:
            seen.update(hit[2])
        yield hit[1]

    return root


def _recorded(
    template: jinja2.Template, render: Callable[..., Iterable[str]]
) -> Callable[..., Iterable[str]]:
    """The render function, noting the template in `_rendered_from` when someone listens (`EmailTemplate`
    wants every file an email came from: the main one, what it extends and includes)."""

    def root(context: jinja2.runtime.Context) -> Iterable[str]:
        seen = _rendered_from.get()
        if seen is not None:
            seen.append(template)
        yield from render(context)

    return root


_rendered_from: contextvars.ContextVar[list[jinja2.Template] | None] = contextvars.ContextVar(
    "rendered_from", default=None
)


def _finalize(html: bool, value: Any) -> Any:
    """What `{{ value }}` prints before escaping: in HTML, abbreviation endings kept together."""
    return keep_together(value) if html else value


def make_env(templates_dir: Path, check_every: float = 0.0) -> jinja2.Environment:
    """A jinja2 environment: missing variables fail, HTML parts are escaped, filters know the language.
    With `check_every` an edited template is picked up within that many seconds, not at once."""
    env = jinja2.Environment(
        loader=_Loader(templates_dir, check_every),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        finalize=jinja2.pass_context(lambda ctx, value: _finalize((ctx.name or "").endswith(".html"), value)),
    )
    # Filters take the language from the template's context unless one is passed explicitly.
    env.filters["clock"] = jinja2.pass_context(lambda ctx, at, lang=None: clock(at, _ctx_lang(ctx, lang)))
    env.filters["day"] = jinja2.pass_context(lambda ctx, at, lang=None: day(at, _ctx_lang(ctx, lang)))
    env.filters["phone"] = jinja2.pass_context(lambda ctx, n, lang=None: phone(n, _ctx_lang(ctx, lang)))
    env.filters["when"] = jinja2.pass_context(
        lambda ctx, value, relative_to=None, lang=None: when(value, _ctx_lang(ctx, lang), relative_to)
    )
    # jinja's `capitalize` and `lower` change every letter: "KSO-er" must stay as it is mid-sentence.
    env.filters["tel"] = tel
    env.filters["in_room"] = jinja2.pass_context(lambda ctx, s, lang=None: in_room(s, _ctx_lang(ctx, lang)))
    env.tests["unconfirmed"] = is_unconfirmed
    env.filters["upfirst"] = lambda s: s[:1].upper() + s[1:]
    env.filters["lowfirst"] = lambda s: s[:1].lower() + s[1:]
    return env


# -- facts not yet confirmed ----------------------------------------------------------------------

_TBA = {
    "address": {"sv": "mötesplatsen meddelas senare", "en": "meeting point to be announced"},
    "room": {"sv": "lokalen meddelas senare", "en": "room to be announced"},
    "place": {"sv": "platsen meddelas senare", "en": "place to be announced"},
}
# The facts a render showed unconfirmed, when someone is listening (`kallelse check`); else None.
_shown: contextvars.ContextVar[set[str] | None] = contextvars.ContextVar("unconfirmed_shown", default=None)


@dataclass(frozen=True)
class Unconfirmed:
    """A value the event file marks `tbc`: prints as "meddelas senare" and notes that it was shown."""

    fact: str  # "stops.airport.address", "items.separate.sessions.kso.room"
    text: str

    def __str__(self) -> str:
        seen = _shown.get()
        if seen is not None:
            seen.add(self.fact)
        return self.text

    def __html__(self) -> str:
        return str(markupsafe.escape(str(self)))


def is_unconfirmed(value: Any) -> bool:
    """The template test `x is unconfirmed`; asking counts as showing, since the answer is printed."""
    if isinstance(value, Unconfirmed):
        str(value)
        return True
    return False


def _fact(owner: Any, name: str, fact: str, lang: str) -> str | Unconfirmed:
    if owner.unconfirmed(name):
        return Unconfirmed(fact, _TBA[name][language_code(lang)])
    return getattr(owner, name)


def facts_shown(render: Callable[..., Any], *args: Any) -> tuple[Any, set[str]]:
    """Run `render(*args)` and return its result with the unconfirmed facts it showed."""
    seen: set[str] = set()
    token = _shown.set(seen)
    try:
        return render(*args), seen
    finally:
        _shown.reset(token)


# -- the context: what a template sees -----------------------------------------------------------


@dataclass(frozen=True)
class SpeakerView:
    name: str
    role: str  # "" when the programme gives none


@dataclass(frozen=True)
class SessionView:
    id: str
    title: str
    room: str | Unconfirmed
    start: datetime
    end: datetime
    note: str  # the breakout item's note ("Kaffe serveras när passet börjar.")


@dataclass(frozen=True)
class ItemView:
    id: str
    kind: str
    start: datetime
    end: datetime
    title: str
    place: str | Unconfirmed
    note: str
    speakers: tuple[SpeakerView, ...]
    sessions: tuple[SessionView, ...]


@dataclass(frozen=True)
class StopView:
    id: str
    name: str
    address: str | Unconfirmed
    time: datetime
    approximate: bool


@dataclass(frozen=True)
class ContactView:
    id: str
    name: str
    role: str
    email: str
    phone: str


@dataclass(frozen=True)
class DayView:
    date: date
    items: tuple[ItemView, ...]


@dataclass(frozen=True)
class QuestionView:
    id: str
    kind: str
    text: str


def item_view(event: Event, item: Item, lang: str) -> ItemView:
    start, end = event.local(item.start), event.local(item.end)
    note = item.note(lang) if item.note else ""
    return ItemView(
        id=item.id,
        kind=item.kind,
        start=start,
        end=end,
        title=item.title(lang),
        place=_fact(item, "place", f"items.{item.id}.place", lang),
        note=note,
        speakers=tuple(SpeakerView(p.name, p.role(lang) if p.role else "") for p in item.speakers),
        sessions=tuple(
            SessionView(
                s.id,
                s.title(lang),
                _fact(s, "room", f"items.{item.id}.sessions.{s.id}.room", lang),
                start,
                end,
                note,
            )
            for s in item.sessions
        ),
    )


def _stop_view(event: Event, stop: Stop, lang: str) -> StopView:
    address = _fact(stop, "address", f"stops.{stop.id}.address", lang)
    return StopView(stop.id, stop.name, address, event.local(stop.time), stop.approximate)


def _contact_view(contact: Contact, lang: str) -> ContactView:
    return ContactView(contact.id, contact.name, contact.role(lang), contact.email, contact.phone)


def group_by_day(items: Iterable[ItemView]) -> list[DayView]:
    by_date: dict[date, list[ItemView]] = {}
    for item in sorted(items, key=lambda i: i.start):
        by_date.setdefault(item.start.date(), []).append(item)
    return [DayView(d, tuple(its)) for d, its in by_date.items()]


def programme_view(event: Event, lang: str) -> dict[str, Any]:
    """The public programme (no delegate): days with their items, the bus stops, the contacts."""
    lang = language_code(lang)
    return {
        "days": group_by_day(item_view(event, i, lang) for i in event.items),
        "stops": [_stop_view(event, s, lang) for s in sorted(event.stops, key=lambda s: s.time)],
        "contacts": [_contact_view(c, lang) for c in event.contacts],
        "venue": event.event.venue,
    }


def _delegate_stop(event: Event, delegate: Delegate, lang: str) -> StopView | None:
    if not delegate.stop:
        return None
    stop = next((s for s in event.stops if s.id == delegate.stop), None)
    if stop is None:
        raise ValueError(f"delegate {delegate.id}: unknown stop {delegate.stop!r}")
    return _stop_view(event, stop, lang)


def _session(event: Event, items: list[ItemView], role: str) -> SessionView | None:
    # The day-2 breakout is found by kind, so a renamed item id does not silently drop rooms.
    breakout = next((i for i in items if i.kind == "breakout" and i.sessions), None)
    if breakout is None:
        return None
    session = event.session_for(breakout.id, role)
    return next((s for s in breakout.sessions if session and s.id == session.id), None)


def _localise(value: Any, event: Event, lang: str) -> Any:
    """Make caller-supplied values template-ready: local aware times, texts in the delegate's language."""
    if isinstance(value, datetime):
        return value.astimezone(event.tz) if value.tzinfo else event.local(value)
    if isinstance(value, Text):
        return value(lang)
    if isinstance(value, Mapping):
        return {k: _localise(v, event, lang) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_localise(v, event, lang) for v in value]
    return value


def event_context(event: Event, lang: str) -> dict[str, Any]:
    """The part of a template's context that depends only on the event and the language. A worker makes
    it once per version of the event file and language (`shared=`) instead of once per message: it is
    most of the cost of rendering a one-line SMS."""
    lang = language_code(lang)
    items = [item_view(event, i, lang) for i in event.items]
    start, end = event.local(event.event.start), event.local(event.event.end)
    return {
        "event": event,
        "event_name": event.event.name(lang),
        "network": event.event.network,
        "venue": event.event.venue,
        "start": start,
        "end": end,
        "dates": day_span(start.date(), end.date(), lang),
        "rsvp_deadline": event.local(event.event.rsvp_deadline),
        "lang": lang,
        "stops": [_stop_view(event, s, lang) for s in sorted(event.stops, key=lambda s: s.time)],
        "bus": next((i for i in items if i.kind == "bus"), None),
        # Those who skip the bus meet us at the first item after it (lunch on day 1).
        "meet": next((i for i in sorted(items, key=lambda i: i.start) if i.kind != "bus"), None),
        "dinner": next((i for i in items if i.kind == "dinner"), None),
        "duty": _contact_view(event.duty_contact, lang),
        "contacts": [_contact_view(c, lang) for c in event.contacts],
        "days": group_by_day(items),
        "survey": [QuestionView(q.id, q.kind, q.text(lang)) for q in event.survey],
        "_items": items,  # in the event file's order, for the delegate's session below
    }


def build_context(
    event: Event,
    delegate: Delegate,
    rule_id: str | None,
    links: Mapping[str, str],
    extra: Mapping[str, Any] | None = None,
    shared: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything a template needs, with times local to the event and texts in the delegate's language.

    `shared` is `event_context(event, delegate's language)` made beforehand; `links` may be lazy (a
    Mapping that signs a link when a template first reads it)."""
    lang = language_code(delegate.language)
    context = dict(shared if shared is not None else event_context(event, lang))
    items = context.pop("_items")
    context.update(
        {
            "rule_id": rule_id,
            "delegate": delegate,
            "name": delegate.name,
            "first_name": delegate.first_name,
            "stop": _delegate_stop(event, delegate, lang),
            "eats_dinner": delegate.dinner is True,  # dinner lines only for those who said they eat with us
            "session": _session(event, items, delegate.role),
            "links": links,
        }
    )
    context.update(_localise(dict(extra or {}), event, lang))
    return context


# -- messages -------------------------------------------------------------------------------------


# Templates whose emails carry the delegate's calendar (.ics).
ICS_TEMPLATES = frozenset({"invitation", "change_notice"})


def message_template(event: Event, rule: str, payload: str | None) -> tuple[str, dict]:
    """The template and extra values a ledger message is rendered with: its payload's (broadcasts, change
    notices) or its rule's. LookupError when the rule is no longer in the event file."""
    if payload:
        data = json.loads(payload)
        return data["template"], data.get("extra", {})
    found = next((r for r in event.rules if r.id == rule), None)
    if found is None:
        raise LookupError(f"rule {rule!r} is no longer in the event file")
    return found.template, {}


def template_path(lang: str, name: str, part: str) -> str:
    """The loader name of one part: part is "subject.txt", "txt", "html" or "sms.txt"."""
    return f"{lang}/{name}.{part}"


def _render(env: jinja2.Environment, path: str, context: Mapping[str, Any]) -> str:
    return env.get_template(path).render(context)


def render_email(
    env: jinja2.Environment,
    event: Event,
    delegate: Delegate,
    template: str,
    *,
    key: str,
    links: Mapping[str, str],
    extra: Mapping[str, Any] | None = None,
    ics: bytes | None = None,
    shared: Mapping[str, Any] | None = None,
) -> EmailMessage:
    """The three parts of `template` in the delegate's language, with the .ics attached when given."""
    made = email_template(env, event, template, email_profile(delegate), extra, shared)
    return made.message(delegate, key=key, links=links, ics=ics)


# -- one email for the many delegates of a profile ----------------------------------------------------

# What differs between delegates whose emails have one profile (`email_profile`). An email is rendered once
# per profile when its templates print these as they are (`{{ first_name }}`, `{{ links.rsvp_url }}`) and
# do nothing else with them: no filter, test, comparison, macro or captured block can then make the text
# depend on them in any other way, so filling them in gives what rendering for the delegate gives.
_PERSONAL = frozenset({"name", "first_name", "links", "delegate"})
_PRINTS_PERSONAL_ONLY: weakref.WeakKeyDictionary[jinja2.Template, bool] = weakref.WeakKeyDictionary()
# Nodes whose output becomes a value (filtered, assigned, passed to a caller) or is escaped otherwise
# (`{% autoescape %}`), and calls that print a block as a value: a delegate's name inside them could come
# out otherwise than `_fill` writes it.
_CAPTURES = (nodes.Macro, nodes.CallBlock, nodes.FilterBlock, nodes.AssignBlock, nodes.EvalContextModifier)
_BLOCK_CALLS = frozenset({"super", "self", "caller"})

EmailProfile = tuple[str, str | None, bool, str]


def email_profile(delegate: Delegate) -> EmailProfile:
    """All of a delegate an email's context depends on, apart from what templates may only print."""
    return (language_code(delegate.language), delegate.stop, delegate.dinner is True, delegate.role)


def _prints_personal_only(tree: nodes.Template) -> bool:
    """Does this template use a delegate's own values (`_PERSONAL`) only by printing them as they are?"""
    if any(True for _ in tree.find_all(_CAPTURES)):
        return False
    for call in tree.find_all(nodes.Call):
        called = call.node.node if isinstance(call.node, nodes.Getattr) else call.node
        if isinstance(called, nodes.Name) and called.name in _BLOCK_CALLS:
            return False
    outputs = [child for output in tree.find_all(nodes.Output) for child in output.nodes]
    printed = {id(name) for name in map(_hole_name, outputs) if name is not None}
    return all(id(n) in printed for n in tree.find_all(nodes.Name) if n.name in _PERSONAL)


def _hole_name(node: nodes.Node) -> nodes.Name | None:
    """The Name node of `{{ first_name }}`, `{{ name }}` or `{{ links.rsvp_url }}` (a link that exists)."""
    if isinstance(node, nodes.Name) and node.name in ("name", "first_name"):
        return node
    if isinstance(node, nodes.Getattr):
        link = node.attr
    elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        link = node.arg.value
    else:
        return None
    of = node.node
    return of if link in LINK_NAMES and isinstance(of, nodes.Name) and of.name == "links" else None


# A hole in a profile's text: private-use characters around this process's nonce, so no event text can
# look like one; nothing a template does to a printed value (escaping, keep_together) changes it.
_NONCE = secrets.token_hex(6)
_HOLE = re.compile(f"\ue000{_NONCE}:([a-z_.]+)\ue001")


def _hole(name: str) -> str:
    return f"\ue000{_NONCE}:{name}\ue001"


_HOLE_LINKS = {name: _hole(f"links.{name}") for name in LINK_NAMES}
_EMAIL_PARTS = ("subject.txt", "txt", "html")


@dataclass(frozen=True)
class EmailTemplate:
    """`template`'s email for every delegate of one profile. Rendered once with holes where a delegate's
    name and links go, `message` fills them in: the same message as rendering it for the delegate, at a
    fraction of the CPU (a worker sends the invitation to thousands with a handful of profiles). When a
    template does more with those values than print them, `parts` is None and each delegate is rendered
    in full."""

    env: jinja2.Environment
    event: Event
    template: str
    lang: str
    extra: Mapping[str, Any] | None
    shared: Mapping[str, Any] | None
    parts: tuple[tuple[str, ...], ...] | None  # per part: text, hole, text, …, text (`_HOLE.split`)
    sources: tuple[jinja2.Template, ...]  # every template file it was rendered from

    def message(
        self, delegate: Delegate, *, key: str, links: Mapping[str, str], ics: bytes | None = None
    ) -> EmailMessage:
        if not delegate.email:
            raise ValueError(f"delegate {delegate.id} has no email address")
        if self.parts is None:
            context = build_context(self.event, delegate, None, links, self.extra, self.shared)
            texts = [
                _render(self.env, template_path(self.lang, self.template, p), context) for p in _EMAIL_PARTS
            ]
        else:
            own = {"name": delegate.name, "first_name": delegate.first_name}

            def value(hole: str) -> Any:  # a missing link is jinja's StrictUndefined, as when rendered
                return self.env.getattr(links, hole[6:]) if hole.startswith("links.") else own[hole]

            texts = [
                _fill(parts, value, html=part == "html")
                for part, parts in zip(_EMAIL_PARTS, self.parts, strict=True)
            ]
        subject, text, html = texts
        return EmailMessage(
            key=key,
            to=delegate.email,
            to_name=delegate.name,
            subject=one_line(subject),
            text=text.strip() + "\n",
            html=html,
            attachments=(_ics_attachment(self.event, ics),) if ics is not None else (),
            headers=unsubscribe_headers(links),
        )

    def current(self) -> bool:
        """Are the template files it came from still those in force (an organiser may edit them)?"""
        return all(self.env.get_template(source.name) is source for source in self.sources if source.name)


def email_template(
    env: jinja2.Environment,
    event: Event,
    template: str,
    of: EmailProfile,
    extra: Mapping[str, Any] | None = None,
    shared: Mapping[str, Any] | None = None,
) -> EmailTemplate:
    """`template`'s email for the delegates of profile `of` (see `EmailTemplate`)."""
    lang = of[0]
    sources: list[jinja2.Template] = []
    try:
        texts = _rendered_with_holes(env, event, template, of, extra, shared, sources)
    except Exception:  # what the stand-in lacks, or a broken template: each delegate is rendered (and fails)
        texts = None
    parts = tuple(tuple(_HOLE.split(text)) for text in texts) if texts is not None else None
    return EmailTemplate(env, event, template, lang, extra, shared, parts, tuple(dict.fromkeys(sources)))


def _rendered_with_holes(
    env: jinja2.Environment,
    event: Event,
    template: str,
    of: EmailProfile,
    extra: Mapping[str, Any] | None,
    shared: Mapping[str, Any] | None,
    sources: list[jinja2.Template],
) -> list[str] | None:
    """The three parts rendered for a delegate who is nothing but the profile, with holes for what
    templates may print of a delegate's own; None when a file they came from (`sources`) does more."""
    lang, stop, dinner, role = of
    stand_in = _StandIn(id="", name=_hole("name"), language=lang, stop=stop, dinner=dinner, role=role)  # type: ignore[arg-type]
    context = build_context(event, stand_in, None, _HOLE_LINKS, extra, shared)
    texts, plain = [], True
    for part in _EMAIL_PARTS:
        seen: list[jinja2.Template] = []
        token = _rendered_from.set(seen)
        try:
            texts.append(_render(env, template_path(lang, template, part), context))
        finally:
            _rendered_from.reset(token)
            sources += seen
        html = part == "html"  # a hole prints as the part's own templates print: escaped in HTML only
        plain = plain and all(
            _PRINTS_PERSONAL_ONLY.get(t, False) and (t.name or "").endswith(".html") == html for t in seen
        )
    return texts if plain else None


@dataclass(frozen=True)
class _StandIn(Delegate):
    """A delegate who is nothing but a profile: holes for their name and first name."""

    @property
    def first_name(self) -> str:
        return _hole("first_name")


def _fill(parts: tuple[str, ...], value: Callable[[str], Any], *, html: bool) -> str:
    """A part's text with its holes filled in as `{{ value }}` prints them there."""
    out = list(parts)
    for i in range(1, len(out), 2):
        filled = value(out[i])
        out[i] = str(markupsafe.escape(_finalize(True, filled))) if html else str(filled)
    return "".join(out)


def unsubscribe_headers(links: Mapping[str, str]) -> dict[str, str]:
    """RFC 2369 + RFC 8058: the mail client's own "unsubscribe" button POSTs to our opt-out page."""
    if "optout_url" not in links:
        return {}
    return {
        "List-Unsubscribe": f"<{links['optout_url']}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def _ics_attachment(event: Event, ics: bytes) -> Attachment:
    # The METHOD inside the file must match the MIME parameter, or Outlook ignores the invitation.
    found = re.search(rb"^METHOD:(\w+)", ics, re.MULTILINE)
    method = found.group(1).decode() if found else "PUBLISH"
    return Attachment(f"{event.event.id}.ics", f"text/calendar; method={method}; charset=utf-8", ics)


def render_sms(
    env: jinja2.Environment,
    event: Event,
    delegate: Delegate,
    template: str,
    *,
    key: str,
    links: Mapping[str, str],
    extra: Mapping[str, Any] | None = None,
    status_callback: str | None = None,
    shared: Mapping[str, Any] | None = None,
) -> SmsMessage:
    """The SMS part of `template` in the delegate's language."""
    if not delegate.phone:
        raise ValueError(f"delegate {delegate.id} has no phone number")
    context = build_context(event, delegate, None, links, extra, shared)
    body = sms_text(_render(env, template_path(context["lang"], template, "sms.txt"), context))
    return SmsMessage(key=key, to=delegate.phone, body=body, status_callback=status_callback)


# -- checking every template ----------------------------------------------------------------------

_PARTS = {"email": ("subject.txt", "txt", "html"), "sms": ("sms.txt",)}


def check_templates(
    env: jinja2.Environment,
    event: Event,
    delegates: Iterable[Delegate],
    *,
    links: Mapping[str, str],
    prefix: str = "templates",
) -> list[str]:
    """Render every rule's templates in every language for every delegate; return the problems found.

    Each delegate is rendered in both languages (not just their own), so a later change of language
    cannot reveal a broken template. Templates must render for every delegate, not just the rule's
    audience: a delegate's stop or role may change after the plan was made.
    """
    people = list(delegates)
    problems: dict[str, None] = {}  # ordered and without repeats (two rules may share a template)
    for rule, lang, path in _rule_templates(event):
        if not _exists(env, path):
            problems[f"{prefix}/{path}: missing template file"] = None
            continue
        limit = rule.max_segments or event.event.sms_max_segments
        for delegate in people:
            as_lang = dataclasses.replace(delegate, language=lang)
            found = _check_one(env, event, rule.id, as_lang, path, links, limit)
            if found:
                problems[f"{prefix}/{path}: {found}"] = None
    return list(problems)


def _rule_templates(event: Event) -> Iterable[tuple[Rule, Language, str]]:
    for rule in event.rules:
        for channel in rule.channels:
            for lang in LANGUAGES:
                for part in _PARTS[channel]:
                    yield rule, lang, template_path(lang, rule.template, part)


def _exists(env: jinja2.Environment, path: str) -> bool:
    try:
        env.get_template(path)
    except jinja2.TemplateNotFound:
        return False
    except jinja2.TemplateSyntaxError:
        return True  # there, but broken: reported when rendered
    return True


def _check_one(
    env: jinja2.Environment,
    event: Event,
    rule_id: str,
    delegate: Delegate,
    path: str,
    links: Mapping[str, str],
    limit: int,
) -> str | None:
    try:
        text = _render(env, path, build_context(event, delegate, rule_id, links))
    except jinja2.TemplateSyntaxError as e:
        return f"line {e.lineno} of {e.name or path}: {e.message}"
    except (jinja2.TemplateError, ValueError) as e:
        return f"delegate {delegate.id}: {e}"
    if not path.endswith(".sms.txt"):
        return None
    seg = sms_segments(sms_text(text))
    if seg.segments <= limit:
        return None
    return (
        f"delegate {delegate.id}: {seg.segments} SMS segments ({seg.encoding}, {seg.units} units), "
        f"rule {rule_id!r} allows {limit}"
    )
