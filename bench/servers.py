"""The benchmarks' providers, each in a process of its own so its CPU is not counted as kallelse's.

    python bench/servers.py twilio --latency 0.2     # prints "url sid token", serves until stdin closes
    python bench/servers.py smtp                     # prints "host port", counts what it receives

The Twilio-like server is tests/twilio_server.py's FakeTwilio (the one the tests use: same auth, checks and
JSON) behind an asyncio front end: the tests' ThreadingHTTPServer costs about 1 ms of CPU and a thread per
request, which on a 2-core machine would make the test server, not kallelse, the figure. It serves creates
(POST Messages.json, keep-alive) and GET /bench/summary, which answers {"accepted": n, "distinct_to": n,
"at": [first, last], "max_in_flight": n}. The SMTP sink answers nothing and prints its count when stdin
closes.
"""

from __future__ import annotations

import argparse
import json
import sys
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def serve_twilio(latency: float) -> None:
    import asyncio
    import socket

    from tests import twilio_server

    fake = twilio_server.FakeTwilio()
    state = {"in_flight": 0, "max_in_flight": 0}

    def summary() -> tuple[int, dict]:
        sent = fake.messages
        times = [m.at for m in sent]
        return 200, {
            "accepted": len(sent),
            "distinct_to": len({m.to for m in sent}),
            "at": [min(times), max(times)] if times else [],
            "max_in_flight": state["max_in_flight"],
        }

    async def answer(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict]:
        if method == "GET" and path == "/bench/summary":
            return summary()
        match = twilio_server._LIST.match(path)
        if method != "POST" or not match:
            return 404, fake.error(404, 20404)
        if not fake.authorised(headers.get("authorization", ""), match["sid"]):
            return 401, fake.error(401, 20003)
        form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8")).items()}
        state["in_flight"] += 1
        state["max_in_flight"] = max(state["max_in_flight"], state["in_flight"])
        try:
            if latency:
                await asyncio.sleep(latency)
            return fake.create(form)
        finally:
            state["in_flight"] -= 1

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                fields = (h.partition(":") for h in lines[1:] if h)
                headers = {k.strip().lower(): v.strip() for k, _, v in fields}
                body = await reader.readexactly(int(headers.get("content-length") or 0))
                status, payload = await answer(method, target.split("?", 1)[0], headers, body)
                data = json.dumps(payload).encode()
                writer.write(
                    f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: application/json; "
                    f"charset=utf-8\r\nContent-Length: {len(data)}\r\n\r\n".encode()
                    + data
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.CancelledError, ConnectionError):
            pass  # the client hung up, or the server stops
        finally:
            writer.close()

    asyncio.run(
        _serve(
            connection, 1 << 20, lambda port: f"http://127.0.0.1:{port} {fake.account_sid} {fake.auth_token}"
        )
    )


def serve_smtp() -> None:
    """An SMTP sink on asyncio that reads a message's DATA in one piece: aiosmtpd (the tests' real server)
    handles DATA line by line, 2–3 ms of CPU for a 22 KB invitation of 436 lines, as much as kallelse
    spends making it, which on 2 shared cores would make the sink the figure. It speaks what kallelse
    uses: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT, and offers PIPELINING as real relays do."""
    import asyncio

    count = 0

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        writer.write(b"220 sink ESMTP\r\n")
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                verb = line[:4].upper()
                if verb == b"EHLO":
                    writer.write(b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 go ahead\r\n")
                    await reader.readuntil(b"\r\n.\r\n")
                    count += 1
                    writer.write(b"250 OK\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    break
                elif verb in (b"HELO", b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                    writer.write(b"250 OK\r\n")
                else:
                    writer.write(b"502 not here\r\n")
                await writer.drain()
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.CancelledError, ConnectionError):
            pass  # the client hung up, or the sink stops
        finally:
            writer.close()

    asyncio.run(_serve(session, 16 << 20, lambda port: f"127.0.0.1 {port}"))
    print(json.dumps({"received": count}), flush=True)


async def _serve(handle, limit: int, announce) -> None:
    """Serve `handle` on a free port of 127.0.0.1, print `announce(port)` for the benchmark to read, and stop
    when stdin closes."""
    import asyncio

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024, limit=limit)
    print(announce(server.sockets[0].getsockname()[1]), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["twilio", "smtp"])
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    serve_twilio(args.latency) if args.kind == "twilio" else serve_smtp()
