"""Specification of the planner: who gets what, when, over daylight saving, quiet hours and late sign-ups."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from pipeline.delegates import Delegate
from pipeline.planner import PlannedSend, plan
from pipeline.timetable import Audience, Event, Rule, load_event, parse_event

STOCKHOLM = ZoneInfo("Europe/Stockholm")
EVENT_FILE = Path(__file__).resolve().parent.parent / "config" / "event.toml"
EARLY = datetime(2021, 1, 1, 12, 0, tzinfo=UTC)  # long before anything is due

# A small event: two days in November, a bus with two stops and a dinner; rules are added per test.
SMALL_EVENT = """
rules = []

[event]
id = "t"
name.sv = "Testmöte"
name.en = "Test meeting"
network = "Testnätet"
timezone = "Europe/Stockholm"
start = 2021-11-25T09:00:00
end = 2021-11-26T13:00:00
rsvp_deadline = 2021-11-11T23:59:00
duty_contact = "secretariat"

[event.venue]
name = "The Wood Hotel"
address = "Torggatan 3"
city = "Skellefteå"

[quiet_hours]
start = 21:00:00
end = 07:00:00

[[contacts]]
id = "secretariat"
name = "Johan Scherlin"
role.sv = "sekretariatet"
role.en = "secretariat"

[[stops]]
id = "hotel"
name = "The Wood Hotel"
address = "Torggatan 3"
time = 2021-11-25T09:00:00

[[stops]]
id = "airport"
name = "Skellefteå flygplats"
address = "Flygplatsvägen"
time = 2021-11-25T09:30:00
approximate = true

[[items]]
id = "bus"
kind = "bus"
start = 2021-11-25T09:00:00
end = 2021-11-25T12:00:00
title.sv = "Buss"
title.en = "Bus"
stops = ["hotel", "airport"]

