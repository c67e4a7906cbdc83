"""The event as data: load and validate `config/event.toml` into frozen models.

Pure apart from `load_event`, which reads one file. Times in the file are local wall-clock times in the
event's time zone; `Event.local()` turns them into aware datetimes.
"""

from __future__ import annotations

import re
import tomllib
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.errors import ConfigError

Channel = Literal["email", "sms"]
Language = Literal["sv", "en"]
RsvpState = Literal["yes", "no", "none"]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MayBeUnconfirmed(Frozen):
    """A table whose `tbc` lists the fields not yet confirmed: messages say "meddelas senare" for them."""

    tbc: list[str] = Field(default_factory=list)
    confirmable: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _known_tbc_fields(self):
        for name in self.tbc:
            if name not in self.confirmable:
                allowed = ", ".join(self.confirmable)
                raise ValueError(f"tbc: {name!r} cannot be marked unconfirmed here (only {allowed})")
        return self

    def unconfirmed(self, name: str) -> bool:
        return name in self.tbc


class Text(Frozen):
    """A text in each delegate language."""

    sv: str
    en: str

    def __call__(self, language: str) -> str:
        return self.en if language == "en" else self.sv


class Person(Frozen):
    name: str
    role: Text | None = None


class Contact(Frozen):
    id: str
    name: str
    role: Text
    email: str = ""
    phone: str = ""  # as people write it: "070-919 71 35"


class Venue(Frozen):
    name: str
    address: str
    city: str


class Stop(MayBeUnconfirmed):
    """A place where the bus picks people up. `tbc = ["address"]`: the meeting point is not yet known."""

    confirmable = ("address",)
    id: str
    name: str
    address: str = ""
    time: datetime  # local
    approximate: bool = False  # "09.30 ca"
    label: Text | None = None  # what organisers call it: "Bussen från hotellet"

    def bus_label(self, language: str = "sv") -> str:
        if self.label is not None:
            return self.label(language)
        return f"The bus from {self.name}" if language == "en" else f"Bussen från {self.name}"


class Session(MayBeUnconfirmed):
    """One of parallel sessions inside an agenda item, each for some roles."""

    confirmable = ("room",)
    id: str
    title: Text
    roles: list[str]  # "*" matches every role not named by a sibling session
    room: str = ""


class Item(MayBeUnconfirmed):
    confirmable = ("place",)
    id: str
    kind: Literal[
        "bus", "pickup", "meal", "coffee", "welcome", "talk", "dialogue", "dinner", "breakout", "business"
    ]
    start: datetime  # local
    end: datetime  # local
    title: Text
    place: str = ""
    speakers: list[Person] = Field(default_factory=list)
    note: Text | None = None
    stops: list[str] = Field(default_factory=list)
    sessions: list[Session] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ends_after_start(self) -> Item:
        if self.end <= self.start:
            raise ValueError(
                f"item {self.id!r} ends ({self.end:%Y-%m-%d %H:%M}) before it starts "
                f"({self.start:%Y-%m-%d %H:%M})"
            )
        return self


class Audience(Frozen):
    """Who a rule is for. Every given field must match; an empty field matches everyone."""

    rsvp: list[RsvpState] = Field(default_factory=list)
    roles: list[str] = Field(default_factory=list)
    not_roles: list[str] = Field(default_factory=list)
    stops: list[str] = Field(default_factory=list)  # "*" means "has any stop"
    languages: list[Language] = Field(default_factory=list)
    dinner: bool | None = None
    survey_answered: bool | None = None


class Rule(Frozen):
    """One message of the communication plan."""

    id: str
    template: str
    channels: list[Channel]
    channel_mode: Literal["all", "first"] = "all"  # first: the first channel the delegate can receive
    anchor: (
        str  # event.start | event.end | rsvp_deadline | item:<id> | item:<id>.end | own_stop | <local time>
    )
    when: str = "at anchor"  # "30 minutes before", "1 day before at 16:00", "at anchor"
    until: str | None = None  # validity, relative to the anchor like `when`; None: until the event ends
    audience: Audience = Field(default_factory=Audience)
    quiet_hours: bool = True  # False: logistics texts that may go out at night
    max_segments: int | None = None
    # What organisers read instead of the id: `description.sv` / `description.en` (a plain string is
    # taken as both).
    description: Text | str = ""
    # What the message tells people, so a later change reaches those told: "*" (the whole programme),
    # "own_stop", "item:<id>", "stop:<id>". The rule's own anchor counts without being listed.
    mentions: list[str] = Field(default_factory=list)

    def label(self, language: str = "sv") -> str:
        """The rule's description in that language, or its id when it has none."""
        if isinstance(self.description, Text):
            return self.description(language)
        return self.description or self.id

    @field_validator("when", "until")
    @classmethod
    def _offset_parses(cls, value: str | None) -> str | None:
        if value is not None:
            parse_offset(value)
        return value


class QuietHours(Frozen):
    start: time
    end: time

    def contains(self, local: time) -> bool:
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


