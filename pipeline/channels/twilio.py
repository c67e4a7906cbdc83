"""SMS through Twilio's Messages API with the official twilio library.

Thread-safety: each `TwilioSms` owns one `twilio.rest.Client` and HTTP client. Give each worker thread its
own instance.

The HTTP client is `_Urllib3Client`, the library's `HttpClient` interface over a urllib3 pool: requests'
Session (the library's default) spent about half of a create's CPU preparing the request and reading the
proxy settings from the environment on every call. With a proxy in the environment (HTTPS_PROXY and the
like) the library's own requests-based client is used, as before.

`api_url` replaces Twilio's API base URL (staging, or the local fake in tests): the library reads
`client.api.base_url` on every request. The HTTP client always has a timeout; the library's default is none.

Errors are translated here and nowhere else:
- HTTP 429, Twilio code 20429, HTTP 5xx, timeouts, connection errors -> TransientDeliveryError
- any other 4xx (21211 invalid number, 21610 opted out, 21614 not a mobile, 21408 region not enabled,
  401/403/404) -> PermanentDeliveryError(code=<twilio code>)
A TransientDeliveryError with `maybe_sent` (codes "timeout", "disconnected") is ambiguous: the request went
out but no answer came back, so Twilio may have accepted the SMS. `find_sent` (list Messages by To and
DateSent) reconciles before it is sent again. Code "network" means nothing reached Twilio.
A `Retry-After` header on the refusal is put on the error (`retry_after`, seconds) for the worker's backoff.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import urlencode, urljoin

import certifi
import requests
import urllib3
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http import HttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client
from urllib3.exceptions import (
    ConnectTimeoutError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from pipeline.channels.base import Receipt, SmsMessage
from pipeline.channels.outbox import mask_phone
from pipeline.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError

log = logging.getLogger(__name__)

# The library logs every request at INFO, query strings (which hold phone numbers) included.
_http_log = logging.getLogger(__name__ + ".http")
_http_log.setLevel(logging.WARNING)

# Twilio answers these with a 4xx status, yet waiting helps: too many requests, the From number's queue full.
_TRANSIENT_CODES = {20429, 21611}
MAX_RETRY_AFTER = 3600.0  # seconds: a header asking for longer is read as "an hour"


class _RetryAfter:
    """Remembers the last answer's Retry-After: the library's exceptions drop the response headers."""

    retry_after: float | None = None

    def request(self, *args, **kwargs):
        self.retry_after = None
        response = super().request(*args, **kwargs)
        self.retry_after = retry_after_seconds((response.headers or {}).get("Retry-After"))
        return response


class _RequestsClient(_RetryAfter, TwilioHttpClient):
    """The library's own client (a requests Session): used when the environment names a proxy."""


