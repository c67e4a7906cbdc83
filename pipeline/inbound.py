"""What to do with what delegates send back: an SMS, a reply e-mail, a click on an RSVP or survey page.

Plain logic on a database session; the web app and `kallelse inbox` are the thin shells around it. Every
inbound message is stored first (deduplicated by the provider's id), then acted on, so a provider's retry
changes nothing and nothing a delegate wrote is lost, even when it is not understood.

Replies to Twilio's own opt-out words (STOP, UNSUBSCRIBE, END, QUIT, STOPALL, REVOKE, OPTOUT, CANCEL) are
left to Twilio: it answers them itself and blocks every later message to the number, our TwiML reply
included. STOPP and AVSLUTA are ours alone, so we confirm those (and "Stop!", which Twilio does not match).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from pipeline.mailparse import MailReply
from pipeline.render import phone
from pipeline.replies import Reply, interpret
from pipeline.sms import gsm_friendly
from pipeline.store.models import DelegateRow
from pipeline.store.people import RsvpDetails, record_rsvp, record_rsvp_details
from pipeline.store.responses import (
    delegate_by_email,
    delegate_by_phone,
    last_question,
    question_of_mail,
    record_inbound,
    record_survey_answer,
    set_sms_opt_out,
)
from pipeline.timetable import Event

log = logging.getLogger(__name__)

TWILIO_OPT_OUT_WORDS = frozenset(
    {"STOP", "UNSUBSCRIBE", "END", "QUIT", "STOPALL", "REVOKE", "OPTOUT", "CANCEL"}
)
SMS_SURVEY_QUESTION = "overall"  # the survey SMS asks only for the overall rating
MAX_TEXT_ANSWER = 5000  # characters kept of a free-text survey answer


@dataclass(frozen=True)
class InboundResult:
    """What an inbound message was taken to mean, and what (if anything) to answer."""

    reply_text: str | None
    kind: str  # rsvp | rating | opt_out | opt_in | help | unknown | automatic
    value: str | None = None
    duplicate: bool = False
    delegate_id: str | None = None


class InvalidSurvey(ValueError):
    """A survey form with ratings outside 1–5; `questions` names them."""

    def __init__(self, questions: list[str]):
        self.questions = questions
        super().__init__(f"invalid ratings for {', '.join(questions)}")


# -- SMS ---------------------------------------------------------------------------------------


def handle_sms(
    session: Session, event: Event, *, sender: str, body: str, message_sid: str, now: datetime
) -> InboundResult:
    """Store one inbound SMS, act on it, and say what to answer (in the delegate's language)."""
    body, sender = clean_text(body), clean_text(sender.strip())[:254]
    delegate = delegate_by_phone(session, sender)
    if delegate is None:
        return _from_unknown_number(
            session, event, sender=sender, body=body, message_sid=message_sid, now=now
        )
    context = last_question(session, delegate.id, {rule.id: rule.template for rule in event.rules})
    reply = interpret(body, context)  # type: ignore[arg-type]  # last_question returns one of the contexts
    value = None if reply.value is None or reply.kind == "unclear" else str(reply.value)
    stored = record_inbound(
        session,
        channel="sms",
        provider_id=message_sid[:255],
        sender=sender,
        body=body,
        delegate_id=delegate.id,
        context=context,
        kind="unknown" if reply.kind == "unclear" else reply.kind,  # the organisers' list shows it
        value=value,
        now=now,
    )
    if not stored:
        return InboundResult(None, reply.kind, value, duplicate=True, delegate_id=delegate.id)
    log.info(
        "sms %s from delegate %s read as %s in context %s", message_sid, delegate.id, reply.kind, context
    )
    _act_on_sms(session, event, delegate, reply, now)
    text = _sms_answer(event, delegate, reply, context, twilio_answers=_twilio_keyword(body))
    return InboundResult(text, reply.kind, value, delegate_id=delegate.id)


def _from_unknown_number(
    session: Session, event: Event, *, sender: str, body: str, message_sid: str, now: datetime
) -> InboundResult:
    stored = record_inbound(
        session,
        channel="sms",
        provider_id=message_sid[:255],
        sender=sender,
        body=body,
        delegate_id=None,
        context="none",
        kind="unknown",
        value=None,
        now=now,
    )
    if not stored:
        return InboundResult(None, "unknown", duplicate=True)
    log.info("sms %s from an unknown number ending in %s", message_sid, sender[-2:])
    text = None if _twilio_keyword(body) else unknown_number_answer(event)
    return InboundResult(text, "unknown")


def _act_on_sms(session: Session, event: Event, delegate: DelegateRow, reply: Reply, now: datetime) -> None:
    if reply.kind == "rsvp":
        record_rsvp(session, delegate.id, str(reply.value), "sms", now)
    elif reply.kind == "rating":
        record_survey_answer(
            session,
            delegate.id,
            sms_survey_question(event),
            rating=int(reply.value or 0),
            channel="sms",
            now=now,
        )
    elif reply.kind in ("opt_out", "opt_in"):
        set_sms_opt_out(session, delegate.id, reply.kind == "opt_out", now)


def sms_survey_question(event: Event) -> str:
    """The question a rating by SMS answers: "overall", or the first rating question when it is named
    otherwise."""
    ratings = [q.id for q in event.survey if q.kind == "rating"]
    return SMS_SURVEY_QUESTION if SMS_SURVEY_QUESTION in ratings or not ratings else ratings[0]


def _twilio_keyword(body: str) -> bool:
    return body.strip().upper() in TWILIO_OPT_OUT_WORDS


# -- what we answer by SMS: short, GSM-7 where the name allows, at most two segments -----------

_UNKNOWN_NUMBER = (
    "Hej! Vi hittar inte ditt nummer bland deltagarna. Ring {contact}, {role}, {phone_sv}. / "
    "We cannot find your number among the participants; please call {phone_en}."
)


def unknown_number_answer(event: Event) -> str:
    """What a number we do not know gets back: whom to call instead (the event's duty contact)."""
    duty = event.duty_contact
    return gsm_friendly(
        _UNKNOWN_NUMBER.format(
            contact=duty.name,
            role=duty.role("sv"),
            phone_sv=phone(duty.phone, "sv"),
            phone_en=phone(duty.phone, "en"),
        )
    )


_ANSWERS = {
    "sv": {
        "yes": "Tack {name}! Vi har noterat att du kommer.",
        "no": "Tack {name}! Vi har noterat att du inte kommer. Ändrar du dig, svara JA.",
        "rating": "Tack för ditt betyg {value}!",
        "opt_out": "Du får inga fler sms från oss. Svara START om du ändrar dig.",
        "opt_in": "Välkommen tillbaka! Du får sms från oss igen. Svara STOPP för att avsluta.",
        "help": "Frågor? Kontakta {contact} ({role}), {phone}. Svara STOPP för att inte få fler sms.",
        "unknown": "Tack, vi har tagit emot ditt meddelande.",
        "unclear": "Hej {name}! Vad svarar du {word} på? Gäller det mötet, svara JAG KOMMER eller "
        "KOMMER INTE.",
        "call": "Brådskande? Ring {contact}, {phone}.",
        "how_rsvp": "Kommer du? Svara JA eller NEJ.",
        "how_survey": "Betygsätt mötet: svara med en siffra 1-5.",
        "how_none": "Svara HJÄLP för kontaktuppgifter.",
    },
    "en": {
        "yes": "Thank you {name}! We have noted that you are coming.",
        "no": "Thank you {name}! We have noted that you are not coming. If you change your mind, reply YES.",
        "rating": "Thank you for your rating {value}!",
        "opt_out": "You will get no more texts from us. Reply START if you change your mind.",
        "opt_in": "Welcome back! You will get our texts again. Reply STOP to opt out.",
        "help": "Questions? Contact {contact} ({role}), {phone}. Reply STOP to get no more texts.",
        "unknown": "Thank you, we have received your message.",
        "unclear": "Hi {name}! What does your {word} answer? If it is the meeting, reply I'LL BE THERE or "
        "CAN'T COME.",
        "call": "Urgent? Call {contact}, {phone}.",
        "how_rsvp": "Are you coming? Reply YES or NO.",
        "how_survey": "Rate the meeting: reply with a digit 1-5.",
        "how_none": "Reply HELP for contact details.",
    },
}


def _sms_answer(
    event: Event, delegate: DelegateRow, reply: Reply, context: str, *, twilio_answers: bool
) -> str | None:
    if reply.kind == "opt_out" and twilio_answers:
        return None
    lang = "en" if delegate.language == "en" else "sv"
    texts = _ANSWERS[lang]
    if reply.kind == "rsvp":
        text = texts[str(reply.value)].format(name=_first_name(delegate.name))
    elif reply.kind == "help":
        duty = event.duty_contact
        text = texts["help"].format(contact=duty.name, role=duty.role(lang), phone=phone(duty.phone, lang))
    elif reply.kind == "unknown":
        # A person reads it later; whoever cannot wait learns whom to call now.
        duty = event.duty_contact
        call = texts["call"].format(contact=duty.name, phone=phone(duty.phone, lang))
        text = f"{texts['unknown']} {texts['how_' + context]} {call}"
    elif reply.kind == "unclear":  # a bare JA/NEJ with nothing asked: ask what it answers
        word = {"sv": {"yes": "ja", "no": "nej"}, "en": {"yes": "yes", "no": "no"}}[lang][str(reply.value)]
        text = texts["unclear"].format(name=_first_name(delegate.name), word=word)
    else:
        text = texts[reply.kind].format(value=reply.value)
    return gsm_friendly(text)


def _first_name(name: str) -> str:
    return name.split()[0][:30] if name.strip() else ""


# -- e-mail replies (kallelse inbox) -----------------------------------------------------------


def handle_email_reply(
    session: Session, event: Event, reply: MailReply, message_id: str, now: datetime
) -> InboundResult:
    """Store a reply e-mail once and record the RSVP it carries, read as an answer to the mail it replies
    to (`mail_context`). Automatic replies and anything not a clear answer are stored for a human (kind
    "automatic" / "unknown"); nothing is answered by mail."""
    provider_id = (message_id.strip() or _fallback_message_id(reply))[:255]
    delegate = delegate_by_email(session, reply.sender) if reply.sender else None
    body = clean_text(reply.answer_text)
    context = "none" if delegate is None else mail_context(session, event, delegate.id, reply)
    meaning = Reply("unknown") if reply.automatic or delegate is None else interpret(body, context)  # type: ignore[arg-type]
    kind = "automatic" if reply.automatic else "rsvp" if meaning.kind == "rsvp" else "unknown"
    value = str(meaning.value) if kind == "rsvp" else None
    delegate_id = delegate.id if delegate else None
    stored = record_inbound(
        session,
        channel="email",
        provider_id=provider_id,
        sender=clean_text(reply.sender or "")[:254],
        body=body,
        delegate_id=delegate_id,
        context=context,
        kind=kind,
        value=value,
        now=now,
    )
    if not stored:
        return InboundResult(None, kind, value, duplicate=True, delegate_id=delegate_id)
    if kind == "rsvp" and delegate_id is not None:
        record_rsvp(session, delegate_id, str(value), "email", now)
    log.info("e-mail %s from delegate %s read as %s in context %s", provider_id, delegate_id, kind, context)
    return InboundResult(None, kind, value, delegate_id=delegate_id)


def mail_context(session: Session, event: Event, delegate_id: str, reply: MailReply) -> str:
    """What the mail a reply answers asked: found by In-Reply-To, then References (newest first). A reply
    pointing at no mail of ours asked nothing; one with no such headers at all (a fresh mail, a client that
    drops them) is read against the last email the delegate got, as an SMS is."""
    templates = {rule.id: rule.template for rule in event.rules}
    pointers = ([reply.in_reply_to] if reply.in_reply_to else []) + list(reversed(reply.references))
    if not pointers:
        return last_question(session, delegate_id, templates, channel="email")
    return question_of_mail(session, delegate_id, pointers, templates) or "none"


def _fallback_message_id(reply: MailReply) -> str:
    # A mail without a Message-ID still needs a stable key, or every run of the inbox would store it again.
    digest = hashlib.sha256(f"{reply.sender}\n{reply.subject}\n{reply.answer_text}".encode()).hexdigest()
    return f"<no-message-id-{digest[:40]}>"


# -- the web pages -----------------------------------------------------------------------------


def record_web_rsvp(session: Session, delegate_id: str, answer: str, now: datetime) -> None:
    """Record a JA/NEJ button press. ValueError for any other answer, LookupError for no such delegate."""
    if answer not in ("yes", "no"):
        raise ValueError(f"an RSVP answer is yes or no, not {answer!r}")
    if session.get(DelegateRow, delegate_id) is None:
        raise LookupError(delegate_id)
    record_rsvp(session, delegate_id, answer, "link", now)
    log.info("web rsvp from delegate %s: %s", delegate_id, answer)


OWN_WAY = "own"  # the RSVP form's stop choice for "I come by myself"
MAX_RSVP_TEXT = 1000  # characters kept of dietary needs and of a comment


class InvalidRsvp(ValueError):
    """An RSVP form that cannot be stored; `fields` names what to correct."""

    def __init__(self, fields: list[str]):
        self.fields = fields
        super().__init__(f"invalid RSVP form fields: {', '.join(fields)}")


def read_rsvp_form(event: Event, form: dict[str, str]) -> tuple[str, RsvpDetails]:
    """The answer and the details of a submitted RSVP page. Raises `InvalidRsvp` naming bad fields."""
    answer = form.get("answer", "")
    dinner, stop = form.get("dinner", ""), form.get("stop", "")
    bad = [
        name
        for name, ok in (("answer", answer in ("yes", "no")), ("dinner", dinner in ("", "yes", "no")))
        if not ok
    ]
    if stop not in ("", OWN_WAY, *(s.id for s in event.stops)):
        bad.append("stop")
    if bad:
        raise InvalidRsvp(bad)
    details = RsvpDetails(
        dinner={"yes": True, "no": False}.get(dinner) if answer == "yes" else None,
        stop=stop if answer == "yes" and stop not in ("", OWN_WAY) else None,
        own_way=answer == "yes" and stop == OWN_WAY,
        dietary=clean_text(form.get("dietary", "")).strip()[:MAX_RSVP_TEXT],
        comment=clean_text(form.get("comment", "")).strip()[:MAX_RSVP_TEXT],
    )
    return answer, details


def record_web_rsvp_form(
    session: Session, event: Event, delegate_id: str, form: dict[str, str], now: datetime
) -> str:
    """Store a submitted RSVP page: the answer (as a web RSVP) and what the day needs. Returns the answer."""
    answer, details = read_rsvp_form(event, form)
    record_web_rsvp(session, delegate_id, answer, now)
    record_rsvp_details(session, delegate_id, details, now)
    return answer


def record_web_survey(
    session: Session, event: Event, delegate_id: str, form: dict[str, str], now: datetime
) -> int:
    """Store every answered question of the survey form; returns how many. Unknown fields are ignored,
    empty ones skipped. A rating outside 1–5 raises `InvalidSurvey` before anything is stored."""
    ratings, texts, invalid = {}, {}, []
    for question in event.survey:
        raw = clean_text(str(form.get(question.id) or "")).strip()
        if not raw:
            continue
        if question.kind == "text":
            texts[question.id] = raw[:MAX_TEXT_ANSWER]
        elif raw in ("1", "2", "3", "4", "5"):
            ratings[question.id] = int(raw)
        else:
            invalid.append(question.id)
    if invalid:
        raise InvalidSurvey(invalid)
    if session.get(DelegateRow, delegate_id) is None:
        raise LookupError(delegate_id)
    for question_id, rating in ratings.items():
        record_survey_answer(session, delegate_id, question_id, rating=rating, channel="web", now=now)
    for question_id, text in texts.items():
        record_survey_answer(session, delegate_id, question_id, text=text, channel="web", now=now)
    return len(ratings) + len(texts)


def clean_text(text: str) -> str:
    """Text any database stores: lone surrogates (undecodable bytes) and NUL characters replaced."""
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
