"""What delegates send back, read and acted on: SMS replies in context, reply e-mails, page answers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipeline.channels.mime import message_id
from pipeline.delegates import Delegate
from pipeline.inbound import (
    InvalidSurvey,
    handle_email_reply,
    handle_sms,
    record_web_rsvp,
    record_web_survey,
)
from pipeline.mailparse import MailReply
from pipeline.planner import plan
from pipeline.sms import sms_segments
from pipeline.store import Store, open_store
from pipeline.store.models import DelegateRow, InboundRow, LedgerRow, RsvpRow, SurveyAnswerRow
from pipeline.store.people import load_delegates, record_rsvp, upsert_delegates
from pipeline.timetable import Event, load_event

EVENT_FILE = Path(__file__).resolve().parent.parent / "config" / "event.toml"
INVITED_AT = datetime(2021, 10, 7, 7, 0, tzinfo=UTC)  # the invitation rule: 7 October 09:00 local
NOW = datetime(2021, 10, 8, 12, 0, tzinfo=UTC)
AFTER_EVENT = datetime(2021, 11, 26, 15, 0, tzinfo=UTC)

ANNA = Delegate(id="anna", name="Anna Lindqvist", email="anna@example.se", phone="+46701234567")
BOB = Delegate(id="bob", name="Bob Smith", email="bob@example.com", phone="+447700900123", language="en")
UNKNOWN_PHONE = "+46709999999"


# -- helpers shared with test_web.py ---------------------------------------------------------------


def add_delegates(store: Store, *delegates: Delegate) -> None:
    with store.session() as session:
        upsert_delegates(session, list(delegates), INVITED_AT - timedelta(days=1))


def ask(
    store: Store,
    delegate_id: str,
    rule: str,
    at: datetime = INVITED_AT,
    provider_id: str = "",
    channel: str = "sms",
) -> str:
    """Record that `rule`'s message went to the delegate: what they reply to next is read in its context.
    Returns the ledger key (an email's Message-ID is made from it)."""
    key = f"sik-2021:{rule}:-:{delegate_id}:{channel}"
    with store.session() as session:
        session.add(
            LedgerRow(
                key=key,
                event_id="sik-2021",
                rule=rule,
                delegate_id=delegate_id,
                channel=channel,
                due_at=at,
                state="sent",
                provider_id=provider_id or f"SM{rule}{delegate_id}",
                sent_at=at,
                created_at=at,
                updated_at=at,
            )
        )
    return key


def delegate(store: Store, delegate_id: str) -> DelegateRow:
    with store.session() as session:
        row = session.get(DelegateRow, delegate_id)
        assert row is not None
        return row


def count(store: Store, model: type) -> int:
    with store.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def event() -> Event:
    return load_event(EVENT_FILE)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = open_store(f"sqlite:///{tmp_path / 'kallelse.sqlite3'}")
    add_delegates(store, ANNA, BOB)
    yield store
    store.close()


@pytest.fixture
def session(store: Store) -> Iterator[Session]:
    with store.session() as session:
        yield session


def sms(session: Session, event: Event, body: str, sender: str = ANNA.phone or "", sid: str = "SM1"):
    return handle_sms(session, event, sender=sender, body=body, message_sid=sid, now=NOW)


# -- SMS -----------------------------------------------------------------------------------------


def test_an_sms_is_stored_with_the_delegate_the_context_and_what_it_meant(store, event) -> None:
    """The inbound row keeps who wrote, what they were last asked and how the text was read."""
    ask(store, "anna", "invitation")
    with store.session() as session:
        result = sms(session, event, "ja tack!")
    with store.session() as session:
        row = session.scalars(select(InboundRow)).one()
    assert (row.delegate_id, row.context, row.kind, row.value, row.body) == (
        "anna", "rsvp", "rsvp", "yes", "ja tack!",
    )  # fmt: skip
    assert (result.kind, result.value, result.duplicate, result.delegate_id) == ("rsvp", "yes", False, "anna")


def test_a_yes_by_sms_is_recorded_and_confirmed_with_the_delegates_first_name(store, event) -> None:
    """The RSVP goes into the history with channel sms, and the answer says what was understood."""
    ask(store, "anna", "invitation")
    with store.session() as session:
        result = sms(session, event, "Kommer")
    with store.session() as session:
        history = session.scalars(select(RsvpRow)).all()
    assert [(h.answer, h.channel) for h in history] == [("yes", "sms")]
    assert delegate(store, "anna").rsvp == "yes"
    assert result.reply_text == "Tack Anna! Vi har noterat att du kommer."


def test_a_no_is_confirmed_as_not_coming(store, event) -> None:
    """A decline is confirmed as such, not as a yes."""
    ask(store, "anna", "invitation")
    with store.session() as session:
        result = sms(session, event, "kan inte")
    assert result.reply_text is not None
    assert result.reply_text.startswith("Tack Anna! Vi har noterat att du inte kommer.")
    assert delegate(store, "anna").rsvp == "no"


def test_an_english_delegate_is_answered_in_english(store, event) -> None:
    """Bob's language is English, so the confirmation is too."""
    ask(store, "bob", "invitation")
    with store.session() as session:
        result = sms(session, event, "Yes", sender=BOB.phone or "")
    assert result.reply_text == "Thank you Bob! We have noted that you are coming."


def test_a_second_delivery_of_the_same_message_sid_changes_nothing(store, event) -> None:
    """Twilio retries a webhook: the retry is reported as a duplicate, not stored, acted on or answered."""
    ask(store, "anna", "invitation")
    with store.session() as session:
        sms(session, event, "Ja", sid="SMdup")
    with store.session() as session:
        again = sms(session, event, "Nej", sid="SMdup")
    assert again.duplicate and again.reply_text is None
    assert (count(store, InboundRow), count(store, RsvpRow), delegate(store, "anna").rsvp) == (1, 1, "yes")


def test_a_rating_after_the_survey_text_is_stored_as_the_overall_answer(store, event) -> None:
    """ "4" after the survey SMS is the overall rating, and the delegate counts as having answered."""
    ask(store, "anna", "survey", at=AFTER_EVENT)
    with store.session() as session:
        result = sms(session, event, "4")
    with store.session() as session:
        answer = session.scalars(select(SurveyAnswerRow)).one()
    assert (answer.question, answer.rating, answer.channel) == ("overall", 4, "sms")
    assert delegate(store, "anna").survey_answered
    assert result.reply_text == "Tack för ditt betyg 4!"


def test_a_digit_after_the_invitation_is_not_taken_as_a_rating(store, event) -> None:
    """Context decides: "4" to the invitation is neither an RSVP nor a survey answer."""
    ask(store, "anna", "invitation")
    with store.session() as session:
        result = sms(session, event, "4")
    assert result.kind == "unknown"
    assert count(store, SurveyAnswerRow) == 0 and delegate(store, "anna").rsvp == "none"


@pytest.mark.parametrize("word", ["STOP", "stop", "CANCEL", "Unsubscribe"])
def test_twilios_own_opt_out_words_opt_out_and_leave_the_answer_to_twilio(store, event, word) -> None:
    """Twilio answers its reserved words itself and blocks our reply, so we answer nothing."""
    ask(store, "anna", "invitation")
    with store.session() as session:
        result = sms(session, event, word)
    assert (result.kind, result.reply_text) == ("opt_out", None)
    assert delegate(store, "anna").sms_opt_out
    assert delegate(store, "anna").rsvp == "none"  # "Cancel" opts out; it does not decline


@pytest.mark.parametrize("word", ["STOPP", "Avsluta", "Stop!"])
def test_opt_out_words_twilio_does_not_know_are_confirmed_by_us(store, event, word) -> None:
    """STOPP and AVSLUTA are ours alone: the delegate hears that no more texts will come."""
    with store.session() as session:
        result = sms(session, event, word)
    assert result.reply_text == "Du får inga fler sms från oss. Svara START om du ändrar dig."
    assert delegate(store, "anna").sms_opt_out


def test_after_stop_a_planned_sms_to_the_delegate_is_skipped_as_opted_out(store, event) -> None:
    """The planner sees the opt-out: no SMS to Anna goes out; what went by SMS first goes by e-mail."""
    with store.session() as session:
        record_web_rsvp(session, "anna", "yes", NOW)
        (before,) = load_delegates(session, ["anna"])
        sms(session, event, "STOP")
    with store.session() as session:
        (anna,) = load_delegates(session, ["anna"])
    assert {s.channel for s in plan(event, [before], {}, NOW) if s.rule == "day-before"} == {"sms"}
    sends = [s for s in plan(event, [anna], {}, NOW) if s.delegate == "anna"]
    assert all((s.status, s.reason) == ("skipped", "opted out of SMS") for s in sends if s.channel == "sms")
    assert {s.channel for s in sends if s.rule == "day-before"} == {"email"}


def test_start_opts_a_delegate_back_in(store, event) -> None:
    """START after STOP: texts may be sent again, and the delegate is told so."""
    with store.session() as session:
        sms(session, event, "STOP", sid="SM1")
        result = sms(session, event, "START", sid="SM2")
    assert not delegate(store, "anna").sms_opt_out
    assert result.reply_text is not None and "igen" in result.reply_text


@pytest.mark.parametrize(
    ("word", "sender", "number"),
    [("HJÄLP", ANNA.phone, "070-919 71 35"), ("help", BOB.phone, "+46 70 919 71 35")],
)
def test_help_answers_with_the_duty_contacts_name_and_phone(store, event, word, sender, number) -> None:
    """HELP/HJÄLP names whom to call, with the number written for the delegate's language."""
    with store.session() as session:
        result = sms(session, event, word, sender=sender)
    assert result.kind == "help"
    assert result.reply_text is not None
    assert "Johan Scherlin" in result.reply_text and number in result.reply_text


def test_an_unknown_number_is_answered_politely_in_both_languages_and_nothing_changes(store, event) -> None:
    """The text is kept without a delegate, nobody's RSVP moves, and the sender learns why."""
    with store.session() as session:
        result = sms(session, event, "Ja", sender=UNKNOWN_PHONE)
    with store.session() as session:
        row = session.scalars(select(InboundRow)).one()
    assert (row.delegate_id, row.kind, row.sender) == (None, "unknown", UNKNOWN_PHONE)
    assert result.reply_text is not None
    assert "Vi hittar inte ditt nummer bland deltagarna" in result.reply_text
    assert "cannot find your number" in result.reply_text
    assert count(store, RsvpRow) == 0 and delegate(store, "anna").rsvp == "none"


def test_an_unknown_number_sending_stop_gets_no_answer_from_us(store, event) -> None:
    """Twilio answers STOP itself, whoever sends it."""
    with store.session() as session:
        assert sms(session, event, "STOP", sender=UNKNOWN_PHONE).reply_text is None


@pytest.mark.parametrize(
    ("context_rule", "hint"),
    [("invitation", "Svara JA eller NEJ"), ("survey", "siffra 1-5"), (None, "Svara HJÄLP")],
)
def test_a_text_not_understood_is_kept_for_the_organisers_and_answered_with_how_to_reply(
    store, event, context_rule, hint
) -> None:
    """ "Hur kommer jag dit?" is stored as unknown, and the answer says how to reply to what was asked."""
    if context_rule:
        ask(store, "anna", context_rule)
    with store.session() as session:
        result = sms(session, event, "Hur kommer jag dit?")
    assert result.kind == "unknown"
    assert result.reply_text is not None
    assert (
        result.reply_text.startswith("Tack, vi har tagit emot ditt meddelande.") and hint in result.reply_text
    )


LONG_NAME = Delegate(id="zoe", name="Zoë-Ångström Przybyszewska-Ἀλέξανδρος", phone="+46705555555")


@pytest.mark.parametrize(
    ("sender", "context_rule", "body"),
    [
        (ANNA.phone, "invitation", "Nej"),
        (BOB.phone, "invitation", "no thanks"),
        (ANNA.phone, None, "HJÄLP"),
        (BOB.phone, None, "help"),
        (ANNA.phone, "survey", "vad menar ni?"),
        (BOB.phone, "survey", "5"),
        (ANNA.phone, None, "STOPP"),
        (BOB.phone, None, "start"),
        (LONG_NAME.phone, "invitation", "ja"),
        (UNKNOWN_PHONE, None, "hej"),
    ],
)
def test_every_answer_fits_in_two_sms_segments(store, event, sender, context_rule, body) -> None:
    """Answers are short enough for one or two segments, even for a name outside GSM-7."""
    add_delegates(store, LONG_NAME)
    if context_rule:
        for delegate_id in ("anna", "bob", "zoe"):
            ask(store, delegate_id, context_rule)
    with store.session() as session:
        result = sms(session, event, body, sender=sender)
    assert result.reply_text is not None
    assert sms_segments(result.reply_text).segments <= 2


def test_nul_characters_and_lone_surrogates_are_stored_replaced(store, event) -> None:
    """Text a database would refuse (NUL for PostgreSQL, surrogates for UTF-8) is stored with U+FFFD/?."""
    with store.session() as session:
        result = sms(session, event, "ja\x00\udcff")
    with store.session() as session:
        body = session.scalars(select(InboundRow.body)).one()
    assert body == "ja\ufffd?"
    assert result.reply_text is not None


def test_a_clear_ja_tack_jag_kommer_counts_from_a_delegate_never_asked_by_sms(store, event) -> None:
    """Invited by email only, Anna texts "Ja tack, jag kommer!": a yes by SMS, confirmed (issue 9, 2)."""
    ask(store, "anna", "invitation", channel="email")
    with store.session() as session:
        result = sms(session, event, "Ja tack, jag kommer!")
    assert (result.kind, result.value) == ("rsvp", "yes")
    assert result.reply_text == "Tack Anna! Vi har noterat att du kommer."
    assert delegate(store, "anna").rsvp == "yes"


def test_a_bare_ja_with_no_question_asked_gets_a_short_sms_asking_what_it_answers(store, event) -> None:
    """After only the bus text, "Ja" changes no RSVP; it is kept for the organisers and answered with a
    one-segment question (issue 9, 2)."""
    ask(store, "anna", "pickup")
    with store.session() as session:
        result = sms(session, event, "Ja")
    assert result.kind == "unclear" and result.reply_text is not None
    assert result.reply_text.startswith("Hej Anna! Vad svarar du ja på?")
    assert sms_segments(result.reply_text).segments == 1
    assert (count(store, RsvpRow), delegate(store, "anna").rsvp) == (0, "none")
    with store.session() as session:
        assert session.scalars(select(InboundRow.kind)).one() == "unknown"


# -- reply e-mails -------------------------------------------------------------------------------


def mail(
    text: str,
    sender: str | None = "anna@example.se",
    automatic: bool = False,
    in_reply_to: str | None = None,
    references: tuple[str, ...] = (),
) -> MailReply:
    return MailReply(
        sender=sender,
        subject="Sv: Inbjudan",
        automatic=automatic,
        answer_text=text,
        in_reply_to=in_reply_to,
        references=list(references),
    )


def replying_to(store: Store, rule: str, delegate_id: str = "anna") -> str:
    """The Message-ID of `rule`'s email to the delegate, as the SMTP and outbox channels wrote it."""
    return message_id(ask(store, delegate_id, rule, channel="email"), "example.org")


@pytest.mark.parametrize(
    "text", ["Nej tack, jag åker inte med bussen. Vi ses vid lunchen!", "Nej, inga frågor. Vi ses!"]
)
def test_a_no_in_reply_to_the_practical_email_is_kept_for_the_organisers_not_a_decline(
    store, event, text
) -> None:
    """In-Reply-To names the practical email, which asked nothing: the no is about the bus or questions,
    stored as unknown for the replies list, and Anna's yes stands (issue 9, 1)."""
    with store.session() as session:
        record_rsvp(session, "anna", "yes", "link", NOW)
    practical = replying_to(store, "practical")
    with store.session() as session:
        result = handle_email_reply(session, event, mail(text, in_reply_to=practical), "<r1@x>", NOW)
    assert (result.kind, result.value) == ("unknown", None)
    assert delegate(store, "anna").rsvp == "yes"
    with store.session() as session:
        assert session.scalars(select(InboundRow.context)).one() == "none"


def test_a_nej_in_reply_to_the_invitation_is_a_decline_found_through_references(store, event) -> None:
    """A client that keeps only References (the invitation last) still points at the RSVP question."""
    invitation = replying_to(store, "invitation")
    with store.session() as session:
        reply = mail("Nej tack.", references=("<other@elsewhere>", invitation))
        result = handle_email_reply(session, event, reply, "<r2@x>", NOW)
    assert (result.kind, result.value) == ("rsvp", "no")
    assert delegate(store, "anna").rsvp == "no"


def test_a_reply_to_the_practical_email_that_states_the_answer_still_counts(store, event) -> None:
    """ "Jag kommer inte" says it outright, whatever mail it answers."""
    practical = replying_to(store, "practical")
    with store.session() as session:
        reply = mail("Jag kommer tyvärr inte.", in_reply_to=practical)
        result = handle_email_reply(session, event, reply, "<r3@x>", NOW)
    assert (result.kind, result.value) == ("rsvp", "no")


def test_a_reply_pointing_at_no_mail_of_ours_is_no_rsvp_unless_stated(store, event) -> None:
    """A bare "Ja" in a thread we never sent (a forward) asked nothing we know of: kept for a human."""
    replying_to(store, "invitation")
    with store.session() as session:
        result = handle_email_reply(session, event, mail("Ja", in_reply_to="<abc@x>"), "<r4@x>", NOW)
    assert result.kind == "unknown"


def test_a_reply_mail_with_ja_records_a_yes_by_email(session, event) -> None:
    """The sender is matched by address (any case) and the RSVP recorded with channel email."""
    result = handle_email_reply(session, event, mail("Ja, jag kommer!", "Anna@Example.SE"), "<m1@x>", NOW)
    assert (result.kind, result.value, result.delegate_id, result.reply_text) == ("rsvp", "yes", "anna", None)
    assert [(h.answer, h.channel) for h in session.scalars(select(RsvpRow))] == [("yes", "email")]


def test_an_automatic_reply_is_stored_but_never_counted_as_an_rsvp(session, event) -> None:
    """An out-of-office saying "ja" is a machine talking: kind automatic, no RSVP."""
    result = handle_email_reply(session, event, mail("Ja", automatic=True), "<ooo@x>", NOW)
    assert result.kind == "automatic"
    assert session.scalars(select(RsvpRow)).all() == []
    assert session.scalars(select(InboundRow.kind)).one() == "automatic"


@pytest.mark.parametrize(
    ("reply", "delegate_id"),
    [(mail("Kan jag ta med en kollega?"), "anna"), (mail("Ja", sender="stranger@example.org"), None)],
)
def test_a_mail_that_is_no_clear_answer_is_left_unknown_for_a_human(
    session, event, reply, delegate_id
) -> None:
    """A question, or a yes from an address we do not know, is stored as unknown and changes no RSVP."""
    result = handle_email_reply(session, event, reply, "<q@x>", NOW)
    assert (result.kind, result.delegate_id) == ("unknown", delegate_id)
    assert session.scalars(select(RsvpRow)).all() == []
    assert session.scalars(select(InboundRow.kind)).one() == "unknown"


def test_the_same_message_id_twice_records_the_rsvp_once(store, event) -> None:
    """`kallelse inbox` may see a mail again; the Message-ID makes the second time a duplicate."""
    replying_to(store, "invitation")  # no threading headers: read against the last email, the invitation
    with store.session() as session:
        handle_email_reply(session, event, mail("Ja"), "<same@x>", NOW)
    with store.session() as session:
        again = handle_email_reply(session, event, mail("Nej"), "<same@x>", NOW)
        assert again.duplicate
        assert [h.answer for h in session.scalars(select(RsvpRow))] == ["yes"]


def test_a_mail_without_a_message_id_is_still_stored_only_once(session, event) -> None:
    """A stand-in id from sender, subject and text keeps the inbox from storing it on every run."""
    handle_email_reply(session, event, mail("Nej"), "", NOW)
    assert handle_email_reply(session, event, mail("Nej"), "", NOW).duplicate


# -- the web pages' records ----------------------------------------------------------------------


def test_a_web_rsvp_must_be_yes_or_no(session) -> None:
    """Anything but yes/no from a form is refused before it reaches the history."""
    with pytest.raises(ValueError, match="yes or no"):
        record_web_rsvp(session, "anna", "maybe", NOW)
    assert session.scalars(select(RsvpRow)).all() == []


def test_a_web_rsvp_for_a_removed_delegate_is_refused(session) -> None:
    """A valid link for a delegate since deleted records nothing."""
    with pytest.raises(LookupError):
        record_web_rsvp(session, "gone", "yes", NOW)


def test_a_survey_form_stores_answered_questions_and_ignores_the_rest(session, event) -> None:
    """Ratings and text are stored with channel web; empty fields and unknown names are skipped."""
    form = {"overall": "5", "tour": "", "comments": "  Mer om vätgas  ", "admin": "1", "procurement": "3"}
    assert record_web_survey(session, event, "anna", form, NOW) == 3
    answers = {a.question: (a.rating, a.text, a.channel) for a in session.scalars(select(SurveyAnswerRow))}
    assert answers == {
        "overall": (5, None, "web"),
        "procurement": (3, None, "web"),
        "comments": (None, "Mer om vätgas", "web"),
    }
    assert session.get(DelegateRow, "anna").survey_answered  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", ["0", "6", "4.5", "fyra", "-1"])
def test_a_survey_form_with_a_rating_outside_one_to_five_stores_nothing(session, event, bad) -> None:
    """One bad rating refuses the whole form, naming the question, so the page can show it again."""
    with pytest.raises(InvalidSurvey) as raised:
        record_web_survey(session, event, "anna", {"overall": "4", "tour": bad}, NOW)
    assert raised.value.questions == ["tour"]
    assert session.scalars(select(SurveyAnswerRow)).all() == []