[[items]]
id = "dinner"
kind = "dinner"
start = 2021-11-25T18:00:00
end = 2021-11-25T22:00:00
title.sv = "Middag"
title.en = "Dinner"
"""

BASE = parse_event(SMALL_EVENT, "small.toml")


def rule(**fields: Any) -> Rule:
    """A rule with harmless defaults: email at the event start, valid until the event ends."""
    defaults: dict[str, Any] = {
        "id": "r",
        "template": "t",
        "channels": ["email"],
        "anchor": "event.start",
        "when": "at anchor",
        "until": None,
    }
    return Rule(**(defaults | fields))


def event_with(*rules: Rule) -> Event:
    return BASE.model_copy(update={"rules": list(rules)})


def delegate(**fields: Any) -> Delegate:
    """A delegate who said yes and can be reached both ways, unless told otherwise."""
    defaults: dict[str, Any] = {
        "id": "d1",
        "name": "Anna Andersson",
        "email": "anna@example.se",
        "phone": "+46701234567",
        "rsvp": "yes",
    }
    return Delegate(**(defaults | fields))


def local(*parts: int) -> datetime:
    """An aware Stockholm time, for times that are neither in a gap nor in a fold."""
    return datetime(*parts, tzinfo=STOCKHOLM)  # type: ignore[misc]


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def only(sends: list[PlannedSend]) -> PlannedSend:
    assert len(sends) == 1, sends
    return sends[0]


# -- due times over daylight saving -------------------------------------------------------------


@pytest.mark.parametrize(
    ("anchor", "when", "due_utc"),
    [
        pytest.param("2021-11-01T09:00", "1 day before at 08:00", utc(2021, 10, 31, 7, 0), id="end-of-dst"),
        pytest.param("2021-03-29T09:00", "1 day before at 08:00", utc(2021, 3, 28, 6, 0), id="start-of-dst"),
        pytest.param("2021-11-01T09:00", "1 day before", utc(2021, 10, 31, 8, 0), id="calendar-day-is-25h"),
        pytest.param("2021-03-29T09:00", "1 day before", utc(2021, 3, 28, 7, 0), id="calendar-day-is-23h"),
        pytest.param("2021-03-28T03:10", "30 minutes before", utc(2021, 3, 28, 0, 40), id="just-after-gap"),
        pytest.param("2021-10-31T03:10", "1 hour before", utc(2021, 10, 31, 1, 10), id="back-into-fold"),
        pytest.param("2021-03-28T12:00", "same day at 02:30", utc(2021, 3, 28, 1, 30), id="nonexistent"),
        pytest.param("2021-10-31T12:00", "same day at 02:30", utc(2021, 10, 31, 0, 30), id="ambiguous"),
        pytest.param("2021-03-28T02:30", "at anchor", utc(2021, 3, 28, 1, 30), id="anchor-in-gap"),
        pytest.param("2021-10-31T02:30", "at anchor", utc(2021, 10, 31, 0, 30), id="anchor-in-fold"),
    ],
)
def test_a_rule_is_due_at_the_right_instant_across_daylight_saving(
    anchor: str, when: str, due_utc: datetime
) -> None:
    """Days move the local date, minutes move the instant; gaps move forward, folds take the first."""
    event = event_with(rule(anchor=anchor, when=when, until="2 days after"))
    send = only(plan(event, [delegate()], {}, EARLY))
    assert send.status == "planned"
    assert send.due_at == due_utc
    assert send.due_at.tzinfo is UTC


def test_a_day_before_rule_keeps_its_local_clock_time_after_the_clocks_go_back() -> None:
    """'1 day before at 08:00' on 1 November is 08:00 CET on 31 October, not 08:00 CEST."""
    event = event_with(rule(anchor="2021-11-01T09:00", when="1 day before at 08:00", until="at anchor"))
    send = only(plan(event, [delegate()], {}, EARLY))
    assert send.due_at.astimezone(STOCKHOLM).replace(tzinfo=None) == datetime(2021, 10, 31, 8, 0)
    assert send.due_at.astimezone(STOCKHOLM).tzname() == "CET"


# -- late registrants and validity --------------------------------------------------------------

INVITATION = rule(id="invitation", when="7 weeks before at 09:00", until="1 day before at 12:00")


@pytest.mark.parametrize(
    ("now", "status", "due_at", "reason"),
    [
        pytest.param(local(2021, 10, 1, 9, 0), "planned", utc(2021, 10, 7, 7, 0), "", id="early"),
        pytest.param(local(2021, 10, 7, 9, 0), "due", utc(2021, 10, 7, 7, 0), "", id="on-time"),
        pytest.param(local(2021, 11, 20, 15, 0), "due", utc(2021, 10, 7, 7, 0), "", id="late-registrant"),
        pytest.param(
            local(2021, 11, 24, 12, 0),
            "expired",
            utc(2021, 11, 24, 11, 0),
            "registered or planned after its validity (2021-11-24 12:00)",
            id="at-the-end-of-validity",
        ),
        pytest.param(
            local(2021, 11, 24, 18, 0),
            "expired",
            utc(2021, 11, 24, 17, 0),
            "registered or planned after its validity (2021-11-24 12:00)",
            id="after-validity",
        ),
    ],
)
def test_a_late_registrant_gets_the_invitation_at_once_until_it_is_no_longer_useful(
    now: datetime, status: str, due_at: datetime, reason: str
) -> None:
    """Overdue but still valid is 'due' now; past `until` it is 'expired' with the reason why."""
    send = only(plan(event_with(INVITATION), [delegate(rsvp="none")], {}, now))
    assert (send.status, send.due_at, send.reason) == (status, due_at, reason)
    assert send.expires_at == utc(2021, 11, 24, 11, 0)


PICKUP = rule(
    id="pickup",
    channels=["sms", "email"],
    channel_mode="first",
    anchor="own_stop",
    when="30 minutes before",
    until="at anchor",
    audience=Audience(rsvp=["yes"], stops=["*"]),
    quiet_hours=False,
)


@pytest.mark.parametrize(
    ("stop", "now", "status"),
    [
        pytest.param("hotel", local(2021, 11, 25, 8, 0), "planned", id="hotel-before-due"),
        pytest.param("hotel", local(2021, 11, 25, 8, 45), "due", id="hotel-late-but-bus-not-left"),
        pytest.param("hotel", local(2021, 11, 25, 9, 0), "expired", id="hotel-bus-leaving"),
        pytest.param("hotel", local(2021, 11, 25, 9, 5), "expired", id="hotel-bus-left"),
        pytest.param("airport", local(2021, 11, 25, 9, 5), "due", id="airport-still-to-come"),
        pytest.param("airport", local(2021, 11, 25, 9, 45), "expired", id="airport-bus-left"),
        pytest.param("hotel", local(2021, 11, 26, 9, 0), "expired", id="next-day"),
    ],
)
def test_a_pickup_text_after_the_bus_has_left_is_expired_never_due(
    stop: str, now: datetime, status: str
) -> None:
    """The pickup text is worth sending only until the bus leaves the delegate's own stop."""
    send = only(plan(event_with(PICKUP), [delegate(stop=stop)], {}, now))
    assert send.channel == "sms"
    assert send.occurrence == stop
    assert send.status == status
    if status == "expired":
        assert send.reason.startswith("registered or planned after its validity")


