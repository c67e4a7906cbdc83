"""Turn an `EmailMessage` from `base.py` into a standards-conforming MIME message.

The shape is always multipart/alternative (text/plain first, text/html last, so clients prefer HTML); any
attachment wraps that in multipart/mixed. Text parts are UTF-8 in quoted-printable, which keeps them 7-bit
clean for any relay while staying readable in an `.eml` file. The Message-ID derives from the ledger key, so
the same message always carries the same id: receiving servers and the ledger can both recognise a resend.

Addresses are written without SMTPUTF8: an internationalised domain in IDNA (`smtp_address`), while a
local part that is not ASCII is refused with a clear permanent error.

`build_mime` gives a `Message` (the outbox, tests); `mime_bytes` writes the same message straight to the
bytes SMTP sends, at a fraction of the CPU (the email package folds and encodes in pure Python): the same
headers (folded by the email package where they need it), the bodies encoded by `binascii`'s C code a line
at a time, keeping the lines that every invitation shares.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import random
import re
from datetime import datetime
from email import encoders
from email.charset import QP, Charset
from email.errors import HeaderParseError
from email.header import Header
from email.headerregistry import Address
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import format_datetime, formataddr, parseaddr
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

from pipeline.channels.base import Attachment, EmailMessage
from pipeline.errors import PermanentDeliveryError

_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP  # readable in an .eml file, 7-bit clean for any relay

# Headers the builder owns; letting `message.headers` replace them would break threading or receipts.
_PROTECTED = {"message-id", "from", "to", "date", "mime-version", "content-type", "content-transfer-encoding"}


def message_id(key: str, domain: str = "kallelse") -> str:
    """The Message-ID for a ledger key: `<sha1(key)@domain>`."""
    return f"<{hashlib.sha1(key.encode('utf-8')).hexdigest()}@{domain}>"


def build_mime(
    message: EmailMessage, *, sender: str, reply_to: str | None = None, date: datetime | None = None
) -> Message:
    """Build the MIME message; `date` defaults to now (local time zone).

    Built with the classic `email.mime` classes: the same bytes as `EmailMessage`'s API at a third of the
    CPU, which matters when a worker renders 100,000 invitations (bench/README.md).
    Raises PermanentDeliveryError when an address cannot be used: no retry will make it valid.
    """
    alternative = MIMEMultipart("alternative")
    # MIMEText takes a Charset object at run time (typeshed says str): it is how QP is chosen per message.
    alternative.attach(MIMEText(message.text, "plain", _UTF8_QP))  # type: ignore[arg-type]
    alternative.attach(MIMEText(message.html, "html", _UTF8_QP))  # type: ignore[arg-type]
    mime: Message = alternative
    if message.attachments:
        mime = MIMEMultipart("mixed")
        mime.attach(alternative)
        for attachment in message.attachments:
            mime.attach(_attachment(attachment))
    mime["Message-ID"] = message_id(message.key, domain_of(sender))
    mime["Date"] = format_datetime(date or datetime.now().astimezone())
    mime["From"] = _encoded_address(sender)
    mime["To"] = _recipient(message)
    if reply_to:
        mime["Reply-To"] = _encoded_address(reply_to)
    subject = message.subject
    mime["Subject"] = subject if subject.isascii() else Header(subject, "utf-8")  # type: ignore[assignment]
    _add_extra_headers(mime, message.headers)
    return mime


@lru_cache(maxsize=64)  # the same sender on every message: parsing it was a fifth of building one
def domain_of(sender: str) -> str:
    # The sender's own domain in the Message-ID looks less like spam than a made-up one.
    _, addr = parseaddr(sender)
    domain = addr.rpartition("@")[2]
    return domain or "kallelse"


def _recipient(message: EmailMessage) -> str:
    address = smtp_address(message.to, message.key)
    if not _PLAIN_ADDRESS.fullmatch(address):  # the common shape is valid as it is; the parser is slow
        try:
            Address(display_name=message.to_name, addr_spec=address)  # validates; raises on a bad address
        except (ValueError, IndexError, HeaderParseError) as e:  # the stdlib parser raises all three
            raise PermanentDeliveryError(
                f"unusable email address for {message.key}: {e}", code="address"
            ) from e
    return formataddr((message.to_name, address), charset="utf-8")


# local@domain of dot-separated atoms: an addr-spec the stdlib parser always accepts (tests/test_channels).
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


def smtp_address(address: str, key: str) -> str:
    """`address` as a header and RCPT carry it without SMTPUTF8 (which we do not speak): a domain in
    IDNA (`xn--…`). A local part that is not ASCII cannot be written so: PermanentDeliveryError."""
    if address.isascii():
        return address
    try:
        ascii_form = validate_email(address, check_deliverability=False).ascii_email
    except EmailNotValidError as e:
        raise PermanentDeliveryError(f"unusable email address for {key}: {e}", code="address") from e
    if ascii_form is None:
        raise PermanentDeliveryError(
            f"email address for {key} has non-ASCII characters before the @, which only a server "
            f"speaking SMTPUTF8 takes; kallelse sends without it: {address}",
            code="address",
        )
    return ascii_form


def _encoded_address(value: str) -> str:
    name, address = parseaddr(value)
    return formataddr((name, address), charset="utf-8") if address else value


def _extra_headers(headers: dict[str, str]) -> dict[str, tuple[str, str]]:
    """A message's own headers by lower-cased name, each replacing what the builder (or an earlier one of
    the same name) wrote; the builder's own (`_PROTECTED`) cannot be replaced."""
    extra: dict[str, tuple[str, str]] = {}
    for name, value in headers.items():
        if name.lower() in _PROTECTED:
            raise ValueError(f"header {name!r} is set by build_mime and cannot be overridden")
        extra.pop(name.lower(), None)  # a later value goes where the earlier one would have: last
        extra[name.lower()] = (name, value)
    return extra


