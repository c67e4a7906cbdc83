"""The scheduler's lease and heartbeat, and the provider error counter: small rows several processes share.

One scheduler is active: it holds the lease row and renews it on every tick. A standby's `take_lease`
succeeds only once the holder's lease has run out, so it takes over within LEASE seconds of the active one
dying. The same row on SQLite and PostgreSQL (rather than an advisory lock, which lives on one connection
and is silently gone when that connection drops): one code path, and the heartbeat comes with it. Two
active schedulers for a moment would still be safe: every ledger move is a compare-and-set.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from pipeline.store.ledger import insert_for, rowcount
from pipeline.store.models import ProviderErrorRow, SchedulerLeaseRow

SCHEDULER = "scheduler"


def take_lease(session: Session, holder: str, now: datetime, lease: timedelta, name: str = SCHEDULER) -> bool:
    """Hold (or renew) the lease until now + lease; False while another holder's lease runs."""
    insert = insert_for(session)
    session.execute(
        insert(SchedulerLeaseRow)
        .values(name=name, holder=holder, expires_at=now + lease)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    result = session.execute(
        update(SchedulerLeaseRow)
        .where(
            SchedulerLeaseRow.name == name,
            or_(SchedulerLeaseRow.holder == holder, SchedulerLeaseRow.expires_at <= now),
        )
        .values(holder=holder, expires_at=now + lease)
    )
    return bool(rowcount(result))


def release_lease(session: Session, holder: str, now: datetime, name: str = SCHEDULER) -> None:
    """A scheduler stopping cleanly lets a standby take over at once."""
    session.execute(
        update(SchedulerLeaseRow)
        .where(SchedulerLeaseRow.name == name, SchedulerLeaseRow.holder == holder)
        .values(expires_at=now)
    )


def record_tick(session: Session, holder: str, at: datetime, seconds: float, name: str = SCHEDULER) -> None:
    session.execute(
        update(SchedulerLeaseRow)
        .where(SchedulerLeaseRow.name == name, SchedulerLeaseRow.holder == holder)
        .values(last_tick_at=at, tick_seconds=seconds)
    )


@dataclass(frozen=True)
class Heartbeat:
    holder: str
    expires_at: datetime
    last_tick_at: datetime | None
    tick_seconds: float | None


def heartbeat(session: Session, name: str = SCHEDULER) -> Heartbeat | None:
    row = session.get(SchedulerLeaseRow, name)
    if row is None:
        return None
    return Heartbeat(row.holder, row.expires_at, row.last_tick_at, row.tick_seconds)


def count_provider_error(session: Session, channel: str, code: str) -> None:
    insert = insert_for(session)
    statement = insert(ProviderErrorRow).values(channel=channel, code=code[:20], count=1)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["channel", "code"], set_={"count": ProviderErrorRow.count + 1}
        )
    )


def provider_errors(session: Session) -> dict[tuple[str, str], int]:
    return {
        (channel, code): count
        for channel, code, count in session.execute(
            select(ProviderErrorRow.channel, ProviderErrorRow.code, ProviderErrorRow.count)
        )
    }
