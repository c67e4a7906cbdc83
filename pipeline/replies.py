"""Read a delegate's inbound text in the context of what they were last asked. Pure: no I/O, no clock.

The order of reading, and why:

1. Keywords, in every context, when they are the whole message (trimmed, punctuation and emoji at the ends
   ignored): opt-out (STOP, STOPP, AVSLUTA and Twilio's own STOPALL, UNSUBSCRIBE, END, QUIT, REVOKE, OPTOUT,
   CANCEL), opt-in (START, STARTA, UNSTOP) and help (HELP, HJÄLP, HJALP, INFO). Twilio acts on its opt-out
   words whatever we make of them, so they are never RSVPs: "Cancel" opts out, it does not decline.
   YES is not an opt-in here (Twilio's default list has it): it is an RSVP, and a local opt-out stays until
   START, which errs on the side of not texting someone who said STOP.
2. The context:
   - "rsvp": yes/no from the first sentence (at most 8 words). A negation turns a yes-verb around ("kommer
     inte", "absolut inte"), doubt ("kanske", "vet inte") or both answers ("ja och nej") give unknown, and
     so does a question ("Kommer det finnas vegetariskt?").
   - "survey": exactly one rating 1–5 on the first line ("4", "betyg 4", "5/5", "fyra", "five").
   - "none": a bare JA, NEJ, YES or NO (also "Ja tack", not "Ja?") is ("unclear", "yes"/"no"): the caller
     asks what it answers instead of guessing. Longer texts after an information message are usually about
     that message ("Nej, jag tar taxi" to the bus text, "👍" as "got it").
3. In every context, a sentence that states the answer outright is an RSVP (`statement`): "jag kommer",
   "kommer inte", "avanmäler mig", "I'll be there", "can't come", with only greetings before ("Ja tack,
   jag kommer!") and a place after ("till mötet"). "Nej tack, jag åker inte med bussen" states nothing
   about coming, so it is not one. Doubt anywhere, or two statements that disagree, is no statement.
4. Everything else is ("unknown", None), left for the organisers.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

Kind = Literal["rsvp", "rating", "opt_out", "opt_in", "help", "unclear", "unknown"]
Context = Literal["rsvp", "survey", "none"]


@dataclass(frozen=True)
class Reply:
    """What a text meant: an RSVP ("yes"/"no"), a rating (1–5), a keyword, or unknown (value None)."""

    kind: Kind
    value: str | int | None = None


UNKNOWN = Reply("unknown")

OPT_OUT_WORDS = frozenset(
    {"stop", "stopp", "avsluta", "stopall", "unsubscribe", "end", "quit", "revoke", "optout", "cancel"}
)
OPT_IN_WORDS = frozenset({"start", "starta", "unstop"})
HELP_WORDS = frozenset({"help", "hjälp", "hjalp", "info"})

_MAX_CHARS = 1000  # answers are short; bounds the work on a 2,000-character paste
_MAX_WORDS = 8
_THUMBS = frozenset({"👍", "👎"})
_APOSTROPHES = str.maketrans("", "", "'’`´")  # "can't" -> "cant", one word

_YES = frozenset(
    {"ja", "japp", "jepp", "jep", "jajamän", "jajamänsan", "jadå", "javisst", "visst", "absolut",
     "självklart", "gärna", "kommer", "yes", "yep", "yeah", "yup", "ok", "okej", "okay", "sure", "coming",
     "attending", "definitely", "👍"}
)  # fmt: skip
_NEGATIONS = frozenset({"inte", "ej", "not", "cant", "cannot", "wont", "unable", "dont"})
_NO = _NEGATIONS | {"nej", "nä", "näe", "nää", "nix", "no", "nope", "tyvärr", "unfortunately", "👎"}
# Yes-words that a negation in the same sentence turns into part of a no: "kommer inte", "absolut inte".
_NEGATABLE = frozenset({"kommer", "absolut", "självklart", "gärna", "coming", "attending", "definitely"})
_UNSURE = frozenset(
    {"kanske", "eventuellt", "troligen", "troligtvis", "osäker", "säker", "vet", "hoppas", "maybe", "perhaps",
     "possibly", "probably", "unsure", "know"}
)  # fmt: skip
_LETTERS = {"y": "yes", "j": "yes", "n": "no"}  # single letters count only as the whole message
_BARE_RSVP = {"ja": "yes", "yes": "yes", "nej": "no", "no": "no"}

# Statements of the answer (words as `words` makes them, "can't" -> "cant"); see `statement`.
_STATED_YES = (
    "jag kommer", "vi kommer", "jag deltar", "vi deltar", "jag kan komma", "jag är med", "jag anmäler mig",
    "i will be there", "ill be there", "i will come", "ill come", "im coming", "i am coming", "i will attend",
    "ill attend", "i can come", "count me in",
)  # fmt: skip
_STATED_NO = (
    "jag kommer inte", "kommer inte", "jag kommer ej", "kommer ej", "jag kan inte komma", "kan inte komma",
    "jag deltar inte", "deltar inte", "jag avanmäler mig", "avanmäler mig", "jag är förhindrad",
    "jag blir förhindrad", "jag har förhinder", "i cant come", "cant come", "i cannot come", "cannot come",
    "i wont be there", "i will not be there", "i wont come", "i cant make it", "cant make it",
    "i cannot attend", "i cant attend", "im not coming", "i am not coming", "not coming", "i will not attend",
)  # fmt: skip
_STATEMENTS = {tuple(p.split()): "yes" for p in _STATED_YES} | {tuple(p.split()): "no" for p in _STATED_NO}
_COURTESY = frozenset(
    {"tyvärr", "gärna", "tack", "så", "mycket", "unfortunately", "sadly", "thanks", "sorry"}
)
_GREETINGS = {"hej": None, "hejsan": None, "hi": None, "hello": None, "eller": None, "men": None, "ja": "yes",
              "jo": "yes", "yes": "yes", "absolut": "yes", "nej": "no", "nä": "no", "no": "no"}  # fmt: skip
_PLACES = frozenset(
    {(), ("dit",), ("då",), ("till", "mötet"), ("på", "mötet"), ("till", "konferensen"),
     ("på", "konferensen"), ("then",), ("to", "the", "meeting"), ("to", "the", "conference")}
)  # fmt: skip
_MAX_SENTENCES = 3

_NUMBER_WORDS = {
    "ett": 1, "etta": 1, "två": 2, "tvåa": 2, "tre": 3, "trea": 3, "fyra": 4, "fem": 5, "femma": 5,
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "noll": 0, "nolla": 0, "zero": 0, "sex": 6, "sexa": 6, "six": 6,
}  # fmt: skip
_OUT_OF_FIVE = re.compile(r"(\d+)\s*(?:/|av|of|out of)\s*5\b")
_SENTENCE_END = re.compile(r"[.!?;]+(?=\s|$)|\n")


def interpret(text: str, context: Context) -> Reply:
    """Read `text` as an answer to what the delegate was last asked (`context`). Never raises."""
    if not isinstance(text, str):
        return UNKNOWN
    text = text[:_MAX_CHARS]
    message = words(text)
    keyword = _keyword(message)
    if keyword is not None:
        return keyword
    if context == "rsvp":
        return _as_rsvp(_rsvp(text) or statement(text))
    if context == "survey":
        rating = _rating(_first_line(text))
        if rating is not None:
            return Reply("rating", rating)
    stated = statement(text)
    if stated is not None:
        return Reply("rsvp", stated)
    bare = _bare_answer(message, text)
    return Reply("unclear", bare) if bare and context == "none" else UNKNOWN


def words(text: str) -> list[str]:
    """NFC, casefolded words; punctuation, emoji and control characters are spaces, except 👍 and 👎."""
    text = unicodedata.normalize("NFC", unicodedata.normalize("NFC", text).casefold())
    text = text.translate(_APOSTROPHES)
    return "".join(c if c.isalnum() else f" {c} " if c in _THUMBS else " " for c in text).split()


def _keyword(message: list[str]) -> Reply | None:
    if len(message) != 1:
        return None
    word = message[0]
    if word in OPT_OUT_WORDS:
        return Reply("opt_out")
    if word in OPT_IN_WORDS:
        return Reply("opt_in")
    return Reply("help") if word in HELP_WORDS else None


def _as_rsvp(answer: str | None) -> Reply:
    return UNKNOWN if answer is None else Reply("rsvp", answer)


def _rsvp(text: str) -> str | None:
    sentence, question = _first_sentence(text)
    if question:
        return None
    if len(sentence) == 1 and sentence[0] in _LETTERS:
        return _LETTERS[sentence[0]]
    if any(w in _UNSURE for w in sentence):
        return None
    negated = any(w in _NEGATIONS for w in sentence)
    yes = any(w in _YES and not (negated and w in _NEGATABLE) for w in sentence)
    no = any(w in _NO for w in sentence)
    if yes == no:  # neither, or both ("ja och nej", "ja, men inte på middagen")
        return None
    return "yes" if yes else "no"


def statement(text: str) -> str | None:
    """ "yes"/"no" when a sentence states the answer outright, in any context; None otherwise."""
    if any(w in _UNSURE for w in words(text)):
        return None
    found = {_stated(sentence) for sentence in _sentences(text)[:_MAX_SENTENCES]} - {None}
    return found.pop() if len(found) == 1 else None


def _stated(sentence: list[str]) -> str | None:
    kept = [w for w in sentence if w not in _COURTESY]
    greeted = set()
    while kept and kept[0] in _GREETINGS:
        greeted.add(_GREETINGS[kept.pop(0)])
    for length in range(len(kept), 0, -1):
        answer = _STATEMENTS.get(tuple(kept[:length]))
        if answer is not None and tuple(kept[length:]) in _PLACES:
            return answer if greeted - {None} <= {answer} else None  # "Ja, jag kommer inte": no answer
    return None


def _sentences(text: str) -> list[list[str]]:
    """The words of each sentence that is not a question."""
    found, start = [], 0
    for end in _SENTENCE_END.finditer(text + "\n"):
        if "?" not in end.group():
            found.append(words(text[start : end.start()]))
        start = end.end()
    return [sentence for sentence in found if sentence]


def _bare_answer(message: list[str], text: str) -> str | None:
    """ "yes"/"no" for a bare JA/NEJ ("Ja tack!" too, not "Ja?")."""
    kept = [w for w in message if w != "tack"]
    return _BARE_RSVP.get(kept[0]) if len(kept) == 1 and "?" not in text else None


def _first_sentence(text: str) -> tuple[list[str], bool]:
    """Words of the first sentence that has any, and whether it ends in a question mark."""
    start = 0
    for end in _SENTENCE_END.finditer(text):
        found = words(text[start : end.start()])
        if found:
            return found[:_MAX_WORDS], "?" in end.group()
        start = end.end()
    return words(text[start:])[:_MAX_WORDS], False


def _first_line(text: str) -> str:
    return next((line for line in text.splitlines() if line.strip()), "")


def _rating(line: str) -> int | None:
    line = _OUT_OF_FIVE.sub(r"\1", line.casefold())  # "5/5", "4 av 5" -> the first number
    numbers = {n for n in map(_number, words(line)[:_MAX_WORDS]) if n is not None}
    if len(numbers) != 1:
        return None
    rating = numbers.pop()
    return rating if 1 <= rating <= 5 else None


def _number(word: str) -> int | None:
    if word.isascii() and word.isdigit():
        return int(word)
    return _NUMBER_WORDS.get(word)
