"""Specification of the `kallelse` command: check, delegates import, db upgrade and plan (issue 2)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from pydantic import SecretStr

from pipeline.cli import main
from pipeline.delegates import Delegate, read_delegates
from pipeline.settings import Settings
from pipeline.store import open_store
from pipeline.store.people import load_delegates, record_rsvp
from pipeline.timetable import load_event

ROOT = Path(__file__).resolve().parent.parent
EVENT_FILE = ROOT / "config" / "event.toml"
EXAMPLE = ROOT / "config" / "delegates.example.csv"
NOW = "2021-10-01T09:00:00+02:00"
EVENT_END = datetime.fromisoformat("2021-11-26T13:00:00+01:00")
HEADER = "id,name,email,phone,language,organisation,role,stop,dinner,rsvp\n"
GOOD_1 = "d01,Astrid Lövgren,astrid@example.se,070-174 06 05,sv,Skellefteå kommun,kso,hotel,yes,yes\n"
BAD_PHONE = "d02,Björn Åkesson,bjorn@example.se,12345,sv,Oxelösunds kommun,kso,airport,yes,yes\n"
GOOD_3 = "d03,Cecilia Näslund,cecilia@example.org,,en,Sandvikens kommun,official,,no,\n"


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run from the repository root (config/ and templates/ resolve) with data and database in tmp_path."""
    monkeypatch.chdir(ROOT)
    return f"sqlite:///{tmp_path / 'kallelse.sqlite3'}"


def cli_settings(db_url: str, tmp_path: Path, **overrides) -> Settings:
    values = {
        "data_dir": tmp_path,
        "database_url": db_url,
        "event_file": Path("config/event.toml"),
        "templates_dir": Path("templates"),
        "broker_url": "",
        "email_backend": "outbox",
        "sms_backend": "outbox",
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]  # pydantic-settings' init option


def invoke(settings: Settings, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), obj=settings, catch_exceptions=False)


@pytest.fixture
def kallelse(db_url: str, tmp_path: Path) -> Callable[..., Result]:
    """`kallelse ARGS…` handed its Settings directly: the environment is left alone."""
    settings = cli_settings(db_url, tmp_path)

    def run(*args: str) -> Result:
        return invoke(settings, *args)

    return run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stored(url: str) -> list[Delegate]:
    store = open_store(url)
    try:
        with store.session() as session:
            return load_delegates(session)
    finally:
        store.close()


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- check ----------------------------------------------------------------------------------------


def test_check_passes_on_the_shipped_event_templates_and_example_delegates(db_url: str, kallelse) -> None:
    """The shipped event file, templates and example delegates are consistent."""
    result = kallelse("check")
    assert result.stderr == ""
    assert result.exit_code == 0
    assert result.stdout.startswith("config/event.toml: ok (")
    assert "templates: ok (rendered for 14 delegates" in result.stdout


def test_check_lists_the_unconfirmed_rooms_and_airport_meeting_point_with_the_rules_and_dates(
    db_url: str, kallelse
) -> None:
    """The shipped file marks the day-2 rooms and the airport meeting point `tbc`: check names each one,
    then every rule whose message shows it and the date that message first goes out."""
    out = kallelse("check").stdout
    airport = out.split("not confirmed: stops.airport.address")[1].split("not confirmed:")[0]
    assert "shown by rule 'invitation', first sent 2021-10-07 09:00" in airport
    assert "shown by rule 'practical', first sent 2021-11-18 10:00" in airport
    assert "shown by rule 'pickup', first sent 2021-11-25 09:00" in airport
    kso = out.split("not confirmed: items.separate.sessions.kso.room")[1].split("not confirmed:")[0]
    assert "shown by rule 'day2-room-kso', first sent 2021-11-26 08:00" in kso
    assert "day2-room-officials" not in kso  # an official's room text never shows the KSO room
    assert "not confirmed: items.separate.sessions.officials.room" in out