# -- quiet hours --------------------------------------------------------------------------------

QUIET_REASON = "quiet hours last until it is no longer worth sending"


@pytest.mark.parametrize(
    ("fields", "now", "status", "due_local", "reason"),
    [
        pytest.param(
            {"channels": ["sms"]},
            EARLY,
            "planned",
            datetime(2021, 11, 21, 7, 0),
            "",
            id="sms-at-22-moves-to-07-next-morning",
        ),
        pytest.param(
            {"channels": ["sms"], "quiet_hours": False},
            EARLY,
            "planned",
            datetime(2021, 11, 20, 22, 0),
            "",
            id="logistics-sms-stays-at-22",
        ),
        pytest.param(
            {"channels": ["email"]},
            EARLY,
            "planned",
            datetime(2021, 11, 20, 22, 0),
            "",
            id="email-is-not-affected",
        ),
        pytest.param(
            {"channels": ["sms"]},
            local(2021, 11, 20, 23, 30),
            "planned",
            datetime(2021, 11, 21, 7, 0),
            "",
            id="overdue-sms-during-quiet-hours-waits-for-morning",
        ),
        pytest.param(
            {"channels": ["sms"]},
            local(2021, 11, 21, 7, 0),
            "due",
            datetime(2021, 11, 20, 22, 0),  # once sendable, an overdue send reports its original time
            "",
            id="due-when-quiet-hours-end",
        ),
        pytest.param(
            {"channels": ["sms"], "until": "1 hour after"},
            EARLY,
            "expired",
            datetime(2021, 11, 21, 7, 0),
            QUIET_REASON,
            id="sms-whose-validity-ends-in-quiet-hours",
        ),
        pytest.param(
            {"channels": ["sms"], "anchor": "2021-11-21T05:00"},
            EARLY,
            "planned",
            datetime(2021, 11, 21, 7, 0),
            "",
            id="early-morning-sms-waits-until-07-same-day",
        ),
        pytest.param(
            {"channels": ["sms"], "anchor": "2021-10-30T22:00"},
            EARLY,
            "planned",
            datetime(2021, 10, 31, 7, 0),
            "",
            id="quiet-hours-over-the-autumn-change",
        ),
    ],
)
def test_quiet_hours_hold_back_sms_but_not_logistics_or_email(
    fields: dict[str, Any], now: datetime, status: str, due_local: datetime, reason: str
) -> None:
    """An SMS due in 21:00–07:00 local waits for 07:00 unless the rule opts out; email goes at once."""
    event = event_with(rule(**({"anchor": "2021-11-20T22:00", "until": "1 day after"} | fields)))
    send = only(plan(event, [delegate()], {}, now))
    assert send.status == status
    assert send.due_at.astimezone(STOCKHOLM).replace(tzinfo=None) == due_local
    assert send.reason == reason


# -- audience -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("audience", "who", "included"),
    [
        ({}, {"rsvp": "none"}, True),
        ({"rsvp": ["yes"]}, {"rsvp": "yes"}, True),
        ({"rsvp": ["yes"]}, {"rsvp": "none"}, False),
        ({"rsvp": ["yes"]}, {"rsvp": "no"}, False),
        ({"rsvp": ["none"]}, {"rsvp": "none"}, True),
        ({"rsvp": ["none"]}, {"rsvp": "no"}, False),
        ({"roles": ["kso"]}, {"role": "kso"}, True),
        ({"roles": ["kso"]}, {"role": "official"}, False),
        ({"not_roles": ["kso"]}, {"role": "kso"}, False),
        ({"not_roles": ["kso"]}, {"role": "official"}, True),
        ({"stops": ["*"]}, {"stop": "hotel"}, True),
        ({"stops": ["*"]}, {"stop": "airport"}, True),
        ({"stops": ["*"]}, {"stop": None}, False),
        ({"stops": ["airport"]}, {"stop": "hotel"}, False),
        ({"stops": ["airport"]}, {"stop": "airport"}, True),
        ({"languages": ["en"]}, {"language": "sv"}, False),
        ({"languages": ["en"]}, {"language": "en"}, True),
        ({"dinner": True}, {"dinner": True}, True),
        ({"dinner": True}, {"dinner": False}, False),
        ({"dinner": True}, {"dinner": None}, False),
        ({"dinner": False}, {"dinner": False}, True),
        ({"survey_answered": False}, {"survey_answered": False}, True),
        ({"survey_answered": False}, {"survey_answered": True}, False),
        ({"rsvp": ["yes"], "roles": ["kso"]}, {"rsvp": "no", "role": "kso"}, False),
    ],
)
def test_a_rule_reaches_only_its_audience(
    audience: dict[str, Any], who: dict[str, Any], included: bool
) -> None:
    """Every given audience field must match the delegate; empty fields match everyone."""
    event = event_with(rule(audience=Audience(**audience)))
    sends = plan(event, [delegate(**who)], {}, EARLY)
    assert [s.delegate for s in sends] == (["d1"] if included else [])


