"""Reading reply e-mails for `kallelse inbox`: sender, automatic replies, and the answer above quoted text."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from pipeline.mailparse import MailReply, first_answer_lines, html_to_text, read_reply
from pipeline.replies import Reply, interpret

INVITATION_ID = "<invite-42@kallelse.example>"
QUOTED_INVITATION = (
    "Den 7 okt. 2021 kl. 09:00 skrev Svenska industrikommuner <\n"
    "info@industrikommuner.se>:\n"
    "> Välkommen till Höstmötet i Sundsvall!\n"
    "> Svara JA eller NEJ senast den 1 oktober.\n"
)


def reply(body: str = "", *, subject: str = "SV: Inbjudan till Höstmötet", **headers: str) -> EmailMessage:
    """A reply from Anna to our invitation, as her mail program would send it."""
    msg = EmailMessage()
    msg["From"] = "Anna Andersson <Anna.Andersson@Sundsvall.SE>"
    msg["To"] = "svar@kallelse.example"
    msg["Subject"] = subject
    msg["Message-ID"] = "<reply-1@sundsvall.se>"
    msg["In-Reply-To"] = INVITATION_ID
    msg["References"] = f"<thread-1@kallelse.example> {INVITATION_ID}"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    if body:
        msg.set_content(body)
    return msg


def test_a_plain_reply_yields_the_answer_above_the_quoted_invitation() -> None:
    """The new text is kept, the wrapped "Den … skrev" line and the "> " quote are cut."""
    parsed = read_reply(reply("Ja, jag kommer!\n\n" + QUOTED_INVITATION).as_bytes())
    assert parsed == MailReply(
        sender="anna.andersson@sundsvall.se",
        subject="SV: Inbjudan till Höstmötet",
        automatic=False,
        answer_text="Ja, jag kommer!",
        in_reply_to=INVITATION_ID,
        references=["<thread-1@kallelse.example>", INVITATION_ID],
    )


def test_the_answer_of_a_mail_reply_reads_as_an_rsvp() -> None:
    """The quoted "Svara JA eller NEJ" never reaches the RSVP reader."""
    msg = reply("Nej tack, vi har fullmäktige den dagen.\n\n" + QUOTED_INVITATION)
    parsed = read_reply(msg.as_bytes())
    assert interpret(parsed.answer_text, "rsvp") == Reply("rsvp", "no")


def test_an_outlook_reply_is_cut_at_its_header_block() -> None:
    """Outlook's "Från:/Skickat:/Till:/Ämne:" block starts the quoted invitation, which says JA too."""
    body = (
        "NEJ\n\n"
        "Från: Svenska industrikommuner <info@industrikommuner.se>\n"
        "Skickat: den 7 oktober 2021 09:00\n"
        "Till: Anna Andersson <anna.andersson@sundsvall.se>\n"
        "Ämne: Inbjudan till Höstmötet\n\n"
        "Välkommen! Svara JA eller NEJ.\n"
    )
    parsed = read_reply(reply(body).as_bytes())
    assert (parsed.answer_text, parsed.automatic) == ("NEJ", False)


def test_an_html_only_reply_is_read_without_tags_or_its_quote() -> None:
    """With no text/plain part, tags and entities are stripped and Gmail's quote block is cut."""
    html = (
        "<html><head><style>p {color: red}</style></head><body>"
        "<div dir='ltr'>Ja&nbsp;tack &amp; hälsningar!</div><div><br></div>"
        "<div class='gmail_quote'><div class='gmail_attr'>Den tors 7 okt. 2021 kl 09:00 skrev "
        "Svenska industrikommuner &lt;info@industrikommuner.se&gt;:</div>"
        "<blockquote>Svara NEJ om du inte kan komma.</blockquote></div></body></html>"
    )
    msg = reply()
    msg.set_content(html, subtype="html")
    parsed = read_reply(msg.as_bytes())
    assert parsed.answer_text == "Ja tack & hälsningar!"


