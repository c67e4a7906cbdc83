"""Timetable changes: compare the event file with the one last applied, re-plan, and tell exactly those
who were already told the old time or place.

The database keeps every applied event file (`applied_events`, one row per sequence). `kallelse apply`
compares the current file with the latest snapshot:

- which agenda items and bus stops changed start time or place (`compare`, pure);
- which planned sends move, appear or are cancelled (`diff_plan`, pure, computed before writing);
- who must be told (`who_to_tell`, pure): a delegate with a sent or delivered message whose rule
  mentions a changed item or stop (`Rule.mentions`, plus the rule's own anchor), sent before the file
  changed. A message still planned simply moves with the timetable: its reader will see the new time.

On confirmation `apply_changes` stores the snapshot (sequence + 1), re-plans, and stores one change
notice per delegate and reachable channel (rule `change:<sequence>`, template `change_notice`, with the
new SEQUENCE for the calendar entry). Everything is one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy.orm import Session

from pipeline.delegates import Delegate
from pipeline.planner import DUE, PlannedSend, plan, send_key
from pipeline.render import LANGUAGES, when
from pipeline.states import SENT_STATES, LedgerState
from pipeline.store import ledger
from pipeline.store.people import load_delegates
from pipeline.store.snapshots import latest_snapshot, store_snapshot
from pipeline.timetable import Event, Item, MayBeUnconfirmed, Rule, Stop, parse_event

_BUS = {"sv": "Bussen", "en": "The bus"}
_BUS_FROM = {"sv": "Bussen från {name}", "en": "The bus from {name}"}
_ROOM_TBA = {"sv": "lokalen meddelas senare", "en": "room to be announced"}


# -- what changed (pure) --------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    subject: str  # item:<id> | stop:<id> | session:<item id>.<session id>
    kind: Literal["time", "place"]
    old: datetime | str  # aware local start, or the place ("" when it was not yet confirmed)
    new: datetime | str
    at: datetime  # the new start (aware): a notice after it is no longer worth sending


def compare(old: Event, new: Event) -> list[Change]:
    """Start times and places of items, stops and sessions present in both files. End times only re-plan."""
    changes: list[Change] = []
    olds = {i.id: i for i in old.items}
    for item in new.items:
        before = olds.get(item.id)
        if before is None:
            continue
        at = new.local(item.start)
        if before.start != item.start:
            changes.append(Change(f"item:{item.id}", "time", old.local(before.start), at, at))
        if _known(before, "place") != _known(item, "place"):
            changes.append(
                Change(f"item:{item.id}", "place", _known(before, "place"), _known(item, "place"), at)
            )
        changes += _room_changes(before, item, at)
    old_stops = {s.id: s for s in old.stops}
    for stop in new.stops:
        was = old_stops.get(stop.id)
        if was is None:
            continue
        at = new.local(stop.time)
        if was.time != stop.time:
            changes.append(Change(f"stop:{stop.id}", "time", old.local(was.time), at, at))
        if (was.name, _known(was, "address")) != (stop.name, _known(stop, "address")):
            changes.append(Change(f"stop:{stop.id}", "place", _stop_place(was), _stop_place(stop), at))
    return sorted(changes, key=lambda c: (c.at, c.subject, c.kind))


def _known(owner: MayBeUnconfirmed, name: str) -> str:
    """A place as messages showed it: "" while the event file marked it not yet confirmed."""
    return "" if owner.unconfirmed(name) else str(getattr(owner, name))


def _stop_place(stop: Stop) -> str:
    address = _known(stop, "address")
    return f"{stop.name}, {address}" if address else stop.name


def _room_changes(before: Item, item: Item, at: datetime) -> list[Change]:
    olds = {s.id: s for s in before.sessions}
    return [
        Change(f"session:{item.id}.{s.id}", "place", _known(olds[s.id], "room"), _known(s, "room"), at)
        for s in item.sessions
        if s.id in olds and _known(olds[s.id], "room") != _known(s, "room")
    ]


def told_subjects(event: Event, rule: Rule, stop: str | None, role: str | None = None) -> set[str]:
    """The items, stops and sessions a rule's message told a delegate about: `stop` is their own pickup,
    `role` picks their own session of a split item (None: every session)."""
    subjects: set[str] = set()
    anchor = rule.anchor.removesuffix(".end")
    for mention in [*rule.mentions, "own_stop" if anchor == "own_stop" else anchor]:
        if mention == "*":  # the programme: every item, and their own stop (or all stops, having none)
            subjects |= {f"item:{i.id}" for i in event.items if _their_time(i, stop)}
            subjects |= {f"stop:{stop}"} if stop else {f"stop:{s.id}" for s in event.stops}
            subjects |= {s for i in event.items for s in _their_sessions(event, i, role)}
        elif mention == "own_stop":
            subjects |= {f"stop:{stop}"} if stop else set()
        elif mention.startswith("item:") and any(i.id == mention[5:] for i in event.items):
            item = event.item(mention[5:])
            subjects |= {mention} if _their_time(item, stop) else set()
            subjects |= _their_sessions(event, item, role)
        elif mention.startswith(("item:", "stop:")):
            subjects.add(mention)
    return subjects


def _their_time(item: Item, stop: str | None) -> bool:
    # A bus item's start is its departure from the first stop: news to those boarding there, or to those
    # with no stop of their own (told "the bus leaves at 09.00"); a rider picked up later has their own time.
    return item.kind != "bus" or not item.stops or stop is None or stop == item.stops[0]


def _their_sessions(event: Event, item: Item, role: str | None) -> set[str]:
    if not item.sessions:
        return set()
    own = event.session_for(item.id, role) if role is not None else None
    chosen = [own] if own is not None else ([] if role is not None else item.sessions)
    return {f"session:{item.id}.{s.id}" for s in chosen}


@dataclass(frozen=True)
class Told:
    """A message that went out: who got it, by which rule, for which occurrence (the stop, for pickups)."""

    delegate_id: str
    rule: str
    occurrence: str


@dataclass(frozen=True)
class Notice:
    delegate_id: str
    channels: tuple[str, ...]
    changes: tuple[Change, ...]


def who_to_tell(
    old: Event, changes: Sequence[Change], told: Iterable[Told], delegates: Iterable[Delegate]
) -> list[Notice]:
    """One notice per delegate told about a changed item or stop, listing just those changes."""
    rules = {r.id: r for r in old.rules}
    people = {d.id: d for d in delegates if d.rsvp != "no"}  # those who declined need no news
    heard: dict[str, set[str]] = {}
    for t in told:
        rule, delegate = rules.get(t.rule), people.get(t.delegate_id)
        if rule is None or delegate is None:
            continue
        stop = t.occurrence if rule.anchor == "own_stop" and t.occurrence != "-" else delegate.stop
        heard.setdefault(t.delegate_id, set()).update(told_subjects(old, rule, stop, delegate.role))
    notices = []
    for delegate_id, subjects in sorted(heard.items()):
        theirs = _without_bus_repeats(old, [c for c in changes if c.subject in subjects])
        channels = _reachable(people[delegate_id])
        if theirs and channels:
            notices.append(Notice(delegate_id, channels, tuple(theirs)))
    return notices


def _without_bus_repeats(event: Event, changes: list[Change]) -> list[Change]:
    # "The bus from the Wood Hotel: now 09.15" says it; "The bus: now 09.15" beside it is noise.
    stop_moved = {c.subject for c in changes if c.kind == "time" and c.subject.startswith("stop:")}
    bus_items = {
        f"item:{i.id}" for i in event.items if i.kind == "bus" and {f"stop:{s}" for s in i.stops} & stop_moved
    }
    return [c for c in changes if not (c.kind == "time" and c.subject in bus_items)]


def _reachable(delegate: Delegate) -> tuple[str, ...]:
    # Email carries the updated calendar entry; SMS is read within minutes on the day.
    email = bool(delegate.email) and not delegate.email_opt_out
    sms = bool(delegate.phone) and not delegate.sms_opt_out
    return tuple(c for c, ok in (("email", email), ("sms", sms)) if ok)


def describe(event: Event, change: Change, language: str) -> dict[str, str]:
    """{what, old, new} as the change_notice templates show them, in the delegate's language."""
    kind, _, ref = change.subject.partition(":")
    if kind == "stop":
        what = _BUS_FROM[language].format(name=event.stop(ref).name)
    elif kind == "session":
        item_id, _, session_id = ref.partition(".")
        title = next(s for s in event.item(item_id).sessions if s.id == session_id).title(language)
        if not change.new:  # a room no longer confirmed: say so rather than "now in "
            return {"what": title, "old": str(change.old), "new": _ROOM_TBA[language]}
        return {"what": title, "old": str(change.old), "new": str(change.new), "kind": "room"}
    else:
        item = event.item(ref)
        what = _BUS[language] if item.kind == "bus" else item.title(language)
    if isinstance(change.old, datetime) and isinstance(change.new, datetime):
        # The templates' `when` filter passes strings through: the payload is JSON, so times travel
        # already written out, with the day left out when it did not change.
        return {
            "what": what,
            "old": when(change.old, language, change.new),
            "new": when(change.new, language, change.old),
        }
    return {"what": what, "old": str(change.old), "new": str(change.new)}


