"""Specification of the event file: the shipped seed, broken files, offsets and local times."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pipeline.errors import ConfigError
from pipeline.timetable import (
    Event,
    Offset,
    anchor_time,
    load_event,
    parse_event,
    parse_offset,
    resolve_local,
)

EVENT_FILE = Path(__file__).resolve().parent.parent / "config" / "event.toml"
STOCKHOLM = ZoneInfo("Europe/Stockholm")
OFFSET_HELP = (
    "write 'at anchor', 'same day at HH:MM' or 'N minutes|hours|days|weeks before|after', "
    "optionally followed by 'at HH:MM'"
)


@pytest.fixture(scope="module")
def seed_text() -> str:
    return EVENT_FILE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def seed(seed_text: str) -> Event:
    return parse_event(seed_text, "event.toml")


def broken(text: str, old: str, new: str) -> str:
    """The seed with exactly one occurrence of `old` replaced, so each case breaks one thing."""
    assert text.count(old) == 1, f"{old!r} must occur once in the seed"
    return text.replace(old, new)


# -- the shipped seed ---------------------------------------------------------------------------


def test_the_shipped_event_file_loads_from_disk() -> None:
    """load_event reads config/event.toml and validates it without a problem."""
    event = load_event(EVENT_FILE)
    assert event.event.id == "sik-2021"
    assert event.event.timezone == "Europe/Stockholm"
    assert event.tz == STOCKHOLM


def test_the_seed_has_the_bus_with_its_two_stops(seed: Event) -> None:
    """The bus leaves the hotel at 09:00 and picks up at the airport at about 09:30 on 25 November."""
    bus = seed.bus_item()
    assert bus is not None
    assert bus.id == "bus"
    assert bus.stops == ["hotel", "airport"]
    hotel, airport = seed.stop("hotel"), seed.stop("airport")
    assert hotel.time == datetime(2021, 11, 25, 9, 0)
    assert hotel.approximate is False
    assert airport.time == datetime(2021, 11, 25, 9, 30)
    assert airport.approximate is True


def test_the_seed_has_dinner_at_six(seed: Event) -> None:
    """Dinner on day 1 starts at 18:00 local time."""
    dinner = seed.item("dinner")
    assert dinner.kind == "dinner"
    assert dinner.start == datetime(2021, 11, 25, 18, 0)
    assert seed.local(dinner.start).utcoffset() == timedelta(hours=1)


def test_the_seed_splits_day_two_into_kso_and_officials_sessions(seed: Event) -> None:
    """The day-2 breakout has a session for KSO and one for everyone else (officials)."""
    separate = seed.item("separate")
    assert separate.start == datetime(2021, 11, 26, 10, 15)
    assert [s.id for s in separate.sessions] == ["kso", "officials"]
    kso = seed.session_for("separate", "kso")
    official = seed.session_for("separate", "official")
    assert kso is not None and kso.id == "kso"
    assert official is not None and official.id == "officials"
    assert kso.tbc == official.tbc == ["room"]  # the hotel has not said which rooms yet


def test_the_seed_has_four_contacts_with_the_secretariat_on_duty(seed: Event) -> None:
    """Four contacts; the duty contact is the secretariat, Johan Scherlin."""
    assert [c.id for c in seed.contacts] == ["secretariat", "moderator", "convener", "hotel"]
    assert seed.duty_contact.id == "secretariat"
    assert seed.duty_contact.name == "Johan Scherlin"


def test_the_seed_event_runs_over_two_days_in_stockholm_time(seed: Event) -> None:
    """The event starts 25 November 09:00 and ends 26 November 13:00, Stockholm time (CET)."""
    assert seed.local(seed.event.start) == datetime(2021, 11, 25, 8, 0, tzinfo=UTC)
    assert seed.local(seed.event.end) == datetime(2021, 11, 26, 12, 0, tzinfo=UTC)


def test_a_missing_event_file_names_the_path(tmp_path: Path) -> None:
    """load_event on a path that does not exist gives one ConfigError line naming that path."""
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as excinfo:
        load_event(path)
    assert excinfo.value.problems == [f"{path}: no such event file (set EVENT_FILE or pass --event)"]


# -- broken event files -------------------------------------------------------------------------

BROKEN = [
    pytest.param(
        "end = 2021-11-25T12:00:00      # the seed gives no end; the tour",
        "end = 2021-11-25T08:00:00      # the seed gives no end; the tour",
        "event.toml: items[0]: item 'bus' ends (2021-11-25 08:00) before it starts (2021-11-25 09:00)",
        id="item-ends-before-it-starts",
    ),
    pytest.param(
        'audience.stops = ["*"]',
        'audience.stops = ["harbour"]',
        "event.toml: rules[4] (rule 'pickup').audience.stops: unknown stop 'harbour'",
        id="rule-audience-names-unknown-stop",
    ),
    pytest.param(
        'anchor = "own_stop"',
        'anchor = "stop:harbour"',
        "event.toml: rules[4] (rule 'pickup').anchor: unknown stop 'harbour'",
        id="rule-anchor-names-unknown-stop",
    ),
    pytest.param(
        'anchor = "item:dinner"',
        'anchor = "item:supper"',
        "event.toml: rules[5] (rule 'dinner').anchor: unknown item 'supper'",
        id="rule-anchor-names-unknown-item",
    ),
    pytest.param(
        'timezone = "Europe/Stockholm"',
        'timezone = "Europe/Skelleftea"',
        "event.toml: event.timezone: unknown time zone 'Europe/Skelleftea' "
        "(use an IANA name such as 'Europe/Stockholm')",
        id="unknown-time-zone",
    ),
    pytest.param(
        'timezone = "Europe/Stockholm"',
        'timezone = "Europe"',
        "event.toml: event.timezone: unknown time zone 'Europe' "
        "(use an IANA name such as 'Europe/Stockholm')",
        id="time-zone-that-is-a-directory",
    ),
    pytest.param(
        'when = "30 minutes before"',
        'when = "half an hour before"',
        f"event.toml: rules[4].when: cannot read 'half an hour before': {OFFSET_HELP}",
        id="unreadable-when",
    ),
    pytest.param(
        'when = "1 hour before"                 # 17.00',
        'when = "1 hour before at 25:00"        # 17.00',
        "event.toml: rules[5].when: cannot read '1 hour before at 25:00': 25:00 is not a time of day",
        id="when-at-impossible-time-of-day",
    ),
    pytest.param(
        'duty_contact = "secretariat"',
        'duty_contact = "janitor"',
        "event.toml: event.duty_contact: unknown contact 'janitor'",
        id="unknown-duty-contact",
    ),
    pytest.param(
        "[quiet_hours]",
        "[quiet_hours",
        "event.toml: Expected ']' at the end of a table declaration (at line 28, column 23)",
        id="toml-syntax-error",
    ),
]


@pytest.mark.parametrize(("old", "new", "problem"), BROKEN)
def test_a_broken_event_file_gives_one_clear_problem_naming_the_key(
    seed_text: str, old: str, new: str, problem: str
) -> None:
    """Each broken file is rejected with exactly one problem line that names the file and the key."""
    with pytest.raises(ConfigError) as excinfo:
        parse_event(broken(seed_text, old, new), "event.toml")
    assert excinfo.value.problems == [problem]
    assert str(excinfo.value) == problem


def test_a_toml_syntax_error_names_the_file_it_was_read_from(seed_text: str) -> None:
    """The source name passed to parse_event leads the message, so the organiser knows which file."""
    with pytest.raises(ConfigError) as excinfo:
        parse_event(broken(seed_text, "[quiet_hours]", "[quiet_hours"), "config/other.toml")
    (problem,) = excinfo.value.problems
    assert problem.startswith("config/other.toml: ")
    assert "line 28" in problem


# -- offsets ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "offset"),
    [
        ("at anchor", Offset()),
        ("30 minutes before", Offset(seconds=-30 * 60)),
        ("1 minute after", Offset(seconds=60)),
        ("2 hours after", Offset(seconds=2 * 3600)),
        ("1 day before at 16:00", Offset(days=-1, at=time(16, 0))),
        ("1 day before at 16.00", Offset(days=-1, at=time(16, 0))),
        ("7 days before at 10:00", Offset(days=-7, at=time(10, 0))),
        ("14 days after", Offset(days=14)),
        ("2 weeks after", Offset(days=14)),
        ("7 weeks before at 09:00", Offset(days=-49, at=time(9, 0))),
        ("same day at 08:00", Offset(at=time(8, 0))),
        ("same day at 8:05", Offset(at=time(8, 5))),
    ],
)
def test_an_offset_is_read_into_days_seconds_and_a_time_of_day(text: str, offset: Offset) -> None:
    """Whole days and weeks move the date, minutes and hours move the instant, 'at' sets the clock."""
    assert parse_offset(text) == offset


@pytest.mark.parametrize(
    "text",
    [
        "",
        "soon",
        "30 minutes",
        "before",
        "half an hour before",
        "1 fortnight before",
        "-1 days before",
        "1 day before at 24:00",
        "same day at 08:60",
        "1 day before at noon",
    ],
)
def test_an_unreadable_offset_is_a_value_error_quoting_the_text(text: str) -> None:
    """Garbage is refused with a ValueError that quotes what was written."""
    with pytest.raises(ValueError, match=r"cannot read"):
        parse_offset(text)


# -- local times --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("naive", "utc", "utc_offset_hours", "wall"),
    [
        pytest.param(
            datetime(2021, 11, 25, 9, 0),
            datetime(2021, 11, 25, 8, 0, tzinfo=UTC),
            1,
            datetime(2021, 11, 25, 9, 0),
            id="winter-cet",
        ),
        pytest.param(
            datetime(2021, 6, 10, 9, 0),
            datetime(2021, 6, 10, 7, 0, tzinfo=UTC),
            2,
            datetime(2021, 6, 10, 9, 0),
            id="summer-cest",
        ),
        pytest.param(
            datetime(2021, 3, 28, 2, 30),
            datetime(2021, 3, 28, 1, 30, tzinfo=UTC),
            2,
            datetime(2021, 3, 28, 3, 30),
            id="spring-gap-moves-forward-to-0330-cest",
        ),
        pytest.param(
            datetime(2021, 3, 28, 2, 0),
            datetime(2021, 3, 28, 1, 0, tzinfo=UTC),
            2,
            datetime(2021, 3, 28, 3, 0),
            id="start-of-spring-gap",
        ),
        pytest.param(
            datetime(2021, 3, 28, 3, 0),
            datetime(2021, 3, 28, 1, 0, tzinfo=UTC),
            2,
            datetime(2021, 3, 28, 3, 0),
            id="just-after-spring-gap",
        ),
        pytest.param(
            datetime(2021, 10, 31, 2, 30),
            datetime(2021, 10, 31, 0, 30, tzinfo=UTC),
            2,
            datetime(2021, 10, 31, 2, 30),
            id="autumn-fold-takes-first-occurrence-cest",
        ),
        pytest.param(
            datetime(2021, 10, 31, 3, 0),
            datetime(2021, 10, 31, 2, 0, tzinfo=UTC),
            1,
            datetime(2021, 10, 31, 3, 0),
            id="after-autumn-fold-cet",
        ),
    ],
)
def test_a_local_time_is_made_aware_deliberately_across_daylight_saving(
    naive: datetime, utc: datetime, utc_offset_hours: int, wall: datetime
) -> None:
    """Normal times keep their wall clock; a gap time moves forward by the gap; a fold takes the first."""
    aware = resolve_local(naive, STOCKHOLM)
    # Compared in UTC: an instant in the repeated hour never equals one in another zone (PEP 495).
    assert aware.astimezone(UTC) == utc
    assert aware.utcoffset() == timedelta(hours=utc_offset_hours)
    assert aware.replace(tzinfo=None) == wall


# -- anchors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule_id", "stop", "expected"),
    [
        ("invitation", None, datetime(2021, 11, 25, 8, 0, tzinfo=UTC)),  # event.start
        ("survey", None, datetime(2021, 11, 26, 12, 0, tzinfo=UTC)),  # event.end
        ("rsvp-reminder", None, datetime(2021, 11, 11, 22, 59, tzinfo=UTC)),  # rsvp_deadline
        ("dinner", None, datetime(2021, 11, 25, 17, 0, tzinfo=UTC)),  # item:dinner
        ("pickup", "hotel", datetime(2021, 11, 25, 8, 0, tzinfo=UTC)),  # own_stop
        ("pickup", "airport", datetime(2021, 11, 25, 8, 30, tzinfo=UTC)),
        ("pickup", None, None),  # no stop of their own: the rule has no anchor for them
    ],
)
def test_a_rule_is_anchored_to_the_instant_it_names(
    seed: Event, rule_id: str, stop: str | None, expected: datetime | None
) -> None:
    """anchor_time turns each kind of anchor into an aware instant, or None without a stop."""
    assert anchor_time(seed, seed.rule(rule_id), stop) == expected


def test_quiet_hours_span_midnight(seed: Event) -> None:
    """Quiet hours 21:00–07:00 contain late evening and early morning but not the day."""
    quiet = seed.quiet_hours
    assert (quiet.start, quiet.end) == (time(21, 0), time(7, 0))
    assert [
        quiet.contains(time(h, m)) for h, m in [(20, 59), (21, 0), (23, 30), (0, 0), (6, 59), (7, 0)]
    ] == [
        False,
        True,
        True,
        True,
        True,
        False,
    ]
