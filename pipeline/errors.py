"""One error tree for kallelse.

    KallelseError
    ├── ConfigError                 event file, templates or settings are wrong (names file and key)
    ├── DelegateImportError         a delegate file could not be read at all (rows have RowError)
    ├── BrokerUnavailable           a batch is stored and queued, but the broker did not take it
    └── DeliveryError               a channel could not hand a message over
        ├── TransientDeliveryError  worth retrying with backoff: timeouts, SMTP 4xx, HTTP 429/5xx
        └── PermanentDeliveryError  never retried: invalid number, opted out, SMTP 5xx

Adapters translate provider exceptions into these; nothing above an adapter sees smtplib or twilio errors.
"""

from __future__ import annotations


class KallelseError(Exception):
    """Base of every error kallelse raises on purpose."""


class ConfigError(KallelseError):
    """The event file, a template or a setting is wrong. The message names the file and key."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class DelegateImportError(KallelseError):
    """A delegate file cannot be read at all (missing header, unknown columns, unreadable)."""


class BrokerUnavailable(KallelseError):
    """The broker refused a batch's ids; the rows are queued in the ledger and the scheduler enqueues them."""


class DeliveryError(KallelseError):
    """A channel failed to hand a message to its provider.

    `maybe_sent` is the adapter's word that the request went out and no answer came back (a read timeout,
    a connection dropped mid-answer): the provider may have the message, so ask it before sending again.
    `retry_after` is the provider's own word on how many seconds to wait (HTTP Retry-After)."""

    def __init__(
        self,
        message: str,
        code: str | None = None,
        *,
        maybe_sent: bool = False,
        retry_after: float | None = None,
    ):
        self.code = code
        self.maybe_sent = maybe_sent
        self.retry_after = retry_after
        super().__init__(message)


class TransientDeliveryError(DeliveryError):
    """Worth retrying later: the provider was busy, slow or briefly unreachable."""


class PermanentDeliveryError(DeliveryError):
    """Retrying cannot help: bad address, opted out, rejected content."""
