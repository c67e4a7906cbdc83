"""Delegates in the database: import (upsert without duplicates), loading, RSVP answers."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.delegates import Delegate, derived_id, parse_one
from pipeline.errors import DelegateImportError
from pipeline.store.ledger import skip_planned_of
from pipeline.store.models import DelegateRow, RsvpRow

_FIELDS = [f.name for f in fields(Delegate)]
_COLUMNS = [getattr(DelegateRow, name) for name in _FIELDS]  # in Delegate's field order
# Answers the organiser imports may set these; replies and opt-outs recorded here are never overwritten.
_IMPORTED = ("name", "email", "phone", "language", "organisation", "role", "stop", "dinner")

# Where an RSVP came from (rsvp_history.channel). The delegate's own answers and the organisers' are never
# replaced by an import; an import may fill an empty answer or replace an earlier import.
RSVP_SOURCES = ("sms", "email", "link", "organiser", "import")
_REPLACEABLE_BY_IMPORT = frozenset({"import"})  # "web" (older rows) means "link": the delegate's own


@dataclass(frozen=True)
class KeptAnswer:
    """A row whose rsvp disagrees with what the delegate (or an organiser) said; their answer was kept."""

    delegate_id: str
    name: str
    file_answer: str
    kept_answer: str
    source: str
    at: datetime


@dataclass(frozen=True)
class SharedContact:
    """A row whose email or phone belongs to another delegate: two people, not one to merge."""

    delegate_id: str  # the row's id
    column: str  # "email" | "phone"
    owner_id: str
    owner_name: str


@dataclass(frozen=True)
class UpsertCounts:
    added: int
    updated: int
    unchanged: int
    kept: list[KeptAnswer] = field(default_factory=list)
    shared: list[SharedContact] = field(default_factory=list)  # not stored unless allowed


def load_delegates(session: Session, ids: Iterable[str] | None = None) -> list[Delegate]:
    """The delegates still taking part: a cancelled one is planned nothing more."""
    # Columns, not ORM objects: the same values at a fraction of the cost (workers load a batch per
    # message, the scheduler 5,000 at a time).
    query = select(*_COLUMNS).where(DelegateRow.cancelled_at.is_(None)).order_by(DelegateRow.id)
    if ids is not None:
        query = query.where(DelegateRow.id.in_(list(ids)))
    return [Delegate(*row) for row in session.execute(query)]


def upsert_delegates(
    session: Session,
    delegates: Sequence[Delegate],
    now: datetime,
    *,
    allow_shared_contact: bool = False,
    dry_run: bool = False,
) -> UpsertCounts:
    """Store imported delegates and say what happened, including what was refused or kept.

    A row matches a stored delegate by its id; a row without an id (its id derived from its email or
    phone) by that contact. A row whose email or phone belongs to another delegate is reported in
    `shared` and stored (as its own person) only with `allow_shared_contact`: an import never merges two
    people. An rsvp in the file replaces only an empty answer or an earlier import; any other
    disagreement is reported in `kept`. `dry_run` does all of it in a savepoint and rolls it back.
    Existing delegates are indexed once in memory, so an import of 100,000 rows stays linear."""
    savepoint = session.begin_nested()
    counts = _upsert(session, delegates, now, allow_shared_contact)
    session.flush()
    savepoint.rollback() if dry_run else savepoint.commit()
    return counts


def _upsert(
    session: Session, delegates: Sequence[Delegate], now: datetime, allow_shared: bool
) -> UpsertCounts:
    index = _Index(session)
    kept: list[KeptAnswer] = []
    shared: list[SharedContact] = []
    added = updated = unchanged = 0
    for delegate in delegates:
        row = index.match(delegate)
        sharing = index.shared(delegate, row)
        shared += sharing
        if sharing and not allow_shared:
            continue
        if row is None:
            row = _new_row(delegate, now)
            session.add(row)
            index.add(row)
            if delegate.rsvp != "none":
                session.add(RsvpRow(delegate_id=delegate.id, answer=delegate.rsvp, channel="import", at=now))
            added += 1
            continue
        changed = _apply_import(session, row, delegate, now, index, kept)
        index.add(row)
        updated += changed
        unchanged += not changed
    return UpsertCounts(added, updated, unchanged, kept, shared)


class _Index:
    """Existing delegates by id, lower-cased email and phone; and where each one's RSVP came from."""

    def __init__(self, session: Session):
        self.by_id: dict[str, DelegateRow] = {}
        self.by_email: dict[str, list[DelegateRow]] = {}
        self.by_phone: dict[str, list[DelegateRow]] = {}
        self.sources: dict[str, tuple[str, datetime]] = {}
        for row in session.scalars(select(DelegateRow)):
            self.add(row)
        history = select(RsvpRow.delegate_id, RsvpRow.channel, RsvpRow.at).order_by(RsvpRow.id)
        for delegate_id, channel, at in session.execute(history):
            self.sources[delegate_id] = (channel, at)  # the last recorded is the current answer

    def add(self, row: DelegateRow) -> None:
        self.by_id[row.id] = row
        for contacts, value in ((self.by_email, (row.email or "").lower()), (self.by_phone, row.phone)):
            if value and row not in contacts.setdefault(value, []):
                contacts[value].append(row)

    def match(self, delegate: Delegate) -> DelegateRow | None:
        """By id; a row without its own id is the person its email (else phone) was derived from."""
        if delegate.id in self.by_id or delegate.id != derived_id(delegate.email, delegate.phone):
            return self.by_id.get(delegate.id)
        if delegate.email:
            return next(iter(self.by_email.get(delegate.email.lower(), [])), None)
        return next(iter(self.by_phone.get(delegate.phone or "", [])), None)

    def shared(self, delegate: Delegate, row: DelegateRow | None) -> list[SharedContact]:
        """The row's email and phone where they are another delegate's and not already this one's."""
        found = []
        for column, contacts, value in (
            ("email", self.by_email, (delegate.email or "").lower()),
            ("phone", self.by_phone, delegate.phone or ""),
        ):
            if row is not None and (getattr(row, column) or "").lower() == value:
                continue  # already theirs: sharing it was accepted before
            owner = next((other for other in contacts.get(value, []) if other is not row), None)
            if value and owner is not None:
                found.append(SharedContact(delegate.id, column, owner.id, owner.name))
        return found


