"""A local HTTP server that answers like Twilio's Messages API (2010-04-01), for tests and demos.

    server = FakeTwilio().start()            # 127.0.0.1, a free port; server.url is the TWILIO_API_URL
    POST /2010-04-01/Accounts/{sid}/Messages.json        create (To, From | MessagingServiceSid, Body, ...)
    GET  /2010-04-01/Accounts/{sid}/Messages.json        list; filters To, From, DateSent, DateSent>, <
    GET  /2010-04-01/Accounts/{sid}/Messages/{SM}.json   fetch

Like Twilio it checks HTTP Basic auth (401, code 20003), validates To as E.164 (400, code 21211), requires
a Body (21602) and a From or MessagingServiceSid (21603), and answers with Twilio's JSON shapes. Every
message it accepts is "queued" in the create answer and "sent" (with date_sent) afterwards.

Scripting, consumed in order, per number or for any number:
    server.script("+46701234567", [429, 503, 201])   # then back to normal
    server.fail_next(2, 500, 20500)                  # the next 2 requests, whatever the number
    server.script(None, [Reply(201, delay=2.0)])     # answer late (client timeouts)
    server.script(None, [Reply(hang_up=True)])       # close the connection without answering
    server.opt_out("+46709999999")                   # 21610 for that number until opt_in()
    server.script(None, [Reply(429, retry_after=3)]) # with a Retry-After header (seconds)
    server.outage([(429, 60.0), (503, 30.0)], retry_after=5)  # every request, by the clock, from now
    server.latency = 0.2                             # every create answered 200 ms late, like the real one
Scripted 429s carry code 20429; scripted 503s a non-JSON body (as a load balancer sends); other statuses the
code given or the status itself. `server.requests` records every POST (accepted or not), `server.messages`
the accepted ones (each with `at`, when it was accepted); `server.max_in_flight` is the most POSTs it was
answering at once.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import ssl
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from pipeline.sms import sms_segments

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_LIST = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC\w+)/Messages\.json$")
_ONE = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC\w+)/Messages/(?P<msid>SM\w+)\.json$")
_MESSAGES = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    21211: "The 'To' number {to} is not a valid phone number.",
    21602: "Message body is required.",
    21603: "A 'From' or 'MessagingServiceSid' parameter is required to send a message.",
    21610: "Attempt to send to unsubscribed recipient",
}


@dataclass(frozen=True)
class Reply:
    """One scripted answer. status 201 means "accept normally" (after any delay)."""

    status: int = 201
    code: int | None = None
    delay: float = 0.0
    hang_up: bool = False
    retry_after: float | None = None  # sent as a Retry-After header


@dataclass
class SentSms:
    sid: str
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    status_callback: str | None
    form: dict[str, str]
    date_created: datetime
    status: str = "sent"
    at: float = 0.0  # time.time() when accepted: finer than date_created, for benchmarks


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: list[dict[str, str]] = field(default_factory=list)
    request_times: list[float] = field(default_factory=list)  # time.monotonic() of each POST
    messages: list[SentSms] = field(default_factory=list)
    scripts: dict[str | None, deque[Reply]] = field(default_factory=dict)
    opted_out: set[str] = field(default_factory=set)
    outage: list[tuple[float, Reply]] = field(default_factory=list)  # (until, monotonic clock) → reply
    in_flight: int = 0
    max_in_flight: int = 0


class _Server(ThreadingHTTPServer):
    # socketserver's listen backlog is 5: a worker with 64 SMS in flight (SMS_CONCURRENCY) would see
    # connections reset ("twilio hung up"), which is not what Twilio does.
    request_queue_size = 1024
    daemon_threads = True


class FakeTwilio:
    def __init__(self, account_sid: str | None = None, auth_token: str | None = None):
        self.account_sid = account_sid or "AC" + secrets.token_hex(16)
        self.auth_token = auth_token or secrets.token_hex(16)
        self._state = _State()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.latency = 0.0  # seconds every create waits before its answer
        self.scheme = "http"

    # -- life cycle ---------------------------------------------------------------------------------------
    def start(self, tls: ssl.SSLContext | None = None) -> FakeTwilio:
        """Serve on a free port of 127.0.0.1; with `tls` (a server context), HTTPS as Twilio's API is."""
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        if tls is not None:
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
            self.scheme = "https"
        self._httpd.fake = self  # type: ignore[attr-defined]  # the handler finds its server's state here
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="fake-twilio", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping on a scripted delay
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        assert self._httpd is not None, "start() the server first"
        host, port = self._httpd.server_address[:2]
        return f"{self.scheme}://{host}:{port}"

    # -- what a test reads --------------------------------------------------------------------------------
    @property
    def messages(self) -> list[SentSms]:
        with self._state.lock:
            return list(self._state.messages)

    @property
    def requests(self) -> list[dict[str, str]]:
        """The form of every POST to Messages.json, accepted or not."""
        with self._state.lock:
            return list(self._state.requests)

    @property
    def max_in_flight(self) -> int:
        with self._state.lock:
            return self._state.max_in_flight

    # -- what a test scripts ------------------------------------------------------------------------------
    @property
    def request_times(self) -> list[float]:
        with self._state.lock:
            return list(self._state.request_times)

    def script(self, to: str | None, replies: list[int | Reply]) -> None:
        """Answer the next requests to `to` (None: any number) with these replies, in order."""
        with self._state.lock:
            queue = self._state.scripts.setdefault(to, deque())
            queue.extend(r if isinstance(r, Reply) else Reply(r) for r in replies)

    def fail_next(self, n: int, status: int, code: int | None = None) -> None:
        self.script(None, [Reply(status, code)] * n)

    def outage(self, phases: list[tuple[int, float]], retry_after: float | None = None) -> None:
        """From now, answer every POST with each phase's status for its seconds, then normally again."""
        at, schedule = time.monotonic(), []
        for status, seconds in phases:
            at += seconds
            schedule.append((at, Reply(status, retry_after=retry_after)))
        with self._state.lock:
            self._state.outage = schedule

    def opt_out(self, number: str) -> None:
        with self._state.lock:
            self._state.opted_out.add(number)

    def opt_in(self, number: str) -> None:
        with self._state.lock:
            self._state.opted_out.discard(number)

    # -- used by the handler ------------------------------------------------------------------------------
    def _next_reply(self, to: str) -> Reply | None:
        with self._state.lock:
            now = time.monotonic()
            phase = next((reply for until, reply in self._state.outage if now < until), None)
            if phase is not None:
                return phase
            for target in (to, None):
                queue = self._state.scripts.get(target)
                if queue:
                    return queue.popleft()
        return None

    def _record_request(self, form: dict[str, str]) -> None:
        with self._state.lock:
            self._state.requests.append(form)
            self._state.request_times.append(time.monotonic())

    def _in_flight(self, change: int) -> None:
        with self._state.lock:
            self._state.in_flight += change
            self._state.max_in_flight = max(self._state.max_in_flight, self._state.in_flight)

    def _accept(self, form: dict[str, str]) -> SentSms:
        sms = SentSms(
            sid="SM" + secrets.token_hex(16),
            to=form["To"],
            from_=form.get("From"),
            messaging_service_sid=form.get("MessagingServiceSid"),
            body=form["Body"],
            status_callback=form.get("StatusCallback"),
            form=form,
            date_created=datetime.now(UTC).replace(microsecond=0),
            at=time.time(),
        )
        with self._state.lock:
            self._state.messages.append(sms)
        return sms

    def _is_opted_out(self, number: str) -> bool:
        with self._state.lock:
            return number in self._state.opted_out

    def _find(self, sid: str) -> SentSms | None:
        return next((m for m in self.messages if m.sid == sid), None)

    # -- what Twilio checks and answers, for any front end -------------------------------------------------
    def authorised(self, header: str, path_sid: str) -> bool:
        """HTTP Basic auth with this account's sid and token, on this account's path."""
        expected = f"{self.account_sid}:{self.auth_token}".encode()
        given = base64.b64decode(header[6:]) if header.startswith("Basic ") else b""
        return secrets.compare_digest(given, expected) and path_sid == self.account_sid

    def create(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """A create's status and JSON: validated like Twilio, accepted and recorded when valid."""
        to = form.get("To", "")
        if not E164.match(to):
            return 400, self.error(400, 21211, to=to)
        if not form.get("Body"):
            return 400, self.error(400, 21602)
        if not (form.get("From") or form.get("MessagingServiceSid")):
            return 400, self.error(400, 21603)
        if self._is_opted_out(to):
            return 400, self.error(400, 21610)
        sms = self._accept(form)
        first = "accepted" if sms.messaging_service_sid and not sms.from_ else "queued"
        return 201, self.resource(sms, status=first)

    # -- JSON shapes --------------------------------------------------------------------------------------
    def resource(self, sms: SentSms, status: str | None = None) -> dict[str, Any]:
        """A message as Twilio's JSON represents it."""
        base = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sms.sid}"
        segments = sms_segments(sms.body).segments
        created = format_datetime(sms.date_created, usegmt=False)
        status = status or sms.status
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": sms.body,
            "date_created": created,
            "date_sent": None if status in ("queued", "accepted") else created,
            "date_updated": created,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sms.from_,
            "messaging_service_sid": sms.messaging_service_sid,
            "num_media": "0",
            "num_segments": str(segments),
            "price": None,
            "price_unit": "USD",
            "sid": sms.sid,
            "status": status,
            "subresource_uris": {"media": f"{base}/Media.json"},
            "to": sms.to,
            "uri": f"{base}.json",
        }

    def error(self, status: int, code: int, **fields: str) -> dict[str, Any]:
        """Twilio's error JSON."""
        return {
            "code": code,
            "message": _MESSAGES.get(code, "Error").format_map(defaultdict(str, fields)),
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }

    def page(self, query: dict[str, str]) -> dict[str, Any]:
        """The list endpoint's paged JSON for the filters in `query`."""
        selected = [m for m in self.messages if _matches(m, query)]
        selected.sort(key=lambda m: m.date_created, reverse=True)  # Twilio lists newest first
        size, number = int(query.get("PageSize", 50)), int(query.get("Page", 0))
        chunk = selected[number * size : (number + 1) * size]
        path = f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"
        filters = {k: v for k, v in query.items() if k not in ("Page", "PageSize", "PageToken")}

        def uri(page_number: int) -> str:
            return f"{path}?{urlencode({**filters, 'PageSize': size, 'Page': page_number})}"

        more = (number + 1) * size < len(selected)
        return {
            "messages": [self.resource(m) for m in chunk],
            "page": number,
            "page_size": size,
            "start": number * size,
            "end": number * size + max(len(chunk) - 1, 0),
            "first_page_uri": uri(0),
            "previous_page_uri": uri(number - 1) if number > 0 else None,
            "next_page_uri": uri(number + 1) if more else None,
            "uri": uri(number),
        }


