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


def delegates(session: Session, answer: str | None, search: str = "") -> tuple[list[DelegateRow], int]:
    """At most LIST_LIMIT delegates (a national event has 100,000) and how many matched in all."""
    query = select(DelegateRow)
    if answer:
        query = query.where(DelegateRow.rsvp == answer)
    if search:
        pattern = f"%{search.lower()}%"
        query = query.where(
            func.lower(DelegateRow.name).like(pattern)
            | func.lower(DelegateRow.organisation).like(pattern)
            | func.lower(func.coalesce(DelegateRow.email, "")).like(pattern)
            | (DelegateRow.id == search)
        )
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(DelegateRow.name, DelegateRow.id).limit(LIST_LIMIT))
    return list(rows), total


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


def unread_replies(session: Session) -> list[tuple[InboundRow, str]]:
    """Replies we could not read (kind `unknown`), newest first, with the sender's name when known."""
    query = (
        select(InboundRow, DelegateRow.name)
        .outerjoin(DelegateRow, DelegateRow.id == InboundRow.delegate_id)
        .where(InboundRow.kind == "unknown")
        .order_by(InboundRow.received_at.desc(), InboundRow.id.desc())
        .limit(LIST_LIMIT)
    )
    return [(row, name or "") for row, name in session.execute(query)]