def _add_extra_headers(mime: Message, headers: dict[str, str]) -> None:
    for name, value in _extra_headers(headers).values():
        del mime[name]
        mime[name] = value


def _attachment(attachment: Attachment) -> MIMEBase:
    maintype, subtype, params = _split_content_type(attachment.content_type)
    part = MIMEBase(maintype, subtype)
    for name, value in params.items():
        part.set_param(name, value)
    part.set_payload(attachment.data)
    encoders.encode_base64(part)
    part.add_header("Content-Disposition", "attachment", filename=attachment.filename)
    return part


def _split_content_type(content_type: str) -> tuple[str, str, dict[str, str]]:
    """'text/calendar; method=REQUEST' -> ('text', 'calendar', {'method': 'REQUEST'})."""
    kind, *raw_params = (part.strip() for part in content_type.split(";"))
    maintype, _, subtype = kind.partition("/")
    params = {}
    for raw in raw_params:
        name, _, value = raw.partition("=")
        params[name.strip().lower()] = value.strip().strip('"')
    return maintype.lower() or "application", subtype.lower() or "octet-stream", params


def mime_bytes(
    message: EmailMessage, *, sender: str, reply_to: str | None = None, date: datetime | None = None
) -> bytes:
    """`build_mime(...)` as the CRLF bytes an SMTP DATA carries: the same structure, headers and content
    (tests/test_channels.py compares the two), without building a `Message`."""
    alternative = _boundary()
    body = [
        _crlf(f"--{alternative}\n{_TEXT_HEADERS % 'plain'}\n"),
        _qp(message.text),
        _crlf(f"\n--{alternative}\n{_TEXT_HEADERS % 'html'}\n"),
        _qp(message.html),
        _crlf(f"\n--{alternative}--\n"),
    ]
    # The alternative's Content-Type is longer than a line: folded as the email package folds it.
    top = f'Content-Type: multipart/alternative;\n boundary="{alternative}"\nMIME-Version: 1.0\n'
    if message.attachments:
        mixed = _boundary()
        parts = [_crlf(f"--{mixed}\n{top}\n"), *body]
        for attachment in message.attachments:
            part_headers = _attachment_headers(attachment.content_type, attachment.filename)
            parts += [_crlf(f"\n--{mixed}\n{part_headers}\n"), _base64(attachment.data)]
        parts.append(_crlf(f"\n--{mixed}--\n"))
        top = f'Content-Type: multipart/mixed; boundary="{mixed}"\nMIME-Version: 1.0\n'
        body = parts
    headers = {  # by lower-cased name, in build_mime's order
        "message-id": _header("Message-ID", message_id(message.key, domain_of(sender))),
        "date": _header("Date", format_datetime(date or datetime.now().astimezone())),
        "from": _address_header("From", sender),
        "to": _header("To", _recipient(message)),
    }
    if reply_to:
        headers["reply-to"] = _address_header("Reply-To", reply_to)
    headers["subject"] = _subject_header(message.subject)
    for lower, (name, value) in _extra_headers(message.headers).items():
        headers.pop(lower, None)  # as `del mime[name]` does: replaced, and written last
        headers[lower] = _header(name, value)
    return _crlf(top + "".join(headers.values()) + "\n") + b"".join(body)


