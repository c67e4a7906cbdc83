"""Timetable changes: what changed, who was told the old time, and the change notices `apply` sends."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import icalendar
import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from pipeline.changes import (
    Change,
    apply_changes,
    check_event_file,
    compare,
    preview_apply,
    told_subjects,
)
from pipeline.cli import main
from pipeline.delegates import Delegate
from pipeline.errors import ConfigError
from pipeline.runtime import Runtime
from pipeline.sending.batch import send_batch_now
from pipeline.sending.scheduler import Scheduler
from pipeline.settings import Settings
from pipeline.store import Store, open_store
from pipeline.store.models import LedgerRow
from pipeline.store.people import record_rsvp, upsert_delegates
from pipeline.store.snapshots import latest_snapshot
from pipeline.timetable import load_event, parse_event

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "config" / "event.toml"
STOCKHOLM = load_event(SHIPPED).tz
BEFORE = datetime(2021, 11, 24, 11, 0, tzinfo=UTC)  # noon the day before, when the bus is moved
CHANGED_AT = BEFORE + timedelta(minutes=5)  # the file's mtime
HOTEL_STOP = "time = 2021-11-25T09:00:00"  # the Wood Hotel stop; the bus item says `start = …`
ANNA = Delegate("anna", "Anna Berg", "anna@example.se", "+46701740601", "sv", stop="hotel", rsvp="yes")
BO = Delegate("bo", "Bo Ek", None, "+46701740602", "sv", stop="hotel", rsvp="yes")
CECILIA = Delegate("cecilia", "Cecilia Hall", None, "+46701740603", "en", dinner=True, rsvp="yes")


@pytest.fixture
def event_file(tmp_path: Path) -> Path:
    return Path(shutil.copy(SHIPPED, tmp_path / "event.toml"))


@pytest.fixture
def settings(tmp_path: Path, event_file: Path) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'kallelse.sqlite3'}",
        event_file=event_file,
        templates_dir=ROOT / "templates",
        broker_url="",
    )


@pytest.fixture
def store(settings: Settings, event_file: Path) -> Iterator[Store]:
    """Delegates stored, the shipped file applied as the baseline, and some messages already sent:
    Anna's day-before and pickup texts, Cecilia's dinner and day-before texts. Bo's pickup is planned."""
    store = open_store(settings.effective_database_url)
    with store.session() as session:
        upsert_delegates(session, [ANNA, BO, CECILIA], BEFORE)
        apply(session, event_file, BEFORE - timedelta(days=1))
        mark_sent(session, "day-before:-:anna:sms", "pickup:hotel:anna:sms", "dinner:-:cecilia:sms")
        mark_sent(session, "day-before:-:cecilia:sms")
    yield store
    store.close()


def apply(session, event_file: Path, now: datetime = BEFORE, changed_at: datetime = CHANGED_AT):
    text = event_file.read_text(encoding="utf-8")
    return apply_changes(session, parse_event(text), text, now, changed_at)


def mark_sent(session, *key_ends: str, at: datetime = BEFORE - timedelta(hours=20)) -> None:
    for end in key_ends:
        result = session.execute(
            update(LedgerRow).where(LedgerRow.key == f"sik-2021:{end}").values(state="sent", sent_at=at)
        )
        assert result.rowcount == 1, end


def edit(event_file: Path, old: str, new: str) -> None:
    text = event_file.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    event_file.write_text(text.replace(old, new), encoding="utf-8")


def rows(store: Store, rule: str | None = None) -> list[LedgerRow]:
    query = select(LedgerRow).order_by(LedgerRow.key)
    with store.session() as session:
        return list(session.scalars(query.where(LedgerRow.rule == rule) if rule else query))


def due_of(store: Store, key_end: str) -> datetime:
    return next(r.due_at for r in rows(store) if r.key == f"sik-2021:{key_end}")


# -- what changed (pure) ------------------------------------------------------------------------


def test_moving_a_stop_is_one_time_change_in_local_time(event_file):
    """The hotel stop 09:00 → 09:15 is the only change; an unchanged file has none."""
    old = load_event(event_file)
    edit(event_file, HOTEL_STOP, "time = 2021-11-25T09:15:00")
    new = load_event(event_file)
    nine = datetime(2021, 11, 25, 9, 0, tzinfo=STOCKHOLM)
    quarter_past = nine + timedelta(minutes=15)
    assert compare(old, new) == [Change("stop:hotel", "time", nine, quarter_past, quarter_past)]
    assert compare(old, old) == []