# -- what the plan does (pure) -------------------------------------------------------------------


@dataclass(frozen=True)
class Move:
    key: str
    old_due: datetime
    new_due: datetime


@dataclass
class PlanDiff:
    moved: list[Move] = field(default_factory=list)
    added: list[PlannedSend] = field(default_factory=list)
    cancelled: list[tuple[str, str]] = field(default_factory=list)  # (key, why)


def diff_plan(before: Mapping[str, tuple[str, datetime]], sends: Iterable[PlannedSend]) -> PlanDiff:
    """Compare planned rows (key → (state, due)) with a new plan, as `sync_plan` would write it."""
    diff, seen = PlanDiff(), set()
    for send in sends:
        seen.add(send.key)
        state, due = before.get(send.key, (None, None))
        waiting = send.status in (LedgerState.PLANNED, DUE)
        if state == LedgerState.PLANNED and waiting and due != send.due_at:
            assert due is not None
            diff.moved.append(Move(send.key, due, send.due_at))
        elif state == LedgerState.PLANNED and send.status in (LedgerState.EXPIRED, LedgerState.SKIPPED):
            diff.cancelled.append((send.key, send.reason or send.status))
        elif state in (None, LedgerState.SKIPPED) and waiting:
            diff.added.append(send)
    for key, (state, _) in before.items():
        if state == LedgerState.PLANNED and key not in seen:
            diff.cancelled.append((key, "no longer in the plan"))
    return diff


