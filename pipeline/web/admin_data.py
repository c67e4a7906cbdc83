"""What the dashboard pages read from the store: plain queries, no decisions (those live in the library).

Counts come from `pipeline.status.event_status`; this module adds the row-level views the terminal
summary has no room for: the timeline, one delegate's history, failed rows and unread replies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipeline.states import ATTENTION_STATES, PENDING_STATES, SENT_STATES, LedgerState
from pipeline.store.models import DelegateRow, InboundRow, LedgerRow, RsvpRow, SurveyAnswerRow
from pipeline.store.people import rsvp_history
from pipeline.timetable import Event

# The plan's timeline in four parts, each a set of ledger states.
BUCKETS: dict[str, tuple[LedgerState, ...]] = {
    "upcoming": PENDING_STATES,
    "sent": SENT_STATES,
    "failed": ATTENTION_STATES,
    "expired": (LedgerState.EXPIRED, LedgerState.SKIPPED),
}
LIST_LIMIT = 500  # a page a phone can still scroll; the CLI's export has everything


@dataclass
class TimelineGroup:
    """The rows of one rule and channel due at one local minute, counted by state."""

    due: datetime  # local to the event
    rule: str
    channel: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class Filters:
    """The delegate list's filters, as the overview's query string gives them ("" = any)."""

    answer: str = ""  # yes | no | none
    stop: str = ""  # a stop id, or "-" for those without a bus
    role: str = ""
    dinner: str = ""  # yes | no
    search: str = ""


def delegates(session: Session, filters: Filters) -> tuple[list[DelegateRow], int]:
    """At most LIST_LIMIT delegates (a national event has 100,000) and how many matched in all."""
    query = select(DelegateRow).where(DelegateRow.cancelled_at.is_(None))
    if filters.answer:
        query = query.where(DelegateRow.rsvp == filters.answer)
    if filters.stop:
        query = query.where(
            DelegateRow.stop.is_(None) if filters.stop == "-" else DelegateRow.stop == filters.stop
        )
    if filters.role:
        query = query.where(DelegateRow.role == filters.role)
    if filters.dinner:
        query = query.where(DelegateRow.dinner.is_(True) if filters.dinner == "yes" else ~_eats())
    if filters.search:
        pattern = f"%{filters.search.lower()}%"
        query = query.where(
            func.lower(DelegateRow.name).like(pattern)
            | func.lower(DelegateRow.organisation).like(pattern)
            | func.lower(func.coalesce(DelegateRow.email, "")).like(pattern)
            | (DelegateRow.id == filters.search)
        )
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(DelegateRow.name, DelegateRow.id).limit(LIST_LIMIT))
    return list(rows), total


def _eats():
    return func.coalesce(DelegateRow.dinner, False).is_(True)


def roles(session: Session) -> list[str]:
    """The roles delegates have, for the filter and the broadcast form."""
    return list(session.scalars(select(DelegateRow.role).distinct().order_by(DelegateRow.role)))


def group_counts(session: Session) -> dict[str, int]:
    """ "stop:hotel", "role:kso", "rsvp:yes" → how many (not cancelled) delegates are in that group."""
    counts: dict[str, int] = {}
    for column, kind in ((DelegateRow.stop, "stop"), (DelegateRow.role, "role"), (DelegateRow.rsvp, "rsvp")):
        query = select(column, func.count()).where(DelegateRow.cancelled_at.is_(None)).group_by(column)
        counts |= {f"{kind}:{value}": n for value, n in session.execute(query) if value}
    return counts


def names_of(session: Session, ids: list[str]) -> list[tuple[str, str]]:
    """(id, name) for these delegates, by name: the recipients a preview lists."""
    query = select(DelegateRow.id, DelegateRow.name).where(DelegateRow.id.in_(set(ids)))
    return sorted(((i, n) for i, n in session.execute(query)), key=lambda pair: (pair[1], pair[0]))


def phones_of(session: Session, ids: list[str | None]) -> dict[str, str]:
    """delegate id → phone, for the "answer by SMS" and "call" actions."""
    wanted = {i for i in ids if i}
    query = select(DelegateRow.id, DelegateRow.phone).where(DelegateRow.id.in_(wanted))
    return {i: p for i, p in session.execute(query) if p}


# -- lists for the day ----------------------------------------------------------------------------

# A delegate's best pickup-text state across channels: delivered beats sent beats anything still open.
_PICKUP_RANK: dict[str, int] = {
    LedgerState.DELIVERED: 6,
    LedgerState.SENT: 5,
    LedgerState.SENDING: 4,
    LedgerState.QUEUED: 3,
    LedgerState.PLANNED: 2,
    LedgerState.UNKNOWN: 1,
}


@dataclass
class Rider:
    delegate: DelegateRow
    pickup_state: str | None  # the pickup text's state; None: no pickup text planned for them


@dataclass
class StopList:
    riders: list[Rider]  # those who said yes, then those who have not answered
    declined: int

    def count(self, answer: str) -> int:
        return sum(1 for r in self.riders if r.delegate.rsvp == answer)

    @property
    def texted(self) -> int:
        return sum(1 for r in self.riders if r.pickup_state in SENT_STATES)


def pickup_rules(event: Event, stop_id: str) -> list[str]:
    """The rules that tell people at this stop that the bus is coming."""
    return [r.id for r in event.rules if r.anchor in ("own_stop", f"stop:{stop_id}")]


def stop_list(session: Session, event: Event, stop_id: str) -> StopList:
    """Who boards at a stop: name, organisation, phone, RSVP and whether their pickup text went."""
    people = list(
        session.scalars(
            select(DelegateRow)
            .where(DelegateRow.stop == stop_id, DelegateRow.cancelled_at.is_(None))
            .order_by(DelegateRow.name, DelegateRow.id)
        )
    )
    states = _best_states(session, event, pickup_rules(event, stop_id), [d.id for d in people])
    boarding = [d for d in people if d.rsvp == "yes"] + [d for d in people if d.rsvp == "none"]
    declined = sum(1 for d in people if d.rsvp == "no")
    return StopList([Rider(d, states.get(d.id)) for d in boarding], declined)


def _best_states(session: Session, event: Event, rules: list[str], ids: list[str]) -> dict[str, str]:
    query = select(LedgerRow.delegate_id, LedgerRow.state).where(
        LedgerRow.event_id == event.event.id, LedgerRow.rule.in_(rules), LedgerRow.delegate_id.in_(ids)
    )
    best: dict[str, str] = {}
    for delegate_id, state in session.execute(query):
        if _PICKUP_RANK.get(state, 0) >= _PICKUP_RANK.get(best.get(delegate_id, ""), 0):
            best[delegate_id] = state
    return best


@dataclass(frozen=True)
class DayCounts:
    """The overview's cards, counted in the database (a national event has 100,000 delegates)."""

    by_stop: dict[tuple[str, str], int]  # (stop, answer) → delegates
    dinner: dict[str, int]  # answer → delegates who eat dinner

    def at(self, stop: str, answer: str) -> int:
        return self.by_stop.get((stop, answer), 0)