def test_check_says_nothing_about_unconfirmed_facts_once_all_are_confirmed(
    db_url: str, tmp_path: Path, kallelse
) -> None:
    """With an address and the rooms written in and `tbc` removed, nothing is listed."""
    text = EVENT_FILE.read_text(encoding="utf-8").replace('tbc = ["address"]', 'address = "Terminalen"')
    text = text.replace('tbc = ["room"]', 'room = "Sal 1"')
    result = kallelse("--event", str(write(tmp_path / "event.toml", text)), "check")
    assert result.exit_code == 0, result.stderr
    assert "not confirmed" not in result.stdout


def _index(kind: str, id_: str) -> int:
    return [x.id for x in getattr(load_event(EVENT_FILE), kind)].index(id_)


BROKEN_EVENTS = [
    pytest.param(
        (r'(id = "lunch"\n(?:[^\[].*\n|\n)*?)end = 2021-11-25T13:00:00', r"\1end = 2021-11-25T11:00:00"),
        lambda: (
            f"items[{_index('items', 'lunch')}]: item 'lunch' ends (2021-11-25 11:00) before it starts "
            "(2021-11-25 12:00)"
        ),
        id="an item that ends before it starts",
    ),
    pytest.param(
        (r'audience\.stops = \["\*"\]', 'audience.stops = ["harbour"]'),
        lambda: f"rules[{_index('rules', 'pickup')}] (rule 'pickup').audience.stops: unknown stop 'harbour'",
        id="a rule naming an unknown stop",
    ),
    pytest.param(
        (r'timezone = "Europe/Stockholm"', 'timezone = "Europe/Skelleftea"'),
        lambda: (
            "event.timezone: unknown time zone 'Europe/Skelleftea' (use an IANA name such as "
            "'Europe/Stockholm')"
        ),
        id="an unknown time zone",
    ),
    pytest.param(
        (r'tbc = \["address"\]', 'tbc = ["time"]'),
        lambda: (
            f"stops[{_index('stops', 'airport')}]: tbc: 'time' cannot be marked unconfirmed here "
            "(only address)"
        ),
        id="a tbc naming a field that cannot be unconfirmed",
    ),
]


@pytest.mark.parametrize(("edit", "message"), BROKEN_EVENTS)
def test_check_on_a_broken_event_file_gives_one_clear_error_naming_the_key(
    db_url: str, tmp_path: Path, edit: tuple[str, str], message, kallelse
) -> None:
    """One mistake in the event file: exactly one error line, naming the file and the key; exit status 1."""
    pattern, replacement = edit
    broken, n = re.subn(pattern, replacement, EVENT_FILE.read_text(encoding="utf-8"), count=1)
    assert n == 1, f"the shipped event file no longer contains {pattern!r}"
    path = write(tmp_path / "event.toml", broken)
    result = kallelse("--event", str(path), "check")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"{path}: {message()}"]
    assert result.stdout == ""


def test_check_names_a_missing_event_file_and_the_setting_to_fix(
    db_url: str, tmp_path: Path, kallelse
) -> None:
    """A wrong path is one line saying so, not a traceback."""
    result = kallelse("--event", str(tmp_path / "nope.toml"), "check")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{tmp_path / 'nope.toml'}: no such event file (set EVENT_FILE or pass --event)"
    ]


# -- unsafe settings (issue 9, 10) ------------------------------------------------------------------


def test_kallelse_web_with_twilio_and_the_default_secret_key_exits_with_one_line_naming_it(
    db_url: str, tmp_path: Path
) -> None:
    """The real command in its own process: exit 1 and one line on stderr naming SECRET_KEY, and no
    server started (on the old code it served, so this timed out)."""
    env = {
        **os.environ, "SMS_BACKEND": "twilio", "TWILIO_API_URL": "http://127.0.0.1:9",
        "PORT": str(free_port()), "DATA_DIR": str(tmp_path), "DATABASE_URL": db_url,
    }  # fmt: skip
    env.pop("SECRET_KEY", None)
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "web"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("SECRET_KEY is the public default")
    assert "SMS_BACKEND=twilio" in lines[0]


