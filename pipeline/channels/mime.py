"""Turn an `EmailMessage` from `base.py` into a standards-conforming MIME message (stdlib only).

The shape is always multipart/alternative (text/plain first, text/html last, so clients prefer HTML); any
attachment wraps that in multipart/mixed. Text parts are UTF-8 in quoted-printable, which keeps them 7-bit
clean for any relay while staying readable in an `.eml` file. The Message-ID derives from the ledger key, so
the same message always carries the same id: receiving servers and the ledger can both recognise a resend.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from email import policy
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage as MimeMessage
from email.utils import format_datetime, parseaddr

from pipeline.channels.base import Attachment, EmailMessage
from pipeline.errors import PermanentDeliveryError

# Headers the builder owns; letting `message.headers` replace them would break threading or receipts.
_PROTECTED = {"message-id", "from", "to", "date", "mime-version", "content-type", "content-transfer-encoding"}


def message_id(key: str, domain: str = "kallelse") -> str:
    """The Message-ID for a ledger key: `<sha1(key)@domain>`."""
    return f"<{hashlib.sha1(key.encode('utf-8')).hexdigest()}@{domain}>"


def build_mime(
    message: EmailMessage, *, sender: str, reply_to: str | None = None, date: datetime | None = None
) -> MimeMessage:
    """Build the MIME message; `date` defaults to now (local time zone).

    Raises PermanentDeliveryError when an address cannot be used: no retry will make it valid.
    """
    mime = MimeMessage(policy=policy.default)
    mime["Message-ID"] = message_id(message.key, _domain_of(sender))
    mime["Date"] = format_datetime(date or datetime.now().astimezone())
    mime["From"] = sender
    mime["To"] = _recipient(message)
    if reply_to:
        mime["Reply-To"] = reply_to
    mime["Subject"] = message.subject
    _add_extra_headers(mime, message.headers)
    mime.set_content(message.text, cte="quoted-printable")
    mime.add_alternative(message.html, subtype="html", cte="quoted-printable")
    for attachment in message.attachments:
        _attach(mime, attachment)
    return mime


def _domain_of(sender: str) -> str:
    # The sender's own domain in the Message-ID looks less like spam than a made-up one.
    _, addr = parseaddr(sender)
    domain = addr.rpartition("@")[2]
    return domain or "kallelse"


def _recipient(message: EmailMessage) -> Address:
    try:
        return Address(display_name=message.to_name, addr_spec=message.to)
    except (ValueError, IndexError, HeaderParseError) as e:  # the stdlib address parser raises all three
        raise PermanentDeliveryError(f"unusable email address for {message.key}: {e}", code="address") from e


def _add_extra_headers(mime: MimeMessage, headers: dict[str, str]) -> None:
    for name, value in headers.items():
        if name.lower() in _PROTECTED:
            raise ValueError(f"header {name!r} is set by build_mime and cannot be overridden")
        del mime[name]
        mime[name] = value


def _attach(mime: MimeMessage, attachment: Attachment) -> None:
    maintype, subtype, params = _split_content_type(attachment.content_type)
    mime.add_attachment(
        attachment.data, maintype=maintype, subtype=subtype, filename=attachment.filename, params=params
    )


def _split_content_type(content_type: str) -> tuple[str, str, dict[str, str]]:
    """'text/calendar; method=REQUEST' -> ('text', 'calendar', {'method': 'REQUEST'})."""
    kind, *raw_params = (part.strip() for part in content_type.split(";"))
    maintype, _, subtype = kind.partition("/")
    params = {}
    for raw in raw_params:
        name, _, value = raw.partition("=")
        params[name.strip().lower()] = value.strip().strip('"')
    return maintype.lower() or "application", subtype.lower() or "octet-stream", params