class SurveyQuestion(Frozen):
    id: str
    kind: Literal["rating", "text"]
    text: Text
    item: str | None = None  # for a rating of one session


class Meta(Frozen):
    id: str
    name: Text
    network: str
    timezone: str
    start: datetime
    end: datetime
    rsvp_deadline: datetime
    venue: Venue
    default_language: Language = "sv"
    sms_max_segments: int = 2
    duty_contact: str  # whom delegates call on the day

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory such as "Europe"
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as 'Europe/Stockholm')"
            ) from None
        return value


class Event(Frozen):
    event: Meta
    quiet_hours: QuietHours
    contacts: list[Contact]
    stops: list[Stop]
    items: list[Item]
    rules: list[Rule]
    survey: list[SurveyQuestion] = Field(default_factory=list)

    # -- lookups -------------------------------------------------------------------------------

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.event.timezone)

    def local(self, naive: datetime) -> datetime:
        """A wall-clock time of the event made aware (see `resolve_local` for DST gaps and folds)."""
        return resolve_local(naive, self.tz)

    def item(self, item_id: str) -> Item:
        return next(i for i in self.items if i.id == item_id)

    def stop(self, stop_id: str) -> Stop:
        return next(s for s in self.stops if s.id == stop_id)

    def rule(self, rule_id: str) -> Rule:
        return next(r for r in self.rules if r.id == rule_id)

    def contact(self, contact_id: str) -> Contact:
        return next(c for c in self.contacts if c.id == contact_id)

    @property
    def duty_contact(self) -> Contact:
        return self.contact(self.event.duty_contact)

    def session_for(self, item_id: str, role: str) -> Session | None:
        """The parallel session of `item_id` that a delegate with `role` belongs to."""
        sessions = self.item(item_id).sessions
        named = next((s for s in sessions if role in s.roles), None)
        return named or next((s for s in sessions if "*" in s.roles), None)

    @property
    def days(self) -> tuple[datetime, datetime]:
        """The event's days, local midnight to midnight: [first day 00:00, the day after the last)."""
        first = datetime.combine(self.event.start.date(), time())
        after = datetime.combine(self.event.end.date() + timedelta(days=1), time())
        return self.local(first), self.local(after)

    def bus_item(self) -> Item | None:
        return next((i for i in self.items if i.kind == "bus"), None)


# -- offsets ----------------------------------------------------------------------------------