@pytest.mark.parametrize("command", [["worker"], ["scheduler"], ["run", "--no-web"]])
@pytest.mark.parametrize(
    "unsafe",
    [
        {"email_backend": "smtp"},
        {"public_url": "https://kallelse.example.org"},
        {"sms_backend": "twilio", "secret_key": SecretStr("short-but-not-the-default")},
    ],
    ids=["smtp", "public url", "short secret"],
)
def test_every_long_running_process_refuses_an_unsafe_secret_key(
    db_url: str, tmp_path: Path, command: list[str], unsafe: dict
) -> None:
    """worker, scheduler and run refuse too, before touching a broker or a channel."""
    settings = cli_settings(db_url, tmp_path, broker_url="redis://127.0.0.1:9/0", **unsafe)  # never reached
    result = invoke(settings, *command)
    assert result.exit_code == 1
    assert result.stderr.startswith("SECRET_KEY ") and len(result.stderr.splitlines()) == 1


def test_check_reports_the_settings_it_finds_unsafe(db_url: str, tmp_path: Path) -> None:
    """Default secret with real channels, localhost PUBLIC_URL with real channels, and an empty
    ADMIN_PASSWORD on a public address: one line each, exit 1."""
    settings = cli_settings(db_url, tmp_path, email_backend="smtp", web_host="0.0.0.0")
    result = invoke(settings, "check")
    assert result.exit_code == 1
    assert [line.split(" is ")[0] for line in result.stderr.splitlines()] == [
        "settings: SECRET_KEY", "settings: PUBLIC_URL", "settings: ADMIN_PASSWORD",
    ]  # fmt: skip


def test_a_long_secret_key_with_real_channels_and_a_public_url_checks_clean(
    db_url: str, tmp_path: Path
) -> None:
    """The refusal is about the secret: with a long one, check is clean (and the processes may start)."""
    settings = cli_settings(
        db_url,
        tmp_path,
        sms_backend="twilio",
        public_url="https://kallelse.example.org",
        secret_key=SecretStr("x" * 40),
    )
    result = invoke(settings, "check")
    assert (result.exit_code, result.stderr) == (0, "")


# -- delegates import -----------------------------------------------------------------------------


def test_import_reports_each_bad_row_as_file_line_column_reason_and_stores_the_good_ones(
    db_url: str, tmp_path: Path, kallelse
) -> None:
    """Line 3 has a bad phone: one exact error line on stderr, the other two rows stored, exit status 1."""
    path = write(tmp_path / "delegates.csv", HEADER + GOOD_1 + BAD_PHONE + GOOD_3)
    result = kallelse("delegates", "import", str(path))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"{path}:3: phone: '12345' is not a valid phone number"]
    assert "2 added, 0 updated, 0 unchanged" in result.stdout
    people = stored(db_url)
    assert [(d.id, d.phone, d.stop, d.rsvp) for d in people] == [
        ("d01", "+46701740605", "hotel", "yes"),
        ("d03", None, None, "none"),
    ]


def test_import_with_a_broken_event_file_names_the_problem_instead_of_a_traceback(
    db_url: str, tmp_path: Path, kallelse
) -> None:
    """Import needs the event's stops: a broken event file is one line saying why, and nothing is stored."""
    event = write(
        tmp_path / "event.toml", EVENT_FILE.read_text(encoding="utf-8").replace("Europe/Stockholm", "Mars")
    )
    result = kallelse("--event", str(event), "delegates", "import", str(EXAMPLE))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{event}: event.timezone: unknown time zone 'Mars' (use an IANA name such as 'Europe/Stockholm')"
    ]
    assert stored(db_url) == []


def test_import_strict_stores_nothing_when_a_row_is_bad(db_url: str, tmp_path: Path, kallelse) -> None:
    """--strict: the errors are reported, nothing is stored, exit status 1."""
    path = write(tmp_path / "delegates.csv", HEADER + GOOD_1 + BAD_PHONE + GOOD_3)
    result = kallelse("delegates", "import", "--strict", str(path))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"{path}:3: phone: '12345' is not a valid phone number"]
    assert "nothing stored" in result.stdout
    assert stored(db_url) == []