def _new_row(delegate: Delegate, now: datetime) -> DelegateRow:
    values = {name: getattr(delegate, name) for name in _FIELDS}
    return DelegateRow(**values, created_at=now, updated_at=now)


def _apply_import(
    session: Session,
    row: DelegateRow,
    delegate: Delegate,
    now: datetime,
    index: _Index,
    kept: list[KeptAnswer],
) -> bool:
    changed = False
    chosen = set(row.set_by_delegate.split(","))  # what they said on the RSVP page stays as they said it
    if row.phone != delegate.phone and "phone" not in chosen:
        row.phone_bad = False  # a new number deserves a new try
    for name in _IMPORTED:
        if name not in chosen and getattr(row, name) != getattr(delegate, name):
            setattr(row, name, getattr(delegate, name))
            changed = True
    # An empty cell erases nothing; a different answer replaces only an earlier import.
    if delegate.rsvp != "none" and delegate.rsvp != row.rsvp:
        source, at = index.sources.get(row.id, ("import", now))
        if row.rsvp == "none" or source in _REPLACEABLE_BY_IMPORT:
            record_rsvp(session, row.id, delegate.rsvp, "import", now)
            index.sources[row.id] = ("import", now)
            changed = True
        else:
            kept.append(KeptAnswer(row.id, row.name, delegate.rsvp, row.rsvp, _source_name(source), at))
    if changed:
        row.updated_at = now
    return changed


def _source_name(channel: str) -> str:
    return "link" if channel == "web" else channel


def rsvp_sources(session: Session) -> dict[str, str]:
    """Delegate id -> where their current RSVP came from (one of `RSVP_SOURCES`)."""
    history = select(RsvpRow.delegate_id, RsvpRow.channel).order_by(RsvpRow.id)
    return {delegate_id: _source_name(channel) for delegate_id, channel in session.execute(history)}


def record_rsvp(
    session: Session, delegate_id: str, answer: str, channel: str, now: datetime, note: str = ""
) -> None:
    """Keep every answer; the latest counts. `channel` is its source, one of `RSVP_SOURCES`: replies,
    links and organisers always record; imports go through `upsert_delegates`, which guards them."""
    session.add(RsvpRow(delegate_id=delegate_id, answer=answer, channel=channel, at=now, note=note))
    row = session.get(DelegateRow, delegate_id)
    if row is not None:
        row.rsvp = answer
        row.updated_at = now