# -- channels -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "who", "expected"),
    [
        ("first", {"email": None}, [("sms", "planned", "")]),
        ("first", {"phone": None}, [("email", "planned", "")]),
        ("first", {}, [("sms", "planned", "")]),
        ("first", {"sms_opt_out": True}, [("email", "planned", "")]),
        ("first", {"email": None, "sms_opt_out": True}, [("sms", "skipped", "opted out of SMS")]),
        ("first", {"email": None, "phone": None}, []),
        ("first", {"phone_bad": True}, [("email", "planned", "")]),
        ("first", {"email": None, "phone_bad": True}, []),
        ("all", {"phone_bad": True}, [("email", "planned", "")]),
        ("all", {}, [("sms", "planned", ""), ("email", "planned", "")]),
        ("all", {"sms_opt_out": True}, [("sms", "skipped", "opted out of SMS"), ("email", "planned", "")]),
        ("all", {"email": None}, [("sms", "planned", "")]),
        ("all", {"phone": None}, [("email", "planned", "")]),
        ("all", {"email": "", "phone": ""}, []),
    ],
)
def test_a_message_goes_by_the_channels_the_delegate_can_receive(
    mode: str, who: dict[str, Any], expected: list[tuple[str, str, str]]
) -> None:
    """'first' takes the first reachable channel (SMS opt-outs and phones Twilio called bad fall back to
    email); 'all' takes each."""
    event = event_with(rule(channels=["sms", "email"], channel_mode=mode, anchor="2021-11-20T12:00"))
    sends = plan(event, [delegate(**who)], {}, EARLY)
    assert [(s.channel, s.status, s.reason) for s in sends] == expected


# -- idempotence --------------------------------------------------------------------------------


def test_a_send_key_names_event_rule_occurrence_delegate_and_channel() -> None:
    """The key is built from the event, rule, occurrence (the stop for own_stop), delegate and channel."""
    event = event_with(PICKUP, INVITATION)
    sends = plan(event, [delegate(id="d7", stop="airport")], {}, EARLY)
    assert [s.key for s in sends] == ["t:pickup:airport:d7:sms", "t:invitation:-:d7:email"]


def test_planning_twice_gives_identical_output() -> None:
    """The same input gives the same sends, keys included, in the same order."""
    event = load_event(EVENT_FILE)
    now = local(2021, 10, 1, 9, 0)
    assert plan(event, SEED_DELEGATES, {}, now) == plan(event, SEED_DELEGATES, {}, now)
    assert plan(event, SEED_DELEGATES, {}, now) != plan(event, SEED_DELEGATES, {}, local(2021, 11, 30, 9, 0))


def test_send_keys_are_unique_across_the_shipped_plan() -> None:
    """No two sends of the shipped plan share a key, so the ledger can hold one row each."""
    sends = plan(load_event(EVENT_FILE), SEED_DELEGATES, {}, local(2021, 10, 1, 9, 0))
    keys = [s.key for s in sends]
    assert len(keys) > len(SEED_DELEGATES)
    assert len(set(keys)) == len(keys)


@pytest.mark.parametrize("state", ["queued", "sending", "sent", "delivered", "failed", "unknown", "expired"])
def test_a_message_already_in_the_ledger_is_never_due_again(state: str) -> None:
    """A key whose ledger row is in flight or done is returned with that state at every later time."""
    key = "t:invitation:-:d1:email"
    for now in (local(2021, 10, 7, 9, 0), local(2021, 11, 1, 9, 0), local(2021, 12, 1, 9, 0)):
        send = only(plan(event_with(INVITATION), [delegate()], {key: state}, now))
        assert (send.key, send.status) == (key, state)