def test_a_new_place_for_an_item_is_a_place_change(event_file):
    """Dinner moved to another restaurant: old and new place."""
    old = load_event(event_file)
    edit(
        event_file,
        'place = "The Wood Hotel"\nspeakers = [\n  { name = "Kristina',
        'place = "Nordanå"\nspeakers = [\n  { name = "Kristina',
    )
    [change] = compare(old, load_event(event_file))
    assert (change.subject, change.kind, change.old, change.new) == (
        "item:dinner",
        "place",
        "The Wood Hotel",
        "Nordanå",
    )


@pytest.mark.parametrize(
    ("rule", "stop", "role", "expected"),
    [
        ("pickup", "hotel", "official", {"stop:hotel"}),
        ("day-before", "airport", "official", {"stop:airport", "item:lunch"}),
        ("day-before", None, "official", {"item:lunch"}),
        ("dinner", None, "official", {"item:dinner"}),
        ("day2-room-kso", "hotel", "kso", {"item:separate", "session:separate.kso"}),
        ("day2-room-officials", "hotel", "official", {"item:separate", "session:separate.officials"}),
        ("rsvp-reminder", "hotel", "kso", set()),
        ("survey", "hotel", "kso", set()),
    ],
)
def test_a_rule_told_its_reader_about_its_mentions_and_its_anchor(rule, stop, role, expected):
    """`mentions` plus the anchor; own_stop is the reader's stop, a split item their own session."""
    event = load_event(SHIPPED)
    assert told_subjects(event, event.rule(rule), stop, role) == expected


def test_the_programme_told_an_airport_rider_their_own_pickup_not_the_hotel_departure():
    """The bus item's start is the departure from the hotel: news to hotel riders and to those with no
    stop, not to the airport group, whose own time is their stop's."""
    event = load_event(SHIPPED)
    invitation = event.rule("invitation")
    assert "item:bus" not in told_subjects(event, invitation, "airport", "official")
    assert "stop:airport" in told_subjects(event, invitation, "airport", "official")
    assert "item:bus" in told_subjects(event, invitation, "hotel", "official")
    assert "item:bus" in told_subjects(event, invitation, None, "official")


def test_a_room_change_is_a_place_change_of_that_session_only(event_file):
    """Confirming the KSO room (it was `tbc`), then moving it, are place changes of session kso alone."""
    old = load_event(event_file)
    edit(event_file, 'roles = ["kso"], tbc = ["room"]', 'roles = ["kso"], room = "Sal Skellefteå"')
    confirmed = load_event(event_file)
    [change] = compare(old, confirmed)
    assert (change.subject, change.kind, change.old, change.new) == (
        "session:separate.kso",
        "place",
        "",
        "Sal Skellefteå",
    )
    edit(event_file, 'room = "Sal Skellefteå"', 'room = "Sal Kåge"')
    [moved] = compare(confirmed, load_event(event_file))
    assert (moved.old, moved.new) == ("Sal Skellefteå", "Sal Kåge")


def test_the_whole_programme_covers_every_item_and_the_readers_own_stop_only():
    """Invitation and practical letter: every item; the hotel rider is not told about the airport stop."""
    event = load_event(SHIPPED)
    told = told_subjects(event, event.rule("invitation"), "hotel")
    assert {f"item:{i.id}" for i in event.items} <= told
    assert "stop:hotel" in told and "stop:airport" not in told
    assert {"stop:hotel", "stop:airport"} <= told_subjects(event, event.rule("practical"), None)


def test_a_mention_of_an_unknown_item_is_an_error_in_the_event_file():
    """Like every other reference in the file."""
    text = SHIPPED.read_text(encoding="utf-8").replace(
        '"own_stop", "item:lunch"', '"own_stop", "item:brunch"'
    )
    with pytest.raises(ConfigError, match="mentions: 'item:brunch'"):
        parse_event(text)


# -- apply ----------------------------------------------------------------------------------------