def test_text_plain_is_preferred_over_html_in_an_alternative() -> None:
    """When both parts exist, the plain part is read (its HTML twin may differ)."""
    msg = reply("Ja\n")
    msg.add_alternative("<p>Nej</p>", subtype="html")
    assert read_reply(msg.as_bytes()).answer_text == "Ja"


def test_an_out_of_office_with_auto_submitted_is_automatic() -> None:
    """Auto-Submitted: auto-replied marks a machine's answer even with an ordinary subject."""
    msg = reply("Jag är på semester till 15 oktober.\n", Auto_Submitted="auto-replied")
    parsed = read_reply(msg.as_bytes())
    assert (parsed.automatic, parsed.answer_text) == (True, "Jag är på semester till 15 oktober.")


def test_a_swedish_autosvar_subject_is_automatic_without_headers() -> None:
    """Exchange's Swedish "Autosvar:" subject is enough on its own."""
    msg = reply("Jag är ledig.\n", subject="Autosvar: Inbjudan till Höstmötet")
    parsed = read_reply(msg.as_bytes())
    assert (parsed.automatic, parsed.subject) == (True, "Autosvar: Inbjudan till Höstmötet")


@pytest.mark.parametrize(
    ("headers", "subject", "automatic"),
    [
        ({"Auto_Submitted": "auto-generated"}, "SV: Inbjudan", True),
        ({"Auto_Submitted": "auto-replied; owner-email=anna@sundsvall.se"}, "SV: Inbjudan", True),
        ({"Auto_Submitted": "no"}, "SV: Inbjudan", False),
        ({"X_Autoreply": "yes"}, "SV: Inbjudan", True),
        ({"X_Autorespond": "Jag är ledig"}, "SV: Inbjudan", True),
        ({"Precedence": "auto_reply"}, "SV: Inbjudan", True),
        ({"Precedence": "bulk"}, "SV: Inbjudan", True),
        ({"Precedence": "junk"}, "SV: Inbjudan", True),
        ({"Precedence": "list"}, "SV: Inbjudan", False),
        ({}, "Automatiskt svar: Inbjudan", True),
        ({}, "Frånvaro: Inbjudan", True),
        ({}, "Out of Office: Invitation", True),
        ({}, "Automatic reply: Invitation", True),
        ({}, "Abwesenheit: Einladung", True),
        ({}, "SV: Inbjudan", False),
        ({}, "Re: Out of office next week?", False),
    ],
)
def test_automatic_replies_are_recognised_by_headers_and_subject(
    headers: dict[str, str], subject: str, automatic: bool
) -> None:
    """Auto-Submitted (not "no"), X-Autoreply, X-Autorespond, Precedence and out-of-office subjects."""
    assert read_reply(reply("Ja\n", subject=subject, **headers).as_bytes()).automatic is automatic


@pytest.mark.parametrize(
    ("body", "answer"),
    [
        ("Nej tack, jag är bortrest.\n".encode("latin-1"), "Nej tack, jag är bortrest."),
        ("Ja, vi kommer två 👍\n".encode(), "Ja, vi kommer två 👍"),
        (b"Ja \x81 tack\n", "Ja \ufffd tack"),
    ],
)
def test_an_unknown_charset_with_an_8bit_body_is_still_read(body: bytes, answer: str) -> None:
    """charset="x-unknown": UTF-8 when the bytes are UTF-8, else Windows-1252 with replacements."""
    msg = reply()
    msg["Content-Type"] = 'text/plain; charset="x-unknown"'
    msg["Content-Transfer-Encoding"] = "8bit"
    msg.set_payload(body.decode("ascii", "surrogateescape"))  # raw bytes through the stdlib generator
    assert read_reply(msg.as_bytes()).answer_text == answer


def test_a_wrong_us_ascii_label_on_latin1_bytes_is_read_as_latin1() -> None:
    """A mislabelled 8-bit body reads as Swedish, not as replacement characters."""
    msg = reply()
    msg["Content-Type"] = 'text/plain; charset="us-ascii"'
    msg["Content-Transfer-Encoding"] = "8bit"
    msg.set_payload("Självklart".encode("latin-1").decode("ascii", "surrogateescape"))
    assert read_reply(msg.as_bytes()).answer_text == "Självklart"