@pytest.mark.parametrize(
    ("rows", "status"), [(GOOD_1 + GOOD_3, 0), (GOOD_1 + BAD_PHONE + GOOD_3, 1)], ids=["good file", "bad row"]
)
def test_import_dry_run_stores_nothing(db_url: str, tmp_path: Path, rows: str, status: int, kallelse) -> None:
    """--dry-run checks the file and says how many rows are good, but stores nothing."""
    path = write(tmp_path / "delegates.csv", HEADER + rows)
    result = kallelse("delegates", "import", "--dry-run", str(path))
    assert result.exit_code == status
    assert result.stdout.startswith("2 good rows; nothing stored (--dry-run)")
    assert stored(db_url) == []


def test_reimporting_creates_no_duplicates(db_url: str, tmp_path: Path, kallelse) -> None:
    """The example file twice, then again with new ids but the same emails and phones: still 14 people."""
    first = kallelse("delegates", "import", str(EXAMPLE))
    assert (first.exit_code, first.stderr) == (0, "")
    assert "14 added, 0 updated, 0 unchanged" in first.stdout
    again = kallelse("delegates", "import", str(EXAMPLE))
    assert "0 added, 0 updated, 14 unchanged" in again.stdout
    renumbered = re.sub(r"^d(\d\d),", r"new-\1,", EXAMPLE.read_text(encoding="utf-8"), flags=re.M)
    third = kallelse("delegates", "import", str(write(tmp_path / "renumbered.csv", renumbered)))
    assert third.exit_code == 1  # new ids with known emails: other people, refused (see the test below)
    assert "0 added, 0 updated" in third.stdout
    assert [d.id for d in stored(db_url)] == [f"d{n:02}" for n in range(1, 15)]
    listing = kallelse("delegates", "list")
    assert listing.stdout.splitlines()[-1] == "14 delegates"


SHARED_MAILBOX = (
    "d20,Gustav Ek,astrid.lovgren@example.se,070-174 06 99,sv,Skellefteå kommun,official,hotel,,\n"
)


@pytest.mark.parametrize("dry_run", [True, False], ids=["--dry-run", "import"])
def test_a_new_id_with_another_delegates_email_is_named_and_not_stored(
    db_url: str, tmp_path: Path, dry_run: bool, kallelse
) -> None:
    """A shared municipal mailbox never overwrites Astrid: `FILE:LINE: email: already used by delegate d01
    (Astrid Lövgren)`, the same line with --dry-run, exit 1, and Astrid unchanged (issue 9, 4)."""
    assert kallelse("delegates", "import", str(EXAMPLE)).exit_code == 0
    path = write(tmp_path / "more.csv", HEADER + SHARED_MAILBOX)
    result = kallelse("delegates", "import", *(["--dry-run"] if dry_run else []), str(path))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == f"{path}:2: email: already used by delegate d01 (Astrid Lövgren)"
    astrid = next(d for d in stored(db_url) if d.id == "d01")
    assert (astrid.name, len(stored(db_url))) == ("Astrid Lövgren", 14)


def test_allow_shared_contact_stores_the_second_person(db_url: str, tmp_path: Path, kallelse) -> None:
    """--allow-shared-contact: Gustav is added beside Astrid, who keeps her name and answer."""
    assert kallelse("delegates", "import", str(EXAMPLE)).exit_code == 0
    path = write(tmp_path / "more.csv", HEADER + SHARED_MAILBOX)
    result = kallelse("delegates", "import", "--allow-shared-contact", str(path))
    assert (result.exit_code, result.stderr) == (0, "")
    people = {d.id: d for d in stored(db_url)}
    assert (people["d20"].email, people["d01"].name) == ("astrid.lovgren@example.se", "Astrid Lövgren")