def test_only_those_told_the_old_time_get_a_change_notice_and_planned_texts_simply_move(store, event_file):
    """Anna (sent pickup) is told; Bo's pickup moves 15 minutes; Cecilia (dinner, no stop) hears nothing."""
    bo_due = due_of(store, "pickup:hotel:bo:sms")
    edit(event_file, HOTEL_STOP, "time = 2021-11-25T09:15:00")
    with store.session() as session:
        _, applied = apply(session, event_file)
    notices = rows(store, "change:1")
    assert [(r.delegate_id, r.channel) for r in notices] == [("anna", "email"), ("anna", "sms")]
    assert applied.sequence == 1 and applied.notices == 2
    assert due_of(store, "pickup:hotel:bo:sms") - bo_due == timedelta(minutes=15)
    payload = json.loads(notices[1].payload)
    assert payload == {
        "template": "change_notice",
        "extra": {
            "changes": [{"what": "Bussen från The Wood Hotel", "old": "kl. 09.00", "new": "kl. 09.15"}],
            "sequence": 1,
        },
    }
    # Worth sending until the bus leaves at its new time.
    assert notices[0].expires_at == datetime(2021, 11, 25, 9, 15, tzinfo=STOCKHOLM)


def test_a_change_notice_is_delivered_with_the_new_time_and_an_updated_calendar_entry(
    store, settings, event_file
):
    """The SMS says "nu kl. 09.15 (tidigare kl. 09.00)"; the email's .ics has SEQUENCE 1."""
    edit(event_file, HOTEL_STOP, "time = 2021-11-25T09:15:00")
    with store.session() as session:
        _, applied = apply(session, event_file)
    states = send_batch_now(Runtime(settings, store=store, clock=lambda: BEFORE), "sik-2021", applied.rule)
    assert states == {"sent": 2}
    sms = json.loads(next((settings.outbox_dir / "sms").glob("*change*.json")).read_text())
    assert sms["to"] == ANNA.phone
    assert "Bussen från The Wood Hotel: nu kl. 09.15 (tidigare kl. 09.00)" in sms["body"]
    eml = next((settings.outbox_dir / "email").glob("*change*.eml")).read_bytes()
    calendar = icalendar.Calendar.from_ical(_ics_part(eml))
    day1, day2 = calendar.walk("VEVENT")
    assert int(day1["SEQUENCE"]) == int(day2["SEQUENCE"]) == 1
    assert day1.decoded("DTSTART") == datetime(2021, 11, 25, 9, 15, tzinfo=STOCKHOLM)  # Anna's new pickup
    assert day1.decoded("DTSTAMP") == BEFORE  # made when it was sent


def test_an_invitation_sent_after_an_apply_carries_the_applied_sequence(store, settings, event_file):
    """A late registrant's invitation, made after `apply` stored sequence 1, updates the same calendar
    entries as the change notices did: SEQUENCE 1, not 0."""
    from pipeline.sending.worker import build_message

    edit(event_file, HOTEL_STOP, "time = 2021-11-25T09:15:00")
    with store.session() as session:
        apply(session, event_file)
    row = LedgerRow(
        key="sik-2021:invitation:-:anna:email", rule="invitation", channel="email", delegate_id="anna"
    )
    message = build_message(Runtime(settings, store=store, clock=lambda: BEFORE), row, ANNA)
    (attachment,) = message.attachments  # type: ignore[union-attr]
    assert {int(v["SEQUENCE"]) for v in icalendar.Calendar.from_ical(attachment.data).walk("VEVENT")} == {1}


def test_a_worker_sends_the_new_sequence_from_its_first_batch_after_an_apply(store, settings, event_file):
    """A long-running worker reads the applied sequence with each batch: the invitation it sends right
    after `apply` stored sequence 1 says 1, though the worker sent one with 0 a moment before."""
    rt = Runtime(settings, store=store, clock=lambda: BEFORE)
    assert _sequences(rt, settings, _queued_invitation(store, "first")) == {0}
    edit(event_file, HOTEL_STOP, "time = 2021-11-25T09:15:00")
    with store.session() as session:
        apply(session, event_file)
    rt.event_file.refresh()  # as the worker would within a second; the sequence must not wait for it
    assert _sequences(rt, settings, _queued_invitation(store, "second")) == {1}


