"""The benchmarks' providers, each in a process of its own so its CPU is not counted as kallelse's.

    python bench/servers.py twilio --latency 0.2     # prints "url sid token", serves until stdin closes
    python bench/servers.py smtp                     # prints "host port", counts what it receives

The Twilio-like server is tests/twilio_server.py (the one the tests use). GET /bench/summary on it answers
{"accepted": n, "distinct_to": n, "at": [first, last]}; the SMTP sink answers nothing and prints its count
when stdin closes.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def serve_twilio(latency: float) -> None:
    from http.server import ThreadingHTTPServer

    from tests import twilio_server

    # socketserver's listen backlog is 5: 128 clients connecting at once would be reset, not served.
    ThreadingHTTPServer.request_queue_size = 1024
    server = twilio_server.FakeTwilio()
    original = twilio_server._Handler.do_GET

    def do_get(handler) -> None:
        if handler.path != "/bench/summary":
            return original(handler)
        sent = server.messages
        times = [m.at for m in sent]
        body = {
            "accepted": len(sent),
            "distinct_to": len({m.to for m in sent}),
            "at": [min(times), max(times)] if times else [],
            "max_in_flight": server.max_in_flight,
        }
        handler._send_json(200, body)

    twilio_server._Handler.do_GET = do_get  # type: ignore[method-assign]
    server.start()
    server.latency = latency
    print(server.url, server.account_sid, server.auth_token, flush=True)
    sys.stdin.read()
    server.stop()


def serve_smtp() -> None:
    import socket

    from aiosmtpd.controller import Controller

    class Sink:
        count = 0
        lock = threading.Lock()

        async def handle_DATA(self, server, session, envelope) -> str:
            with self.lock:
                Sink.count += 1
            return "250 OK"

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    print("127.0.0.1", port, flush=True)
    sys.stdin.read()
    controller.stop()
    print(json.dumps({"received": Sink.count}), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["twilio", "smtp"])
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    serve_twilio(args.latency) if args.kind == "twilio" else serve_smtp()