def day_counts(session: Session) -> DayCounts:
    active = DelegateRow.cancelled_at.is_(None)
    stops = select(DelegateRow.stop, DelegateRow.rsvp, func.count()).where(
        active, DelegateRow.stop.is_not(None)
    )
    dinner = select(DelegateRow.rsvp, func.count()).where(active, _eats())
    by_stop = session.execute(stops.group_by(DelegateRow.stop, DelegateRow.rsvp))
    return DayCounts(
        {(stop or "", answer): n for stop, answer, n in by_stop},
        {answer: n for answer, n in session.execute(dinner.group_by(DelegateRow.rsvp))},
    )


@dataclass
class DinnerList:
    coming: list[DelegateRow]  # said yes to the meeting and to dinner
    unanswered: int  # want dinner but have not answered the invitation


def dinner_list(session: Session) -> DinnerList:
    query = select(DelegateRow).where(DelegateRow.cancelled_at.is_(None), _eats())
    people = list(session.scalars(query.order_by(DelegateRow.name, DelegateRow.id)))
    coming = [d for d in people if d.rsvp == "yes"]
    return DinnerList(coming, sum(1 for d in people if d.rsvp == "none"))


def timeline(session: Session, event: Event) -> dict[str, list[TimelineGroup]]:
    """bucket → groups: upcoming soonest first, the others latest first."""
    query = (
        select(LedgerRow.due_at, LedgerRow.rule, LedgerRow.channel, LedgerRow.state, func.count())
        .where(LedgerRow.event_id == event.event.id)
        .group_by(LedgerRow.due_at, LedgerRow.rule, LedgerRow.channel, LedgerRow.state)
    )
    groups: dict[tuple[str, datetime, str, str], TimelineGroup] = {}
    for due, rule, channel, state, n in session.execute(query):
        bucket = next((b for b, states in BUCKETS.items() if state in states), "failed")
        local = due.astimezone(event.tz).replace(second=0, microsecond=0)
        group = groups.setdefault((bucket, local, rule, channel), TimelineGroup(local, rule, channel))
        group.counts[state] = group.counts.get(state, 0) + n
    out: dict[str, list[TimelineGroup]] = {bucket: [] for bucket in BUCKETS}
    for (bucket, *_), group in sorted(groups.items(), key=lambda item: item[0][1:]):
        out[bucket].append(group)
    for bucket in ("sent", "failed", "expired"):
        out[bucket].reverse()
    return out


