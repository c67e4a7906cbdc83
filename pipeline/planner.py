"""The planner: what should be sent to whom, and when. PURE: it takes `now` and never reads a clock.

plan(event, delegates, ledger, now) returns one `PlannedSend` per rule × occurrence × delegate × channel
in the audience, each with a deterministic key and a decision as of `now`:

    planned   due later
    due       due now (or overdue but still valid: late registrants get what is still useful)
    expired   past its validity window (recorded, never sent)
    skipped   not to be sent, with a reason (opted out of SMS)

Keys already in the ledger in a state other than planned/skipped are done or in flight: they are returned
with that state and never re-decided, so planning twice never sends twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pipeline.delegates import Delegate
from pipeline.states import OPEN_STATES, LedgerState
from pipeline.timetable import Event, Rule, anchor_time, apply_offset, parse_offset, resolve_local

# OPEN_STATES: ledger states the planner may still change; any other means the message is in flight or done.
# A channel that did not carry the message gives way to the next one.
NOT_CARRIED = OPEN_STATES | {LedgerState.EXPIRED, LedgerState.FAILED}
# A decision, not a ledger state: due now (stored as planned; the scheduler queues it at its next pass).
DUE = "due"


@dataclass(frozen=True)
class PlannedSend:
    key: str
    rule: str
    occurrence: str
    delegate: str
    channel: str
    due_at: datetime  # aware, UTC
    expires_at: datetime | None
    status: str  # DUE, or a LedgerState: planned | expired | skipped, or the row's state once in flight
    reason: str = ""


def send_key(event_id: str, rule_id: str, occurrence: str, delegate_id: str, channel: str) -> str:
    return f"{event_id}:{rule_id}:{occurrence}:{delegate_id}:{channel}"


def plan(
    event: Event,
    delegates: Iterable[Delegate],
    ledger: Mapping[str, str],
    now: datetime,
) -> list[PlannedSend]:
    """The whole communication schedule as of `now` (aware). `ledger` maps key → ledger state."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    # In UTC: comparing two times in the event's own zone ignores `fold`, wrong in the repeated hour.
    now = now.astimezone(UTC)
    sends: list[PlannedSend] = []
    windows: dict[tuple[str, str | None], tuple[datetime, datetime] | None] = {}
    for delegate in delegates:
        for rule in event.rules:
            sends.extend(plan_rule(event, rule, delegate, ledger, now, windows))
    return sends


def window(event: Event, rule: Rule, stop_id: str | None) -> tuple[datetime, datetime] | None:
    """(due, expires) of a rule for a delegate boarding at `stop_id`, or None when it has no anchor."""
    anchor = anchor_time(event, rule, stop_id)
    if anchor is None:
        return None
    due = apply_offset(anchor, parse_offset(rule.when), event.tz)
    if rule.until:
        return due, apply_offset(anchor, parse_offset(rule.until), event.tz)
    return due, event.local(event.event.end)


def plan_rule(
    event: Event,
    rule: Rule,
    delegate: Delegate,
    ledger: Mapping[str, str],
    now: datetime,
    windows: dict[tuple[str, str | None], tuple[datetime, datetime] | None] | None = None,
) -> list[PlannedSend]:
    if not in_audience(rule, delegate):
        return []
    # A rule's times depend only on the delegate's stop: computed once per stop, not per delegate.
    cache = {} if windows is None else windows
    stop_key = delegate.stop if rule.anchor == "own_stop" else None
    if (rule.id, stop_key) not in cache:
        cache[(rule.id, stop_key)] = window(event, rule, delegate.stop)
    times = cache[(rule.id, stop_key)]
    if times is None:
        return []
    due, expires = times
    occurrence = delegate.stop if rule.anchor == "own_stop" and delegate.stop else "-"
    out = []
    for channel in choose_channels(event, rule, occurrence, delegate, ledger):
        key = send_key(event.event.id, rule.id, occurrence, delegate.id, channel)
        state = ledger.get(key)
        if state is not None and state not in OPEN_STATES:
            out.append(
                PlannedSend(key, rule.id, occurrence, delegate.id, channel, _utc(due), _utc(expires), state)
            )
            continue
        status, at, reason = decide(event, rule, channel, delegate, due, expires, now)
        out.append(
            PlannedSend(
                key, rule.id, occurrence, delegate.id, channel, _utc(at), _utc(expires), status, reason
            )
        )
    return out


