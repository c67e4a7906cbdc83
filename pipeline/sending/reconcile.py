"""Settling `unknown` SMS rows: did Twilio take the text after all?

A row becomes `unknown` with a check time (its `retry_at`) when Twilio's answer was lost (the worker's
immediate look found nothing) or when a worker stopped while sending (`ledger.stuck_sending`). At each
check time the scheduler asks the channel's message list (`FindsSent`):

- found: the row is `sent`, with Twilio's sid;
- not found, and `RECONCILE_WINDOW_SECONDS` have passed since the send attempt: it never arrived, so the
  row goes back to `queued` and is sent (once more, for the first time as far as Twilio knows);
- not found yet, or Twilio could not be asked: look again `RECONCILE_AFTER_SECONDS` later.

A channel that cannot look (SMTP, the outbox) leaves the row `unknown` for a person, with a note.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from pipeline.channels.base import FindsSent, SmsMessage
from pipeline.errors import TransientDeliveryError
from pipeline.runtime import Runtime
from pipeline.store import ledger
from pipeline.store.models import LedgerRow
from pipeline.store.people import load_delegates

log = logging.getLogger(__name__)
CHECKS_PER_TICK = 100  # each is one request to Twilio; the rest wait for the next tick


def check_unknown(rt: Runtime, now: datetime) -> list[int]:
    """Look up every `unknown` row whose check is due; return the ids to enqueue (safe to resend)."""
    with rt.store.session() as session:
        rows = ledger.due_for_check(session, now, CHECKS_PER_TICK)
    return [row.id for row in rows if _check(rt, row, now) == "resend"]


def first_check_at(rt: Runtime, now: datetime) -> datetime:
    return now + timedelta(seconds=rt.settings.reconcile_after_seconds)


def _check(rt: Runtime, row: LedgerRow, now: datetime) -> str:
    channel = rt.sms_channel() if row.channel == "sms" else rt.email_channel()
    message = _message(rt, row)
    if not isinstance(channel, FindsSent) or message is None or row.sending_at is None:
        return _for_a_person(rt, row, now)
    try:
        sid = channel.find_sent(message, row.sending_at)
    except TransientDeliveryError as e:
        return _again(rt, row, now, f"Twilio's message list could not be read ({e.code})")
    if sid is not None:
        with rt.store.session() as session:
            ledger.settle_found(session, row.id, sid, now)
        log.info("settled %s: Twilio has it as %s", row.key, sid)
        return "sent"
    window = timedelta(seconds=rt.settings.reconcile_window_seconds)
    if now >= row.sending_at + window:
        with rt.store.session() as session:
            ledger.requeue_absent(session, row.id, _absent(window), now)
        log.info("%s is not in Twilio's list %s after the attempt: sending it", row.key, window)
        return "resend"
    return _again(rt, row, now, "not in Twilio's message list yet")


def _message(rt: Runtime, row: LedgerRow) -> SmsMessage | None:
    from pipeline.sending.worker import build_message

    with rt.store.session() as session:
        delegates = load_delegates(session, [row.delegate_id])
    if not delegates:
        return None
    try:
        message = build_message(rt, row, delegates[0])
    except Exception:  # cannot render it any more: a person decides, as before this check existed
        log.exception("cannot render %s to look it up", row.key)
        return None
    return message if isinstance(message, SmsMessage) else None


def _again(rt: Runtime, row: LedgerRow, now: datetime, why: str) -> str:
    at = first_check_at(rt, now)
    with rt.store.session() as session:
        ledger.check_again(
            session, row.id, at, f"may have been sent; {why}: looking again at {at:%H:%M:%S} UTC", now
        )
    return "later"


def _for_a_person(rt: Runtime, row: LedgerRow, now: datetime) -> str:
    with rt.store.session() as session:
        ledger.check_again(
            session, row.id, None, f"{row.reason}; cannot be looked up: check before pressing Retry", now
        )
    return "person"


def _absent(window: timedelta) -> str:
    minutes = int(window.total_seconds() // 60)
    return f"not in Twilio's message list {minutes} minutes after the attempt: never arrived, sending it"