@dataclass(frozen=True)
class RsvpDetails:
    """What the RSVP page asks besides yes/no. `stop` None with `own_way`: they come by themselves."""

    dinner: bool | None
    stop: str | None
    own_way: bool
    dietary: str
    comment: str


def record_rsvp_details(session: Session, delegate_id: str, details: RsvpDetails, now: datetime) -> None:
    """Store the page's answers on the delegate; dinner and stop, once chosen, are theirs (see import)."""
    row = session.get(DelegateRow, delegate_id)
    if row is None:
        raise LookupError(delegate_id)
    chosen = {name for name in row.set_by_delegate.split(",") if name}
    if details.dinner is not None:
        row.dinner = details.dinner
        chosen.add("dinner")
    if details.stop is not None or details.own_way:
        row.stop = details.stop
        chosen.add("stop")
    row.dietary, row.comment = details.dietary, details.comment
    row.set_by_delegate = ",".join(sorted(chosen))
    row.updated_at = now  # the scheduler re-plans them: a new stop means a new pickup text


def rsvp_history(session: Session, delegate_id: str) -> list[RsvpRow]:
    query = select(RsvpRow).where(RsvpRow.delegate_id == delegate_id).order_by(RsvpRow.at, RsvpRow.id)
    return list(session.scalars(query))


def cancel_delegate(session: Session, delegate_id: str, now: datetime) -> int | None:
    """Cancel one delegate: planned nothing more, their planned messages skipped; their history stays.
    Returns how many planned messages were stopped; None when there is no such (active) delegate."""
    row = session.get(DelegateRow, delegate_id)
    if row is None or row.cancelled_at is not None:
        return None
    row.cancelled_at = row.updated_at = now
    return skip_planned_of(session, delegate_id, "the delegate was cancelled", now)


# The fields an organiser may type for one delegate (the answer is recorded separately, with a source).
EDITABLE = ("name", "email", "phone", "language", "organisation", "role", "stop", "dinner")


def save_one(
    session: Session, values: dict[str, str], stops: Collection[str], now: datetime, source: str, *, new: bool
) -> list[str]:
    """Add one delegate, or edit the fields given for an existing one, checked as an imported row is.
    Returns the problems (nothing stored when there are any)."""
    delegate_id = values.get("id", "").strip()
    row = session.get(DelegateRow, delegate_id) if delegate_id else None
    if new and row is not None:
        return [f"{source}: id: {delegate_id!r} is already {row.name}"]
    if not new and row is None:
        return [f"{source}: id: no delegate {delegate_id!r}"]
    merged = {**(as_fields(row) if row is not None else {}), **values}
    try:
        result = parse_one(merged, source, stops)
    except DelegateImportError as e:
        return [str(e)]
    if result.errors:  # one row, so "SOURCE:2: column: …" says no more than "SOURCE: column: …"
        return [e.replace(f"{source}:2: ", f"{source}: ", 1) for e in result.errors]
    if row is not None:  # an organiser's change to what the delegate chose on the RSVP page counts
        current = as_fields(row)
        _release(row, [n for n in _IMPORTED if n in values and values[n].strip() != current.get(n, "")])
    counts = upsert_delegates(session, result.delegates, now)
    return [
        f"{source}: {c.column}: {merged.get(c.column)!r} belongs to {c.owner_name} ({c.owner_id})"
        for c in counts.shared
    ]


def _release(row: DelegateRow, names: list[str]) -> None:
    chosen = [name for name in row.set_by_delegate.split(",") if name and name not in names]
    row.set_by_delegate = ",".join(chosen)


def as_fields(row: DelegateRow) -> dict[str, str]:
    """A stored delegate as the text fields of a CSV row; its current answer too, so an edit keeps it."""
    dinner = "" if row.dinner is None else ("yes" if row.dinner else "no")
    fields = {name: str(getattr(row, name) or "") for name in EDITABLE if name != "dinner"}
    return fields | {"id": row.id, "dinner": dinner, "rsvp": row.rsvp}
