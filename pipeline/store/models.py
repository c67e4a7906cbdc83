"""Tables. Times are stored as naive UTC and come back as aware UTC (see `UTCDateTime`)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# BigInteger ids on PostgreSQL, but SQLite only autoincrements a plain INTEGER primary key.
BigId = BigInteger().with_variant(Integer(), "sqlite")

# Ledger states. A row moves forward only: planned → queued → sending → sent → delivered, or to one of
# the end states. `planned` and `skipped` may still be re-decided by the planner.
LEDGER_STATES = (
    "planned",
    "queued",
    "sending",
    "sent",
    "delivered",
    "failed",
    "expired",
    "skipped",
    "unknown",
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC out, on SQLite (which has no time zones) as on PostgreSQL."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


class Base(DeclarativeBase):
    pass


class DelegateRow(Base):
    __tablename__ = "delegates"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(254), index=True)
    phone: Mapped[str | None] = mapped_column(String(20), index=True)
    language: Mapped[str] = mapped_column(String(5), default="sv")
    organisation: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(50), default="official")
    stop: Mapped[str | None] = mapped_column(String(50))
    dinner: Mapped[bool | None] = mapped_column(Boolean)
    rsvp: Mapped[str] = mapped_column(String(10), default="none")
    sms_opt_out: Mapped[bool] = mapped_column(Boolean, default=False)
    email_opt_out: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # Twilio said this number cannot get SMS (21211 invalid, 21614 not a mobile); a new phone clears it.
    phone_bad: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    survey_answered: Mapped[bool] = mapped_column(Boolean, default=False)
    # Set when an organiser cancels the delegate: no more messages; what was sent stays in the history.
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # From the RSVP page: what the day needs. `set_by_delegate` names the fields the delegate chose there
    # ("dinner,stop"), which a later import never overwrites.
    dietary: Mapped[str] = mapped_column(Text, default="", server_default="")
    comment: Mapped[str] = mapped_column(Text, default="", server_default="")
    set_by_delegate: Mapped[str] = mapped_column(String(100), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)  # the scheduler polls for changes


class RsvpRow(Base):
    """Every answer ever given; the latest one is copied to `delegates.rsvp`."""

    __tablename__ = "rsvp_history"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    delegate_id: Mapped[str] = mapped_column(ForeignKey("delegates.id", ondelete="CASCADE"), index=True)
    answer: Mapped[str] = mapped_column(String(10))
    channel: Mapped[str] = mapped_column(String(20))  # import | sms | email | web | imap | organiser
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    note: Mapped[str] = mapped_column(Text, default="")


class LedgerRow(Base):
    """One row per rule × occurrence × delegate × channel: the memory of what was (to be) sent."""

    __tablename__ = "ledger"
    __table_args__ = (
        Index("ix_ledger_state_due", "state", "due_at"),
        # expire_overdue runs every tick: without this it would scan every planned row of a national event.
        Index("ix_ledger_state_expires", "state", "expires_at"),
        Index("ix_ledger_provider_id", "provider_id"),
        # stale_queued looks for queued rows older than the requeue grace, in two range scans.
        Index("ix_ledger_state_queued", "state", "queued_at"),
        Index("ix_ledger_state_retry", "state", "retry_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    event_id: Mapped[str] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(100))
    occurrence: Mapped[str] = mapped_column(String(100), default="-")
    delegate_id: Mapped[str] = mapped_column(String(64), index=True)
    channel: Mapped[str] = mapped_column(String(10))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(12), default="planned")
    reason: Mapped[str] = mapped_column(Text, default="")  # why skipped/expired/failed: the last error
    error_code: Mapped[str | None] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    provider_id: Mapped[str | None] = mapped_column(String(100))
    payload: Mapped[str | None] = mapped_column(Text)  # JSON for broadcasts and change notices
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sending_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class InboundRow(Base):
    """Every reply that reached us (SMS or email), understood or not. Deduplicated by provider id."""

    __tablename__ = "inbound"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(10))  # sms | email | web
    provider_id: Mapped[str] = mapped_column(String(255), unique=True)  # MessageSid or Message-ID
    delegate_id: Mapped[str | None] = mapped_column(String(64), index=True)
    sender: Mapped[str] = mapped_column(String(254))
    body: Mapped[str] = mapped_column(Text)
    context: Mapped[str] = mapped_column(String(10), default="none")  # what they were last asked
    kind: Mapped[str] = mapped_column(String(10))  # rsvp | rating | opt_out | opt_in | help | unknown
    value: Mapped[str | None] = mapped_column(String(50))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # When an organiser dealt with it, and how: handled | rsvp | answered. NULL: still waiting for a person.
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    handled_how: Mapped[str | None] = mapped_column(String(20))


class SurveyAnswerRow(Base):
    """One answer per delegate and question; a later answer replaces an earlier one."""

    __tablename__ = "survey_answers"
    __table_args__ = (Index("ux_survey_delegate_question", "delegate_id", "question", unique=True),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    delegate_id: Mapped[str] = mapped_column(ForeignKey("delegates.id", ondelete="CASCADE"))
    question: Mapped[str] = mapped_column(String(64))
    rating: Mapped[int | None] = mapped_column(Integer)
    text: Mapped[str | None] = mapped_column(Text)
    channel: Mapped[str] = mapped_column(String(10))  # sms | web
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class AppliedEventRow(Base):
    """The event file as last applied (`kallelse apply`): what change notices are measured against.

    One row per applied version; the highest sequence is the current one, and is the SEQUENCE of the
    calendar entry sent with its change notices."""

    __tablename__ = "applied_events"
    __table_args__ = (Index("ux_applied_event_sequence", "event_id", "sequence", unique=True),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64))
    sequence: Mapped[int] = mapped_column(Integer)
    toml: Mapped[str] = mapped_column(Text)
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SchedulerLeaseRow(Base):
    """Which scheduler is active, and its heartbeat. One row per lease name ("scheduler").

    The holder renews `expires_at` on every tick; a standby takes the row over once it has expired. The
    last tick's time and duration are what `/healthz` and `/metrics` report."""

    __tablename__ = "scheduler_lease"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_tick_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    tick_seconds: Mapped[float | None] = mapped_column(Float)


class ProviderErrorRow(Base):
    """How many times each provider error code was seen, per channel: the `/metrics` counter, kept in the
    database because workers, scheduler and web are separate processes."""

    __tablename__ = "provider_errors"

    channel: Mapped[str] = mapped_column(String(10), primary_key=True)
    code: Mapped[str] = mapped_column(String(20), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)
