"""The one small interface every channel implements: `send(message) -> Receipt`.

A channel does one attempt and never loops: it returns a `Receipt` or raises `TransientDeliveryError` /
`PermanentDeliveryError` (pipeline.errors), with `maybe_sent` set when the provider may have the message
anyway. Retrying is the worker's business.

What a channel can do beyond sending, it declares by implementing the optional part:
- `FindsSent.find_sent(message, since)`: ask the provider whether it has this message (Twilio's message
  list). The worker reconciles an ambiguous failure with it; a channel without it (SMTP, the outbox)
  leaves such a row `unknown` for a person.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str  # "text/calendar; method=REQUEST"
    data: bytes


@dataclass(frozen=True)
class EmailMessage:
    key: str  # the ledger key: deterministic, also the basis of the Message-ID
    to: str
    to_name: str
    subject: str
    text: str
    html: str
    attachments: tuple[Attachment, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SmsMessage:
    key: str
    to: str  # E.164
    body: str
    status_callback: str | None = None


@dataclass(frozen=True)
class Receipt:
    provider_id: str
    status: str = "sent"  # the provider's first word on it: sent, queued, accepted


class EmailChannel(Protocol):
    def send(self, message: EmailMessage) -> Receipt: ...
    def close(self) -> None: ...


class SmsChannel(Protocol):
    def send(self, message: SmsMessage) -> Receipt: ...
    def close(self) -> None: ...


@runtime_checkable
class FindsSent(Protocol):
    """The optional part of a channel: it can tell whether the provider already has a message."""

    def find_sent(self, message: SmsMessage, since: datetime) -> str | None:
        """The provider's id for this very message if it has one created since `since`, else None."""
        ...
