"""Delegates in the database: import (upsert without duplicates), loading, RSVP answers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import select
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
    """Store imported delegates: a re-import matches by id, else email, else phone; never a duplicate.

    Existing delegates are indexed once in memory, so an import of 100,000 rows stays linear."""
    index = _Index(session)
    added = updated = unchanged = 0
    for delegate in delegates:
        row = index.match(delegate)
        if row is None:
            row = _new_row(delegate, now)
            session.add(row)
            index.add(row)
            if delegate.rsvp != "none":
                session.add(RsvpRow(delegate_id=delegate.id, answer=delegate.rsvp, channel="import", at=now))
            added += 1
            continue
        changed = _apply_import(session, row, delegate, now)
        index.add(row)
        updated += changed
        unchanged += not changed
    session.flush()
    return UpsertCounts(added, updated, unchanged)


class _Index:
    """Existing delegates by id, lower-cased email and phone."""

    def __init__(self, session: Session):
        self.by_id: dict[str, DelegateRow] = {}
        self.by_email: dict[str, DelegateRow] = {}
        self.by_phone: dict[str, DelegateRow] = {}
        for row in session.scalars(select(DelegateRow)):
            self.add(row)

    def add(self, row: DelegateRow) -> None:
        self.by_id[row.id] = row
        if row.email:
            self.by_email.setdefault(row.email.lower(), row)
        if row.phone:
            self.by_phone.setdefault(row.phone, row)

    def match(self, delegate: Delegate) -> DelegateRow | None:
        return (
            self.by_id.get(delegate.id)
            or (self.by_email.get(delegate.email.lower()) if delegate.email else None)
            or (self.by_phone.get(delegate.phone) if delegate.phone else None)
        )


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
