"""`kallelse inbox` against a real IMAP server (dovecot, started by tests/fixtures/imap.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select

from pipeline.channels.mime import message_id as sent_message_id
from pipeline.delegates import Delegate
from pipeline.inbox import AUTO, DONE, READ, ImapConfig, InboxError, InboxSummary, check_inbox, message_id
from pipeline.store import Store, open_store
from pipeline.store.models import DelegateRow, InboundRow, LedgerRow, RsvpRow
from pipeline.store.people import upsert_delegates
from pipeline.timetable import Event, load_event

if TYPE_CHECKING:
    from tests.fixtures.imap import ImapServer

EVENT_FILE = Path(__file__).resolve().parent.parent / "config" / "event.toml"
NOW = datetime(2021, 11, 5, 9, 30, tzinfo=UTC)
US = "Svenska industrikommuner <kallelse@example.org>"
DELEGATES = [
    Delegate("d01", "Astrid Lövgren", email="astrid.lovgren@example.se", organisation="Skellefteå kommun"),
    Delegate("d02", "Björn Åkesson", email="bjorn.akesson@example.se", organisation="Oxelösunds kommun"),
    Delegate("d03", "Cecilia Näslund", email="cecilia.naslund@example.org", organisation="Sandvikens kommun"),
    Delegate("d04", "David Öhman", email="david.ohman@example.org", language="en"),
]


@pytest.fixture
def event() -> Event:
    return load_event(EVENT_FILE)


def invitation_key(delegate_id: str) -> str:
    return f"sik-2021:invitation:-:{delegate_id}:email"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """The delegates, each sent the invitation by email: the mail their replies point at."""
    store = open_store(f"sqlite:///{tmp_path / 'kallelse.sqlite3'}")
    with store.session() as session:
        upsert_delegates(session, DELEGATES, NOW)
        for d in DELEGATES:
            session.add(
                LedgerRow(
                    key=invitation_key(d.id), event_id="sik-2021", rule="invitation", delegate_id=d.id,
                    channel="email", due_at=NOW, state="sent", sent_at=NOW, created_at=NOW, updated_at=NOW,
                )
            )  # fmt: skip
    yield store
    store.close()


def mail(
    sender: str, body: str, msg_id: str, subject: str = "SV: Inbjudan", charset: str = "utf-8", **headers: str
) -> bytes:
    message = EmailMessage(policy=SMTP)
    message["From"], message["To"], message["Subject"] = sender, US, subject
    message["Message-ID"] = msg_id
    # A reply points at the invitation we sent its sender (Message-ID made from the ledger key).
    known = [d.id for d in DELEGATES if d.email and d.email in sender.lower()]
    message["In-Reply-To"] = (
        sent_message_id(invitation_key(known[0]), "example.org") if known else "<x@elsewhere>"
    )
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body, charset=charset)
    return message.as_bytes()


YES_ABOVE_QUOTE = mail(
    "Astrid Lövgren <Astrid.Lovgren@example.se>",
    "Ja, jag kommer!\n\nHälsningar\nAstrid\n\n"
    "Den 4 okt. 2021 kl. 09:00 skrev Svenska industrikommuner <kallelse@example.org>:\n"
    "> Välkommen till Innovationsmötet i Skellefteå 25–26 november.\n"
    "> Kan du inte komma? Svara NEJ på det här mejlet.\n",
    "<yes.d01@mail.example.se>",
)
OUTLOOK_NO = mail(
    '"Åkesson, Björn" <bjorn.akesson@example.se>',
    "NEJ\n\nMvh Björn\n\n"
    "Från: Svenska industrikommuner <kallelse@example.org>\n"
    "Skickat: den 4 oktober 2021 09:00\n"
    "Till: Åkesson, Björn <bjorn.akesson@example.se>\n"
    "Ämne: Inbjudan\n\n"
    "Kommer du? Svara JA eller NEJ.\n",
    "<no.d02@outlook.example.se>",
    charset="windows-1252",
)
OUT_OF_OFFICE = mail(
    "Cecilia Näslund <cecilia.naslund@example.org>",
    "Ja, tack för ditt mejl! Jag är tillbaka måndag 29 november och svarar då.\n",
    "<ooo.d03@mail.example.org>",
    subject="Autosvar: Inbjudan",
    Auto_Submitted="auto-replied",
)
QUESTION = mail(
    "David Öhman <david.ohman@example.org>",
    "Is there a vegetarian option at the dinner?\n",
    "<question.d04@mail.example.org>",
    subject="Re: Invitation",
)
STRANGER = mail("Someone <someone@elsewhere.example>", "Ja, jag kommer!\n", "<stranger@elsewhere.example>")


def run(imap: ImapServer, store: Store, event: Event) -> InboxSummary:
    return check_inbox(imap.config(), store, event, NOW)


def rsvps(store: Store) -> list[tuple[str, str, str]]:
    with store.session() as session:
        rows = session.scalars(select(RsvpRow).order_by(RsvpRow.id))
        return [(r.delegate_id, r.answer, r.channel) for r in rows]


def inbound(store: Store) -> dict[str, tuple[str | None, str, str | None]]:
    with store.session() as session:
        return {r.provider_id: (r.delegate_id, r.kind, r.value) for r in session.scalars(select(InboundRow))}


def test_a_reply_with_the_answer_above_quoted_text_records_a_yes_by_email(imap_server, store, event):
    """ "Ja, jag kommer!" above a quoted invitation that says NEJ is a yes, recorded via email."""
    imap_server.append(YES_ABOVE_QUOTE)
    summary = run(imap_server, store, event)
    assert summary == InboxSummary(seen=1, rsvps=1)
    assert rsvps(store) == [("d01", "yes", "email")]
    assert imap_server.flags()["<yes.d01@mail.example.se>"] == {"\\Seen", DONE, READ}


def test_an_outlook_style_nej_reply_records_a_no(imap_server, store, event):
    """An Outlook reply ("NEJ" above a Från:/Skickat:/Till: block that says JA) is a no."""
    imap_server.append(OUTLOOK_NO)
    assert run(imap_server, store, event).rsvps == 1
    with store.session() as session:
        assert session.get(DelegateRow, "d02").rsvp == "no"
    assert rsvps(store) == [("d02", "no", "email")]


def test_an_out_of_office_reply_is_ignored_and_not_marked_as_understood(imap_server, store, event):
    """An Auto-Submitted "Autosvar" that starts with "Ja" records no RSVP and stays unread, unflagged."""
    imap_server.append(OUT_OF_OFFICE)
    summary = run(imap_server, store, event)
    assert summary == InboxSummary(seen=1, ignored_automatic=1)
    assert rsvps(store) == []
    assert imap_server.flags()["<ooo.d03@mail.example.org>"] == {AUTO, READ}
    assert inbound(store)["<ooo.d03@mail.example.org>"] == ("d03", "automatic", None)


def test_a_question_is_left_unread_and_flagged_for_a_human_and_stored_as_unknown(imap_server, store, event):
    """A delegate's question is no RSVP: it stays unread, gets \\Flagged, and is stored as unknown."""
    imap_server.append(QUESTION)
    summary = run(imap_server, store, event)
    assert summary == InboxSummary(seen=1, left_for_human=1)
    assert imap_server.flags()["<question.d04@mail.example.org>"] == {"\\Flagged", READ}
    assert inbound(store)["<question.d04@mail.example.org>"] == ("d04", "unknown", None)
    assert rsvps(store) == []


