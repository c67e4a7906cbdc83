"""The one small interface every channel implements: `send(message) -> Receipt`.

A channel does one attempt and never loops: it returns a `Receipt` or raises `TransientDeliveryError` /
`PermanentDeliveryError` (pipeline.errors). Retrying is the actor's business.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


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
