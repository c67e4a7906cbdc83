"""`kallelse export`: RSVPs, survey answers and the ledger as Excel-safe CSV and as JSON."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.delegates import Delegate
from pipeline.export import export_rows, neutralise, write_csv, write_json
from pipeline.store import Store, open_store
from pipeline.store.models import LedgerRow
from pipeline.store.people import record_rsvp, upsert_delegates
from pipeline.store.responses import record_survey_answer
from pipeline.timetable import Event, load_event

EVENT_FILE = Path(__file__).resolve().parent.parent / "config" / "event.toml"
NOW = datetime(2021, 11, 5, 13, 30, tzinfo=UTC)  # 14:30 in Stockholm
FORMULA = '=HYPERLINK("http://x")'


@pytest.fixture
def event() -> Event:
    return load_event(EVENT_FILE)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A hostile delegate, a Swedish one with å/ä/ö, answers, and two ledger rows."""
    store = open_store(f"sqlite:///{tmp_path / 'kallelse.sqlite3'}")
    delegates = [
        Delegate("d01", FORMULA, organisation="+46701740605", role="-1"),
        Delegate("d02", "Åsa Öberg", organisation="Skellefteå kommun", role="kso"),
    ]
    with store.session() as session:
        upsert_delegates(session, delegates, NOW)
        record_rsvp(session, "d01", "yes", "email", NOW)
        record_survey_answer(session, "d01", "overall", rating=5, channel="web", now=NOW)
        record_survey_answer(session, "d01", "comments", text="@SUM(A1:A9)", channel="web", now=NOW)
        record_survey_answer(session, "d02", "overall", rating=3, channel="sms", now=NOW)
        session.add_all(
            [_ledger("invitation:d01:email", "d01", "sent", ""), _ledger("pickup:d02", "d02", "failed")]
        )
    yield store
    store.close()


def _ledger(
    key: str, delegate_id: str, state: str, reason: str = "-2 is not a number\tnor =1+1"
) -> LedgerRow:
    return LedgerRow(
        key=key,
        event_id="sik-2021",
        rule=key.split(":")[0],
        delegate_id=delegate_id,
        channel="email",
        due_at=NOW,
        state=state,
        reason=reason,
        attempts=2,
        provider_id="<abc@example.org>",
        payload='{"body": "secret broadcast text"}',
        created_at=NOW,
        updated_at=NOW,
    )


def rows_of(store: Store, event: Event, what: str):
    with store.session() as session:
        return export_rows(session, event, what)  # type: ignore[arg-type]


def csv_text(store: Store, event: Event, what: str) -> str:
    stream = io.StringIO(newline="")
    write_csv(*rows_of(store, event, what), stream)
    return stream.getvalue()


