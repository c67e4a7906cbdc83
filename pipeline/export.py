"""Exports for `kallelse export rsvps|survey|messages`: rows from the store, written as CSV or JSON.

CSV is written for Excel as Swedish organisers have it:
- UTF-8 with a byte-order mark, or Excel reads "Lövgren" as "LÃ¶vgren";
- ";" between cells: Swedish Excel splits on the regional list separator, which is ";" because "," is the
  decimal comma there; a comma-separated file lands in column A. (No "sep=;" line: it makes Excel ignore
  the BOM.) Python's csv module and LibreOffice read it back with delimiter=";";
- any text cell that begins with "=", "+", "-", "@", a tab or a carriage return (or their full-width
  forms) gets a leading "'", so a delegate named '=HYPERLINK(…)' stays text instead of becoming a formula
  (OWASP's CSV-injection advice). Numbers we produce are left alone; a phone "+46…" becomes "'+46…".
JSON is the exact data (no neutralising, times as ISO 8601 with offset) for programs, not spreadsheets.
Times are the event's local time. Message bodies are never exported: the ledger holds none, and payloads
(broadcast texts) stay out.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Literal, TextIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.store.models import DelegateRow, LedgerRow, RsvpRow, SurveyAnswerRow
from pipeline.timetable import Event

What = Literal["rsvps", "survey", "messages"]
Cell = str | int | float | bool | datetime | None
Rows = list[list[Cell]]

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "＝", "＋", "－", "＠")


def export_rows(session: Session, event: Event, what: What) -> tuple[list[str], Rows]:
    """Column names and rows for one export; datetimes are aware, in the event's time zone."""
    exporters: dict[str, Callable[[Session, Event], tuple[list[str], Rows]]] = {
        "rsvps": _rsvps,
        "survey": _survey,
        "messages": _messages,
    }
    if what not in exporters:
        raise ValueError(f"unknown export {what!r}: choose rsvps, survey or messages")
    return exporters[what](session, event)


def _local(event: Event, moment: datetime | None) -> datetime | None:
    return moment.astimezone(event.tz) if moment is not None else None


def _rsvps(session: Session, event: Event) -> tuple[list[str], Rows]:
    """One row per delegate: the answer that counts now, and when and how it was given."""
    latest: dict[str, RsvpRow] = {}
    for row in session.scalars(select(RsvpRow).order_by(RsvpRow.id)):
        latest[row.delegate_id] = row  # the last recorded is the answer that counts (store/people.py)
    columns = ["delegate_id", "name", "organisation", "role", "answer", "answered_at", "channel"]
    columns += ["dinner", "stop", "dietary", "comment"]  # what the RSVP page collects
    columns += ["phone"]  # for the bus list: whom to call
    rows: Rows = []
    for d in session.scalars(select(DelegateRow).order_by(DelegateRow.id)):
        answer = latest.get(d.id)
        when = _local(event, answer.at) if answer else None
        rows.append([d.id, d.name, d.organisation, d.role, d.rsvp, when, answer.channel if answer else None])
        rows[-1] += [d.dinner, d.stop, d.dietary, d.comment, d.phone]
    return columns, rows


def _survey(session: Session, event: Event) -> tuple[list[str], Rows]:
    """One row per delegate who answered, one column per question of the event's survey."""
    questions = [q.id for q in event.survey]
    answers: dict[str, dict[str, Cell]] = {}
    for a in session.scalars(select(SurveyAnswerRow).order_by(SurveyAnswerRow.at)):
        if a.question in questions:
            answers.setdefault(a.delegate_id, {})[a.question] = a.rating if a.rating is not None else a.text
    delegates = session.scalars(
        select(DelegateRow).where(DelegateRow.id.in_(answers)).order_by(DelegateRow.id)
    )
    rows: Rows = [
        [d.id, d.name, d.organisation, *(answers[d.id].get(q) for q in questions)] for d in delegates
    ]
    return ["delegate_id", "name", "organisation", *questions], rows


def _messages(session: Session, event: Event) -> tuple[list[str], Rows]:
    """The ledger, without bodies or payloads."""
    columns = [
        "key",
        "rule",
        "channel",
        "delegate_id",
        "due_at",
        "state",
        "reason",
        "attempts",
        "provider_id",
    ]
    query = select(LedgerRow).order_by(LedgerRow.due_at, LedgerRow.id)
    rows: Rows = [_ledger_cells(event, r) for r in session.scalars(query)]
    return columns, rows


def _ledger_cells(event: Event, r: LedgerRow) -> list[Cell]:
    due = _local(event, r.due_at)
    return [r.key, r.rule, r.channel, r.delegate_id, due, r.state, r.reason, r.attempts, r.provider_id]


# -- writers ------------------------------------------------------------------------------------


def neutralise(value: str) -> str:
    """A text that a spreadsheet would run as a formula, made plain text with a leading apostrophe."""
    return f"'{value}" if value.startswith(_FORMULA_STARTS) else value


def _csv_cell(value: Cell) -> str | int | float:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "ja" if value else "nej"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")  # what Excel recognises as a date and time
    if isinstance(value, int | float):
        return value
    return neutralise(str(value))


def write_csv(columns: Sequence[str], rows: Sequence[Sequence[Cell]], stream: TextIO) -> None:
    """Excel-safe CSV (see the module docstring). Open a file with newline="" and encoding="utf-8"."""
    stream.write("\ufeff")
    writer = csv.writer(stream, delimiter=";", lineterminator="\r\n")
    writer.writerow([neutralise(c) for c in columns])
    writer.writerows([_csv_cell(v) for v in row] for row in rows)


def _json_cell(value: Cell) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def write_json(columns: Sequence[str], rows: Sequence[Sequence[Cell]], stream: TextIO) -> None:
    """A JSON array of objects keyed by column, UTF-8 as is (no \\u escapes)."""
    records = [{c: _json_cell(v) for c, v in zip(columns, row, strict=True)} for row in rows]
    json.dump(records, stream, ensure_ascii=False, indent=2)
    stream.write("\n")