# -- snapshots and the apply itself -------------------------------------------------------------


@dataclass
class ApplyPreview:
    first: bool  # no snapshot yet: this one becomes the baseline, nobody is told anything
    unchanged: bool  # the file is exactly the one last applied
    sequence: int  # the sequence the file gets when applied
    changes: list[Change]
    diff: PlanDiff
    notices: list[Notice]
    old: Event | None


def preview_apply(
    session: Session, event: Event, text: str, now: datetime, changed_at: datetime
) -> ApplyPreview:
    """What `apply_changes` would do. `changed_at`: when the file changed (its mtime); only messages
    sent before then told the old time (later ones were rendered from the new file)."""
    snapshot = latest_snapshot(session, event.event.id)
    delegates = load_delegates(session)
    diff = diff_plan(ledger.open_planned(session, event.event.id), _plan(session, event, delegates, now))
    if snapshot is None:
        return ApplyPreview(True, False, 0, [], diff, [], None)
    old = parse_event(snapshot.toml, f"the event file applied as sequence {snapshot.sequence}")
    unchanged = snapshot.toml == text
    changes = [] if unchanged else compare(old, event)
    notices = who_to_tell(old, changes, _told(session, event.event.id, changed_at), delegates)
    return ApplyPreview(
        False, unchanged, snapshot.sequence + (0 if unchanged else 1), changes, diff, notices, old
    )


def _plan(session: Session, event: Event, delegates: list[Delegate], now: datetime) -> list[PlannedSend]:
    return plan(event, delegates, ledger.ledger_view(session, event.event.id), now)


def _told(session: Session, event_id: str, changed_at: datetime) -> list[Told]:
    return [Told(*row) for row in ledger.sent_before(session, event_id, SENT_STATES, changed_at)]


@dataclass(frozen=True)
class Applied:
    sequence: int
    rule: str  # change:<sequence>: the notices' ledger rule ("" when none were made)
    notices: int  # ledger rows stored
    plan: ledger.SyncCounts


def apply_changes(
    session: Session, event: Event, text: str, now: datetime, changed_at: datetime
) -> tuple[ApplyPreview, Applied]:
    """Store the snapshot, re-plan and store the change notices, in the caller's transaction."""
    preview = preview_apply(session, event, text, now, changed_at)
    if preview.unchanged:
        return preview, Applied(preview.sequence, "", 0, ledger.SyncCounts())
    store_snapshot(session, event.event.id, text, preview.sequence, now)
    sends = _plan(session, event, load_delegates(session), now)
    counts = ledger.sync_plan(session, event.event.id, sends, now)
    rule = f"change:{preview.sequence}" if preview.notices else ""
    notices = _notices(session, event, preview, rule, now)
    stored = ledger.add_payload_messages(session, event.event.id, notices, now)
    return preview, Applied(preview.sequence, rule, stored, counts)


def _notices(
    session: Session, event: Event, preview: ApplyPreview, rule: str, now: datetime
) -> list[ledger.PayloadMessage]:
    people = {d.id: d for d in load_delegates(session, [n.delegate_id for n in preview.notices])}
    messages = []
    for notice in preview.notices:
        language = people[notice.delegate_id].language
        language = language if language in LANGUAGES else event.event.default_language
        extra = {
            "changes": [describe(event, c, language) for c in notice.changes],
            "sequence": preview.sequence,
        }
        payload = json.dumps({"template": "change_notice", "extra": extra}, ensure_ascii=False)
        soonest = min(c.at for c in notice.changes).astimezone(UTC)
        expires = soonest if soonest > now else now + ledger.PAYLOAD_VALIDITY
        for channel in notice.channels:
            key = send_key(event.event.id, rule, "-", notice.delegate_id, channel)
            messages.append(ledger.PayloadMessage(key, rule, notice.delegate_id, channel, payload, expires))
    return messages


def check_event_file(session: Session, event: Event, text: str, now: datetime, changed_at: datetime) -> int:
    """For the scheduler: store the first snapshot; afterwards return how many delegates a
    `kallelse apply` would notify (the scheduler re-plans by itself but never sends notices)."""
    snapshot = latest_snapshot(session, event.event.id)
    if snapshot is None:
        store_snapshot(session, event.event.id, text, 0, now)
        return 0
    if snapshot.toml == text:
        return 0
    old = parse_event(snapshot.toml, f"the event file applied as sequence {snapshot.sequence}")
    return len(
        who_to_tell(
            old, compare(old, event), _told(session, event.event.id, changed_at), load_delegates(session)
        )
    )