class _Urllib3Http(HttpClient):
    """The library's HttpClient interface over one urllib3 pool, without requests' per-call preparation.

    Failures are raised as the requests exceptions the library's own client raises for them, so `_translate`
    reads both alike: a read timeout, a connection dropped after the request went out (may be sent), and a
    connection never made (nothing reached Twilio)."""

    def __init__(self, timeout: float, logger: logging.Logger):
        super().__init__(logger, False, timeout)
        self.pools: dict[str, urllib3.HTTPConnectionPool] = {}  # by origin: a pool per host, as PoolManager

    def request(
        self,
        method: str,
        url: str,
        params: dict | None = None,
        data: dict | None = None,
        headers: dict | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        if params:
            url = f"{url}{'&' if '?' in url else '?'}{urlencode(_present(params), doseq=True)}"
        fields = dict(headers or {})
        if auth:
            fields.update(urllib3.make_headers(basic_auth=f"{auth[0]}:{auth[1]}"))
        body = None
        if data is not None and "json" in fields.get("Content-Type", ""):
            body = json.dumps(data)
        elif data is not None:
            body = urlencode(_present(data), doseq=True)
            fields["Content-Type"] = "application/x-www-form-urlencoded"
        limit = self.timeout if timeout is None else timeout
        try:
            origin, path = _split(url)
            pool = self.pools.get(origin) or self.pools.setdefault(origin, _pool(origin))
            answer = pool.urlopen(
                method.upper(), path, body=body, headers=fields, timeout=limit, redirect=allow_redirects
            )
        except ReadTimeoutError as e:
            raise requests.ReadTimeout(e) from e
        # Refused, unresolvable (NewConnectionError is a ConnectTimeoutError) or too slow: nothing sent.
        except ConnectTimeoutError as e:
            raise requests.ConnectionError(e) from e
        except SSLError as e:  # the handshake failed: nothing was sent
            raise requests.exceptions.SSLError(e) from e
        except (ProtocolError, OSError) as e:
            raise requests.ConnectionError(e) from e
        except urllib3.exceptions.HTTPError as e:  # anything else went wrong after the request went out
            raise requests.ConnectionError(ProtocolError(str(e))) from e
        return Response(answer.status, answer.data.decode("utf-8"), answer.headers)


class _Urllib3Client(_RetryAfter, _Urllib3Http):
    """The client TwilioSms uses unless a proxy is configured."""


def _split(url: str) -> tuple[str, str]:
    """'https://api.twilio.com/2010-04-01/…?x' → ('https://api.twilio.com', '/2010-04-01/…?x')."""
    slash = url.find("/", url.index("://") + 3)
    return (url, "/") if slash < 0 else (url[:slash], url[slash:])


def _pool(origin: str) -> urllib3.HTTPConnectionPool:
    # Straight to the host's pool: PoolManager's per-call URL parsing and key building cost more than a
    # dict look-up. HTTPS is verified as requests verifies it: certifi's CAs unless the environment names
    # a bundle (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE).
    if origin.startswith("https:"):
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()
        return urllib3.connection_from_url(
            origin, maxsize=2, retries=False, cert_reqs="CERT_REQUIRED", ca_certs=bundle
        )
    return urllib3.connection_from_url(origin, maxsize=2, retries=False)


def _present(values: dict) -> dict:
    # requests leaves out fields whose value is None; the library relies on it for unset options.
    return {k: v for k, v in values.items() if v is not None}


def _http_client(timeout: float) -> _Urllib3Client | _RequestsClient:
    if any(urllib.request.getproxies().values()):
        return _RequestsClient(timeout=timeout, logger=_http_log)
    return _Urllib3Client(timeout=timeout, logger=_http_log)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """HTTP Retry-After (seconds, or an HTTP date) as seconds from now."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - (now or datetime.now(UTC))).total_seconds()
        except (TypeError, ValueError):
            return None
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


class TwilioSms:
    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        from_number: str | None = None,
        messaging_service_sid: str | None = None,
        api_url: str | None = None,
        timeout: float = 15.0,
        status_callback_base: str | None = None,
    ):
        if not (from_number or messaging_service_sid):
            raise ValueError("TwilioSms needs a from_number or a messaging_service_sid")
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid
        self.status_callback_base = status_callback_base
        self.http: _Urllib3Client | _RequestsClient = _http_client(timeout)
        self.client = Client(account_sid, auth_token, http_client=self.http)
        if api_url:
            self.client.api.base_url = api_url.rstrip("/")
            # TWILIO_EDGE / TWILIO_REGION in the environment would otherwise rewrite the host we were given.
            self.client.edge = self.client.region = None

    def send(self, message: SmsMessage) -> Receipt:
        try:
            created = self.client.messages.create(**self._params(message))
        except (TwilioException, requests.RequestException) as e:
            error = _translate(e, message)
            error.retry_after = self.http.retry_after if isinstance(e, TwilioException) else None
            raise error from e
        log.info("twilio accepted %s to %s as %s", message.key, mask_phone(message.to), created.sid)
        return Receipt(provider_id=str(created.sid), status=str(created.status or "queued"))

    def find_sent(self, message: SmsMessage, since: datetime) -> str | None:
        """The sid of this very message if Twilio has it (same recipient and body, created since `since`).

        Used after an ambiguous failure (`maybe_sent`) so a message is neither lost nor sent twice."""
        try:
            found = self.client.messages.list(to=message.to, date_sent_after=since, limit=100)
        except (TwilioException, requests.RequestException) as e:
            raise _translate(e, message) from e
        for sent in found:
            created = sent.date_created or sent.date_sent
            if sent.body == message.body and (created is None or created >= since - timedelta(minutes=1)):
                return str(sent.sid)
        return None

    def close(self) -> None:
        if isinstance(self.http, _Urllib3Client):
            for pool in self.http.pools.values():
                pool.close()
        elif isinstance(self.http, TwilioHttpClient) and self.http.session is not None:
            self.http.session.close()

    def _params(self, message: SmsMessage) -> dict[str, str]:
        params = {"to": message.to, "body": message.body}
        # Twilio accepts both; the From must then belong to the Messaging Service.
        if self.messaging_service_sid:
            params["messaging_service_sid"] = self.messaging_service_sid
        if self.from_number:
            params["from_"] = self.from_number
        callback = self._callback_url(message.status_callback)
        if callback:
            params["status_callback"] = callback
        return params

    def _callback_url(self, callback: str | None) -> str | None:
        """A relative callback ('/twilio/status?…') is resolved against status_callback_base (PUBLIC_URL)."""
        if not callback or "://" in callback or not self.status_callback_base:
            return callback
        return urljoin(self.status_callback_base.rstrip("/") + "/", callback.lstrip("/"))


def _translate(error: Exception, message: SmsMessage) -> DeliveryError:
    who = f"{message.key} to {mask_phone(message.to)}"
    if isinstance(error, TwilioRestException | TwilioServiceException):
        return _by_status(error.status, error.code, who)
    if isinstance(error, requests.ReadTimeout):
        return TransientDeliveryError(
            f"twilio did not answer in time for {who}; may be sent", code="timeout", maybe_sent=True
        )
    if isinstance(error, requests.ConnectionError) and isinstance(_cause(error), ProtocolError | OSError):
        # The request went out and the connection died before the answer: as ambiguous as a timeout.
        return TransientDeliveryError(
            f"twilio hung up on {who}; may be sent", code="disconnected", maybe_sent=True
        )
    # Refused, unresolvable, connect timeout: nothing reached Twilio.
    return TransientDeliveryError(f"twilio unreachable for {who}: {type(error).__name__}", code="network")


def _cause(error: Exception) -> object:
    return error.args[0] if error.args else None


def _by_status(status: int, code: int | None, who: str) -> DeliveryError:
    # Twilio's messages quote the phone number, so the error carries status and code only.
    code_text = str(code or status)
    detail = f"twilio refused {who}: HTTP {status}, code {code_text}"
    if status == 429 or status >= 500 or code in _TRANSIENT_CODES:
        return TransientDeliveryError(detail, code=code_text)
    return PermanentDeliveryError(detail, code=code_text)