def test_a_mail_from_an_unknown_sender_is_left_for_a_human(imap_server, store, event):
    """ "Ja, jag kommer!" from an address no delegate has changes no RSVP and is flagged."""
    imap_server.append(STRANGER)
    assert run(imap_server, store, event) == InboxSummary(seen=1, left_for_human=1)
    assert rsvps(store) == []
    assert "\\Flagged" in imap_server.flags()["<stranger@elsewhere.example>"]


def test_running_the_inbox_twice_changes_nothing_the_second_time(imap_server, store, event):
    """The second run over the same mailbox fetches nothing and records nothing."""
    for raw in (YES_ABOVE_QUOTE, OUTLOOK_NO, OUT_OF_OFFICE, QUESTION, STRANGER):
        imap_server.append(raw)
    first = run(imap_server, store, event)
    before = (rsvps(store), inbound(store), imap_server.flags())
    second = run(imap_server, store, event)
    assert first == InboxSummary(seen=5, rsvps=2, ignored_automatic=1, left_for_human=2)
    assert second == InboxSummary()
    assert (rsvps(store), inbound(store), imap_server.flags()) == before


def test_a_reply_read_again_after_lost_flags_is_a_duplicate_and_counted_once(imap_server, store, event):
    """When the flags were lost after the commit, the next run knows the Message-ID and records nothing."""
    imap_server.append(YES_ABOVE_QUOTE)
    run(imap_server, store, event)
    imap = imap_server.client()
    imap.select("INBOX")
    imap.store("1:*", "-FLAGS.SILENT", f"(\\Seen {DONE} {READ})")
    imap.logout()
    assert run(imap_server, store, event) == InboxSummary(seen=1, duplicates=1)
    assert rsvps(store) == [("d01", "yes", "email")]
    assert imap_server.flags()["<yes.d01@mail.example.se>"] == {"\\Seen", DONE, READ}