@pytest.mark.parametrize("state", ["planned", "skipped"])
def test_an_open_ledger_row_is_decided_again(state: str) -> None:
    """Rows the planner wrote as planned or skipped are re-decided as of now (here: due)."""
    key = "t:invitation:-:d1:email"
    send = only(plan(event_with(INVITATION), [delegate()], {key: state}, local(2021, 10, 7, 9, 0)))
    assert (send.key, send.status) == (key, "due")


def test_a_delegate_who_gains_a_phone_is_not_told_the_same_thing_again_by_sms() -> None:
    """With channel_mode first, a channel that already carried the message keeps it."""
    event = event_with(rule(id="r", channels=["sms", "email"], channel_mode="first"))
    ledger = {"t:r:-:d1:email": "sent"}
    send = only(plan(event, [delegate()], ledger, local(2021, 11, 25, 9, 0)))
    assert (send.channel, send.status) == ("email", "sent")


# -- the shipped event --------------------------------------------------------------------------

SEED_DELEGATES = [
    delegate(id="hotel-kso", name="Karin Kso", stop="hotel", role="kso", dinner=True),
    delegate(id="airport-official", name="Olle Tjänsteman", stop="airport", role="official"),
    delegate(id="email-only", name="Eva Epost", phone=None, role="official", language="en"),
    delegate(id="phone-only", name="Per Telefon", email=None, role="kso", stop="hotel"),
    delegate(id="no-answer", name="Nils Nej", rsvp="none"),
    delegate(id="opted-out", name="Stina Stopp", sms_opt_out=True, stop="airport"),
]
SEED_NOW = datetime.fromisoformat("2021-10-01T09:00:00+02:00")


@pytest.fixture(scope="module")
def seed_plan() -> list[PlannedSend]:
    return plan(load_event(EVENT_FILE), SEED_DELEGATES, {}, SEED_NOW)


def find(sends: list[PlannedSend], rule_id: str, delegate_id: str) -> list[PlannedSend]:
    return [s for s in sends if s.rule == rule_id and s.delegate == delegate_id]


@pytest.mark.parametrize(
    ("delegate_id", "channel", "due_local", "expires_local"),
    [
        ("hotel-kso", "sms", datetime(2021, 11, 25, 8, 30), datetime(2021, 11, 25, 9, 0)),
        ("phone-only", "sms", datetime(2021, 11, 25, 8, 30), datetime(2021, 11, 25, 9, 0)),
        ("airport-official", "sms", datetime(2021, 11, 25, 9, 0), datetime(2021, 11, 25, 9, 30)),
        ("opted-out", "email", datetime(2021, 11, 25, 9, 0), datetime(2021, 11, 25, 9, 30)),
    ],
)
def test_each_rider_gets_a_pickup_text_before_the_bus_reaches_their_stop(
    seed_plan: list[PlannedSend],
    delegate_id: str,
    channel: str,
    due_local: datetime,
    expires_local: datetime,
) -> None:
    """Hotel riders are told at 08:30 for the 09:00 bus, airport riders at 09:00 for the ~09:30 pickup."""
    send = only(find(seed_plan, "pickup", delegate_id))
    assert send.channel == channel
    assert send.status == "planned"
    assert send.due_at.astimezone(STOCKHOLM).replace(tzinfo=None) == due_local
    assert send.expires_at is not None
    assert send.expires_at.astimezone(STOCKHOLM).replace(tzinfo=None) == expires_local


def test_delegates_without_a_stop_get_no_pickup_text(seed_plan: list[PlannedSend]) -> None:
    """Only those boarding somewhere are told when the bus comes."""
    riders = {s.delegate for s in seed_plan if s.rule == "pickup"}
    assert riders == {"hotel-kso", "phone-only", "airport-official", "opted-out"}