def decide(
    event: Event,
    rule: Rule,
    channel: str,
    delegate: Delegate,
    due: datetime,
    expires: datetime,
    now: datetime,
) -> tuple[str, datetime, str]:
    """(status, when to send, reason) for one message not yet sent."""
    if channel == "sms" and delegate.sms_opt_out:
        return LedgerState.SKIPPED, due, "opted out of SMS"
    if channel == "sms" and delegate.phone_bad:
        return (
            LedgerState.SKIPPED,
            due,
            "the phone number cannot get SMS (Twilio said invalid or not a mobile)",
        )
    if channel == "email" and delegate.email_opt_out:
        return LedgerState.SKIPPED, due, "opted out of email"
    quiet = channel == "sms" and rule.quiet_hours
    at = after_quiet_hours(event, due) if quiet else due
    if at < now:  # overdue: a late registrant, or the scheduler was down
        at = after_quiet_hours(event, now) if quiet else now
    if at >= expires:
        if quiet and at != max(due, now):
            return LedgerState.EXPIRED, at, "quiet hours last until it is no longer worth sending"
        return LedgerState.EXPIRED, at, f"registered or planned after its validity ({_local(event, expires)})"
    return (DUE if at <= now else LedgerState.PLANNED), (due if at == now and due < now else at), ""


def after_quiet_hours(event: Event, at: datetime) -> datetime:
    """`at`, or the end of the quiet hours it falls in (local time, DST-correct)."""
    quiet = event.quiet_hours
    local = at.astimezone(event.tz)
    if not quiet.contains(local.time().replace(tzinfo=None)):
        return at
    day = local.date()
    if quiet.start > quiet.end and local.time().replace(tzinfo=None) >= quiet.start:
        day += timedelta(days=1)  # evening part of a quiet span that crosses midnight
    return resolve_local(datetime.combine(day, quiet.end), event.tz)


def choose_channels(
    event: Event, rule: Rule, occurrence: str, delegate: Delegate, ledger: Mapping[str, str]
) -> list[str]:
    reachable: list[str] = [c for c in rule.channels if _can_receive(delegate, c)]
    if rule.channel_mode == "all":
        return reachable
    # "first": keep a channel that already carried (or is carrying) this message, so a delegate who
    # gains a phone later is not told the same thing twice; one that failed for good gives way to the next.
    states: dict[str, str | None] = {
        c: ledger.get(send_key(event.event.id, rule.id, occurrence, delegate.id, c)) for c in rule.channels
    }
    for channel in rule.channels:
        if states[channel] is not None and states[channel] not in NOT_CARRIED:
            return [channel]
    usable = [c for c in reachable if states[c] != LedgerState.FAILED and not _opted_out(delegate, c)]
    return usable[:1] or [c for c in reachable if states[c] != LedgerState.FAILED][:1]


def in_audience(rule: Rule, delegate: Delegate) -> bool:
    a = rule.audience
    checks = (
        not a.rsvp or delegate.rsvp in a.rsvp,
        not a.roles or delegate.role in a.roles,
        delegate.role not in a.not_roles,
        not a.stops or (delegate.stop is not None and ("*" in a.stops or delegate.stop in a.stops)),
        not a.languages or delegate.language in a.languages,
        a.dinner is None or bool(delegate.dinner) == a.dinner,
        a.survey_answered is None or delegate.survey_answered == a.survey_answered,
    )
    return all(checks)


def _opted_out(delegate: Delegate, channel: str) -> bool:
    return delegate.sms_opt_out if channel == "sms" else delegate.email_opt_out


def _can_receive(delegate: Delegate, channel: str) -> bool:
    return bool(delegate.email) if channel == "email" else bool(delegate.phone) and not delegate.phone_bad


def _utc(at: datetime) -> datetime:
    return at.astimezone(UTC)


def _local(event: Event, at: datetime) -> str:
    return at.astimezone(event.tz).strftime("%Y-%m-%d %H:%M")