def _queued_invitation(store: Store, name: str) -> int:
    payload = json.dumps({"template": "invitation", "extra": {}})
    row = LedgerRow(
        key=f"sik-2021:broadcast:{name}:-:anna:email",
        event_id="sik-2021",
        rule=f"broadcast:{name}",
        occurrence="-",
        delegate_id="anna",
        channel="email",
        due_at=BEFORE,
        state="queued",
        payload=payload,
        created_at=BEFORE,
        updated_at=BEFORE,
    )
    with store.session() as session:
        session.add(row)
        session.flush()
        return row.id


def _sequences(rt: Runtime, settings: Settings, row_id: int) -> set[int]:
    from pipeline.sending.worker import send_rows

    (outcome,) = send_rows(rt, [row_id])
    assert outcome.state == "sent", outcome
    with rt.store.session() as session:
        key = session.get(LedgerRow, row_id).key  # type: ignore[union-attr]
    eml = next(p for p in (settings.outbox_dir / "email").glob("*.eml") if key.split(":")[2] in p.name)
    calendar = icalendar.Calendar.from_ical(_ics_part(eml.read_bytes()))
    return {int(v["SEQUENCE"]) for v in calendar.walk("VEVENT")}


def _ics_part(eml: bytes) -> bytes:
    from email import policy
    from email.parser import BytesParser

    message = BytesParser(policy=policy.default).parsebytes(eml)
    part = next(p for p in message.walk() if p.get_content_type() == "text/calendar")
    return part.get_payload(decode=True)


def test_applying_the_same_file_twice_sends_nothing_new(store, event_file):
    """The second apply finds the file unchanged: no snapshot, no notices."""
    edit(event_file, HOTEL_STOP, "time = 2021-11-25T09:15:00")
    with store.session() as session:
        apply(session, event_file)
    with store.session() as session:
        preview, applied = apply(session, event_file)
    assert preview.unchanged and (applied.rule, applied.notices) == ("", 0)
    assert len([r for r in rows(store) if r.rule.startswith("change:")]) == 2
    with store.session() as session:
        assert latest_snapshot(session, "sik-2021").sequence == 1


def test_the_preview_shows_moves_and_notices_and_writes_nothing(store, event_file):
    """A dry run: Bo's pickup would move, Anna would be told; the ledger and snapshot stay as they were."""
    edit(event_file, HOTEL_STOP, "time = 2021-11-25T09:15:00")
    text = event_file.read_text(encoding="utf-8")
    before = [(r.key, r.state, r.due_at) for r in rows(store)]
    with store.session() as session:
        preview = preview_apply(session, parse_event(text), text, BEFORE, CHANGED_AT)
    moved = {m.key: m.new_due - m.old_due for m in preview.diff.moved}
    assert moved == {"sik-2021:pickup:hotel:bo:sms": timedelta(minutes=15)}
    assert [n.delegate_id for n in preview.notices] == ["anna"] and preview.sequence == 1
    assert [(r.key, r.state, r.due_at) for r in rows(store)] == before
    with store.session() as session:
        assert latest_snapshot(session, "sik-2021").sequence == 0


def test_the_first_apply_is_a_baseline_and_tells_nobody(settings, event_file):
    """Without a snapshot there is nothing to compare with: sequence 0, no notices."""
    store = open_store(settings.effective_database_url)
    with store.session() as session:
        upsert_delegates(session, [ANNA], BEFORE)
        preview, applied = apply(session, event_file)
    assert preview.first and (applied.sequence, applied.notices) == (0, 0)
    store.close()


def test_a_message_sent_after_the_file_changed_already_had_the_new_time(store, event_file):
    """Bo's pickup went out after the edit (the scheduler re-planned at once): Bo needs no notice."""
    edit(event_file, HOTEL_STOP, "time = 2021-11-25T09:15:00")
    with store.session() as session:
        mark_sent(session, "pickup:hotel:bo:sms", at=CHANGED_AT + timedelta(minutes=1))
        apply(session, event_file)
    assert {r.delegate_id for r in rows(store, "change:1")} == {"anna"}


def test_a_delegate_who_declined_after_being_told_is_not_bothered(store, event_file):
    """Anna said no after her pickup text: no notice for her."""
    with store.session() as session:
        record_rsvp(session, "anna", "no", "sms", BEFORE)
    edit(event_file, HOTEL_STOP, "time = 2021-11-25T09:15:00")
    with store.session() as session:
        _, applied = apply(session, event_file)
    assert applied.notices == 0