@pytest.mark.parametrize(
    ("delegate_id", "rule_id", "other_rule_id"),
    [
        ("hotel-kso", "day2-room-kso", "day2-room-officials"),
        ("phone-only", "day2-room-kso", "day2-room-officials"),
        ("airport-official", "day2-room-officials", "day2-room-kso"),
        ("email-only", "day2-room-officials", "day2-room-kso"),
    ],
)
def test_politicians_and_officials_get_different_day_two_messages(
    seed_plan: list[PlannedSend], delegate_id: str, rule_id: str, other_rule_id: str
) -> None:
    """KSO get the KSO room notice, everyone else the officials' one, at 08:00 on day 2."""
    send = only(find(seed_plan, rule_id, delegate_id))
    assert send.due_at.astimezone(STOCKHOLM).replace(tzinfo=None) == datetime(2021, 11, 26, 8, 0)
    assert find(seed_plan, other_rule_id, delegate_id) == []


def test_the_survey_comes_after_the_event_ends(seed_plan: list[PlannedSend]) -> None:
    """Every survey send is due after 26 November 13:00 local, the first at 15:00."""
    surveys = [s for s in seed_plan if s.rule in ("survey", "survey-reminder")]
    assert surveys
    end = local(2021, 11, 26, 13, 0)
    assert all(s.due_at > end for s in surveys)
    assert min(s.due_at for s in surveys) == local(2021, 11, 26, 15, 0)


def test_the_invitation_goes_out_seven_weeks_before_to_everyone(seed_plan: list[PlannedSend]) -> None:
    """On 1 October the invitation is planned for Thursday 7 October 09:00, one per delegate."""
    invitations = [s for s in seed_plan if s.rule == "invitation"]
    assert sorted(s.delegate for s in invitations) == sorted(d.id for d in SEED_DELEGATES)
    assert {(s.status, s.due_at) for s in invitations} == {("planned", local(2021, 10, 7, 9, 0))}


def test_nobody_gets_an_sms_without_a_phone_or_an_email_without_an_address(
    seed_plan: list[PlannedSend],
) -> None:
    """Every planned channel is one the delegate has an address for."""
    by_id = {d.id: d for d in SEED_DELEGATES}
    assert {s.channel for s in seed_plan} == {"sms", "email"}
    for send in seed_plan:
        person = by_id[send.delegate]
        assert person.phone if send.channel == "sms" else person.email, send.key


def test_an_sms_opt_out_is_skipped_not_sent() -> None:
    """Where a rule sends on every channel, the opted-out delegate's SMS is skipped with the reason."""
    event = event_with(rule(channels=["email", "sms"]))
    sends = plan(event, [delegate(sms_opt_out=True)], {}, local(2021, 10, 1, 9, 0))
    assert {(s.channel, s.status, s.reason) for s in sends} == {
        ("email", "planned", ""),
        ("sms", "skipped", "opted out of SMS"),
    }


def test_the_survey_goes_by_one_channel_sms_first_and_its_reminder_only_to_those_who_have_not_answered(
    seed_plan: list[PlannedSend],
) -> None:
    """A delegate with a phone and an email gets the survey once, by SMS; one without a phone by email.
    The reminder goes to those who have not answered, by the same single channel."""
    answered = Delegate(
        "answered", "Ann Svar", "ann@example.se", "+46701740699", rsvp="yes", survey_answered=True
    )
    both, email_only = delegate(id="both"), delegate(id="mail", phone=None)
    sends = plan(load_event(EVENT_FILE), [both, email_only, answered], {}, local(2021, 11, 1, 9, 0))
    survey = {(s.delegate, s.channel) for s in sends if s.rule == "survey"}
    assert survey == {("both", "sms"), ("mail", "email"), ("answered", "sms")}
    reminder = {(s.delegate, s.channel) for s in sends if s.rule == "survey-reminder"}
    assert reminder == {("both", "sms"), ("mail", "email")}


# -- now ----------------------------------------------------------------------------------------


def test_plan_refuses_a_naive_now() -> None:
    """A naive `now` is ambiguous, so plan() raises instead of guessing a zone."""
    with pytest.raises(ValueError, match="timezone-aware"):
        plan(event_with(INVITATION), [delegate()], {}, datetime(2021, 10, 1, 9, 0))


def test_a_now_in_the_repeated_autumn_hour_is_compared_as_an_instant() -> None:
    """02:40 at its second occurrence (01:40 UTC) is after a validity ending at 02:50 CEST (00:50 UTC)."""
    event = event_with(rule(anchor="2021-10-31T02:50", when="1 hour before", until="same day at 02:50"))
    now = datetime(2021, 10, 31, 2, 40, fold=1, tzinfo=STOCKHOLM)
    send = only(plan(event, [delegate()], {}, now))
    assert send.expires_at == utc(2021, 10, 31, 0, 50)
    assert send.status == "expired"
