"""The words on the pages, Swedish first; kept apart from the templates so both languages read together."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "sv": {
        "hello": "Hej {name}!",
        "rsvp_question": "Kommer du?",
        "rsvp_deadline": "Svara senast {day}.",
        "rsvp_current_yes": "Du har svarat att du kommer. Du kan ändra ditt svar här.",
        "rsvp_current_no": "Du har svarat att du inte kommer. Du kan ändra ditt svar här.",
        "yes": "JA, jag kommer",
        "no": "NEJ, jag kommer inte",
        "rsvp_bad_answer": "Välj JA eller NEJ.",
        "thanks": "Tack!",
        "rsvp_done_yes": "Vi har noterat att du kommer. Välkommen!",
        "rsvp_done_no": "Vi har noterat att du inte kommer.",
        "change_answer": "Ändra ditt svar",
        "survey_title": "Vad tyckte du?",
        "survey_intro": "Svara på de frågor du vill, 1 = dåligt och 5 = mycket bra.",
        "survey_again": "Du har redan svarat. Nya svar ersätter de gamla.",
        "survey_invalid": "Ett betyg är ett av talen 1 till 5. Rätta de markerade frågorna.",
        "survey_empty": "Svara på minst en fråga.",
        "survey_send": "Skicka",
        "survey_done": "Tack för dina svar!",
        "bad": "dåligt",
        "good": "mycket bra",
        "contact": "Frågor? Kontakta {name}, {role}:",
        "optout_question": "Vill du inte få fler mejl och sms om mötet?",
        "optout_button": "Avsluta utskicken",
        "optout_current": "Du får inga fler utskick om mötet.",
        "optout_done": "Du får inga fler mejl eller sms om mötet. Ångrar du dig? Kontakta oss.",
    },
    "en": {
        "hello": "Hi {name}!",
        "rsvp_question": "Are you coming?",
        "rsvp_deadline": "Please answer by {day}.",
        "rsvp_current_yes": "You have answered that you are coming. You can change your answer here.",
        "rsvp_current_no": "You have answered that you are not coming. You can change your answer here.",
        "yes": "YES, I am coming",
        "no": "NO, I am not coming",
        "rsvp_bad_answer": "Choose YES or NO.",
        "thanks": "Thank you!",
        "rsvp_done_yes": "We have noted that you are coming. Welcome!",
        "rsvp_done_no": "We have noted that you are not coming.",
        "change_answer": "Change your answer",
        "survey_title": "What did you think?",
        "survey_intro": "Answer the questions you like, 1 = poor and 5 = very good.",
        "survey_again": "You have already answered. New answers replace the old ones.",
        "survey_invalid": "A rating is one of the numbers 1 to 5. Please correct the marked questions.",
        "survey_empty": "Please answer at least one question.",
        "survey_send": "Send",
        "survey_done": "Thank you for your answers!",
        "bad": "poor",
        "good": "very good",
        "contact": "Questions? Contact {name}, {role}:",
        "optout_question": "Would you rather not get more emails and texts about the meeting?",
        "optout_button": "Stop the messages",
        "optout_current": "You get no more messages about the meeting.",
        "optout_done": "You will get no more emails or texts about the meeting. Changed your mind? "
        "Contact us.",
    },
}

# Pages for a link that cannot be read: we do not know whose it is, so they are in both languages.
PROBLEMS: dict[str, dict[str, tuple[str, str]]] = {
    "expired": {
        "sv": ("Länken har gått ut", "Den här länken gäller inte längre."),
        "en": ("The link has expired", "This link is no longer valid."),
    },
    "invalid": {
        "sv": ("Länken fungerar inte", "Länken är ogiltig, kanske ofullständigt kopierad."),
        "en": ("The link does not work", "The link is invalid, perhaps not copied in full."),
    },
    "unknown": {
        "sv": ("Vi hittar dig inte", "Vi hittar dig inte längre bland deltagarna."),
        "en": ("We cannot find you", "We can no longer find you among the participants."),
    },
}
