"""What delegates send back: replies, opt-outs, survey answers, and providers' delivery status.

Every change to a delegate bumps `updated_at`, which is how the scheduler knows to re-plan them at once.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pipeline.states import SENT_STATES, LedgerState
from pipeline.store.ledger import rowcount
from pipeline.store.models import DelegateRow, InboundRow, LedgerRow, SurveyAnswerRow

S = LedgerState
# What a delegate was asked by each template, for reading their next reply in context.
QUESTION_OF_TEMPLATE = {
    "invitation": "rsvp",
    "rsvp_reminder": "rsvp",
    "survey": "survey",
    "survey_reminder": "survey",
}
# A status may only move a row forward; equal ranks are end states and never replace each other.
STATUS_RANK: dict[str, int] = {S.QUEUED: 0, S.SENDING: 1, S.SENT: 2, S.DELIVERED: 3, S.FAILED: 3}
# Twilio's message status → the ledger state it means.
TWILIO_STATUS = {
    "accepted": S.SENT,
    "queued": S.SENT,
    "sending": S.SENT,
    "sent": S.SENT,
    "delivered": S.DELIVERED,
    "read": S.DELIVERED,
    "undelivered": S.FAILED,
    "failed": S.FAILED,
}
OPTED_OUT_CODE = "21610"


def delegate_by_phone(session: Session, phone: str) -> DelegateRow | None:
    return session.scalars(select(DelegateRow).where(DelegateRow.phone == phone).limit(1)).first()


def delegate_by_email(session: Session, email: str) -> DelegateRow | None:
    wanted = email.strip().lower()
    query = select(DelegateRow).where(func.lower(DelegateRow.email) == wanted).limit(1)
    return session.scalars(query).first() if "@" in wanted else None


def record_inbound(
    session: Session,
    *,
    channel: str,
    provider_id: str,
    sender: str,
    body: str,
    delegate_id: str | None,
    context: str,
    kind: str,
    value: str | None,
    now: datetime,
) -> bool:
    """Store a reply once. False when this provider id was seen before (a provider's retry)."""
    if session.scalar(select(InboundRow.id).where(InboundRow.provider_id == provider_id)) is not None:
        return False
    row = InboundRow(
        channel=channel,
        provider_id=provider_id,
        sender=sender,
        body=body,
        delegate_id=delegate_id,
        context=context,
        kind=kind,
        value=value,
        received_at=now,
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:  # the same retry arrived at another web process at the same moment
        return False
    return True


def last_question(
    session: Session, delegate_id: str, templates_by_rule: dict[str, str], channel: str = "sms"
) -> str:
    """What the delegate was last asked on this channel: 'rsvp', 'survey' or 'none'."""
    rows = session.execute(
        select(LedgerRow.rule, LedgerRow.payload)
        .where(
            LedgerRow.delegate_id == delegate_id,
            LedgerRow.channel == channel,
            LedgerRow.state.in_(SENT_STATES),
        )
        .order_by(LedgerRow.sent_at.desc(), LedgerRow.id.desc())
        .limit(10)
    )
    for rule, payload in rows:
        if payload is None and rule in templates_by_rule:
            return QUESTION_OF_TEMPLATE.get(templates_by_rule[rule], "none")
    return "none"


_HASHED_ID = re.compile(r"^<([0-9a-f]{40})@[^<>\s]+>$")


def question_of_mail(
    session: Session, delegate_id: str, message_ids: list[str], templates_by_rule: dict[str, str]
) -> str | None:
    """What our email that `message_ids` (In-Reply-To first, then References newest first) point at asked:
    'rsvp', 'survey' or 'none'; None when none of them is one of ours to this delegate. Our Message-IDs are
    `<sha1(ledger key)@domain>` (channels/mime.py), whatever the channel that wrote them."""
    wanted = [m.group(1) for m in map(_HASHED_ID.match, message_ids) if m]
    if not wanted:
        return None
    rows = session.execute(
        select(LedgerRow.key, LedgerRow.rule, LedgerRow.payload).where(
            LedgerRow.delegate_id == delegate_id, LedgerRow.channel == "email"
        )
    )
    by_hash = {hashlib.sha1(key.encode()).hexdigest(): (rule, payload) for key, rule, payload in rows}
    for digest in wanted:
        if digest in by_hash:
            rule, payload = by_hash[digest]
            return QUESTION_OF_TEMPLATE.get(_template(rule, payload, templates_by_rule) or "", "none")
    return None


def _template(rule: str, payload: str | None, templates_by_rule: dict[str, str]) -> str | None:
    if payload is None:
        return templates_by_rule.get(rule)
    try:
        return str(json.loads(payload).get("template") or "")
    except (ValueError, AttributeError):  # a payload we cannot read asked nothing we know of
        return None


def set_sms_opt_out(session: Session, delegate_id: str, opted_out: bool, now: datetime) -> None:
    session.execute(
        update(DelegateRow).where(DelegateRow.id == delegate_id).values(sms_opt_out=opted_out, updated_at=now)
    )


def set_phone_bad(session: Session, delegate_id: str, now: datetime) -> None:
    """Twilio said the number cannot get SMS (21211 invalid, 21614 not a mobile): plan no more SMS to it."""
    session.execute(
        update(DelegateRow).where(DelegateRow.id == delegate_id).values(phone_bad=True, updated_at=now)
    )


def set_email_opt_out(session: Session, delegate_id: str, opted_out: bool, now: datetime) -> None:
    session.execute(
        update(DelegateRow)
        .where(DelegateRow.id == delegate_id)
        .values(email_opt_out=opted_out, updated_at=now)
    )


def record_survey_answer(
    session: Session,
    delegate_id: str,
    question: str,
    *,
    rating: int | None = None,
    text: str | None = None,
    channel: str,
    now: datetime,
) -> None:
    row = session.scalars(
        select(SurveyAnswerRow).where(
            SurveyAnswerRow.delegate_id == delegate_id, SurveyAnswerRow.question == question
        )
    ).first()
    if row is None:
        session.add(
            SurveyAnswerRow(
                delegate_id=delegate_id, question=question, rating=rating, text=text, channel=channel, at=now
            )
        )
    else:
        row.rating, row.text, row.channel, row.at = rating, text, channel, now
    session.execute(
        update(DelegateRow).where(DelegateRow.id == delegate_id).values(survey_answered=True, updated_at=now)
    )


def survey_answers(session: Session) -> list[SurveyAnswerRow]:
    return list(
        session.scalars(select(SurveyAnswerRow).order_by(SurveyAnswerRow.question, SurveyAnswerRow.at))
    )


def apply_status(
    session: Session, provider_id: str, provider_status: str, error_code: str | None, now: datetime
) -> str | None:
    """Apply a delivery-status callback, only ever forward. Returns the row's new state, or None when the
    callback was stale, a duplicate or unknown."""
    state = TWILIO_STATUS.get(provider_status)
    row = session.scalars(select(LedgerRow).where(LedgerRow.provider_id == provider_id).limit(1)).first()
    if state is None or row is None:
        return None
    if STATUS_RANK.get(row.state, 3) >= STATUS_RANK[state]:
        return None
    values: dict = {"state": state, "updated_at": now}
    if state == S.DELIVERED:
        values["delivered_at"] = now
    if state == S.FAILED:
        values["reason"] = f"{provider_status} (Twilio error {error_code})" if error_code else provider_status
        values["error_code"] = error_code
    moved = rowcount(
        session.execute(
            update(LedgerRow).where(LedgerRow.id == row.id, LedgerRow.state == row.state).values(**values)
        )
    )
    if moved and error_code == OPTED_OUT_CODE:
        set_sms_opt_out(session, row.delegate_id, True, now)
    return state if moved else None


# -- replies that need a person ---------------------------------------------------------------

# Kinds a person never needs to read: an out-of-office mail says nothing to act on.
_NEVER_FOR_A_PERSON = ("automatic",)


def _needs_a_person(days: tuple[datetime, datetime]):
    """Not handled yet, and either not understood or sent on the event's days (when anything may be
    urgent: "Flyget är 20 min sent, väntar bussen?" is read as nothing, but a "Ja" then is odd too)."""
    on_the_days = (InboundRow.received_at >= days[0]) & (InboundRow.received_at < days[1])
    return (
        InboundRow.handled_at.is_(None)
        & InboundRow.kind.not_in(_NEVER_FOR_A_PERSON)
        & ((InboundRow.kind == "unknown") | on_the_days)
    )


def replies_needing_a_person(
    session: Session, days: tuple[datetime, datetime], limit: int = 500
) -> list[tuple[InboundRow, str]]:
    """Waiting replies, oldest first (the first to come should be the first answered), with names."""
    query = (
        select(InboundRow, DelegateRow.name)
        .outerjoin(DelegateRow, DelegateRow.id == InboundRow.delegate_id)
        .where(_needs_a_person(days))
        .order_by(InboundRow.received_at, InboundRow.id)
        .limit(limit)
    )
    return [(row, name or "") for row, name in session.execute(query)]


def count_replies_needing_a_person(session: Session, days: tuple[datetime, datetime]) -> int:
    query = select(func.count()).select_from(InboundRow).where(_needs_a_person(days))
    return session.scalar(query) or 0


def mark_reply_handled(session: Session, reply_id: int, how: str, now: datetime) -> bool:
    """Take a reply off the list. False when it was already handled (two organisers, one reply)."""
    result = session.execute(
        update(InboundRow)
        .where(InboundRow.id == reply_id, InboundRow.handled_at.is_(None))
        .values(handled_at=now, handled_how=how)
    )
    return rowcount(result) == 1
