"""Broadcasts: segments, preview, checks, idempotent storing and delivery through the ledger and workers."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from pipeline.broadcast import (
    BroadcastError,
    Term,
    create_broadcast,
    make_request,
    parse_audience,
    preview_broadcast,
    select_delegates,
)
from pipeline.cli import main
from pipeline.delegates import Delegate
from pipeline.render import make_env
from pipeline.runtime import Runtime
from pipeline.sending.batch import send_batch_now
from pipeline.settings import Settings
from pipeline.store import Store, open_store
from pipeline.store.models import LedgerRow
from pipeline.store.people import upsert_delegates
from pipeline.timetable import Event, load_event

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2021, 11, 25, 7, 30, tzinfo=UTC)  # 08.30 in Skellefteå, the morning of day 1
DELEGATES = [
    Delegate(
        "anna", "Anna Berg", "anna@example.se", "+46701740601", "sv", role="kso", stop="hotel", rsvp="yes"
    ),
    Delegate("bo", "Bo Ek", None, "+46701740602", "sv", stop="airport", rsvp="none"),
    Delegate("cecilia", "Cecilia Hall", "cecilia@example.org", None, "en", rsvp="no"),
    Delegate(
        "david",
        "David Moss",
        "david@example.org",
        "+46701740604",
        "en",
        stop="hotel",
        rsvp="yes",
        sms_opt_out=True,
    ),
    Delegate("eva", "Eva Lund", "eva@example.se", "+46701740605", "sv", role="kso", rsvp="yes"),
]
BUS_LATE = "Bussen är 15 minuter försenad."


@pytest.fixture(scope="module")
def event() -> Event:
    return load_event(ROOT / "config" / "event.toml")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'kallelse.sqlite3'}",
        event_file=ROOT / "config" / "event.toml",
        templates_dir=ROOT / "templates",
        broker_url="",
    )


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    store = open_store(settings.effective_database_url)
    with store.session() as session:
        upsert_delegates(session, DELEGATES, NOW)
    yield store
    store.close()


def ids(audience_values: list[str], event: Event) -> list[str]:
    return [d.id for d in select_delegates(parse_audience(audience_values, event), DELEGATES)]


def ledger_rows(store: Store) -> list[LedgerRow]:
    with store.session() as session:
        return list(session.scalars(select(LedgerRow).order_by(LedgerRow.key)))


def send(store: Store, settings: Settings, event: Event, request, again: bool = False):
    with store.session() as session:
        return create_broadcast(
            session, event, make_env(settings.templates_dir), settings, request, NOW, again=again
        )


def outbox(settings: Settings) -> list[Path]:
    return sorted((settings.outbox_dir).rglob("*.*"))


# -- segments -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("to", "expected"),
    [
        (["all"], ["anna", "bo", "cecilia", "david", "eva"]),
        (["attending"], ["anna", "david", "eva"]),
        (["not-responded"], ["bo"]),
        (["declined"], ["cecilia"]),
        (["role:kso"], ["anna", "eva"]),
        (["stop:hotel"], ["anna", "david"]),
        (["stop:airport"], ["bo"]),
        (["language:en"], ["cecilia", "david"]),
        (["delegate:bo"], ["bo"]),
        (["attending,stop:hotel"], ["anna", "david"]),
        (["attending, language:en"], ["david"]),
        (["attending,stop:hotel", "role:kso"], ["anna", "david", "eva"]),
        (["declined", "not-responded"], ["bo", "cecilia"]),
        (["role:kso,stop:airport"], []),
    ],
)
def test_each_segment_word_and_combination_selects_exactly_its_delegates(event, to, expected):
    """A comma inside one --to is AND; repeating --to is OR."""
    assert ids(to, event) == expected


@pytest.mark.parametrize(
    ("to", "named"),
    [
        (["everyone"], "'everyone'"),
        (["attending,vip"], "'vip'"),
        (["stop:station"], "'station'"),
        (["language:fi"], "'fi'"),
        (["role:"], "'role:'"),
        (["attending:yes"], "'attending:yes'"),
    ],
)
def test_an_unknown_segment_word_stop_or_language_is_refused_by_name(event, to, named):
    """The error names what was not understood."""
    with pytest.raises(BroadcastError, match=named):
        parse_audience(to, event)


def test_the_same_audience_written_differently_is_the_same_audience(event):
    """Order and repeats do not matter, so the broadcast id does not either."""
    a = parse_audience(["stop:hotel,attending", "role:kso"], event)
    b = parse_audience(["role:kso", "attending, stop:hotel", "role:kso"], event)
    assert a == b == ((Term("attending"), Term("stop", "hotel")), (Term("role", "kso"),))


def test_an_unknown_delegate_id_is_refused_by_name(store, settings, event):
    """delegate:<id> must name a stored delegate."""
    request = make_request(["delegate:nobody"], event, text=BUS_LATE)
    with store.session() as session, pytest.raises(BroadcastError, match="'nobody'"):
        preview_broadcast(session, event, make_env(settings.templates_dir), settings, request)


# -- preview --------------------------------------------------------------------------------------


def test_the_preview_counts_recipients_per_channel_and_skipped_people_by_reason(store, settings, event):
    """auto: SMS to those with a phone, else email; an opted-out SMS falls back to email; sms-only skips."""
    env = make_env(settings.templates_dir)
    with store.session() as session:
        auto = preview_broadcast(session, event, env, settings, make_request(["all"], event, text=BUS_LATE))
        sms = preview_broadcast(
            session, event, env, settings, make_request(["all"], event, text=BUS_LATE, channel="sms")
        )
    assert auto.per_channel == {"sms": 3, "email": 2} and auto.skipped == {}
    assert sorted(auto.recipients)[:2] == [("anna", "sms"), ("bo", "sms")]
    assert ("david", "email") in auto.recipients
    assert sms.per_channel == {"sms": 3}
    assert sms.skipped == {"no phone": 1, "opted out of SMS": 1}


def test_the_preview_shows_the_message_in_swedish_and_english_with_its_sms_parts(store, settings, event):
    """One sample per language and channel, rendered with the real templates, and the sending time."""
    request = make_request(["all"], event, text=BUS_LATE, channel="both")
    with store.session() as session:
        preview = preview_broadcast(session, event, make_env(settings.templates_dir), settings, request)
    kinds = [(s.language, s.channel) for s in preview.samples]
    assert kinds == [("sv", "email"), ("sv", "sms"), ("en", "email")]
    sv_sms = preview.samples[1]
    assert BUS_LATE in sv_sms.body and "Johan Scherlin" in sv_sms.body
    assert (sv_sms.segments.encoding, sv_sms.segments.segments) == ("GSM-7", 1)
    assert "Hej Anna!" in preview.samples[0].body and "Dear Cecilia" in preview.samples[2].body
    assert preview.send_seconds == pytest.approx(3 / settings.sms_rate_per_second)


def test_a_character_outside_gsm7_is_warned_about_by_name(store, settings, event):
    """One emoji turns the whole SMS into UCS-2: the preview says which character did it."""
    request = make_request(["delegate:anna"], event, text="Bussen är här 🚌", channel="sms")
    with store.session() as session:
        preview = preview_broadcast(session, event, make_env(settings.templates_dir), settings, request)
    assert preview.sms_encoding == "UCS-2" and not preview.problems
    assert any("🚌" in w and "UCS-2" in w for w in preview.warnings)


def test_a_text_longer_than_the_events_sms_limit_is_refused(store, settings, event):
    """Three parts when the event allows two: refused, and nothing is stored."""
    request = make_request(["attending"], event, text="Bussen är försenad. " * 20)
    with pytest.raises(BroadcastError, match=r"3 parts.*allows 2"):
        send(store, settings, event, request)
    assert ledger_rows(store) == []


def test_a_template_without_an_sms_part_cannot_go_by_sms(store, settings, event, tmp_path):
    """A letter written for email only: asking for SMS is a problem, not a crash."""
    templates = Path(shutil.copytree(settings.templates_dir, tmp_path / "templates"))
    (templates / "sv" / "practical.sms.txt").unlink()
    (templates / "en" / "practical.sms.txt").unlink()
    request = make_request(["attending"], event, template="practical", channel="sms")
    with store.session() as session:
        preview = preview_broadcast(session, event, make_env(templates), settings, request)
    assert preview.problems and "practical" in preview.problems[0]


# -- storing and sending --------------------------------------------------------------------------


def test_a_broadcast_is_one_ledger_row_per_recipient_and_channel_due_now(store, settings, event):
    """Rule broadcast:<id>, deterministic key, the text in the payload, twelve hours to live."""
    created = send(store, settings, event, make_request(["stop:hotel"], event, text=BUS_LATE))
    rows = ledger_rows(store)
    assert [r.key for r in rows] == [
        f"sik-2021:broadcast:{created.id}:-:anna:sms",
        f"sik-2021:broadcast:{created.id}:-:david:email",
    ]
    row = rows[0]
    assert (row.rule, row.state, row.due_at) == (f"broadcast:{created.id}", "planned", NOW)
    assert (row.expires_at - NOW).total_seconds() == 12 * 3600
    assert json.loads(row.payload) == {"template": "broadcast", "extra": {"text": BUS_LATE}}


def test_the_same_broadcast_twice_is_stored_and_sent_once(store, settings, event):
    """Same audience, text and channel: the same id, so the second run adds nothing and sends nothing."""
    request = make_request(["attending"], event, text=BUS_LATE)
    first = send(store, settings, event, request)
    rt = Runtime(settings, store=store, clock=lambda: NOW)
    send_batch_now(rt, "sik-2021", first.rule)
    second = send(store, settings, event, make_request(["attending"], event, text=BUS_LATE))
    states = send_batch_now(rt, "sik-2021", second.rule)
    assert (first.id, first.new_rows) == (second.id, 3)
    assert (second.new_rows, second.existing_rows) == (0, 3)
    assert states == {"sent": 3}
    assert len(outbox(settings)) == 3


def test_again_sends_the_same_broadcast_a_second_time(store, settings, event):
    """--again makes a new id (<id>-2), new rows and new messages."""
    request = make_request(["delegate:anna"], event, text=BUS_LATE)
    first = send(store, settings, event, request)
    again = send(store, settings, event, request, again=True)
    third = send(store, settings, event, request, again=True)
    assert (again.id, third.id) == (f"{first.id}-2", f"{first.id}-3")
    assert again.new_rows == third.new_rows == 1
    rt = Runtime(settings, store=store, clock=lambda: NOW)
    for created in (first, again, third):
        send_batch_now(rt, "sik-2021", created.rule)
    assert len(outbox(settings)) == 3


def test_a_delivered_broadcast_reaches_the_outbox_in_each_delegates_language(store, settings, event):
    """The workers render the payload: Swedish SMS for Anna, English email for David."""
    created = send(store, settings, event, make_request(["stop:hotel"], event, text=BUS_LATE))
    progress: list[tuple[int, int]] = []
    states = send_batch_now(
        Runtime(settings, store=store, clock=lambda: NOW),
        "sik-2021",
        created.rule,
        lambda d, t: progress.append((d, t)),
    )
    assert states == {"sent": 2} and progress[-1] == (2, 2)
    sms = json.loads(next((settings.outbox_dir / "sms").glob("*.json")).read_text())
    assert sms["to"] == "+46701740601" and BUS_LATE in sms["body"]
    email = next((settings.outbox_dir / "email").glob("*.eml")).read_text()
    assert "david@example.org" in email and "Dear David" in email


# -- the command ----------------------------------------------------------------------------------


@pytest.fixture
def cli_env(settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("DATABASE_URL", settings.effective_database_url)
    monkeypatch.setenv("EVENT_FILE", str(settings.event_file))
    monkeypatch.delenv("BROKER_URL", raising=False)
    return settings


def kallelse(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def test_the_command_dry_run_shows_the_preview_and_stores_nothing(cli_env, store):
    """--dry-run prints counts, both languages and the SMS parts; the ledger stays empty."""
    result = kallelse("broadcast", "--to", "all", "--text", BUS_LATE, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "Recipients: 5 messages: 3 SMS, 2 email" in result.output
    assert "sms, sv" in result.output and "email, en" in result.output
    assert "1 SMS part(s), GSM-7" in result.output and "nothing stored" in result.output
    assert ledger_rows(store) == [] and outbox(cli_env) == []


def test_the_command_sends_before_it_returns_and_a_rerun_sends_nothing_new(cli_env, store):
    """Without BROKER_URL the messages are in the outbox when it returns; the same command again adds none."""
    args = ("broadcast", "--to", "attending,stop:hotel", "--text", BUS_LATE, "--yes")
    first = kallelse(*args)
    second = kallelse(*args)
    assert "new: 2, already sent/queued: 0" in first.output and "done: 2 sent" in first.output
    assert "new: 0, already sent/queued: 2" in second.output
    assert len(outbox(cli_env)) == 2
    assert "new: 2" in kallelse(*args, "--again").output
    assert len(outbox(cli_env)) == 4


def test_the_command_asks_before_sending_and_a_no_sends_nothing(cli_env, store):
    """Without --yes it asks; answering n aborts with nothing stored."""
    result = CliRunner().invoke(main, ["broadcast", "--to", "all", "--text", BUS_LATE], input="n\n")
    assert "Send it?" in result.output and result.exit_code == 1
    assert ledger_rows(store) == []


def test_the_command_names_an_unknown_stop_and_refuses_a_long_text(cli_env, store):
    """Clear errors, exit status 1."""
    unknown = kallelse("broadcast", "--to", "stop:station", "--text", BUS_LATE)
    long = kallelse("broadcast", "--to", "all", "--text", "Bussen är försenad. " * 20, "--yes")
    assert unknown.exit_code == 1 and "unknown stop 'station'" in unknown.output
    assert long.exit_code == 1 and "allows 2" in long.output
    assert ledger_rows(store) == []
