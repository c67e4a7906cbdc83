"""Reading inbound texts in context: RSVPs, survey ratings, opt-out/opt-in/help keywords, and odd input."""

from __future__ import annotations

import dataclasses
import unicodedata

import pytest

from pipeline.replies import UNKNOWN, Reply, interpret

CONTEXTS = ("rsvp", "survey", "none")

YES_TEXTS = [
    "Ja", "ja", "JA", "Ja!", "ja tack!", "Ja tack.", "Japp", "jepp", "jajamän", "Jajamänsan", "Javisst",
    "Kommer", "jag kommer", "Ja, jag kommer!", "Vi kommer gärna", "Absolut", "Självklart!", "SJÄLVKLART",
    "Yes", "YES!!", "yes please", "Yeah", "Y", "y", "J", "ok", "OK", "Okej", "Sure", "I'm coming",
    "👍", "👍🏽", "Ja 😊", "  ja  \n", "ja\ttack", "Ja! Ser fram emot det.",
]  # fmt: skip
NO_TEXTS = [
    "Nej", "nej", "NEJ", "Nej.", "nej tack", "Nej tack!", "Nä", "kan inte", "Kan tyvärr inte",
    "kan inte komma", "kommer inte", "Jag kommer inte", "nej jag kommer inte", "Nej, jag kommer tyvärr inte.",
    "Tyvärr", "tyvärr!", "Absolut inte", "No", "NO", "no thanks", "Nope", "N", "n", "can't make it",
    "Can’t make it, sorry", "cannot come", "I won't be there", "not coming", "👎", "👎🏻",
]  # fmt: skip
UNKNOWN_RSVP_TEXTS = [
    "ja och nej", "Ja, men inte på middagen", "ja jag kommer inte", "kanske", "Kanske!", "vet inte",
    "Vet inte än", "not sure", "maybe", "I'll let you know", "Hur kommer jag dit?", "Kommer det finnas mat?",
    "Ja?", "tack", "Hej", "4", "5/5", "👍👎", "jag återkommer",
]  # fmt: skip
OPT_OUT_WORDS = [
    "STOP", "STOPP", "AVSLUTA", "STOPALL", "UNSUBSCRIBE", "END", "QUIT", "REVOKE", "OPTOUT", "CANCEL",
]  # fmt: skip


@pytest.mark.parametrize("text", YES_TEXTS)
def test_yes_variants_are_read_as_a_yes_rsvp(text: str) -> None:
    """Every way people really say yes, in Swedish and English, is an RSVP yes after an RSVP question."""
    assert interpret(text, "rsvp") == Reply("rsvp", "yes")


@pytest.mark.parametrize("text", NO_TEXTS)
def test_no_variants_are_read_as_a_no_rsvp(text: str) -> None:
    """Every way people really say no, including negated yes-verbs, is an RSVP no after an RSVP question."""
    assert interpret(text, "rsvp") == Reply("rsvp", "no")


@pytest.mark.parametrize("text", UNKNOWN_RSVP_TEXTS)
def test_mixed_doubtful_or_unrelated_texts_are_unknown_after_an_rsvp_question(text: str) -> None:
    """Both answers, doubt, questions and non-answers are left for the organisers."""
    assert interpret(text, "rsvp") == UNKNOWN


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("word", OPT_OUT_WORDS)
def test_opt_out_words_opt_out_in_every_context(word: str, context: str) -> None:
    """STOP/STOPP/AVSLUTA and Twilio's own opt-out words opt out whatever was asked."""
    assert interpret(word, context) == Reply("opt_out")  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["stop", "Stopp!", " avsluta. ", "Cancel", "cancel 😡", "QUIT\n"])
