"""Email over SMTP with smtplib: one connection reused across messages.

smtplib connects, greets, encrypts and logs in; the mail transaction is our own (`_Tracked.transaction`):
MAIL, RCPT and DATA in one write when the server offers PIPELINING, and dot-stuffing without smtplib's
regular expression, which cost more CPU than the rest of the exchange for a 20 KB invitation.

Thread-safety: an `SmtpChannel` holds one live connection and is NOT thread-safe. Give each worker thread
its own instance (e.g. in a `threading.local`); `close()` it when the thread ends.

Reuse: a message goes straight over the connection the last one used (no NOOP first: a round trip per
message). A server that has closed it meanwhile (idle timeouts, per-connection limits) shows it at MAIL
FROM, before the message itself, when it cannot have it: the channel reconnects once and sends it then, so
reconnecting can never send a message twice.

Errors: SMTP 4xx -> TransientDeliveryError, 5xx -> PermanentDeliveryError (code = the SMTP code);
timeouts and network errors -> TransientDeliveryError. Where the silence fell decides what a retry risks:
- before the message itself goes out (connect, greeting, EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA until its
  354): the server cannot have the message, so it is a plain transient error and the worker retries;
- from the message on, without a final reply (a timeout, a dropped connection): the server may have queued
  the message, so the error is `maybe_sent`. SMTP keeps no list to ask, so the worker leaves the row `unknown`
  for a person instead of risking a second copy.
"""

from __future__ import annotations

import contextlib
import logging
import smtplib
import ssl
from email.utils import parseaddr
from typing import Literal

from pipeline.channels.base import EmailMessage, Receipt
from pipeline.channels.mime import domain_of, message_id, mime_bytes, smtp_address
from pipeline.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError

log = logging.getLogger(__name__)

Security = Literal["none", "starttls", "tls"]


class SmtpChannel:
    def __init__(
        self,
        host: str,
        port: int,
        security: Security = "starttls",
        user: str = "",
        password: str = "",
        sender: str = "kallelse@localhost",
        reply_to: str | None = None,
        timeout: float = 30.0,
        *,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ):
        if security not in ("none", "starttls", "tls"):
            raise ValueError(f"SMTP security must be none, starttls or tls, not {security!r}")
        self.host, self.port, self.security = host, port, security
        self.user, self.password = user, password
        self.sender, self.reply_to, self.timeout = sender, reply_to, timeout
        self._envelope_sender = parseaddr(sender)[1]  # MAIL FROM: the address of the From header
        self.ssl_context = ssl_context
        self.local_hostname = local_hostname
        self._conn: _Tracked | None = None
        self._used = False  # has the current connection carried a message (so it may have gone stale)?

    def send(self, message: EmailMessage) -> Receipt:
        # The bytes DATA carries, made directly (mime.mime_bytes); the recipient as its To header has it.
        data = mime_bytes(message, sender=self.sender, reply_to=self.reply_to)
        recipient = smtp_address(message.to, message.key)
        try:
            self._send(message.key, recipient, data)
        except _HungUp:
            log.info("smtp connection to %s:%s was closed by the server; reconnecting", self.host, self.port)
            self._send(message.key, recipient, data)
        provider_id = message_id(message.key, domain_of(self.sender))
        log.debug("smtp accepted %s as %s", message.key, provider_id)  # the worker logs the send at info
        return Receipt(provider_id=provider_id, status="sent")

    def _send(self, key: str, recipient: str, data: bytes) -> None:
        conn: _Tracked | None = None
        reused = self._conn is not None and self._used
        try:
            conn = self._ready_connection()
            self._used = True
            conn.transaction(self._envelope_sender, recipient, data)
        except DeliveryError:
            raise
        except Exception as e:
            after_data = bool(conn and conn.data_started)
            if reused and not after_data and _hung_up(e):
                self._drop()
                raise _HungUp from e
            self._drop_if_broken(e)
            raise _translate(e, key, after_data=after_data) from e

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                conn.close()  # the server went first; nothing left to say

    def _ready_connection(self) -> _Tracked:
        if self._conn is None:
            self._conn = self._connect()
            self._used = False
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connect(self) -> _Tracked:
        context = self.ssl_context or ssl.create_default_context()
        conn: _Tracked
        if self.security == "tls":
            conn = _TrackedSSL(
                self.host, self.port, self.local_hostname, timeout=self.timeout, context=context
            )
        else:
            conn = _Tracked(self.host, self.port, self.local_hostname, timeout=self.timeout)
        try:
            conn.ehlo()
            if self.security == "starttls":
                conn.starttls(context=context)
                conn.ehlo()
            if self.user:
                conn.login(self.user, self.password)
        except BaseException:
            conn.close()
            raise
        return conn

    def _drop_if_broken(self, error: Exception) -> None:
        # After an SMTP reply the session is still in step (smtplib sent RSET); after anything else it isn't.
        in_step = isinstance(error, smtplib.SMTPResponseException | smtplib.SMTPRecipientsRefused)
        if not in_step and self._conn is not None:
            self._conn.close()
            self._conn = None