def test_moving_the_bus_and_its_stop_lists_the_stop_once_for_those_told_the_programme(store, event_file):
    """A reader of the invitation hears about their stop, not a second line for the bus item."""
    with store.session() as session:
        mark_sent(session, "invitation:-:bo:sms")
    edit(event_file, HOTEL_STOP, "time = 2021-11-25T09:15:00")
    edit(
        event_file,
        "start = 2021-11-25T09:00:00\nend = 2021-11-25T12:00:00",
        "start = 2021-11-25T09:15:00\nend = 2021-11-25T12:00:00",
    )
    with store.session() as session:
        apply(session, event_file)
    bo = json.loads(rows(store, "change:1")[-1].payload)["extra"]["changes"]
    assert [c["what"] for c in bo] == ["Bussen från The Wood Hotel"]


# -- the scheduler and the command ---------------------------------------------------------------


def test_the_scheduler_stores_the_first_snapshot_and_warns_about_unapplied_changes(
    settings, event_file, caplog
):
    """It re-plans a changed file by itself, and says how many delegates `kallelse apply` would tell."""
    store = open_store(settings.effective_database_url)
    with store.session() as session:
        upsert_delegates(session, [ANNA, BO], BEFORE)
    scheduler = Scheduler(Runtime(settings, store=store, clock=lambda: BEFORE), lambda row_id: None)
    scheduler.refresh_plan(BEFORE)
    with store.session() as session:
        assert latest_snapshot(session, "sik-2021").sequence == 0
        mark_sent(session, "pickup:hotel:anna:sms")
    edit(event_file, HOTEL_STOP, "time = 2021-11-25T09:15:00")
    with caplog.at_level(logging.WARNING, logger="pipeline.sending.scheduler"):
        scheduler._event_mtime = None  # the same second as the first write: force the re-read
        scheduler.refresh_plan(BEFORE)
    assert "run `kallelse apply` to notify 1 delegates" in caplog.text
    text = event_file.read_text(encoding="utf-8")
    with store.session() as session:
        assert check_event_file(session, parse_event(text), text, BEFORE, datetime.now(UTC)) == 1
    store.close()