@dataclass
class History:
    delegate: DelegateRow
    messages: list[LedgerRow]
    rsvps: list[RsvpRow]
    replies: list[InboundRow]
    survey: list[SurveyAnswerRow]


def history(session: Session, delegate_id: str) -> History | None:
    row = session.get(DelegateRow, delegate_id)
    if row is None:
        return None
    messages = select(LedgerRow).where(LedgerRow.delegate_id == delegate_id)
    replies = select(InboundRow).where(InboundRow.delegate_id == delegate_id)
    answers = select(SurveyAnswerRow).where(SurveyAnswerRow.delegate_id == delegate_id)
    return History(
        row,
        list(session.scalars(messages.order_by(LedgerRow.due_at, LedgerRow.id))),
        rsvp_history(session, delegate_id),
        list(session.scalars(replies.order_by(InboundRow.received_at, InboundRow.id))),
        list(session.scalars(answers.order_by(SurveyAnswerRow.question))),
    )


def failures(session: Session, event: Event) -> list[tuple[LedgerRow, str]]:
    """Failed and unknown rows with the delegate's name, latest change first."""
    query = (
        select(LedgerRow, DelegateRow.name)
        .outerjoin(DelegateRow, DelegateRow.id == LedgerRow.delegate_id)
        .where(LedgerRow.event_id == event.event.id, LedgerRow.state.in_(BUCKETS["failed"]))
        .order_by(LedgerRow.updated_at.desc(), LedgerRow.id.desc())
        .limit(LIST_LIMIT)
    )
    return [(row, name or "") for row, name in session.execute(query)]


def recently_handled(session: Session, limit: int = 20) -> list[tuple[InboundRow, str]]:
    """The replies organisers dealt with last, so a colleague sees what was done."""
    query = (
        select(InboundRow, DelegateRow.name)
        .outerjoin(DelegateRow, DelegateRow.id == InboundRow.delegate_id)
        .where(InboundRow.handled_at.is_not(None))
        .order_by(InboundRow.handled_at.desc(), InboundRow.id.desc())
        .limit(limit)
    )
    return [(row, name or "") for row, name in session.execute(query)]


# -- pictures -------------------------------------------------------------------------------------


def answer_times(session: Session, event: Event) -> list[tuple[datetime, str]]:
    """When each delegate's answer that counts was given (local), oldest first: the RSVP chart's data."""
    latest: dict[str, RsvpRow] = {}
    for row in session.scalars(select(RsvpRow).order_by(RsvpRow.id)):
        latest[row.delegate_id] = row  # the last recorded counts (store/people.py)
    active = set(session.scalars(select(DelegateRow.id).where(DelegateRow.cancelled_at.is_(None))))
    answers = [(r.at.astimezone(event.tz), r.answer) for d, r in latest.items() if d in active]
    return sorted(a for a in answers if a[1] in ("yes", "no"))


def messages_per_hour(session: Session, event: Event) -> list[tuple[datetime, dict[str, int]]]:
    """Local hour → state → count, by each message's due time; hours without messages left out. Counted
    per due time in the database (a plan has few distinct ones), then per hour here."""
    query = (
        select(LedgerRow.due_at, LedgerRow.state, func.count())
        .where(LedgerRow.event_id == event.event.id)
        .group_by(LedgerRow.due_at, LedgerRow.state)
    )
    hours: dict[datetime, dict[str, int]] = {}
    for due, state, n in session.execute(query):
        hour = due.astimezone(event.tz).replace(minute=0, second=0, microsecond=0)
        per_state = hours.setdefault(hour, {})
        per_state[state] = per_state.get(state, 0) + n
    return sorted(hours.items())