def _matches(sms: SentSms, query: dict[str, str]) -> bool:
    if "To" in query and sms.to != query["To"]:
        return False
    if "From" in query and sms.from_ != query["From"]:
        return False
    for key, keep in (("DateSent", "=="), ("DateSent>", ">="), ("DateSent<", "<=")):
        if key in query and not _compare(sms.date_created, query[key], keep):
            return False
    return True


def _compare(sent: datetime, bound_text: str, keep: str) -> bool:
    """Twilio's DateSent filters: a bare date compares by day; a timestamp to the second (inclusive)."""
    if len(bound_text) == 10:
        left: Any = sent.date()
        right: Any = datetime.fromisoformat(bound_text).date()
    else:
        left, right = sent, datetime.fromisoformat(bound_text.replace("Z", "+00:00"))
        if right.tzinfo is None:
            right = right.replace(tzinfo=UTC)
    return {"==": left == right, ">=": left >= right, "<=": left <= right}[keep]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Twilio's API does
    disable_nagle_algorithm = True  # headers and body are two writes: Nagle would hold the body ~40 ms
    server: ThreadingHTTPServer

    @property
    def fake(self) -> FakeTwilio:
        return self.server.fake  # type: ignore[attr-defined, no-any-return]

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests read .requests; stderr noise helps nobody

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v[-1] for k, v in parse_qs(self.rfile.read(length).decode("utf-8")).items()}
        match = _LIST.match(urlsplit(self.path).path)
        if not match:
            return self._send_error(404, 20404)
        if not self._authorised(match["sid"]):
            return self._send_error(401, 20003)
        self.fake._record_request(form)
        self.fake._in_flight(+1)
        try:
            reply = self.fake._next_reply(form.get("To", ""))
            if reply is not None and not self._play(reply):
                return None
            if self.fake.latency and self.fake._stopping.wait(self.fake.latency):
                return None
            self._create(form)
        finally:
            self.fake._in_flight(-1)

    def do_GET(self) -> None:
        split = urlsplit(self.path)
        match = _LIST.match(split.path) or _ONE.match(split.path)
        if not match:
            return self._send_error(404, 20404)
        if not self._authorised(match["sid"]):
            return self._send_error(401, 20003)
        if "msid" not in match.groupdict():
            query = {k: v[-1] for k, v in parse_qs(split.query).items()}
            return self._send_json(200, self.fake.page(query))
        sms = self.fake._find(match["msid"])
        if sms is None:
            return self._send_error(404, 20404)
        self._send_json(200, self.fake.resource(sms))

    def _authorised(self, path_sid: str) -> bool:
        return self.fake.authorised(self.headers.get("Authorization", ""), path_sid)

    def _play(self, reply: Reply) -> bool:
        """Act out a scripted reply; True means "go on and accept the message"."""
        if reply.delay and self.fake._stopping.wait(reply.delay):
            return False
        if reply.hang_up:
            self.close_connection = True
            self.connection.shutdown(2)  # SHUT_RDWR: the client sees the line drop, no answer
            return False
        if reply.status < 300:
            return True
        headers = {"Retry-After": f"{reply.retry_after:g}"} if reply.retry_after is not None else {}
        if reply.status == 503:
            self._send(503, b"<html><body>503 Service Unavailable</body></html>", "text/html", headers)
        else:
            code = reply.code or (20429 if reply.status == 429 else reply.status)
            self._send_json(reply.status, self.fake.error(reply.status, code), headers)
        return False

    def _create(self, form: dict[str, str]) -> None:
        self._send_json(*self.fake.create(form))

    def _send_error(self, status: int, code: int, **fields: str) -> None:
        self._send_json(status, self.fake.error(status, code, **fields))

    def _send_json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json; charset=utf-8", headers)

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