_TEXT_HEADERS = (
    'Content-Type: text/%s; charset="utf-8"\nMIME-Version: 1.0\nContent-Transfer-Encoding: quoted-printable\n'
)


def _crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("ascii")


def _boundary() -> str:
    # The email package's shape. It cannot occur in the parts: QP never writes "==", base64 no "-".
    return "=" * 15 + f"{random.randrange(2**63):019d}" + "=="


def _qp(text: str) -> bytes:
    """The text in quoted-printable with CRLF line ends, as the email package writes it: line ends read
    as it reads them (CRLF, CR, LF), then C's encoder a line at a time. It starts afresh after every line
    end, so a line comes out the same in every message: an invitation's programme, the same for thousands,
    is encoded once (a process's last few thousand lines are kept), its greeting and links each time."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    last = lines.pop()  # after the last line end: encoded as the end of the data, not of a line
    encoded = b"".join([_QP_LINES.get(line) or _qp_line(line) for line in lines])
    return encoded + binascii.b2a_qp(last.encode("utf-8"), istext=True).replace(b"\n", b"\r\n")


_QP_LINES: dict[str, bytes] = {}


def _qp_line(line: str) -> bytes:
    encoded = binascii.b2a_qp(line.encode("utf-8") + b"\n", istext=True).replace(b"\n", b"\r\n")
    if len(_QP_LINES) >= 8192:  # lines of old event files and personal lines: start again
        _QP_LINES.clear()
    _QP_LINES[line] = encoded
    return encoded


def _base64(data: bytes) -> bytes:
    # As `encoders.encode_base64` writes it: lines of 76, a final line end only if the data had one.
    encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
    return encoded if data.endswith(b"\n") else encoded.removesuffix(b"\r\n")


def _header(name: str, value: str) -> str:
    """`Name: value` folded as compat32 folds it, without the email package for the usual shapes."""
    if value.isascii() and "\n" not in value and "\r" not in value:
        if len(name) + len(value) <= 76:
            return f"{name}: {value}\n"
        if len(value) <= 900 and _UNFOLDABLE.fullmatch(value):  # a long link: on a line of its own
            return f"{name}: \n {value}\n"
    return compat32.fold(name, value)


_UNFOLDABLE = re.compile(r"[^\s;,]*")  # nowhere compat32 folds (white space, ";" and ",")


@lru_cache(maxsize=64)
def _address_header(name: str, value: str) -> str:
    return _header(name, _encoded_address(value))


@lru_cache(maxsize=256)
def _subject_header(subject: str) -> str:
    return compat32.fold("Subject", subject if subject.isascii() else Header(subject, "utf-8"))  # type: ignore[arg-type]


@lru_cache(maxsize=64)
def _attachment_headers(content_type: str, filename: str) -> str:
    """An attachment part's headers exactly as `build_mime` writes them (made by it once)."""
    part = _attachment(Attachment(filename, content_type, b""))
    return "".join(compat32.fold(name, value) for name, value in part.items())