def test_a_nej_by_sms_survives_reimporting_the_example_file_and_the_row_is_named(
    db_url: str, kallelse
) -> None:
    """d01 answers NEJ by SMS; the example file (rsvp=yes for d01) is imported again: the export still says
    no, from sms, and the import names line 2 (issue 9, 3)."""
    assert kallelse("delegates", "import", str(EXAMPLE)).exit_code == 0
    store = open_store(db_url)
    with store.session() as session:
        record_rsvp(session, "d01", "no", "sms", datetime(2021, 10, 8, 12, 0, tzinfo=UTC))
    store.close()
    again = kallelse("delegates", "import", str(EXAMPLE))
    assert again.exit_code == 0
    assert (
        f"{EXAMPLE}:2: rsvp: the file says yes, but d01 (Astrid Lövgren) answered no by sms on 2021-10-08; "
        "kept no"
    ) in again.stdout.splitlines()
    assert "0 added, 0 updated, 14 unchanged" in again.stdout
    export = json.loads(kallelse("export", "rsvps", "--format", "json").stdout)
    astrid = next(row for row in export if row["delegate_id"] == "d01")
    assert (astrid["answer"], astrid["channel"]) == ("no", "sms")


def test_db_upgrade_creates_the_database_and_says_where(db_url: str, kallelse) -> None:
    """`kallelse db upgrade` migrates the configured database and names it."""
    result = kallelse("db", "upgrade")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"database is up to date ({db_url})"
    assert stored(db_url) == []


# -- plan: issue 2's must-show --------------------------------------------------------------------


def plan_json(kallelse: Callable[..., Result], *args: str) -> list[dict]:
    result = kallelse("plan", "--now", NOW, "--format", "json", *args)
    assert (result.exit_code, result.stderr) == (0, "")
    return json.loads(result.stdout)


@pytest.fixture
def example_plan(kallelse: Callable[..., Result]) -> list[dict]:
    return plan_json(kallelse, "--delegates", str(EXAMPLE.relative_to(ROOT)))


@pytest.fixture(scope="module")
def people() -> dict[str, Delegate]:
    event = load_event(EVENT_FILE)
    return {d.id: d for d in read_delegates(EXAMPLE, {s.id for s in event.stops}).delegates}


def sends(plan: list[dict], rule: str) -> list[dict]:
    return [s for s in plan if s["rule"] == rule]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.parametrize(("stop", "departs"), [("hotel", "09:00"), ("airport", "09:30")])
def test_bus_riders_get_a_pickup_sms_before_their_own_stop(
    example_plan: list[dict], people: dict[str, Delegate], stop: str, departs: str
) -> None:
    """Each rider who is coming gets one pickup text, by SMS when they have a phone, before their stop."""
    riders = {d.id for d in people.values() if d.stop == stop and d.rsvp == "yes"}
    pickups = [s for s in sends(example_plan, "pickup") if people[s["delegate"]].stop == stop]
    assert len(riders) >= 3
    assert sorted(s["delegate"] for s in pickups) == sorted(riders)
    bus = at(f"2021-11-25T{departs}:00+01:00")
    for s in pickups:
        due = at(s["due_at"])
        assert due.utcoffset() == timedelta(hours=1)
        assert due.date() == date(2021, 11, 25)
        assert bus - timedelta(hours=1) <= due < bus
        assert at(s["expires_at"]) == bus
        assert s["channel"] == ("sms" if people[s["delegate"]].phone else "email")
    assert sum(s["channel"] == "sms" for s in pickups) >= 3


def test_politicians_and_officials_get_different_day_two_messages(
    example_plan: list[dict], people: dict[str, Delegate]
) -> None:
    """KSO delegates get `day2-room-kso`, officials `day2-room-officials`, and nobody gets both."""
    kso = {s["delegate"] for s in sends(example_plan, "day2-room-kso")}
    officials = {s["delegate"] for s in sends(example_plan, "day2-room-officials")}
    coming = {d.id for d in people.values() if d.rsvp == "yes"}
    assert kso == {i for i in coming if people[i].role == "kso"}
    assert officials == {i for i in coming if people[i].role != "kso"}
    assert kso and officials
    assert not kso & officials
    assert {at(s["due_at"]).date() for s in sends(example_plan, "day2-room-kso")} == {date(2021, 11, 26)}


