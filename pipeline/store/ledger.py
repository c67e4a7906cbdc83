"""Ledger operations: the memory of every message, and the compare-and-set steps that keep sends single.

This module is the only writer of the ledger (ARCHITECTURE.md). A row's life is drawn in
`pipeline.states`: planned → queued (due, handed to the broker) → sending (claimed by one worker) → sent →
delivered; or expired / skipped / failed / unknown. Every transition is an UPDATE guarded by the states
that may precede it (`allowed_sources`), so two schedulers or two workers racing for one row cannot both win.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import BigInteger, Result, String, Table, bindparam, func, or_, select, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from pipeline.planner import DUE, PlannedSend
from pipeline.states import OPEN_STATES, LedgerState, allowed_sources
from pipeline.store.models import LedgerRow

S = LedgerState
CHUNK = 2000
# A broadcast or change notice nobody could deliver within half a day is stale news.
PAYLOAD_VALIDITY = timedelta(hours=12)


@dataclass
class SyncCounts:
    added: int = 0
    moved: int = 0
    cancelled: int = 0
    unchanged: int = 0


def ledger_view(session: Session, event_id: str, delegate_ids: Iterable[str] | None = None) -> dict[str, str]:
    """key → state, for the planner."""
    query = select(LedgerRow.key, LedgerRow.state).where(LedgerRow.event_id == event_id)
    if delegate_ids is None:
        return {key: state for key, state in session.execute(query)}
    out: dict[str, str] = {}
    for chunk in _chunks(list(delegate_ids)):
        out.update(
            (key, state) for key, state in session.execute(query.where(LedgerRow.delegate_id.in_(chunk)))
        )
    return out


def sync_plan(
    session: Session,
    event_id: str,
    sends: Sequence[PlannedSend],
    now: datetime,
    delegate_ids: Iterable[str] | None = None,
) -> SyncCounts:
    """Write the planner's decisions. New keys are inserted; open rows follow the timetable; open rows the
    plan no longer contains (the delegate left the audience) are skipped. Done rows are never touched.

    `delegate_ids` limits the cancelling to those delegates (a re-plan after one delegate's reply)."""
    counts = SyncCounts()
    for chunk in _chunks(list(sends)):
        _sync_chunk(session, chunk, now, counts)
    counts.cancelled = _cancel_missing(session, event_id, {s.key for s in sends}, now, delegate_ids)
    return counts


def _sync_chunk(session: Session, chunk: Sequence[PlannedSend], now: datetime, counts: SyncCounts) -> None:
    existing = {
        row.key: row
        for row in session.execute(
            select(
                LedgerRow.id,
                LedgerRow.key,
                LedgerRow.state,
                LedgerRow.due_at,
                LedgerRow.expires_at,
                LedgerRow.reason,
            ).where(LedgerRow.key.in_([s.key for s in chunk]))
        )
    }
    inserts, updates = [], []
    for send in chunk:
        state = _ledger_state(send)
        row = existing.get(send.key)
        if row is None:
            inserts.append(_insert_values(send, state, now))
        elif row.state in OPEN_STATES and (row.state, row.due_at, row.expires_at, row.reason) != (
            state,
            send.due_at,
            send.expires_at,
            send.reason,
        ):
            updates.append(
                {
                    "id": row.id,
                    "state": state,
                    "due_at": send.due_at,
                    "expires_at": send.expires_at,
                    "reason": send.reason,
                    "updated_at": now,
                }
            )
        else:
            counts.unchanged += 1
    added = insert_new(session, inserts)
    counts.unchanged += len(inserts) - added  # another scheduler inserted them first
    if updates:
        # Guarded by state: a scheduler that queued the row meanwhile wins, and this update is void.
        for values in updates:
            session.execute(
                update(LedgerRow)
                .where(LedgerRow.id == values["id"], LedgerRow.state.in_(OPEN_STATES))
                .values({k: v for k, v in values.items() if k != "id"})
            )
    counts.added += added
    counts.moved += len(updates)


def insert_for(session: Session):
    """The dialect's INSERT, which knows ON CONFLICT (PostgreSQL and SQLite spell it alike)."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def insert_new(session: Session, rows: list[dict]) -> int:
    """Insert ledger rows whose key is not there yet (INSERT … ON CONFLICT DO NOTHING): a second scheduler
    planning the same sends at the same moment adds nothing instead of failing. Returns how many were new."""
    if not rows:
        return 0
    statement = insert_for(session)(LedgerRow).on_conflict_do_nothing(index_elements=["key"])
    return len(session.execute(statement.returning(LedgerRow.id), rows).all())


def _ledger_state(send: PlannedSend) -> LedgerState:
    return S.PLANNED if send.status == DUE else LedgerState(send.status)


def _insert_values(send: PlannedSend, state: str, now: datetime) -> dict:
    event_id = send.key.split(":", 1)[0]
    return {
        "key": send.key,
        "event_id": event_id,
        "rule": send.rule,
        "occurrence": send.occurrence,
        "delegate_id": send.delegate,
        "channel": send.channel,
        "due_at": send.due_at,
        "expires_at": send.expires_at,
        "state": state,
        "reason": send.reason,
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
    }


def _cancel_missing(
    session: Session, event_id: str, keys: set[str], now: datetime, delegate_ids: Iterable[str] | None
) -> int:
    query = select(LedgerRow.id, LedgerRow.key).where(
        LedgerRow.event_id == event_id, LedgerRow.state == S.PLANNED, LedgerRow.payload.is_(None)
    )
    rows = []
    if delegate_ids is None:
        rows = list(session.execute(query))
    else:
        for chunk in _chunks(list(delegate_ids)):
            rows.extend(session.execute(query.where(LedgerRow.delegate_id.in_(chunk))))
    gone = [row.id for row in rows if row.key not in keys]
    for chunk in _chunks(gone):
        session.execute(
            update(LedgerRow)
            .where(LedgerRow.id.in_(chunk), LedgerRow.state == S.PLANNED)
            .values(state=S.SKIPPED, reason="no longer in the audience", updated_at=now)
        )
    return len(gone)


def payload_rows(session: Session, event_id: str, delegate_id: str) -> list[LedgerRow]:
    """One delegate's broadcasts and change notices (rows rendered from a payload), oldest first."""
    query = select(LedgerRow).where(
        LedgerRow.event_id == event_id,
        LedgerRow.delegate_id == delegate_id,
        LedgerRow.payload.is_not(None),
    )
    return list(session.scalars(query.order_by(LedgerRow.due_at, LedgerRow.id)))


# -- scheduler steps ------------------------------------------------------------------------------


def expire_overdue(session: Session, now: datetime) -> int:
    """Planned rows whose validity passed before they were queued: recorded as expired, not dropped."""
    result = session.execute(
        update(LedgerRow)
        .where(LedgerRow.state == S.PLANNED, LedgerRow.expires_at <= now)
        .values(state=S.EXPIRED, reason="its validity ended before it could be sent", updated_at=now)
    )
    return rowcount(result)


def queue_due(session: Session, now: datetime, limit: int = 5000) -> list[int]:
    """Move due rows planned → queued and return their ids, earliest due first. Safe with several
    schedulers at once (on PostgreSQL, rows another scheduler is queueing are skipped, not waited for)."""
    candidates = (
        select(LedgerRow.id)
        .where(
            LedgerRow.state == S.PLANNED,
            LedgerRow.due_at <= now,
            or_(LedgerRow.expires_at.is_(None), LedgerRow.expires_at > now),
        )
        .order_by(LedgerRow.due_at)
        .limit(limit)
    )
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    result = session.execute(
        update(LedgerRow)
        .where(LedgerRow.id.in_(candidates.scalar_subquery()), LedgerRow.state == S.PLANNED)
        .values(state=S.QUEUED, queued_at=now, retry_at=None, updated_at=now)
        .returning(LedgerRow.id, LedgerRow.due_at)
    )
    return [row_id for row_id, _ in sorted(result, key=lambda r: (r[1], r[0]))]


def next_due(session: Session) -> datetime | None:
    return session.scalar(select(func.min(LedgerRow.due_at)).where(LedgerRow.state == S.PLANNED))


def stale_queued(session: Session, now: datetime, grace: timedelta, limit: int = 5000) -> list[int]:
    """Queued rows the broker should have delivered by now (it lost them): stamp and return for re-enqueue.

    A row waiting for a retry counts from its retry time, so a backoff is not mistaken for a loss. Two
    range scans (indexes on state + queued_at and state + retry_at), so a long queue is not read whole."""
    cutoff = now - grace
    queued = LedgerRow.state == S.QUEUED
    never_retried = select(LedgerRow.id).where(
        queued, LedgerRow.queued_at < cutoff, LedgerRow.retry_at.is_(None)
    )
    retried = select(LedgerRow.id).where(queued, LedgerRow.retry_at < cutoff)
    ids = list(session.scalars(never_retried.limit(limit)))
    ids += session.scalars(retried.limit(max(0, limit - len(ids))))
    for chunk in _chunks(ids):
        session.execute(
            update(LedgerRow)
            .where(LedgerRow.id.in_(chunk), LedgerRow.state == S.QUEUED)
            .values(queued_at=now, retry_at=None, updated_at=now)
        )
    return ids


STOPPED_SMS = "a worker stopped while sending; looking in Twilio's message list before resending"
STOPPED_EMAIL = (
    "a worker stopped while sending this email; the mail server may have it and SMTP keeps no list to ask, "
    "so it is not resent by itself: check the mail server's log (or ask the delegate), then press Retry"
)


def stuck_sending(session: Session, now: datetime, grace: timedelta) -> list[int]:
    """Rows claimed by a worker that never reported back (it stopped mid-send): now `unknown`. An SMS is
    looked up in Twilio's list at once (its check time is `now`, see sending/reconcile.py); an email
    waits for a person, with a note saying so."""
    ids = list(
        session.scalars(
            select(LedgerRow.id).where(LedgerRow.state == S.SENDING, LedgerRow.sending_at < now - grace)
        )
    )
    for chunk in _chunks(ids):
        for is_sms, reason, check_at in ((True, STOPPED_SMS, now), (False, STOPPED_EMAIL, None)):
            channel = LedgerRow.channel == "sms" if is_sms else LedgerRow.channel != "sms"
            session.execute(
                update(LedgerRow)
                .where(LedgerRow.id.in_(chunk), LedgerRow.state == S.SENDING, channel)
                .values(state=S.UNKNOWN, reason=reason, retry_at=check_at, updated_at=now)
            )
    return ids


# -- `unknown` rows with a check time (retry_at): looking them up in the provider's list -------------


def due_for_check(session: Session, now: datetime, limit: int) -> list[LedgerRow]:
    """`unknown` rows whose look in the provider's message list is due, oldest first."""
    query = (
        select(LedgerRow)
        .where(LedgerRow.state == S.UNKNOWN, LedgerRow.retry_at.is_not(None), LedgerRow.retry_at <= now)
        .order_by(LedgerRow.retry_at)
        .limit(limit)
    )
    return list(session.scalars(query))


def settle_found(session: Session, row_id: int, provider_id: str, now: datetime) -> bool:
    """unknown → sent: the provider has it after all, under `provider_id`."""
    return _move(
        session, row_id, [S.UNKNOWN], S.SENT, provider_id=provider_id, sent_at=now, reason="", retry_at=None,
        error_code=None, updated_at=now,
    )  # fmt: skip


def requeue_absent(session: Session, row_id: int, reason: str, now: datetime) -> bool:
    """unknown → queued: still absent after the window, so it never arrived and is sent now."""
    return _move(
        session, row_id, [S.UNKNOWN], S.QUEUED, queued_at=now, retry_at=None, reason=reason, updated_at=now
    )


def check_again(session: Session, row_id: int, at: datetime | None, reason: str, now: datetime) -> bool:
    """Keep an `unknown` row and look again at `at` (None: no more looks, a person decides)."""
    result = session.execute(
        update(LedgerRow)
        .where(LedgerRow.id == row_id, LedgerRow.state == S.UNKNOWN)
        .values(retry_at=at, reason=reason, updated_at=now)
    )
    return bool(rowcount(result))


def queue_rule(session: Session, event_id: str, rule: str, now: datetime) -> list[int]:
    """Move one batch's due rows (a broadcast, change notices) planned → queued and return their ids."""
    result = session.execute(
        update(LedgerRow)
        .where(
            LedgerRow.event_id == event_id,
            LedgerRow.rule == rule,
            LedgerRow.state == S.PLANNED,
            LedgerRow.due_at <= now,
        )
        .values(state=S.QUEUED, queued_at=now, retry_at=None, updated_at=now)
        .returning(LedgerRow.id)
    )
    return sorted(result.scalars())


# -- worker steps ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claimed:
    """A row as a worker claimed it: what sending it needs, read in the claim's own statement. A plain
    value, not an ORM object: a worker claims hundreds a second."""

    id: int
    key: str
    rule: str
    delegate_id: str
    channel: str
    state: str
    payload: str | None
    expires_at: datetime | None
    attempts: int
    sending_at: datetime | None


_LEDGER = cast(Table, LedgerRow.__table__)
_CLAIMED_COLUMNS = [_LEDGER.c[name] for name in Claimed.__slots__]
_NOW = bindparam("now", type_=_LEDGER.c.updated_at.type)  # stored as the ledger stores times
# Built once: compiled once per process and reused with each batch's ids (an expanding IN).
_CLAIM = (
    update(_LEDGER)
    .where(_LEDGER.c.id.in_(bindparam("ids", expanding=True)))
    .where(_LEDGER.c.state.in_(allowed_sources([S.QUEUED], S.SENDING)))
    .values(
        state=S.SENDING,
        sending_at=_NOW,
        attempts=_LEDGER.c.attempts + 1,
        updated_at=_NOW,
    )
    .returning(*_CLAIMED_COLUMNS)
)
# sending → sent, with the provider's id: the same values whichever statement writes them. The guard is
# not IN (…): an expanding list cannot be executed for many rows at once.
_FROM_SENDING = or_(*(_LEDGER.c.state == state for state in allowed_sources([S.SENDING], S.SENT)))


def _sent_values(provider_id) -> dict:
    return {
        "state": S.SENT,
        "provider_id": provider_id,
        "sent_at": _NOW,
        "reason": "",
        "error_code": None,
        "updated_at": _NOW,
    }


# SQLite: one prepared statement, run for each row.
_RECORD_SENT = (
    update(_LEDGER)
    .where(_LEDGER.c.id == bindparam("row_id"), _FROM_SENDING)
    .values(_sent_values(bindparam("sid")))
)
# PostgreSQL: one statement for the whole batch (planned once, not once per row), the ids and provider ids
# as two arrays: UPDATE ledger … FROM unnest(:ids, :sids) AS v(id, sid).
_SENT_PAIRS = (
    func.unnest(
        sql_cast(bindparam("ids"), postgresql.ARRAY(BigInteger)),
        sql_cast(bindparam("sids"), postgresql.ARRAY(String)),
    )
    .table_valued("id", "sid")
    .render_derived(name="v")
)
_RECORD_SENT_PG = (
    update(_LEDGER)
    .where(_LEDGER.c.id == _SENT_PAIRS.c.id, _FROM_SENDING)
    .values(_sent_values(_SENT_PAIRS.c.sid))
)


def claim(session: Session, row_id: int, now: datetime) -> Claimed | None:
    """queued → sending, for exactly one worker. None when someone else has it or it is done."""
    rows = claim_many(session, [row_id], now)
    return rows[0] if rows else None


def claim_many(session: Session, ids: Sequence[int], now: datetime) -> list[Claimed]:
    """queued → sending for every row of `ids` this worker wins, in one statement (the rows as they are
    now come back with it: no second read). Rows someone else has, or that are done, are left out; the
    others keep the order of `ids`."""
    if not ids:
        return []
    result = session.execute(_CLAIM, {"ids": list(ids), "now": now})
    by_id = {row.id: Claimed(*row) for row in result}
    return [by_id[row_id] for row_id in ids if row_id in by_id]


def queued_of_channel(session: Session, ids: Sequence[int], channel: str) -> set[int]:
    """Those of `ids` that are rows of `channel` still queued (what a rate-limited batch will send)."""
    query = select(LedgerRow.id).where(
        LedgerRow.id.in_(list(ids)), LedgerRow.channel == channel, LedgerRow.state == S.QUEUED
    )
    return set(session.scalars(query))


def mark_sent_many(session: Session, provider_ids: dict[int, str], now: datetime) -> int:
    """sending → sent for many rows in one round trip, each with its provider id; returns how many moved.
    A row no longer in `sending` (already recorded) is left as it is."""
    if not provider_ids:
        return 0
    if session.get_bind().dialect.name == "postgresql":
        arrays = {"ids": list(provider_ids), "sids": list(provider_ids.values()), "now": now}
        return rowcount(session.execute(_RECORD_SENT_PG, arrays))
    each = [{"row_id": row_id, "sid": sid, "now": now} for row_id, sid in provider_ids.items()]
    return rowcount(session.execute(_RECORD_SENT, each))


def _move(session: Session, row_id: int, sources: Iterable[LedgerState], to: LedgerState, **values) -> bool:
    """One compare-and-set: row `row_id` moves to `to` only from one of `sources`."""
    result = session.execute(
        update(LedgerRow)
        .where(LedgerRow.id == row_id, LedgerRow.state.in_(allowed_sources(sources, to)))
        .values(state=to, **values)
    )
    return bool(rowcount(result))


def mark_sent(session: Session, row_id: int, provider_id: str, now: datetime) -> bool:
    return mark_sent_many(session, {row_id: provider_id}, now) == 1


def mark_retry(
    session: Session, row_id: int, error: str, code: str | None, now: datetime, retry_at: datetime
) -> bool:
    """sending → queued: the worker will try again at `retry_at`."""
    return _move(
        session,
        row_id,
        [S.SENDING],
        S.QUEUED,
        reason=error,
        error_code=code,
        retry_at=retry_at,
        updated_at=now,
    )


def mark_failed(session: Session, row_id: int, error: str, code: str | None, now: datetime) -> bool:
    return _move(
        session, row_id, [S.SENDING, S.QUEUED], S.FAILED, reason=error, error_code=code, updated_at=now
    )


def mark_unknown(
    session: Session, row_id: int, reason: str, now: datetime, check_at: datetime | None = None
) -> bool:
    """sending → unknown; `check_at`: when to look in the provider's list (None: a person decides)."""
    return _move(session, row_id, [S.SENDING], S.UNKNOWN, reason=reason, retry_at=check_at, updated_at=now)


def mark_expired(session: Session, row_id: int, reason: str, now: datetime) -> bool:
    return _move(session, row_id, [S.SENDING, S.QUEUED, S.PLANNED], S.EXPIRED, reason=reason, updated_at=now)


def mark_skipped(session: Session, row_id: int, reason: str, now: datetime) -> bool:
    return _move(session, row_id, [S.SENDING, S.QUEUED, S.PLANNED], S.SKIPPED, reason=reason, updated_at=now)


def skip_planned_of(session: Session, delegate_id: str, reason: str, now: datetime) -> int:
    """A cancelled delegate: every message still planned for them is skipped (what went stays)."""
    result = session.execute(
        update(LedgerRow)
        .where(
            LedgerRow.delegate_id == delegate_id,
            LedgerRow.state.in_(allowed_sources([S.PLANNED], S.SKIPPED)),
        )
        .values(state=S.SKIPPED, reason=reason, updated_at=now)
    )
    return rowcount(result)


def states_of(session: Session, event_id: str, rule: str) -> dict[str, int]:
    """state → count for one rule (a batch)."""
    query = (
        select(LedgerRow.state, func.count())
        .where(LedgerRow.event_id == event_id, LedgerRow.rule == rule)
        .group_by(LedgerRow.state)
    )
    return {state: n for state, n in session.execute(query)}


def count_rows(session: Session, state: LedgerState | None = None, rule: str | None = None) -> int:
    query = select(func.count()).select_from(LedgerRow)
    if state:
        query = query.where(LedgerRow.state == state)
    if rule:
        query = query.where(LedgerRow.rule == rule)
    return session.scalar(query) or 0


def counts_with_reasons(session: Session) -> list[tuple[str, str, str, str, int]]:
    """(rule, channel, state, reason, count) over the whole ledger: the simulation's report."""
    query = select(
        LedgerRow.rule, LedgerRow.channel, LedgerRow.state, LedgerRow.reason, func.count()
    ).group_by(LedgerRow.rule, LedgerRow.channel, LedgerRow.state, LedgerRow.reason)
    return [tuple(row) for row in session.execute(query)]  # type: ignore[misc]


def counts_by_state(session: Session, event_id: str) -> dict[tuple[str, str, str], int]:
    """(rule, channel, state) → count."""
    query = (
        select(LedgerRow.rule, LedgerRow.channel, LedgerRow.state, func.count())
        .where(LedgerRow.event_id == event_id)
        .group_by(LedgerRow.rule, LedgerRow.channel, LedgerRow.state)
    )
    return {(rule, channel, state): n for rule, channel, state, n in session.execute(query)}


def rowcount(result: Result) -> int:
    """Rows an UPDATE touched (typed: `Session.execute` returns a plain Result for any statement)."""
    return cast(CursorResult, result).rowcount or 0


def _chunks(items: list, size: int = CHUNK):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def retry_failed(session: Session, row_id: int, now: datetime) -> bool:
    """An organiser's retry: failed or unknown → planned, due now, with a fresh attempt budget. The
    scheduler queues it like any due row (and expires it if its validity has passed). For an `unknown` row
    the organiser has checked that it did not go out: this is the deliberate resend the invariant allows."""
    return _move(
        session,
        row_id,
        [S.FAILED, S.UNKNOWN],
        S.PLANNED,
        due_at=now,
        attempts=0,
        reason="",
        error_code=None,
        retry_at=None,
        queued_at=None,
        sending_at=None,
        updated_at=now,
    )


# -- messages rendered from a payload: broadcasts and change notices --------------------------------


@dataclass(frozen=True)
class PayloadMessage:
    """One message that is not planned from a rule but stored with what to render (template + extra)."""

    key: str
    rule: str  # broadcast:<id> or change:<sequence>
    delegate_id: str
    channel: str
    payload: str  # JSON: {"template": …, "extra": {…}}
    expires_at: datetime


def add_payload_messages(
    session: Session, event_id: str, messages: Sequence[PayloadMessage], now: datetime
) -> int:
    """Store the messages not stored yet (by key), due `now`; return how many were new. The planner never
    cancels them (they have a payload)."""
    existing = existing_keys(session, [m.key for m in messages])
    return insert_new(session, [_payload_values(m, event_id, now) for m in messages if m.key not in existing])


def existing_keys(session: Session, keys: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(list(keys)):
        found.update(session.scalars(select(LedgerRow.key).where(LedgerRow.key.in_(chunk))))
    return found


def _payload_values(message: PayloadMessage, event_id: str, now: datetime) -> dict:
    return {
        "key": message.key,
        "event_id": event_id,
        "rule": message.rule,
        "occurrence": "-",
        "delegate_id": message.delegate_id,
        "channel": message.channel,
        "due_at": now,
        "expires_at": message.expires_at,
        "state": S.PLANNED,
        "reason": "",
        "attempts": 0,
        "payload": message.payload,
        "created_at": now,
        "updated_at": now,
    }


def rules_named(session: Session, event_id: str, base: str) -> list[str]:
    """The distinct rules `base` and `base-N` (an earlier broadcast with the same id, sent --again)."""
    query = (
        select(LedgerRow.rule)
        .where(LedgerRow.event_id == event_id, or_(LedgerRow.rule == base, LedgerRow.rule.like(f"{base}-%")))
        .distinct()
    )
    return list(session.scalars(query))


# -- what `kallelse apply` compares -----------------------------------------------------------------


def open_planned(session: Session, event_id: str) -> dict[str, tuple[str, datetime]]:
    """key → (state, due) of the planned rows the planner may still move or cancel."""
    query = select(LedgerRow.key, LedgerRow.state, LedgerRow.due_at).where(
        LedgerRow.event_id == event_id,
        LedgerRow.state.in_(list(OPEN_STATES)),
        LedgerRow.payload.is_(None),
    )
    return {key: (state, due) for key, state, due in session.execute(query)}


def sent_before(
    session: Session, event_id: str, states: Iterable[LedgerState], before: datetime
) -> list[tuple[str, str, str]]:
    """(delegate, rule, occurrence) of planned messages in `states`, sent before `before` or unstamped."""
    query = select(LedgerRow.delegate_id, LedgerRow.rule, LedgerRow.occurrence).where(
        LedgerRow.event_id == event_id,
        LedgerRow.state.in_(list(states)),
        LedgerRow.payload.is_(None),
        or_(LedgerRow.sent_at.is_(None), LedgerRow.sent_at <= before),
    )
    return [(d, r, o) for d, r, o in session.execute(query)]
