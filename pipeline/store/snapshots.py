"""The event file as applied: the baseline `kallelse apply` measures changes against."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipeline.store.models import AppliedEventRow


def latest_snapshot(session: Session, event_id: str) -> AppliedEventRow | None:
    query = select(AppliedEventRow).where(AppliedEventRow.event_id == event_id)
    return session.scalars(query.order_by(AppliedEventRow.sequence.desc()).limit(1)).first()


def latest_applied(session: Session) -> AppliedEventRow | None:
    """The most recently applied event file of any event (a process that cannot read its file)."""
    query = select(AppliedEventRow).order_by(AppliedEventRow.applied_at.desc(), AppliedEventRow.id.desc())
    return session.scalars(query.limit(1)).first()


def applied_sequence(session: Session, event_id: str) -> int:
    """The SEQUENCE of the calendar entries: the event file last applied (0 before any apply). Read by a
    worker with every batch of emails: the number alone, not the stored file."""
    query = select(func.max(AppliedEventRow.sequence)).where(AppliedEventRow.event_id == event_id)
    return session.scalar(query) or 0


def store_snapshot(session: Session, event_id: str, text: str, sequence: int, now: datetime) -> None:
    session.add(AppliedEventRow(event_id=event_id, sequence=sequence, toml=text, applied_at=now))
    session.flush()