def test_a_mail_that_cannot_be_handled_is_flagged_and_tried_again_without_stopping_the_run(
    imap_server, store, event, monkeypatch
):
    """A mail whose handling raises is flagged for a human; the next mail is still read; a later run
    retries it."""
    import pipeline.inbound

    real = pipeline.inbound.handle_email_reply

    def broken_for_astrid(session, event, reply, msg_id, now):
        if reply.sender == "astrid.lovgren@example.se":
            raise RuntimeError("simulated failure")
        return real(session, event, reply, msg_id, now)

    monkeypatch.setattr(pipeline.inbound, "handle_email_reply", broken_for_astrid)
    imap_server.append(YES_ABOVE_QUOTE)
    imap_server.append(OUTLOOK_NO)
    assert run(imap_server, store, event) == InboxSummary(seen=2, rsvps=1, left_for_human=1)
    assert imap_server.flags()["<yes.d01@mail.example.se>"] == {"\\Flagged"}
    monkeypatch.setattr(pipeline.inbound, "handle_email_reply", real)
    assert run(imap_server, store, event) == InboxSummary(seen=1, rsvps=1)
    assert rsvps(store) == [("d02", "no", "email"), ("d01", "yes", "email")]


def test_a_message_that_is_not_mime_at_all_is_left_for_a_human(imap_server, store, event):
    """Bytes that are barely a mail (no headers we know, invalid UTF-8) never crash the run."""
    imap_server.append(b"Garbage-Header \xff\xfe\r\n\r\n\x00\x01 ja? \xe5\xe4\xf6\r\n")
    assert run(imap_server, store, event) == InboxSummary(seen=1, left_for_human=1)
    assert rsvps(store) == []


def test_a_wrong_password_raises_an_inbox_error_that_names_the_server(imap_server, store, event):
    """A refused login is an InboxError naming host and port, and never shows the password."""
    wrong = "fel-lösen-4711"
    config = ImapConfig(
        imap_server.host, imap_server.port, imap_server.user, wrong, security="none", timeout=5
    )
    with pytest.raises(InboxError, match=f"{imap_server.port}") as caught:
        check_inbox(config, store, event, NOW)
    assert wrong not in str(caught.value)


def test_a_missing_folder_raises_an_inbox_error(imap_server, store, event):
    """IMAP_FOLDER naming no folder is an InboxError, not an imaplib traceback."""
    with pytest.raises(InboxError, match="Kallelse svar"):
        check_inbox(imap_server.config("Kallelse svar"), store, event, NOW)


def test_a_mail_without_a_message_id_gets_a_stable_id_from_its_bytes():
    """Without a Message-ID the same bytes give the same id, and other bytes another."""
    assert message_id(b"From: a@example.se\r\n\r\nJa\r\n") == message_id(b"From: a@example.se\r\n\r\nJa\r\n")
    assert message_id(b"From: a@example.se\r\n\r\nJa\r\n") != message_id(b"From: a@example.se\r\n\r\nNej\r\n")
    assert message_id(b"Message-ID: <x@example.se>\r\n\r\nJa\r\n") == "<x@example.se>"