class _HungUp(Exception):
    """A reused connection turned out closed before DATA: send again over a new one."""


def _hung_up(error: Exception) -> bool:
    """The server closed the connection (or says it is closing it, 421): not a timeout, not a refusal."""
    if isinstance(error, smtplib.SMTPResponseException):
        return error.smtp_code == 421
    timeout = isinstance(error, TimeoutError) or isinstance(error.__context__, TimeoutError)
    return not timeout and isinstance(error, smtplib.SMTPServerDisconnected | OSError)


# What MAIL, RCPT and DATA answer when they go well.
_ACCEPTED = ((250,), (250, 251), (354,))


class _Tracked(smtplib.SMTP):
    """smtplib's SMTP with its own mail transaction, remembering whether the message itself went out:
    before that, the server cannot have it."""

    data_started = False

    def transaction(self, sender: str, recipient: str, data: bytes) -> None:
        """MAIL, RCPT, DATA and the message, with the errors smtplib's `sendmail` raises (and its RSET
        after a refusal). The three commands go in one write when the server offers PIPELINING (RFC 2920):
        two round trips a message instead of four. `data` is ASCII with CRLF line ends, ending in one."""
        self.data_started = False
        size = f" SIZE={len(data)}" if self.has_extn("size") else ""
        commands = (f"MAIL FROM:<{sender}>{size}\r\n", f"RCPT TO:<{recipient}>\r\n", "DATA\r\n")
        pipelining = self.has_extn("pipelining")
        if pipelining:
            self.send("".join(commands))
        replies: list[tuple[int, bytes]] = []
        for command, accepted in zip(commands, _ACCEPTED, strict=True):
            if not pipelining:
                self.send(command)
            replies.append(self.getreply())
            if replies[-1][0] == 421 or (replies[-1][0] not in accepted and not pipelining):
                break  # 421: the server is closing the connection; one by one, a refusal ends it
        refused = next((step for step, (code, _) in enumerate(replies) if code not in _ACCEPTED[step]), None)
        if refused is not None:
            if replies[-1][0] == 354:  # DATA taken after a refusal: end it with nothing in it
                self.send(b".\r\n")
                self.getreply()
            self._after_refusal(any(code == 421 for code, _ in replies))
            raise _refusal(refused, *replies[refused], sender, recipient)
        self.data_started = True
        # Dot-stuffing (RFC 5321 4.5.2) as smtplib's regular expression does it, at a hundredth of the CPU.
        stuffed = (b"." if data.startswith(b".") else b"") + data.replace(b"\n.", b"\n..")
        self.send(stuffed + b".\r\n")
        code, reply = self.getreply()
        if code != 250:
            self._after_refusal(code == 421)
            raise smtplib.SMTPDataError(code, reply)

    def _after_refusal(self, closing: bool) -> None:
        # As smtplib's sendmail: after 421 the server closes; otherwise RSET keeps the session in step.
        if closing:
            self.close()
            return
        with contextlib.suppress(smtplib.SMTPServerDisconnected):  # the next command will tell
            self.rset()


def _refusal(step: int, code: int, reply: bytes, sender: str, recipient: str) -> smtplib.SMTPException:
    """The error smtplib's sendmail raises when MAIL (step 0), RCPT (1) or DATA (2) is refused."""
    if step == 0:
        return smtplib.SMTPSenderRefused(code, reply, sender)
    if step == 1:
        return smtplib.SMTPRecipientsRefused({recipient: (code, reply)})
    return smtplib.SMTPDataError(code, reply)


class _TrackedSSL(_Tracked, smtplib.SMTP_SSL):
    pass


def _translate(error: Exception, key: str, *, after_data: bool = False) -> DeliveryError:
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        code, reply = next(iter(error.recipients.values()), (0, b""))
        return _by_code(code, reply, key)
    if isinstance(error, smtplib.SMTPResponseException):
        return _by_code(error.smtp_code, error.smtp_error, key)
    if isinstance(error, smtplib.SMTPNotSupportedError):
        # e.g. STARTTLS or AUTH configured but not offered: a setting is wrong, retrying won't fix it.
        return PermanentDeliveryError(
            f"smtp server lacks a feature we need for {key}: {error}", code="config"
        )
    # smtplib turns a read timeout into SMTPServerDisconnected; the timeout survives as its context.
    timeout = isinstance(error, TimeoutError) or isinstance(error.__context__, TimeoutError)
    what = "timeout" if timeout else "network"
    if after_data:  # the whole message may have reached the server before it went quiet
        return TransientDeliveryError(
            f"smtp {what} after DATA for {key}, the server may have the message: {error}",
            code=what,
            maybe_sent=True,
        )
    return TransientDeliveryError(
        f"smtp {what} before DATA for {key}: {type(error).__name__}: {error}", code=what
    )


def _by_code(code: int, reply: bytes | str, key: str) -> DeliveryError:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    detail = f"smtp {code} for {key}: {text}"
    if 500 <= code < 600:
        return PermanentDeliveryError(detail, code=str(code))
    return TransientDeliveryError(detail, code=str(code))  # 4xx, and odd codes like -1 from smtplib