_UNITS = {"minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400}
_OFFSET = re.compile(
    r"^\s*(?:(?P<at_anchor>at anchor|same day)"
    r"|(?P<n>\d+)\s+(?P<unit>minute|hour|day|week)s?\s+(?P<dir>before|after))"
    r"(?:\s+at\s+(?P<hh>\d{1,2})[:.](?P<mm>\d{2}))?\s*$"
)


class Offset(Frozen):
    """A parsed `when`/`until`: whole days move the local date, minutes and hours move the instant."""

    days: int = 0
    seconds: int = 0
    at: time | None = None


def parse_offset(text: str) -> Offset:
    m = _OFFSET.match(text)
    if not m:
        raise ValueError(
            f"cannot read {text!r}: write 'at anchor', 'same day at HH:MM' or "
            "'N minutes|hours|days|weeks before|after', optionally followed by 'at HH:MM'"
        )
    at = None
    if m["hh"] is not None:
        hh, mm = int(m["hh"]), int(m["mm"])
        if hh > 23 or mm > 59:
            raise ValueError(f"cannot read {text!r}: {hh}:{mm:02d} is not a time of day")
        at = time(hh, mm)
    if m["at_anchor"]:
        return Offset(at=at)
    sign = -1 if m["dir"] == "before" else 1
    n, unit = int(m["n"]), m["unit"]
    if unit in ("day", "week"):
        return Offset(days=sign * n * (7 if unit == "week" else 1), at=at)
    return Offset(seconds=sign * n * _UNITS[unit], at=at)


def resolve_local(naive: datetime, tz: ZoneInfo) -> datetime:
    """Make a wall-clock time aware, deliberately.

    A time that occurs twice (autumn fall-back) is taken at its first occurrence. A time that does not
    exist (spring gap) is moved forward by the gap: 02:30 on the spring-forward night becomes 03:30.
    """
    aware = naive.replace(tzinfo=tz, fold=0)
    round_trip = aware.astimezone(ZoneInfo("UTC")).astimezone(tz)
    if round_trip.replace(tzinfo=None) != naive:  # in the gap: fold=0 used the offset before it
        return round_trip
    return aware


def apply_offset(anchor: datetime, offset: Offset, tz: ZoneInfo) -> datetime:
    """Anchor (aware) + offset, in the event's zone. Days are calendar days, hours are real hours."""
    # In UTC: aware arithmetic within one zone is wall-clock arithmetic, wrong across a DST change.
    moved = anchor.astimezone(UTC) + timedelta(seconds=offset.seconds)
    if offset.days == 0 and offset.at is None:
        return moved
    local = moved.astimezone(tz).replace(tzinfo=None)
    day: date = local.date() + timedelta(days=offset.days)
    wall = datetime.combine(day, offset.at or local.time())
    return resolve_local(wall, tz)


# -- validation -------------------------------------------------------------------------------

_ANCHOR = re.compile(r"^(event\.start|event\.end|rsvp_deadline|own_stop|item:[\w-]+(\.end)?|stop:[\w-]+)$")


def _reference_problems(ev: Event):
    items = {i.id for i in ev.items}
    stops = {s.id for s in ev.stops}
    templates_seen: set[str] = set()
    for kind, ids in (
        ("items", [i.id for i in ev.items]),
        ("stops", [s.id for s in ev.stops]),
        ("rules", [r.id for r in ev.rules]),
        ("contacts", [c.id for c in ev.contacts]),
    ):
        dupes = {x for x in ids if ids.count(x) > 1}
        if dupes:
            yield f"{kind}: duplicate id {sorted(dupes)[0]!r}"
    if ev.event.duty_contact not in {c.id for c in ev.contacts}:
        yield f"event.duty_contact: unknown contact {ev.event.duty_contact!r}"
    if ev.event.end <= ev.event.start:
        yield "event.end: the event ends before it starts"
    for n, item in enumerate(ev.items):
        for stop in item.stops:
            if stop not in stops:
                yield f"items[{n}].stops (item {item.id!r}): unknown stop {stop!r}"
    for n, rule in enumerate(ev.rules):
        where = f"rules[{n}] (rule {rule.id!r})"
        templates_seen.add(rule.template)
        if not _ANCHOR.match(rule.anchor) and _parse_local(rule.anchor) is None:
            yield (
                f"{where}.anchor: {rule.anchor!r} is not event.start, event.end, rsvp_deadline, own_stop, "
                "item:<id>, item:<id>.end, stop:<id> or a local time like 2021-10-01T09:00"
            )
        if rule.anchor.startswith("item:") and rule.anchor[5:].removesuffix(".end") not in items:
            yield f"{where}.anchor: unknown item {rule.anchor[5:].removesuffix('.end')!r}"
        if rule.anchor.startswith("stop:") and rule.anchor[5:] not in stops:
            yield f"{where}.anchor: unknown stop {rule.anchor[5:]!r}"
        for stop in rule.audience.stops:
            if stop != "*" and stop not in stops:
                yield f"{where}.audience.stops: unknown stop {stop!r}"
        if not rule.channels:
            yield f"{where}.channels: name at least one of email, sms"
        for mention in rule.mentions:
            if not _known_mention(mention, items, stops):
                yield f"{where}.mentions: {mention!r} is not *, own_stop or a known item:<id> or stop:<id>"
    for n, q in enumerate(ev.survey):
        if q.item and q.item not in items:
            yield f"survey[{n}].item: unknown item {q.item!r}"


def _known_mention(mention: str, items: set[str], stops: set[str]) -> bool:
    kind, _, ref = mention.partition(":")
    return (
        mention in ("*", "own_stop") or (kind == "item" and ref in items) or (kind == "stop" and ref in stops)
    )


def _parse_local(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo is None else None


def anchor_time(ev: Event, rule: Rule, stop_id: str | None) -> datetime | None:
    """The aware instant a rule is anchored to, or None when it has none for this delegate."""
    anchor = rule.anchor
    if anchor == "event.start":
        naive = ev.event.start
    elif anchor == "event.end":
        naive = ev.event.end
    elif anchor == "rsvp_deadline":
        naive = ev.event.rsvp_deadline
    elif anchor == "own_stop":
        stop = next((s for s in ev.stops if s.id == stop_id), None)
        if stop is None:  # no stop, or one the event no longer has
            return None
        naive = stop.time
    elif anchor.startswith("stop:"):
        naive = ev.stop(anchor[5:]).time
    elif anchor.startswith("item:"):
        item = ev.item(anchor[5:].removesuffix(".end"))
        naive = item.end if anchor.endswith(".end") else item.start
    else:
        parsed = _parse_local(anchor)
        assert parsed is not None  # validated at load
        naive = parsed
    return ev.local(naive)


# -- loading ----------------------------------------------------------------------------------


def parse_event(text: str, source: str = "event.toml") -> Event:
    """Parse and validate event TOML. Every problem names the file and the key."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: {e}") from None
    try:
        event = Event.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(
            [f"{source}: {_loc(err['loc'])}: {_clean(err['msg'])}" for err in e.errors()]
        ) from None
    problems = [f"{source}: {problem}" for problem in _reference_problems(event)]
    if problems:
        raise ConfigError(problems)
    return event


def load_event(path: Path) -> Event:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such event file (set EVENT_FILE or pass --event)") from None
    return parse_event(text, str(path))


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _clean(msg: str) -> str:
    return msg.removeprefix("Value error, ")