def test_the_survey_comes_after_the_event_ends(example_plan: list[dict]) -> None:
    """Every survey message (and its reminder) is due after 13:00 on 26 November."""
    surveys = sends(example_plan, "survey") + sends(example_plan, "survey-reminder")
    assert len(surveys) > 10
    assert all(at(s["due_at"]) > EVENT_END for s in surveys)


def test_nobody_gets_an_sms_without_a_phone_or_an_email_without_an_address(
    example_plan: list[dict], people: dict[str, Delegate]
) -> None:
    """Every message goes to an address the delegate has: the example has email-only and phone-only people."""
    for s in example_plan:
        d = people[s["delegate"]]
        address = d.phone if s["channel"] == "sms" else d.email
        assert address, f"{s['key']}: {d.id} has no {s['channel']} address"
        assert s["to"] == address
    channels = {d: {s["channel"] for s in example_plan if s["delegate"] == d} for d in people}
    assert channels["d04"] == {"email"}  # no phone
    assert channels["d05"] == {"sms"}  # no email


def test_every_planned_send_has_the_documented_json_fields(example_plan: list[dict]) -> None:
    """key, rule, channel, delegate, due_at and expires_at with an offset, and state; keys are unique."""
    offset = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")
    assert len(example_plan) > 50
    for s in example_plan:
        assert {"key", "rule", "channel", "delegate", "due_at", "expires_at", "state"} <= s.keys()
        assert offset.match(s["due_at"]) and offset.match(s["expires_at"]), s
        assert s["key"] == f"sik-2021:{s['rule']}:{s['key'].split(':')[2]}:{s['delegate']}:{s['channel']}"
        assert at(s["due_at"]) < at(s["expires_at"])
    assert len({s["key"] for s in example_plan}) == len(example_plan)
    assert {s["state"] for s in example_plan} == {"planned"}


def test_plan_of_the_imported_delegates_is_the_plan_of_the_file(
    example_plan: list[dict], db_url: str, kallelse
) -> None:
    """After importing the example delegates, `plan` without --delegates shows exactly the same schedule."""
    assert kallelse("delegates", "import", str(EXAMPLE)).exit_code == 0
    assert plan_json(kallelse) == example_plan


def test_plan_delegate_shows_only_that_delegates_messages(example_plan: list[dict], kallelse) -> None:
    """--delegate d01 is the d01 part of the full plan, in the same order."""
    mine = plan_json(kallelse, "--delegates", str(EXAMPLE), "--delegate", "d01")
    assert mine == [s for s in example_plan if s["delegate"] == "d01"]
    assert {"invitation", "pickup", "day2-room-kso", "survey"} <= {s["rule"] for s in mine}


def test_plan_from_and_until_keep_only_sends_due_in_between(example_plan: list[dict], kallelse) -> None:
    """--from/--until in local time without an offset: only the bus day's messages, bounds included."""
    day = plan_json(
        kallelse, "--delegates", str(EXAMPLE), "--from", "2021-11-25T00:00", "--until", "2021-11-25T23:59"
    )
    assert day == [s for s in example_plan if at(s["due_at"]).date() == date(2021, 11, 25)]
    assert {s["rule"] for s in day} == {"pickup", "dinner"}
    exact = plan_json(
        kallelse, "--delegates", str(EXAMPLE), "--from", "2021-11-25T08:30", "--until", "2021-11-25T07:30Z"
    )
    assert exact == [
        s for s in example_plan if s["rule"] == "pickup" and s["due_at"].startswith("2021-11-25T08:30")
    ]
    assert len(exact) >= 3


def test_plan_rejects_a_time_it_cannot_read(db_url: str, kallelse) -> None:
    """A malformed --now is a usage error naming the accepted forms."""
    result = kallelse("plan", "--now", "tomorrow", "--delegates", str(EXAMPLE))
    assert result.exit_code == 2
    assert "is not a time like 2021-11-25T09:00" in result.stderr
