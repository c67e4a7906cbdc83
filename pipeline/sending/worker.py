"""What a worker does with the rows of one broker message (`send_rows`): claim them, render, hand them
to their channel, record the outcomes.

Plain functions of a `Runtime`; the dramatiq actor in `sending.actors` is a thin wrapper. The order is what
makes a message go out at most once: the claim (queued → sending, compare-and-set) commits before the
provider is called, and the provider's id is recorded after. A crash between the two leaves the row in
`sending`, which the scheduler turns into `unknown` for reconciliation instead of resending blindly.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pipeline.channels.base import EmailMessage, FindsSent, SmsMessage
from pipeline.delegates import Delegate
from pipeline.errors import ConfigError, DeliveryError, PermanentDeliveryError, TransientDeliveryError
from pipeline.runtime import Runtime
from pipeline.sending.reconcile import first_check_at
from pipeline.states import LedgerState
from pipeline.store import leases, ledger
from pipeline.store.ledger import Claimed
from pipeline.store.models import LedgerRow
from pipeline.store.people import load_delegates
from pipeline.store.responses import set_phone_bad, set_sms_opt_out
from pipeline.store.snapshots import applied_sequence

if TYPE_CHECKING:
    from pipeline.sending.rate import SmsRate  # imports dramatiq, which the web app never loads

log = logging.getLogger(__name__)
S = LedgerState

# Templates whose emails carry the event as a calendar entry.


class RetryLater(Exception):
    """The row went back to `queued`; try again after `delay_ms`."""

    def __init__(self, delay_ms: int, reason: str):
        self.delay_ms = delay_ms
        super().__init__(reason)


NOT_CLAIMED = "not-claimed"  # another worker has the row, or it is done: nothing happened here


@dataclass(frozen=True)
class Outcome:
    state: str  # the LedgerState the row ended in, or NOT_CLAIMED
    detail: str = ""  # the provider's id when sent, else why
    row_id: int = 0
    retry_ms: int | None = None  # back in `queued`: try again after this long


def backoff_ms(attempt: int, minimum: int, maximum: int, rng: random.Random | None = None) -> int:
    """Exponential backoff with full jitter in its upper half: attempt 1 waits minimum/2..minimum."""
    ceiling = min(maximum, minimum * 2 ** max(0, attempt - 1))
    return int(ceiling * (0.5 + 0.5 * (rng or random).random()))


def send_row(rt: Runtime, row_id: int) -> Outcome:
    """Send ledger row `row_id` once, if this worker wins the claim; record how it ended. Raises
    RetryLater when the row went back to `queued` for another attempt."""
    outcomes = send_rows(rt, [row_id])
    if not outcomes:
        return Outcome(NOT_CLAIMED, row_id=row_id)
    if outcomes[0].retry_ms is not None:
        raise RetryLater(outcomes[0].retry_ms, outcomes[0].detail)
    return outcomes[0]


def send_rows(rt: Runtime, ids: Sequence[int], rate: SmsRate | None = None) -> list[Outcome]:
    """Send the rows of one broker message, each at most once (see `_send_batch`).

    With `rate` (SMS_RATE_PER_SECOND set) the SMS go a bucket's worth at a time: each few are claimed
    only once their tokens are taken, so they wait `queued`, not `sending`, and reach the provider
    spread over the second rather than in one burst per batch."""
    if rate is None:
        return _send_batch(rt, ids)
    with rt.store.session() as session:
        sms = ledger.queued_of_channel(session, ids, "sms")
    outcomes = _send_batch(rt, [i for i in ids if i not in sms])
    waiting = [i for i in ids if i in sms]
    for start in range(0, len(waiting), rate.per_bucket):
        chunk = waiting[start : start + rate.per_bucket]
        rate.take(len(chunk))
        outcomes += _send_batch(rt, chunk)
    return outcomes


def _send_batch(rt: Runtime, ids: Sequence[int]) -> list[Outcome]:
    """Claimed in one statement with their delegates, the SMS sent side by side (`rt.send_pool`, so
    provider latency is not paid one by one), emails one after another (they cost CPU, not waiting), the
    sent ones recorded in one statement.

    Only claimed rows get an outcome. A row is recorded `sent` after the whole batch's calls: a worker
    that dies in between leaves its rows in `sending`, which become `unknown`, never resent blindly."""
    if not ids:
        return []
    with rt.store.session() as session:
        rows = ledger.claim_many(session, ids, rt.clock())
        delegates = {d.id: d for d in load_delegates(session, {row.delegate_id for row in rows})}
        # Read once per batch, not per email: as fresh as the claim, so a later apply is seen next batch.
        sequences = _applied_sequences(rt, session) if any(r.channel == "email" for r in rows) else {}
    sms = [row for row in rows if row.channel == "sms"]
    lanes = _lanes(rt, len(sms))
    pool = rt.send_pool if lanes > 1 else None
    futures = [_submit(pool, rt, sms[lane::lanes], delegates) for lane in range(lanes)]
    results = [
        _attempt(rt, row, delegates.get(row.delegate_id), sequences) for row in rows if row.channel != "sms"
    ]
    error: BaseException | None = None
    for future in futures:
        for ended in future.result():
            if isinstance(ended, Outcome):
                results.append(ended)
            else:  # record what did go out before the message fails as a whole
                error = error or ended
    sent = {o.row_id: o.detail for o in results if o.state == S.SENT}
    if sent:
        with rt.store.session() as session:
            ledger.mark_sent_many(session, sent, rt.clock())
    if error is not None:
        raise error
    return results


# A provider answering this slowly (seconds) or slower gets each SMS of a batch in a lane of its own.
SLOW_ANSWER = 0.1


def _lanes(rt: Runtime, count: int) -> int:
    """In how many lanes (send-pool tasks, each sending its share one after another) a batch's `count` SMS
    go: one per SMS for a provider that takes its time (Twilio: 100–300 ms), so its latency is waited
    for side by side; fewer as it answers faster (a local relay, a test server), where a thread woken
    per SMS costs more CPU than the wait it saves. Follows the provider's recent answer times."""
    share = min(1.0, rt.sms_answer_seconds / SLOW_ANSWER)
    return max(1, min(count, math.ceil(count * share)))


