"""The dashboard's words for the codes the library stores: states, channels, roles, reply kinds.

Organisers read "levererad", "e-post" and "inte förstått", never `delivered`, `email` or `unknown`.
A code without a word here is shown as it is, so a new state is visible rather than hidden.
"""

from __future__ import annotations

from typing import Any

from pipeline.states import LedgerState
from pipeline.timetable import Event

S = LedgerState
STATES = {
    S.PLANNED: "planerad",
    S.QUEUED: "i kö",
    S.SENDING: "skickas",
    S.SENT: "skickad",
    S.DELIVERED: "levererad",
    S.FAILED: "misslyckad",
    S.EXPIRED: "för sent",
    S.SKIPPED: "hoppas över",
    S.UNKNOWN: "okänd (kom det fram?)",
}
ANSWERS = {"yes": "ja", "no": "nej", "none": "inte svarat"}
CHANNELS = {
    "sms": "sms",
    "email": "e-post",
    "web": "webben",
    "auto": "sms, annars e-post",
    "both": "sms och e-post",
}
# Where an RSVP came from (rsvp_history.channel).
SOURCES = {
    "import": "importerat",
    "sms": "sms",
    "email": "e-post",
    "imap": "e-post",
    "web": "länken",
    "link": "länken",
    "organiser": "arrangören",
    "delegate": "deltagaren",
}
ROLES = {"kso": "KSO (politiker)", "official": "tjänsteperson"}
KINDS = {
    "rsvp": "svar JA/NEJ",
    "rating": "betyg",
    "opt_out": "STOPP",
    "opt_in": "START",
    "help": "HJÄLP",
    "unknown": "inte förstått",
    "unclear": "JA/NEJ utan fråga",
    "automatic": "automatiskt svar",
}
CONTEXTS = {"rsvp": "inbjudan", "survey": "enkäten", "none": "–"}
HANDLED = {"handled": "klart", "rsvp": "svar registrerat", "answered": "besvarat med sms"}
LANGUAGES = {"sv": "svenska", "en": "engelska"}
DINNER = {True: "äter middag", False: "äter inte middag", None: "inte angett"}


def rule_label(event: Event, rule: str) -> str:
    """A rule's Swedish description; broadcasts and change notices by what they are."""
    if rule.startswith("broadcast:"):
        return "Utskick"
    if rule.startswith("change:"):
        return "Ändringsmeddelande"
    if rule.startswith("resend:"):
        return "Skickat igen med e-post"
    known = next((r for r in event.rules if r.id == rule), None)
    return known.label("sv") if known else rule


def stop_name(event: Event, stop: str | None) -> str:
    if not stop:
        return "ingen buss"
    return next((s.name for s in event.stops if s.id == stop), stop)


def words(event: Event) -> dict[str, Any]:
    """Everything a dashboard template needs to say codes in words."""
    return {
        "states": STATES,
        "answers": ANSWERS,
        "channels": CHANNELS,
        "sources": SOURCES,
        "roles": ROLES,
        "kinds": KINDS,
        "contexts": CONTEXTS,
        "handled_words": HANDLED,
        "languages": LANGUAGES,
        "dinner_words": DINNER,
        "rule_label": lambda rule: rule_label(event, rule),
        "stop_name": lambda stop: stop_name(event, stop),
        "question_text": lambda question: next(
            (q.text("sv") for q in event.survey if q.id == question), question
        ),
    }