def test_the_apply_command_shows_the_changes_then_sends_the_notices(store, settings, event_file, monkeypatch):
    """--dry-run lists the change, the move and whom to tell; --yes sends; a second run has nothing to do."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("DATABASE_URL", settings.effective_database_url)
    monkeypatch.setenv("EVENT_FILE", str(event_file))
    monkeypatch.delenv("BROKER_URL", raising=False)
    edit(event_file, HOTEL_STOP, "time = 2021-11-25T09:15:00")
    dry = CliRunner().invoke(main, ["apply", "--dry-run"])
    assert "Changed: stop:hotel time" in dry.output and "pickup:hotel:bo:sms" in dry.output
    assert "tell Anna Berg (email+sms)" in dry.output and "nothing stored" in dry.output
    assert rows(store, "change:1") == []
    applied = CliRunner().invoke(main, ["apply", "--yes"])
    assert "applied as sequence 1" in applied.output and "2 change notices" in applied.output
    again = CliRunner().invoke(main, ["apply", "--yes"])
    assert "unchanged since it was applied (sequence 1)" in again.output
    assert len(list((settings.outbox_dir).rglob("*change*"))) == 2


# -- change notices per person ------------------------------------------------------------------

HOTEL = Delegate("hanna", "Hanna Hotell", "hanna@example.se", None, "sv", stop="hotel", rsvp="yes")
AIRPORT = Delegate("arvid", "Arvid Flyg", "arvid@example.se", None, "sv", stop="airport", rsvp="yes")
KSO = Delegate("karin", "Karin Kso", "karin@example.se", None, "sv", stop="airport", role="kso", rsvp="yes")
OFFICIAL = Delegate("olle", "Olle Tjänsteman", "olle@example.se", None, "en", stop="hotel", rsvp="yes")
KSO_PHONE = Delegate("karin", "Karin Kso", None, "+46701740609", "sv", role="kso", rsvp="yes")
LINKS = {"rsvp_url": "r", "survey_url": "s", "optout_url": "o", "programme_url": "p"}


@pytest.fixture
def told_the_programme(settings: Settings, event_file: Path) -> Iterator[Store]:
    """Four delegates who were all sent the invitation (the whole programme) before the file changed."""
    store = open_store(settings.effective_database_url)
    people = [HOTEL, AIRPORT, KSO, OFFICIAL]
    with store.session() as session:
        upsert_delegates(session, people, BEFORE)
        apply(session, event_file, BEFORE - timedelta(days=1))
        mark_sent(session, *(f"invitation:-:{d.id}:email" for d in people))
    yield store
    store.close()


def test_moving_the_hotel_departure_tells_the_hotel_riders_and_not_the_airport_riders(
    told_the_programme, settings, event_file, monkeypatch
):
    """The bus now leaves the hotel at 09.15 (stop and bus item edited) and `kallelse apply --yes` runs:
    Hanna and Olle (hotel) are told "Bussen från The Wood Hotel: nu kl. 09.15"; Arvid and Karin, picked up
    at the airport at 09.30 as before, are not told anything."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("DATABASE_URL", settings.effective_database_url)
    monkeypatch.setenv("EVENT_FILE", str(event_file))
    monkeypatch.delenv("BROKER_URL", raising=False)
    edit(event_file, HOTEL_STOP, "time = 2021-11-25T09:15:00")
    edit(
        event_file,
        "start = 2021-11-25T09:00:00\nend = 2021-11-25T12:00:00",
        "start = 2021-11-25T09:15:00\nend = 2021-11-25T12:00:00",
    )
    result = CliRunner().invoke(main, ["apply", "--yes"])
    assert result.exit_code == 0, result.output
    notices = rows(told_the_programme, "change:1")
    assert [r.delegate_id for r in notices] == ["hanna", "olle"]
    assert json.loads(notices[0].payload)["extra"]["changes"] == [
        {"what": "Bussen från The Wood Hotel", "old": "kl. 09.00", "new": "kl. 09.15"}
    ]
    mails = sorted(p.name for p in (settings.outbox_dir / "email").glob("*change*"))
    assert len(mails) == 2 and "hanna" in mails[0] and "olle" in mails[1]


def test_changing_a_day_two_room_tells_those_told_of_that_room_and_names_only_it(
    told_the_programme, event_file
):
    """The KSO room is confirmed, later moved: Karin (KSO) is told each time, with the room alone; Olle
    (official, whose room did not change) and the bus riders are not told."""
    edit(event_file, 'roles = ["kso"], tbc = ["room"]', 'roles = ["kso"], room = "Sal Skellefteå"')
    with told_the_programme.session() as session:
        apply(session, event_file)
    [notice] = rows(told_the_programme, "change:1")
    assert notice.delegate_id == "karin"
    assert json.loads(notice.payload)["extra"]["changes"] == [
        {"what": "Samtal för KSO-er (politiker)", "old": "", "new": "Sal Skellefteå", "kind": "room"}
    ]
    edit(event_file, 'room = "Sal Skellefteå"', 'room = "Sal Kåge"')
    with told_the_programme.session() as session:
        apply(session, event_file, changed_at=datetime.now(UTC))
    assert [r.delegate_id for r in rows(told_the_programme, "change:2")] == ["karin"]


def test_a_room_notice_reads_now_in_the_new_room_and_the_old_one_only_if_there_was_one():
    """ "Samtal för KSO-er (politiker): nu i Sal Kåge (tidigare Sal Skellefteå)." and, for a room just
    confirmed, no "tidigare" at all."""
    from pipeline.render import make_env, render_sms

    env, event = make_env(ROOT / "templates"), load_event(SHIPPED)
    moved = {
        "what": "Samtal för KSO-er (politiker)",
        "old": "Sal Skellefteå",
        "new": "Sal Kåge",
        "kind": "room",
    }

    def body(change: dict) -> str:
        return render_sms(
            env, event, KSO_PHONE, "change_notice", key="k", links=LINKS, extra={"changes": [change]}
        ).body

    assert "Samtal för KSO-er (politiker): nu i Sal Kåge (tidigare Sal Skellefteå)." in body(moved)
    first = body({**moved, "old": ""})
    assert "nu i Sal Kåge." in first and "tidigare" not in first
