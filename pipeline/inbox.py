"""`kallelse inbox`: read RSVP replies from the reply-to mailbox over IMAP (stdlib imaplib).

What happens to each message, as flags on the server (a mail client shows them):

- an RSVP (JA/NEJ) from a delegate: `\\Seen` and `$KallelseDone` — handled, nothing for a human to do;
- an automatic reply (out-of-office, bounce): `$KallelseAuto` only; it stays unread and unflagged;
- anything else (a question, an unknown sender, a mail that fails to parse or to store): `\\Flagged` and
  left unread, for a human. Every reply is also stored (table `inbound`) by `handle_email_reply`.

Every message we looked at also gets `$KallelseRead`, and the next run only fetches messages without it,
so a human reading a mail in their client (which sets `\\Seen`) does not hide an RSVP from us. Servers that
allow no keywords (no `\\*` in PERMANENTFLAGS, e.g. Exchange) fall back to `UNSEEN UNFLAGGED`, where an
automatic reply is fetched again each run and deduplicated by its Message-ID.

Order: the database commit comes before the flags. A crash in between leaves the mail unflagged; the next
run fetches it again and the store recognises the Message-ID (a duplicate), so nothing is counted twice.
A mail whose handling raised is flagged for a human but not marked read, so the next run tries it again.
Logs carry IMAP uids and delegate ids, never addresses or bodies.
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import hashlib
import imaplib
import logging
import re
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pipeline.errors import KallelseError
from pipeline.mailparse import read_reply
from pipeline.store import Store
from pipeline.timetable import Event

log = logging.getLogger(__name__)

READ = "$KallelseRead"  # we looked at it; never fetched again
DONE = "$KallelseDone"  # understood and recorded
AUTO = "$KallelseAuto"  # an automatic reply, ignored
Outcome = Literal["rsvp", "automatic", "human", "error"]


class InboxError(KallelseError):
    """The mailbox could not be reached, logged into or selected. The message names the server."""


@dataclass(frozen=True)
class ImapConfig:
    host: str
    port: int = 993
    user: str = ""
    password: str = ""
    folder: str = "INBOX"
    security: Literal["none", "starttls", "tls"] = "tls"
    timeout: float = 30.0

    @classmethod
    def from_settings(cls, settings: Any) -> ImapConfig:
        """From `Settings` (imap_host, imap_port, imap_user, imap_password, imap_folder, imap_security)."""
        password = settings.imap_password
        return cls(
            host=settings.imap_host,
            port=settings.imap_port,
            user=settings.imap_user,
            password=password.get_secret_value() if hasattr(password, "get_secret_value") else password,
            folder=settings.imap_folder,
            security=settings.imap_security,
            timeout=getattr(settings, "imap_timeout", 30.0),
        )


@dataclass(frozen=True)
class InboxSummary:
    seen: int = 0  # messages fetched this run
    rsvps: int = 0  # RSVPs recorded
    ignored_automatic: int = 0
    left_for_human: int = 0
    duplicates: int = 0  # fetched, but already stored by an earlier run


def check_inbox(config: ImapConfig, store: Store, event: Event, now: datetime) -> InboxSummary:
    """Read new messages in `config.folder`, record RSVPs, flag the rest. Raises `InboxError` when the
    server cannot be used at all; a bad message never stops the run."""
    outcomes: list[Outcome] = []
    duplicates = 0
    with _connect(config) as imap:
        keywords = _select(imap, config.folder)
        for uid in _new_uids(imap, keywords):
            outcome, duplicate = _handle(imap, uid, store, event, now)
            _mark(imap, uid, outcome, keywords)
            if duplicate:  # flagged like the first time, but counted only once, then
                duplicates += 1
            else:
                outcomes.append(outcome)
    return InboxSummary(
        seen=len(outcomes) + duplicates,
        rsvps=outcomes.count("rsvp"),
        ignored_automatic=outcomes.count("automatic"),
        left_for_human=outcomes.count("human") + outcomes.count("error"),
        duplicates=duplicates,
    )


# -- the connection -----------------------------------------------------------------------------


@contextmanager
def _connect(config: ImapConfig) -> Iterator[imaplib.IMAP4]:
    where = f"IMAP server {config.host}:{config.port}"
    try:
        imap = _open(config)
    except (OSError, imaplib.IMAP4.error) as e:
        raise InboxError(f"cannot connect to the {where}: {e}") from e
    try:
        _login(imap, config.user, config.password)
    except imaplib.IMAP4.error as e:
        _logout(imap)
        raise InboxError(f"the {where} refused the login for IMAP_USER: {e}") from e
    try:
        yield imap
    except (OSError, imaplib.IMAP4.abort) as e:
        raise InboxError(f"lost the connection to the {where}: {e}") from e
    finally:
        _logout(imap)


def _open(config: ImapConfig) -> imaplib.IMAP4:
    context = ssl.create_default_context()
    if config.security == "tls":
        return imaplib.IMAP4_SSL(config.host, config.port, ssl_context=context, timeout=config.timeout)
    imap = imaplib.IMAP4(config.host, config.port, timeout=config.timeout)
    if config.security == "starttls":
        try:
            imap.starttls(ssl_context=context)
        except (OSError, imaplib.IMAP4.error):
            imap.shutdown()  # never send the password over the plain connection
            raise
    return imap


def _login(imap: imaplib.IMAP4, user: str, password: str) -> None:
    """LOGIN takes ASCII only (imaplib raises UnicodeEncodeError on "lösen"); SASL PLAIN carries UTF-8."""
    if (user + password).isascii():
        imap.login(user, password)
    else:
        imap.authenticate("PLAIN", lambda _: f"\0{user}\0{password}".encode())


def _logout(imap: imaplib.IMAP4) -> None:
    with contextlib.suppress(OSError, imaplib.IMAP4.error):  # already gone; nothing left to release
        imap.logout()


def _quote(mailbox: str) -> str:
    """imaplib sends arguments as they are; a folder name with spaces must be a quoted string."""
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _select(imap: imaplib.IMAP4, folder: str) -> bool:
    """Select the folder read-write; True when the server lets us set our own keywords."""
    status, data = imap.select(_quote(folder))
    if status != "OK":
        raise InboxError(f"cannot open the IMAP folder {folder!r}: {_text(data)}")
    _, flags = imap.response("PERMANENTFLAGS")
    return any(b"\\*" in item for item in flags if isinstance(item, bytes))


def _new_uids(imap: imaplib.IMAP4, keywords: bool) -> list[str]:
    criteria = ("UNKEYWORD", READ) if keywords else ("UNSEEN", "UNFLAGGED")
    status, data = imap.uid("SEARCH", *criteria)
    if status != "OK":
        raise InboxError(f"the IMAP server refused SEARCH: {_text(data)}")
    return _text(data).split()


def _text(data: list[Any]) -> str:
    return " ".join(item.decode(errors="replace") for item in data if isinstance(item, bytes))


# -- one message --------------------------------------------------------------------------------


def _handle(imap: imaplib.IMAP4, uid: str, store: Store, event: Event, now: datetime) -> tuple[Outcome, bool]:
    """Fetch, parse and record one message: what it was, and whether an earlier run stored it already.
    Any failure leaves it for a human."""
    raw = _fetch(imap, uid)
    if raw is None:
        log.warning("inbox: message uid %s could not be fetched; left for a human", uid)
        return "error", False
    from pipeline.inbound import handle_email_reply

    try:
        reply = read_reply(raw)
        with store.session() as session:
            result = handle_email_reply(session, event, reply, message_id(raw), now)
    except Exception as e:  # a mail that breaks the parser or the store must not stop the run
        log.warning("inbox: message uid %s failed (%s); left for a human", uid, type(e).__name__)
        return "error", False
    log.info("inbox: uid %s from delegate %s read as %s", uid, result.delegate_id, result.kind)
    return _outcome(result.kind, result.delegate_id), result.duplicate


def _outcome(kind: str, delegate_id: str | None) -> Outcome:
    if kind == "automatic":
        return "automatic"
    return "rsvp" if kind == "rsvp" and delegate_id is not None else "human"


def _fetch(imap: imaplib.IMAP4, uid: str) -> bytes | None:
    """The whole message, without setting \\Seen (BODY.PEEK)."""
    status, data = imap.uid("FETCH", uid, "(BODY.PEEK[])")
    if status != "OK":
        return None
    parts = [item[1] for item in data if isinstance(item, tuple) and len(item) == 2]
    return parts[0] if parts and isinstance(parts[0], bytes) else None


_MESSAGE_ID = re.compile(r"<[^<>\s]+>")


def message_id(raw: bytes) -> str:
    """The Message-ID with its brackets; for a mail without one, a stable id from a hash of its bytes."""
    try:
        headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
        found = _MESSAGE_ID.findall(str(headers.get("Message-ID", "")))
    except Exception:  # a header we cannot read is the same as no header
        found = []
    return found[0] if found else f"<sha256-{hashlib.sha256(raw).hexdigest()}@kallelse.invalid>"


def _mark(imap: imaplib.IMAP4, uid: str, outcome: Outcome, keywords: bool) -> None:
    """Set the flags that say what happened (see the module docstring). A failure here is only logged:
    the next run meets the message again and the store knows it."""
    flags = _flags(outcome, keywords)
    if not flags:
        return
    try:
        status, _ = imap.uid("STORE", uid, "+FLAGS.SILENT", f"({' '.join(flags)})")
    except imaplib.IMAP4.error as e:
        status = f"error {e}"
    if status != "OK":
        log.warning("inbox: could not flag message uid %s: %s", uid, status)


def _flags(outcome: Outcome, keywords: bool) -> list[str]:
    ours = {
        "rsvp": ["\\Seen", DONE, READ],
        "automatic": [AUTO, READ],
        "human": ["\\Flagged", READ],
        "error": ["\\Flagged"],  # not READ: tried again next run
    }[outcome]
    return ours if keywords else [flag for flag in ours if flag.startswith("\\")]