def _note_answer_time(rt: Runtime, seconds: float) -> None:
    # A moving average; threads racing on it lose an update now and then, which does no harm.
    rt.sms_answer_seconds += (seconds - rt.sms_answer_seconds) * 0.05


def _submit(pool: Executor | None, rt: Runtime, rows: Sequence[Claimed], delegates: dict) -> Future:
    if pool is not None:
        return pool.submit(_attempt_each, rt, rows, delegates)
    future: Future = Future()
    future.set_result(_attempt_each(rt, rows, delegates))
    return future


def _attempt_each(rt: Runtime, rows: Sequence[Claimed], delegates: dict) -> list[Outcome | Exception]:
    """One lane: its rows one after another; a row that raises does not stop the others."""
    ended: list[Outcome | Exception] = []
    for row in rows:
        try:
            ended.append(_attempt(rt, row, delegates.get(row.delegate_id)))
        except Exception as e:
            ended.append(e)
    return ended


def _attempt(
    rt: Runtime, row: Claimed, delegate: Delegate | None, sequences: Mapping[str, int] | None = None
) -> Outcome:
    try:
        return _send_claimed(rt, row, delegate, sequences)
    except RetryLater as e:
        return Outcome(S.QUEUED, str(e), row.id, retry_ms=e.delay_ms)


def _send_claimed(
    rt: Runtime, row: Claimed, delegate: Delegate | None, sequences: Mapping[str, int] | None = None
) -> Outcome:
    """One claimed row: check it is still worth sending, render, call the channel. A `sent` outcome is
    recorded by the caller (with the rest of the batch); every other ending is recorded here."""
    now = rt.clock()
    if row.expires_at is not None and now >= row.expires_at:
        return _finish(rt, row, S.EXPIRED, "its validity ended before a worker reached it")
    if delegate is None:
        return _finish(rt, row, S.SKIPPED, "the delegate was removed")
    if row.channel == "sms" and delegate.sms_opt_out:
        return _finish(rt, row, S.SKIPPED, "opted out of SMS")
    if row.channel == "email" and delegate.email_opt_out:
        return _finish(rt, row, S.SKIPPED, "opted out of email")
    try:
        message = build_message(rt, row, delegate, sequences)
    except ConfigError as e:  # no good event file in this process yet: it may be fixed in a moment
        return _retry_or_fail(rt, row, TransientDeliveryError(f"event file: {e}", code="event-file"))
    except Exception as e:  # a template, rule or data problem: retrying cannot help
        log.exception("cannot render %s", row.key)
        return _finish(rt, row, S.FAILED, f"cannot render: {e}")
    try:
        if isinstance(message, SmsMessage):
            started = time.monotonic()
            receipt = rt.sms_channel().send(message)
            _note_answer_time(rt, time.monotonic() - started)
        else:
            receipt = rt.email_channel().send(message)
    except PermanentDeliveryError as e:
        _count_error(rt, row, e)
        return _finish(rt, row, S.FAILED, _record_unreachable(rt, row, delegate, e), e.code)
    except TransientDeliveryError as e:
        _count_error(rt, row, e)
        if e.maybe_sent:
            return _reconcile(rt, row, message, e)
        return _retry_or_fail(rt, row, e)
    log.info("sent %s %s (%s)", row.channel, row.key, receipt.provider_id)
    return Outcome(S.SENT, receipt.provider_id, row.id)


