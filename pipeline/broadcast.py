"""Broadcasts: one message, now, to a segment of the delegates ("Bussen är 15 minuter försenad").

A broadcast is ledger rows like any other message: one per recipient × channel, rule `broadcast:<id>`,
key `<event>:broadcast:<id>:-:<delegate>:<channel>`, due now, rendered by the workers from the row's
payload. The id is a hash of what is sent and to whom, so the same broadcast asked for twice is stored
once; `again=True` makes a fresh id (`<id>-2`, `<id>-3`, …) for a deliberate repeat.

Segments (`--to`): `all`, `attending`, `not-responded`, `declined`, `role:<role>`, `stop:<stop id>`,
`language:<sv|en>`, `delegate:<id>`. Words joined by a comma inside one `--to` must all match (AND);
a delegate matching any one `--to` is in (OR): `--to attending,stop:hotel --to role:kso`.

`preview_broadcast` and `create_broadcast` are what the CLI and the dashboard call.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import jinja2
from sqlalchemy.orm import Session

from pipeline.delegates import Delegate
from pipeline.links import LinkSigner
from pipeline.planner import send_key
from pipeline.render import LANGUAGES, render_email, render_sms
from pipeline.settings import Settings
from pipeline.sms import GSM7_BASIC, GSM7_EXTENSION, Segments, sms_segments
from pipeline.store import ledger
from pipeline.store.people import load_delegates
from pipeline.timetable import Event

CHANNELS = ("auto", "sms", "email", "both")
_RSVP_WORDS = {"attending": "yes", "not-responded": "none", "declined": "no"}
_VALUE_WORDS = ("role", "stop", "language", "delegate")


class BroadcastError(ValueError):
    """The broadcast cannot be sent as asked: an unknown segment, a text too long, no recipients."""


# -- segments (pure) ------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Term:
    word: str  # all | attending | not-responded | declined | role | stop | language | delegate
    value: str = ""

    def __str__(self) -> str:
        return f"{self.word}:{self.value}" if self.value else self.word


Segment = tuple[Term, ...]  # every term must match
Audience = tuple[Segment, ...]  # any segment may match


def parse_audience(values: Sequence[str], event: Event) -> Audience:
    """`--to` values → an audience in canonical order. Unknown words and stops raise BroadcastError."""
    if not values:
        raise BroadcastError("say whom to send to: --to all, attending, stop:hotel, … (see --help)")
    stops = {s.id for s in event.stops}
    segments = {tuple(sorted({_term(part.strip(), stops) for part in v.split(",")})) for v in values}
    return tuple(sorted(segments))


def _term(text: str, stops: set[str]) -> Term:
    word, colon, value = text.partition(":")
    word, value = word.strip().lower(), value.strip()
    if not colon and (word == "all" or word in _RSVP_WORDS):
        return Term(word)
    if word not in _VALUE_WORDS or not colon:
        known = (
            "all, attending, not-responded, declined, role:<role>, stop:<id>, language:<code>, delegate:<id>"
        )
        raise BroadcastError(f"unknown segment {text!r}: use {known}")
    if not value:
        raise BroadcastError(f"segment {text!r} needs a value after the colon")
    if word == "stop" and value not in stops:
        raise BroadcastError(
            f"unknown stop {value!r} in {text!r}: the event's stops are {', '.join(sorted(stops))}"
        )
    if word == "language" and value not in LANGUAGES:
        raise BroadcastError(f"unknown language {value!r} in {text!r}: use {' or '.join(LANGUAGES)}")
    return Term(word, value)


def audience_text(audience: Audience) -> str:
    """The canonical spelling: `attending,stop:hotel | role:kso`."""
    return " | ".join(",".join(str(t) for t in segment) for segment in audience)


def matches(term: Term, delegate: Delegate) -> bool:
    if term.word == "all":
        return True
    if term.word in _RSVP_WORDS:
        return delegate.rsvp == _RSVP_WORDS[term.word]
    attribute = {"role": delegate.role, "stop": delegate.stop, "language": delegate.language}
    return (delegate.id if term.word == "delegate" else attribute[term.word]) == term.value


def select_delegates(audience: Audience, delegates: Iterable[Delegate]) -> list[Delegate]:
    return [d for d in delegates if any(all(matches(t, d) for t in seg) for seg in audience)]


def choose_channels(delegate: Delegate, channel: str) -> tuple[list[str], list[str]]:
    """(channels to use, reasons for those skipped). `auto`: SMS to those with a phone, else email."""
    wanted = {"auto": ["sms", "email"], "both": ["sms", "email"]}.get(channel, [channel])
    use, skipped = [], []
    for c in wanted:
        if not (delegate.phone if c == "sms" else delegate.email):
            skipped.append(f"no {'phone' if c == 'sms' else 'email address'}")
        elif delegate.sms_opt_out if c == "sms" else delegate.email_opt_out:
            skipped.append(f"opted out of {'SMS' if c == 'sms' else 'email'}")
        else:
            use.append(c)
    if channel == "auto":
        return use[:1], ([] if use else skipped[-1:])
    return use, skipped


# -- the request and its preview -----------------------------------------------------------------


@dataclass(frozen=True)
class BroadcastRequest:
    audience: Audience
    channel: str = "auto"  # auto | sms | email | both
    template: str = "broadcast"
    text: str | None = None  # free text for the `broadcast` template
    subject: str | None = None  # email subject for free text (default: the template's)
    text_en: str | None = None  # the free text for English speakers (default: `text` for everyone)

    @property
    def base_id(self) -> str:
        """Deterministic: the same audience, message and channel give the same id."""
        what = [audience_text(self.audience), self.channel, self.template, self.text, self.subject]
        what += [self.text_en] if self.text_en else []
        return hashlib.sha256(json.dumps(what, ensure_ascii=False).encode()).hexdigest()[:10]

    @property
    def extra(self) -> dict[str, str]:
        extra = {"text": self.text} if self.text is not None else {}
        extra |= {"text_en": self.text_en} if self.text_en else {}
        return extra | ({"subject": self.subject} if self.subject else {})


def make_request(
    to: Sequence[str],
    event: Event,
    *,
    text: str | None = None,
    template: str | None = None,
    subject: str | None = None,
    channel: str = "auto",
    text_en: str | None = None,
) -> BroadcastRequest:
    """Check and build a request from what the organiser typed (CLI options or form fields)."""
    if (text is None) == (template is None):
        raise BroadcastError("give either a text or a template name, not both")
    if text is not None and not text.strip():
        raise BroadcastError("the text is empty")
    if channel not in CHANNELS:
        raise BroadcastError(f"unknown channel {channel!r}: use {', '.join(CHANNELS)}")
    text = text.strip().replace("\r\n", "\n") if text is not None else None
    english = text_en.strip().replace("\r\n", "\n") if text_en and text is not None else None
    audience = parse_audience(to, event)
    return BroadcastRequest(audience, channel, template or "broadcast", text, subject, english or None)


@dataclass(frozen=True)
class Sample:
    """The message as one delegate sees it."""

    language: str
    channel: str
    delegate_id: str
    subject: str  # "" for SMS
    body: str
    segments: Segments | None  # SMS only


@dataclass
class Preview:
    request: BroadcastRequest
    broadcast_id: str
    recipients: list[tuple[str, str]]  # (delegate id, channel)
    skipped: dict[str, int]  # reason → count
    samples: list[Sample]
    sms_segments: int  # the most any recipient's SMS takes
    sms_encoding: str  # UCS-2 if any recipient's SMS needs it
    send_seconds: float  # at SMS_RATE_PER_SECOND
    existing: int = 0  # rows an identical earlier request stored: sending it again adds nothing
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # refuse to send while there are any

    @property
    def per_channel(self) -> dict[str, int]:
        return dict(Counter(channel for _, channel in self.recipients))


def preview_broadcast(
    session: Session, event: Event, env: jinja2.Environment, settings: Settings, request: BroadcastRequest
) -> Preview:
    """Who gets it on which channel, how it reads in each language, SMS parts and sending time."""
    delegates = load_delegates(session)
    _check_delegate_ids(request.audience, delegates)
    chosen = select_delegates(request.audience, delegates)
    recipients, skipped = [], Counter[str]()
    for d in chosen:
        use, reasons = choose_channels(d, request.channel)
        recipients += [(d.id, c) for c in use]
        skipped.update(reasons)
    people = {d.id: d for d in chosen}
    signer = LinkSigner(settings.secret_key.get_secret_value(), settings.public_url)
    preview = Preview(request, request.base_id, recipients, dict(skipped), [], 0, "GSM-7", 0.0)
    _render_all(preview, env, event, people, signer)
    preview.existing = ledger.count_rows(session, rule=f"broadcast:{preview.broadcast_id}")
    _check(preview, event, settings)
    return preview


def _check_delegate_ids(audience: Audience, delegates: list[Delegate]) -> None:
    ids = {d.id for d in delegates}
    unknown = sorted({t.value for seg in audience for t in seg if t.word == "delegate"} - ids)
    if unknown:
        raise BroadcastError(f"unknown delegate {', '.join(map(repr, unknown))} in delegate:<id>")


def _render_all(
    preview: Preview, env: jinja2.Environment, event: Event, people: dict[str, Delegate], signer: LinkSigner
) -> None:
    """Render every SMS (its length may depend on the person) and one sample per language and channel."""
    request, seen = preview.request, set()
    for delegate_id, channel in preview.recipients:
        delegate = people[delegate_id]
        key = send_key(event.event.id, f"broadcast:{preview.broadcast_id}", "-", delegate_id, channel)
        try:
            sample = _render(env, event, delegate, channel, request, key, signer.links_for(delegate_id))
        except (jinja2.TemplateError, ValueError) as e:
            preview.problems.append(f"template {request.template!r} ({channel}, {delegate.language}): {e}")
            return
        if (delegate.language, channel) not in seen:
            seen.add((delegate.language, channel))
            preview.samples.append(sample)
        if sample.segments is not None:
            preview.sms_segments = max(preview.sms_segments, sample.segments.segments)
            if sample.segments.encoding == "UCS-2":
                preview.sms_encoding = "UCS-2"
                _warn_ucs2(preview, sample.body)
    preview.samples.sort(key=lambda s: (LANGUAGES.index(s.language), s.channel))


def _render(
    env: jinja2.Environment,
    event: Event,
    delegate: Delegate,
    channel: str,
    request: BroadcastRequest,
    key: str,
    links: dict[str, str],
) -> Sample:
    if channel == "sms":
        body = render_sms(
            env, event, delegate, request.template, key=key, links=links, extra=request.extra
        ).body
        return Sample(delegate.language, channel, delegate.id, "", body, sms_segments(body))
    email = render_email(env, event, delegate, request.template, key=key, links=links, extra=request.extra)
    return Sample(delegate.language, channel, delegate.id, email.subject, email.text, None)


def _warn_ucs2(preview: Preview, body: str) -> None:
    odd = sorted({c for c in body if c not in GSM7_BASIC and c not in GSM7_EXTENSION})
    warning = f"{' '.join(odd)} cannot be sent in GSM-7: the SMS goes as UCS-2 (70 characters a part)"
    if warning not in preview.warnings:
        preview.warnings.append(warning)


def _check(preview: Preview, event: Event, settings: Settings) -> None:
    limit = event.event.sms_max_segments
    if preview.sms_segments > limit:
        preview.problems.append(
            f"the SMS takes {preview.sms_segments} parts ({preview.sms_encoding}); the event allows "
            f"{limit} (sms_max_segments): shorten the text"
        )
    if not preview.recipients:
        preview.problems.append("nobody to send to: the segment matches no one who can receive it")
    sms = sum(1 for _, c in preview.recipients if c == "sms")
    # Providers throttle by segment, not by message.
    preview.send_seconds = sms * max(preview.sms_segments, 1) / max(settings.sms_rate_per_second, 0.001)


# -- storing --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreatedBroadcast:
    id: str
    rule: str  # the ledger rule: broadcast:<id>
    new_rows: int
    existing_rows: int  # stored by an earlier, identical request


def create_broadcast(
    session: Session,
    event: Event,
    env: jinja2.Environment,
    settings: Settings,
    request: BroadcastRequest,
    now: datetime,
    *,
    again: bool = False,
) -> CreatedBroadcast:
    """Store one ledger row per recipient × channel, due `now`. Refuses what the preview calls a problem."""
    preview = preview_broadcast(session, event, env, settings, request)
    if preview.problems:
        raise BroadcastError("; ".join(preview.problems))
    broadcast_id = _next_id(session, event.event.id, preview.broadcast_id) if again else preview.broadcast_id
    rule = f"broadcast:{broadcast_id}"
    payload = json.dumps({"template": request.template, "extra": request.extra}, ensure_ascii=False)
    messages = [
        ledger.PayloadMessage(
            send_key(event.event.id, rule, "-", d, c), rule, d, c, payload, now + ledger.PAYLOAD_VALIDITY
        )
        for d, c in preview.recipients
    ]
    new = ledger.add_payload_messages(session, event.event.id, messages, now)
    return CreatedBroadcast(broadcast_id, rule, new, len(messages) - new)


def _next_id(session: Session, event_id: str, base: str) -> str:
    earlier = ledger.rules_named(session, event_id, f"broadcast:{base}")
    return f"{base}-{len(earlier) + 1}" if earlier else base