def test_opt_out_words_are_never_rsvps_whatever_their_case_or_punctuation(text: str) -> None:
    """A "Cancel" after an RSVP question opts out (Twilio already has), it does not decline."""
    assert interpret(text, "rsvp").kind == "opt_out"


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("START", "opt_in"), ("start", "opt_in"), ("Starta!", "opt_in"), ("UNSTOP", "opt_in"),
        ("HELP", "help"), ("hjälp", "help"), ("HJÄLP?", "help"), ("hjalp", "help"), ("Info", "help"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("context", CONTEXTS)
def test_opt_in_and_help_keywords_are_read_in_every_context(text: str, kind: str, context: str) -> None:
    """START/STARTA/UNSTOP opt back in and HELP/HJÄLP/INFO ask for contacts, in any context."""
    assert interpret(text, context) == Reply(kind)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["Stop sending me bus times", "kan du hjälpa", "please stop", "start 9?"])
def test_keywords_count_only_as_the_whole_message(text: str) -> None:
    """A keyword inside a longer text is not a command; the organisers read it."""
    assert interpret(text, "rsvp").kind not in ("opt_out", "opt_in", "help")


def test_yes_is_an_rsvp_not_an_opt_in() -> None:
    """Twilio counts YES as opt-in, but here it answers the RSVP question."""
    assert interpret("YES", "rsvp") == Reply("rsvp", "yes")


@pytest.mark.parametrize(
    ("text", "rating"),
    [
        ("1", 1), ("2", 2), ("3", 3), ("4", 4), ("5", 5), ("4!", 4), (" 4 ", 4), ("betyg 4", 4),
        ("Betyg: 3", 3), ("5/5", 5), ("4 / 5", 4), ("4 av 5", 4), ("3 of 5", 3), ("fyra", 4), ("Fem!", 5),
        ("en stark fyra", 4), ("five", 5), ("Two", 2), ("4️⃣", 4), ("Toppen! 5", 5), ("5 5", 5),
        ("5\nBussen var lite sen", 5),
    ],
)  # fmt: skip
def test_survey_ratings_are_read_after_a_survey_prompt(text: str, rating: int) -> None:
    """One number 1–5 on the first line, as a digit or a word, is the rating."""
    assert interpret(text, "survey") == Reply("rating", rating)


@pytest.mark.parametrize(
    "text", ["0", "6", "45", "10", "4.5", "3,5", "3 eller 4", "sex", "noll", "", "bra", "4/10", "ingen aning"]
)
def test_out_of_range_or_ambiguous_ratings_are_unknown(text: str) -> None:
    """Ratings outside 1–5, several numbers or none are unknown, not clamped or guessed."""
    assert interpret(text, "survey") == UNKNOWN


@pytest.mark.parametrize("text", ["ja", "JA", "Nej", "yes", "no thanks", "👍", "kommer"])
def test_rsvp_answers_are_unknown_after_a_survey_prompt(text: str) -> None:
    """After "Svara med en siffra 1–5", JA/NEJ are not RSVPs."""
    assert interpret(text, "survey") == UNKNOWN


@pytest.mark.parametrize("context", ["rsvp", "none"])
@pytest.mark.parametrize("text", ["4", "5/5", "fyra"])
def test_ratings_are_unknown_outside_a_survey(text: str, context: str) -> None:
    """A bare number is only a rating when a survey question was asked."""
    assert interpret(text, context) == UNKNOWN  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("JA", Reply("unclear", "yes")), ("ja!", Reply("unclear", "yes")), ("Yes", Reply("unclear", "yes")),
        ("ja tack", Reply("unclear", "yes")), ("NEJ", Reply("unclear", "no")),
        ("no.", Reply("unclear", "no")),
        ("Nej, jag tar taxi", UNKNOWN), ("👍", UNKNOWN), ("ok", UNKNOWN), ("Y", UNKNOWN), ("Ja?", UNKNOWN),
    ],
)  # fmt: skip
def test_a_bare_ja_or_nej_when_nothing_was_asked_is_unclear_not_an_rsvp(text: str, expected: Reply) -> None:
    """Without a question a bare JA/NEJ answers we do not know what: the caller asks instead of guessing.
    Longer texts are usually about the last information text, not the invitation."""
    assert interpret(text, "none") == expected