def _reconcile(rt: Runtime, row: Claimed, message, error: TransientDeliveryError) -> Outcome:
    """The provider may have taken the message before the connection failed: never resend on a guess.
    A channel with a message list is asked at once; if the list does not show it (yet), the row is
    `unknown` with a check time and `sending.reconcile` looks again later. Without a list: a person."""
    channel = rt.sms_channel() if row.channel == "sms" else rt.email_channel()
    if not isinstance(channel, FindsSent) or row.sending_at is None:
        return _finish(rt, row, S.UNKNOWN, f"{error}; {NO_LIST}")
    try:
        provider_id = channel.find_sent(message, row.sending_at)
    except TransientDeliveryError:
        provider_id = None
    if provider_id is None:
        at = first_check_at(rt, rt.clock())
        window = rt.settings.reconcile_window_seconds // 60
        note = (
            f"not in the provider's list yet: looking again at {at:%H:%M:%S} UTC, resent only if still "
            f"absent {window} minutes after the attempt"
        )
        return _finish(rt, row, S.UNKNOWN, f"{error}; {note}", check_at=at)
    with rt.store.session() as session:
        ledger.mark_sent(session, row.id, provider_id, rt.clock())
    log.info("reconciled %s: the provider had it as %s", row.key, provider_id)
    return Outcome(S.SENT, provider_id, row.id)


NO_LIST = (
    "the provider may have it and keeps no list to ask, so it is not resent by itself: check (for email, the "
    "mail server's log or the delegate) before pressing Retry"
)


def _retry_or_fail(rt: Runtime, row: Claimed, error: TransientDeliveryError) -> Outcome:
    """Retry with backoff (at least the provider's Retry-After) while the message is still worth sending:
    until its validity ends, or for MAX_ATTEMPTS when it has none."""
    delay = backoff_ms(row.attempts, rt.settings.retry_min_backoff_ms, rt.settings.retry_max_backoff_ms)
    delay = max(delay, int((error.retry_after or 0) * 1000))
    now = rt.clock()
    if row.expires_at is not None and now + timedelta(milliseconds=delay) >= row.expires_at:
        return _finish(rt, row, S.EXPIRED, f"its validity ended while retrying; last error: {error}")
    if row.expires_at is None and row.attempts >= rt.settings.max_attempts:
        return _finish(rt, row, S.FAILED, f"gave up after {row.attempts} attempts: {error}", error.code)
    with rt.store.session() as session:
        ledger.mark_retry(session, row.id, str(error), error.code, now, now + timedelta(milliseconds=delay))
    log.info("retrying %s in %d ms: %s", row.key, delay, error)
    raise RetryLater(delay, str(error))


# Twilio's word that this number cannot get SMS from us: what to record about the delegate.
OPTED_OUT_AT_CARRIER = "21610"
NOT_FOR_SMS = {"21211": "not a valid phone number", "21614": "not a mobile number"}


def _record_unreachable(rt: Runtime, row: Claimed, delegate, error: PermanentDeliveryError) -> str:
    """After 21610 record a local SMS opt-out, after 21211/21614 mark the phone bad: the delegate is
    re-planned (updated_at moves), and a rule that allows email sends this message by email instead.
    Returns the reason the dashboard shows."""
    code = error.code or ""
    if row.channel != "sms" or code not in {OPTED_OUT_AT_CARRIER, *NOT_FOR_SMS}:
        return str(error)
    with rt.store.session() as session:
        if code == OPTED_OUT_AT_CARRIER:
            set_sms_opt_out(session, delegate.id, True, rt.clock())
            what = "the number has said STOP to SMS at the carrier (Twilio 21610): recorded as an SMS opt-out"
        else:
            set_phone_bad(session, delegate.id, rt.clock())
            what = f"the phone number is {NOT_FOR_SMS[code]} (Twilio {code}): no more SMS to it"
    log.info("delegate %s cannot get SMS (Twilio %s)", delegate.id, code)
    return f"{what}; {'it goes by email instead' if _email_allowed(rt, row, delegate) else 'no email for it'}"


