"""Delegates in the database: import (upsert without duplicates), loading, RSVP answers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from pipeline.delegates import Delegate
from pipeline.store.models import DelegateRow, RsvpRow

_FIELDS = [f.name for f in fields(Delegate)]
# Answers the organiser imports may set these; replies and opt-outs recorded here are never overwritten.
_IMPORTED = ("name", "email", "phone", "language", "organisation", "role", "stop", "dinner")


@dataclass(frozen=True)
class UpsertCounts:
    added: int
    updated: int
    unchanged: int


def to_delegate(row: DelegateRow) -> Delegate:
    return Delegate(**{name: getattr(row, name) for name in _FIELDS})


def load_delegates(session: Session, ids: Iterable[str] | None = None) -> list[Delegate]:
    query = select(DelegateRow).order_by(DelegateRow.id)
    if ids is not None:
        query = query.where(DelegateRow.id.in_(list(ids)))
    return [to_delegate(row) for row in session.scalars(query)]


def upsert_delegates(session: Session, delegates: Sequence[Delegate], now: datetime) -> UpsertCounts:
    """Store imported delegates: a re-import matches by id, else email, else phone; never a duplicate."""
    added = updated = unchanged = 0
    for delegate in delegates:
        row = _match(session, delegate)
        if row is None:
            session.add(_new_row(delegate, now))
            if delegate.rsvp != "none":
                session.add(RsvpRow(delegate_id=delegate.id, answer=delegate.rsvp, channel="import", at=now))
            session.flush()
            added += 1
            continue
        changed = _apply_import(session, row, delegate, now)
        updated += changed
        unchanged += not changed
    return UpsertCounts(added, updated, unchanged)


def _match(session: Session, delegate: Delegate) -> DelegateRow | None:
    row = session.get(DelegateRow, delegate.id)
    if row is not None:
        return row
    conditions = []
    if delegate.email:
        conditions.append(DelegateRow.email == delegate.email)
    if delegate.phone:
        conditions.append(DelegateRow.phone == delegate.phone)
    if not conditions:
        return None
    return session.scalars(select(DelegateRow).where(or_(*conditions)).limit(1)).first()


def _new_row(delegate: Delegate, now: datetime) -> DelegateRow:
    values = {name: getattr(delegate, name) for name in _FIELDS}
    return DelegateRow(**values, created_at=now, updated_at=now)


def _apply_import(session: Session, row: DelegateRow, delegate: Delegate, now: datetime) -> bool:
    changed = False
    for name in _IMPORTED:
        if getattr(row, name) != getattr(delegate, name):
            setattr(row, name, getattr(delegate, name))
            changed = True
    # An answer collected elsewhere counts only when it is new: a re-import never erases a reply.
    if delegate.rsvp != "none" and delegate.rsvp != row.rsvp:
        record_rsvp(session, row.id, delegate.rsvp, "import", now)
        changed = True
    if changed:
        row.updated_at = now
    return changed


def record_rsvp(
    session: Session, delegate_id: str, answer: str, channel: str, now: datetime, note: str = ""
) -> None:
    """Keep every answer; the latest counts."""
    session.add(RsvpRow(delegate_id=delegate_id, answer=answer, channel=channel, at=now, note=note))
    row = session.get(DelegateRow, delegate_id)
    if row is not None:
        row.rsvp = answer
        row.updated_at = now


def rsvp_history(session: Session, delegate_id: str) -> list[RsvpRow]:
    query = select(RsvpRow).where(RsvpRow.delegate_id == delegate_id).order_by(RsvpRow.at, RsvpRow.id)
    return list(session.scalars(query))