def read_back(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"), newline=""), delimiter=";"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (FORMULA, "'" + FORMULA),
        ("+46 70 174 06 05", "'+46 70 174 06 05"),
        ("-1", "'-1"),
        ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("＝1+1", "'＝1+1"),
        ("Åsa Öberg", "Åsa Öberg"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_text_that_a_spreadsheet_would_run_as_a_formula_gets_a_leading_apostrophe(value, expected):
    """Cells beginning with = + - @ tab or CR (or full-width =+-@) are neutralised; others are untouched."""
    assert neutralise(value) == expected


def test_the_rsvp_csv_starts_with_a_bom_and_separates_cells_with_semicolons(store, event):
    """UTF-8 BOM first, then a ";"-separated header, so Swedish Excel opens it in columns with å, ä, ö."""
    text = csv_text(store, event, "rsvps")
    header = "delegate_id;name;organisation;role;answer;answered_at;channel;dinner;stop;dietary;comment;phone"
    assert text.startswith(f"\ufeff{header}\r\n")
    assert "Åsa Öberg;Skellefteå kommun;kso;none;;" in text


def test_the_rsvp_csv_neutralises_a_hostile_name_and_numbers_that_look_like_formulas(store, event):
    """A delegate named =HYPERLINK(...), an organisation "+46…" and a role "-1" read back as plain text."""
    hostile = read_back(csv_text(store, event, "rsvps"))[0]
    assert hostile["name"] == "'" + FORMULA
    assert hostile["organisation"] == "'+46701740605"
    assert hostile["role"] == "'-1"


def test_the_rsvp_export_has_the_latest_answer_its_local_time_and_channel(store, event):
    """d01 answered yes by email at 14:30 Stockholm time; d02 never answered."""
    rows = read_back(csv_text(store, event, "rsvps"))
    assert {k: rows[0][k] for k in ("answer", "answered_at", "channel")} == {
        "answer": "yes",
        "answered_at": "2021-11-05 14:30",
        "channel": "email",
    }
    assert (rows[1]["answer"], rows[1]["answered_at"], rows[1]["channel"]) == ("none", "", "")


def test_the_survey_export_has_one_row_per_delegate_and_a_column_per_question(store, event):
    """Columns follow event.toml's questions; a free-text "@SUM" answer is neutralised."""
    columns, rows = rows_of(store, event, "survey")
    assert columns == ["delegate_id", "name", "organisation", *(q.id for q in event.survey)]
    assert [row[0] for row in rows] == ["d01", "d02"]
    back = read_back(csv_text(store, event, "survey"))
    assert (back[0]["overall"], back[0]["tour"], back[0]["comments"]) == ("5", "", "'@SUM(A1:A9)")
    assert back[1]["overall"] == "3"


def test_the_messages_export_is_the_ledger_without_bodies_or_payloads(store, event):
    """Key, rule, channel, delegate, local due time, state, reason, attempts, provider id; no payload."""
    columns, _ = rows_of(store, event, "messages")
    assert columns == [
        "key", "rule", "channel", "delegate_id", "due_at", "state", "reason", "attempts", "provider_id",
    ]  # fmt: skip
    assert "secret broadcast text" not in csv_text(store, event, "messages")
    back = read_back(csv_text(store, event, "messages"))
    assert back[0]["due_at"] == "2021-11-05 14:30"
    assert back[1]["reason"] == "'-2 is not a number\tnor =1+1"
    assert back[1]["attempts"] == "2"


@pytest.mark.parametrize("what", ["rsvps", "survey", "messages"])
def test_json_round_trips_every_export_exactly(store, event, what):
    """JSON gives the same values back (times as ISO 8601 with the local offset), not neutralised."""
    columns, rows = rows_of(store, event, what)
    stream = io.StringIO()
    write_json(columns, rows, stream)
    records = json.loads(stream.getvalue())
    as_json = [[v.isoformat() if isinstance(v, datetime) else v for v in row] for row in rows]
    assert [[record[c] for c in columns] for record in records] == as_json
    assert all(list(record) == columns for record in records)


def test_json_keeps_the_hostile_name_as_it_is_and_times_with_their_offset(store, event):
    """JSON is for programs: the exact name, and 14:30+01:00 for the answer time."""
    stream = io.StringIO()
    write_json(*rows_of(store, event, "rsvps"), stream)
    first = json.loads(stream.getvalue())[0]
    assert first["name"] == FORMULA
    assert first["answered_at"] == "2021-11-05T14:30:00+01:00"


def test_an_unknown_export_is_refused(store, event):
    """Asking for anything but rsvps, survey or messages is a ValueError that lists the choices."""
    with pytest.raises(ValueError, match="rsvps, survey or messages"):
        rows_of(store, event, "delegates")


def test_the_rsvp_export_has_what_the_rsvp_page_collected(tmp_path):
    """Dinner, stop, dietary needs and comment from the RSVP page are columns of `export rsvps`."""
    from pipeline.store.people import RsvpDetails, record_rsvp_details

    store = open_store(f"sqlite:///{tmp_path / 'k.sqlite3'}")
    now = datetime(2021, 11, 1, 9, 0, tzinfo=UTC)
    with store.session() as session:
        upsert_delegates(session, [Delegate("d1", "Anna Berg", "anna@example.se")], now)
        record_rsvp_details(
            session, "d1", RsvpDetails(False, "airport", False, "Glutenfri", "Sen ankomst"), now
        )
    with store.session() as session:
        columns, rows = export_rows(
            session, load_event(Path(__file__).resolve().parent.parent / "config" / "event.toml"), "rsvps"
        )
    store.close()
    row = dict(zip(columns, rows[0], strict=True))
    assert (row["dinner"], row["stop"], row["dietary"], row["comment"]) == (
        False,
        "airport",
        "Glutenfri",
        "Sen ankomst",
    )