STATED = [
    ("Ja tack, jag kommer!", "yes"), ("jag kommer", "yes"), ("Hej! Jag kommer.", "yes"),
    ("I'll be there", "yes"), ("I will be there!", "yes"), ("Count me in", "yes"), ("Vi kommer gärna", "yes"),
    ("kommer inte", "no"), ("Jag kommer tyvärr inte till mötet.", "no"), ("can't come", "no"),
    ("Sorry, I can't make it", "no"), ("Jag avanmäler mig", "no"), ("Nej tack, jag kommer inte", "no"),
    ("Hej. Jag är tyvärr förhindrad.", "no"),
]  # fmt: skip
NOT_STATED = [
    "Nej tack, jag åker inte med bussen. Vi ses vid lunchen!", "Nej, inga frågor. Vi ses!",
    "Ja, jag kommer inte",
    "jag kommer inte med bussen", "Kanske jag kommer", "Jag kommer. Eller nej, jag kommer inte.",
    "Kommer du?", "kommer", "Nej, jag tar taxi",
]  # fmt: skip


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize(("text", "answer"), STATED)
def test_a_text_that_states_its_answer_outright_is_an_rsvp_in_any_context(
    text: str, answer: str, context: str
) -> None:
    """ "Ja tack, jag kommer!" from someone never asked by SMS, or after the survey text, still counts."""
    assert interpret(text, context) == Reply("rsvp", answer)  # type: ignore[arg-type]


@pytest.mark.parametrize("context", ["survey", "none"])
@pytest.mark.parametrize("text", NOT_STATED)
def test_a_no_about_something_else_is_no_statement_outside_an_rsvp_question(text: str, context: str) -> None:
    """A no to the bus or to "any questions?", doubt, or two answers are not a decline without context."""
    assert interpret(text, context) == UNKNOWN  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Ja! Men min kollega kan inte komma.", "yes"),
        ("Nej tyvärr. Min kollega kommer i stället.", "no"),
        ("Ja.\nKan inte äta fisk.", "yes"),
        ("\n\n  Nej\nHälsningar Anna", "no"),
    ],
)
def test_only_the_first_sentence_is_read_for_an_rsvp(text: str, expected: str) -> None:
    """What follows the answer (a colleague, a diet) does not turn it around."""
    assert interpret(text, "rsvp") == Reply("rsvp", expected)


def test_a_long_text_is_read_by_its_first_words() -> None:
    """A 2,000-character reply that starts with an answer is read; the rest is not parsed."""
    text = "Ja " + "och så vill jag säga att det var ett fint program " * 40
    assert len(text) > 2000
    assert interpret(text, "rsvp") == Reply("rsvp", "yes")


def test_decomposed_unicode_reads_like_composed() -> None:
    """Phones that send NFD (a + combining ring) still match "självklart" and "hjälp"."""
    assert interpret(unicodedata.normalize("NFD", "Självklart"), "rsvp") == Reply("rsvp", "yes")
    assert interpret(unicodedata.normalize("NFD", "HJÄLP"), "none") == Reply("help")


ODD_TEXTS = [
    "", " ", "\n\n", "\x00", "\x00\x07\x1b[31m", "😀😀😀", "🙂" * 2000, "a" * 2000, "9" * 2000, "\ud800",
    "\u200b\u200b", "\ufeff", "‮ja‬?", "?!.,;:", "<script>alert('x')</script>", "ж" * 2000,
]  # fmt: skip


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("text", ODD_TEXTS)
def test_odd_input_never_raises_and_is_unknown(text: str, context: str) -> None:
    """Empty, emoji-only, 2,000-character and control-character texts are stored as unknown."""
    assert interpret(text, context) == UNKNOWN  # type: ignore[arg-type]


def test_a_reply_cannot_be_changed_after_it_is_made() -> None:
    """Replies are frozen, so callers can share and compare them."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        interpret("ja", "rsvp").kind = "unknown"  # type: ignore[misc]