def _email_allowed(rt: Runtime, row: Claimed, delegate) -> bool:
    rule = next((r for r in rt.event.rules if r.id == row.rule), None)
    can_email = bool(delegate.email) and not delegate.email_opt_out
    return row.payload is None and rule is not None and "email" in rule.channels and can_email


def _count_error(rt: Runtime, row: Claimed, error: DeliveryError) -> None:
    with rt.store.session() as session:
        leases.count_provider_error(session, row.channel, error.code or "unknown")


def _finish(
    rt: Runtime,
    row: Claimed,
    state: LedgerState,
    reason: str,
    code: str | None = None,
    check_at: datetime | None = None,
) -> Outcome:
    now = rt.clock()
    with rt.store.session() as session:
        if state == S.FAILED:
            ledger.mark_failed(session, row.id, reason, code, now)
        elif state == S.UNKNOWN:
            ledger.mark_unknown(session, row.id, reason, now, check_at)
        elif state == S.EXPIRED:
            ledger.mark_expired(session, row.id, reason, now)
        else:
            ledger.mark_skipped(session, row.id, reason, now)
    log.info("%s %s: %s", state, row.key, reason)
    return Outcome(state, reason, row.id)


def build_message(
    rt: Runtime, row: Claimed | LedgerRow, delegate, sequences: Mapping[str, int] | None = None
) -> EmailMessage | SmsMessage:
    """The message a ledger row sends now. `sequences`: the applied event file's sequence per event id,
    when the caller has read it (a worker's batch does, once); else it is read here."""
    from pipeline.ics import calendar_template, profile
    from pipeline.render import (
        ICS_TEMPLATES,
        EmailTemplate,
        email_profile,
        email_template,
        event_context,
        language_code,
        message_template,
        render_sms,
    )

    event = rt.event
    template, extra = message_template(event, row.rule, row.payload)
    links = rt.signer.lazy_links(delegate.id)
    lang = language_code(delegate.language)
    # Keyed by the event object too: a reload between reading `event` and here must not mix versions.
    shared = rt.cached(("context", lang, id(event)), lambda: event_context(event, lang))
    if row.channel == "sms":
        message = render_sms(
            rt.templates, event, delegate, template, key=row.key, links=links, extra=extra, shared=shared
        )
        callback = rt.status_callback_url()
        if callback:
            message = SmsMessage(message.key, message.to, message.body, callback)
        return message
    ics = None
    if template in ICS_TEMPLATES:  # the delegate's own days; SEQUENCE: the event file last applied
        if "sequence" in extra:
            sequence = int(extra["sequence"])
        elif sequences is not None and event.event.id in sequences:
            sequence = sequences[event.event.id]
        else:
            sequence = _applied_sequence(rt, event.event.id)
        # Made once per profile (language, stop, dinner) and sequence; the stamp and the link go in here.
        of = profile(delegate)
        calendar = rt.cached(
            ("ics", id(event), of, sequence), lambda: calendar_template(event, of, sequence=sequence)
        )
        ics = calendar.fill(rt.clock(), links["rsvp_url"])
    # Rendered once per profile (language, stop, dinner, role) and kept while its template files are.
    email_of = email_profile(delegate)
    email = rt.cached(
        ("email", row.rule, row.payload, email_of, id(event)),
        lambda: email_template(rt.templates, event, template, email_of, extra, shared),
        fresh=EmailTemplate.current,
    )
    return email.message(delegate, key=row.key, links=links, ics=ics)


def _applied_sequences(rt: Runtime, session) -> dict[str, int]:
    try:
        event_id = rt.event.event.id
    except ConfigError:  # no good event file in this process yet: each row says so when it is built
        return {}
    return {event_id: applied_sequence(session, event_id)}


def _applied_sequence(rt: Runtime, event_id: str) -> int:
    with rt.store.session() as session:
        return applied_sequence(session, event_id)