def test_an_encoded_subject_and_sender_name_are_decoded() -> None:
    """RFC 2047 headers come back as text; the sender is only the lower-cased address."""
    msg = reply("Ja\n", subject="SV: Välkommen till Höstmötet 🍂")
    raw = msg.as_bytes()
    assert b"=?utf-8?" in raw
    parsed = read_reply(raw)
    assert parsed.subject == "SV: Välkommen till Höstmötet 🍂"
    assert parsed.sender == "anna.andersson@sundsvall.se"


def test_a_long_body_with_emoji_keeps_only_the_first_answer_lines() -> None:
    """A 2,000-character reply yields its first three non-empty lines."""
    body = "Ja 🎉\n\nVi blir två.\nJag äter vegetariskt.\n" + "Mycket text här. 😀\n" * 120
    assert len(body) > 2000
    assert read_reply(reply(body).as_bytes()).answer_text == "Ja 🎉\nVi blir två.\nJag äter vegetariskt."


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe garbage",
        b"From: <<<>>>\r\nSubject: =?x-unknown?q?=E4?=\r\n\r\n\xff\xfe",
        b"Content-Type: multipart/alternative; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain; "
        b"charset=base64\r\nContent-Transfer-Encoding: base64\r\n\r\n@@@not base64@@@",
    ],
)
def test_broken_mail_never_raises(raw: bytes) -> None:
    """Garbage, bad headers, missing parts and a bytes-to-bytes "charset" parse without an exception."""
    parsed = read_reply(raw)
    assert isinstance(parsed, MailReply)
    assert parsed.sender is None


def test_a_mail_without_threading_headers_has_none() -> None:
    """No In-Reply-To and no References read as None and an empty list."""
    msg = EmailMessage()
    msg["From"] = "anna@sundsvall.se"
    msg.set_content("Ja")
    parsed = read_reply(msg.as_bytes())
    assert (parsed.in_reply_to, parsed.references, parsed.subject) == (None, [], "")


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("Ja!\n\nOn Thu, Oct 7, 2021 at 9:00 AM Kallelse <info@x.se> wrote:\n> Svara NEJ", "Ja!"),
        ("Yes\n\nOn Thu, Oct 7, 2021 at 9:00 AM Kallelse <\ninfo@x.se> wrote:\nSvara NEJ", "Yes"),
        ("Ja\n\n7 okt. 2021 kl. 09:00 skrev Kallelse <info@x.se>:\n\nSvara NEJ", "Ja"),
        ("Nej\n-----Original Message-----\nFrom: x\nJA", "Nej"),
        ("Nej\n-----Ursprungligt meddelande-----\nJA", "Nej"),
        ("Ja\n\nSkickat från min iPhone\n\n> Svara NEJ", "Ja"),
        ("Yes\n\nSent from my iPhone", "Yes"),
        ("Ja\n-- \nAnna Andersson\nNej-avdelningen", "Ja"),
        ("Nej\n________________________________\nFrån: Kallelse\nJA", "Nej"),
        ("*From:* Kallelse\n*Sent:* 7 Oct\nJA", ""),
        ("> Svara JA\nJa", ""),
        ("Från: Göteborg tar jag bussen\nJa", "Från: Göteborg tar jag bussen\nJa"),
        ("Den 7:e kommer jag\nmed tåget", "Den 7:e kommer jag\nmed tåget"),
        ("\r\n  Ja   tack  \r\n\r\n", "Ja tack"),
        ("1\n2\n3\n4\n5", "1\n2\n3"),
    ],
)
def test_first_answer_lines_stop_at_the_first_quote_marker(text: str, answer: str) -> None:
    """Every quote marker we know cuts the text; ordinary lines that look a little like one do not."""
    assert first_answer_lines(text) == answer


def test_html_blockquotes_become_quote_lines() -> None:
    """A <blockquote> is marked with ">" so the quote cut finds it; scripts are dropped."""
    text = html_to_text("<p>Ja</p><script>x=1</script><blockquote>Nej</blockquote>")
    assert text.split() == ["Ja", ">", "Nej"]
