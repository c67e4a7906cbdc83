"""Channels against real servers: aiosmtpd for SMTP, a local Twilio-like HTTP server for SMS. No mocks."""

from __future__ import annotations

import json
import logging
import re
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage as EmailMessageMime
from email.parser import BytesParser
from pathlib import Path

import pytest

from pipeline.channels.base import Attachment, EmailMessage, SmsMessage
from pipeline.channels.factory import email_channel, sms_channel
from pipeline.channels.mime import build_mime, message_id, mime_bytes
from pipeline.channels.outbox import OutboxEmail, OutboxSms, mask_phone, safe_key
from pipeline.channels.smtp import SmtpChannel
from pipeline.channels.twilio import TwilioSms
from pipeline.errors import ConfigError, PermanentDeliveryError, TransientDeliveryError
from pipeline.settings import Settings
from tests.fixtures.smtp import SMTP_PASSWORD, SilentSmtp, SmtpServer
from tests.twilio_server import FakeTwilio, Reply

SENDER = "Svenska industrikommuner <kallelse@example.org>"
PHONE = "+46701234567"
ICS = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n"


def an_email(key: str = "invite:2025:anna", **overrides: object) -> EmailMessage:
    fields: dict[str, object] = {
        "key": key,
        "to": "asa.oberg@example.se",
        "to_name": "Åsa Öberg",
        "subject": "Välkommen till Skellefteå – bussen går 09:00 från Wood Hotel",
        "text": "Hej Åsa!\nBussen går kl. 09:00. Vi ses på Älvsbacka strand.\n",
        "html": "<p>Hej Åsa!</p><p>Bussen går kl. 09:00. Vi ses på Älvsbacka strand.</p>",
    }
    return EmailMessage(**{**fields, **overrides})  # type: ignore[arg-type]


def an_sms(key: str = "bus:day1:anna", to: str = PHONE, **overrides: object) -> SmsMessage:
    fields: dict[str, object] = {"key": key, "to": to, "body": "Hej Åsa! Bussen går 09:00 från Wood Hotel."}
    return SmsMessage(**{**fields, **overrides})  # type: ignore[arg-type]


def parse(data: bytes) -> EmailMessageMime:
    return BytesParser(policy=policy.default).parsebytes(data)


def twilio_channel(server: FakeTwilio, **overrides: object) -> TwilioSms:
    options: dict[str, object] = {"from_number": "+46700000000", "api_url": server.url, "timeout": 5.0}
    return TwilioSms(server.account_sid, server.auth_token, **{**options, **overrides})  # type: ignore[arg-type]


def smtp_channel(server: SmtpServer, **overrides: object) -> SmtpChannel:
    options: dict[str, object] = {
        "security": "none",
        "sender": SENDER,
        "timeout": 5.0,
        "local_hostname": "test",
    }
    return SmtpChannel(server.host, server.port, **{**options, **overrides})  # type: ignore[arg-type]


# -- MIME ---------------------------------------------------------------------------------------------------


def test_mime_has_text_and_html_alternatives_with_swedish_characters_intact() -> None:
    """Subject, display name and both bodies survive a round trip through bytes unchanged."""
    parsed = parse(build_mime(an_email(), sender=SENDER, reply_to="info@example.org").as_bytes())

    assert parsed.get_content_type() == "multipart/alternative"
    assert parsed["Subject"] == "Välkommen till Skellefteå – bussen går 09:00 från Wood Hotel"
    assert parsed["To"].addresses[0].display_name == "Åsa Öberg"
    assert parsed["Reply-To"] == "info@example.org"
    assert parsed["Date"] is not None
    assert "Älvsbacka" in parsed.get_body(("plain",)).get_content()
    assert "<p>Hej Åsa!</p>" in parsed.get_body(("html",)).get_content()


def test_mime_with_an_ics_attachment_becomes_multipart_mixed_with_a_calendar_part() -> None:
    """An invitation keeps text+html as its body and carries a text/calendar; method=REQUEST attachment."""
    email = an_email(attachments=(Attachment("inbjudan.ics", "text/calendar; method=REQUEST", ICS),))
    parsed = parse(build_mime(email, sender=SENDER).as_bytes())

    assert parsed.get_content_type() == "multipart/mixed"
    assert parsed.get_body(("plain",)) is not None and parsed.get_body(("html",)) is not None
    (ics,) = parsed.iter_attachments()
    assert (ics.get_content_type(), ics.get_param("method"), ics.get_filename()) == (
        "text/calendar",
        "REQUEST",
        "inbjudan.ics",
    )
    assert ics.get_content().replace("\r\n", "\n") == ICS.decode().replace("\r\n", "\n")


def test_mime_message_id_is_derived_from_the_key_and_the_senders_domain() -> None:
    """The same key always gives the same Message-ID, so a resend is recognisable; other keys differ."""
    first = build_mime(an_email("k1"), sender=SENDER)["Message-ID"]

    assert first == build_mime(an_email("k1"), sender=SENDER)["Message-ID"] == message_id("k1", "example.org")
    assert first != build_mime(an_email("k2"), sender=SENDER)["Message-ID"]


def test_mime_adds_extra_headers_but_refuses_to_replace_its_own() -> None:
    """Extra headers (List-Unsubscribe…) are added; Message-ID and friends stay the builder's."""
    parsed = build_mime(an_email(headers={"List-Unsubscribe": "<https://example.org/u/1>"}), sender=SENDER)
    assert parsed["List-Unsubscribe"] == "<https://example.org/u/1>"

    with pytest.raises(ValueError, match="Message-ID"):
        build_mime(an_email(headers={"Message-ID": "<x@y>"}), sender=SENDER)


def test_mime_with_an_unusable_address_is_a_permanent_error() -> None:
    """No retry will make a malformed address valid."""
    with pytest.raises(PermanentDeliveryError):
        build_mime(an_email(to="asa oberg@@example"), sender=SENDER)
    with pytest.raises(PermanentDeliveryError):
        mime_bytes(an_email(to="asa oberg@@example"), sender=SENDER)


def test_a_swedish_domain_goes_in_idna_and_swedish_letters_before_the_at_are_refused() -> None:
    """Without SMTPUTF8 a header and RCPT carry a domain as `xn--…`; a local part cannot be written so,
    which is a clear permanent error rather than a UnicodeEncodeError."""
    idn = an_email(to="asa@räksmörgås.se")
    assert (
        parse(build_mime(idn, sender=SENDER).as_bytes())["To"].addresses[0].domain == "xn--rksmrgs-5wao1o.se"
    )
    assert parse(mime_bytes(idn, sender=SENDER))["To"].addresses[0].domain == "xn--rksmrgs-5wao1o.se"
    for make in (build_mime, mime_bytes):
        with pytest.raises(PermanentDeliveryError, match="SMTPUTF8") as caught:
            make(an_email(to="åsa@example.se"), sender=SENDER)
        assert caught.value.code == "address"


@pytest.mark.parametrize(
    "address",
    ["a@b.se", "asa.oberg+kallelse@example.se", "x_%-y@sub-domain.example.co.uk", "1@2.3", "a-@b-.c-"],
)
def test_an_address_of_the_plain_shape_is_one_the_stdlib_parser_accepts_as_it_is(address: str) -> None:
    """mime skips the slow stdlib parser for `_PLAIN_ADDRESS`: each such address must parse cleanly."""
    from email.headerregistry import Address

    from pipeline.channels.mime import _PLAIN_ADDRESS

    assert _PLAIN_ADDRESS.fullmatch(address)
    parsed = Address(addr_spec=address)
    assert (parsed.username, parsed.domain) == tuple(address.split("@"))


def test_quoted_printable_a_line_at_a_time_is_the_text_encoded_at_once() -> None:
    """`_qp` encodes line by line and keeps the lines: the same bytes as encoding the whole text, the
    first time and the next, whatever the white space, line ends and long lines (seeded random texts)."""
    import binascii
    import random

    from pipeline.channels.mime import _qp

    rng = random.Random(11)
    for _ in range(2000):
        text = "".join(rng.choice("ab =.\t\r\n åä–€😀") for _ in range(rng.randint(0, 300)))
        whole = text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")
        expected = binascii.b2a_qp(whole, istext=True).replace(b"\n", b"\r\n")
        assert _qp(text) == expected == _qp(text), repr(text)


def test_a_long_header_without_a_place_to_fold_is_written_as_the_email_package_writes_it() -> None:
    """A List-Unsubscribe link longer than a line goes on a line of its own, as compat32 puts it."""
    from email.policy import compat32

    from pipeline.channels.mime import _header

    for length in (40, 59, 60, 61, 150, 500, 900):
        for name in ("List-Unsubscribe", "X"):
            value = "<https://kallelse.example.se/u/" + "t" * length + ">"
            assert _header(name, value) == compat32.fold(name, value)


TRICKY_TEXT = (
    "Hej Åsa!\n\nRad = två  \n" + "ö" * 90 + "\n.\n.punkt\nFrom här\ttabb\t\n"
    "crlf\r\nbara cr\rslut 😀 – \x0b \u2028 \x85 ingen radbrytning sist"
)
# Where quoted-printable breaks a line or encodes its end: white space at the 75th and 76th column, at the
# end of a line and at the very end of the text (no line end after it).
EDGE_TEXT = (
    "".join(f"{'x' * n}{end}\n" for n in range(72, 78) for end in (" ", "\t", "=", "ö")) + "x" * 74 + " "
)


@pytest.mark.parametrize(
    "email",
    [
        an_email(),
        an_email(text=TRICKY_TEXT, html=f"<p>{TRICKY_TEXT}</p>\n", subject="A plain ASCII subject"),
        an_email(text=EDGE_TEXT, html=EDGE_TEXT.rstrip() + "\n"),
        an_email(
            to_name="Marie-Louise Åkerström-Öhrström af Ekebyhov, Skellefteå kommun",
            subject="Inbjudan: Innovationsdagarna 2021, Skellefteå 25–26 november " * 2,
            attachments=(
                Attachment("sik-2021.ics", "text/calendar; method=PUBLISH; charset=utf-8", ICS * 40),
                Attachment("noll.ics", "text/calendar; method=REQUEST", ICS.rstrip()),
            ),
            headers={
                "List-Unsubscribe": "<https://kallelse.example.se/u/" + "t" * 150 + ">",
                "list-unsubscribe": "<https://kallelse.example.se/u/2>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
        ),
        # Headers the builder writes but a message may replace: replaced, not written twice.
        an_email(headers={"subject": "Replaced subject", "Reply-To": "Other <other@example.org>"}),
    ],
)
def test_mime_bytes_are_the_message_build_mime_makes(email: EmailMessage) -> None:
    """What SMTP sends (`mime_bytes`) is `build_mime`'s message: the same headers in the same order,
    byte for byte but for the random boundaries, and every part's type, parameters and content."""
    at = datetime(2021, 10, 7, 9, 0, tzinfo=UTC)
    mime_bytes(email, sender=SENDER, date=at)  # the lines it encodes are kept: the second time reuses them
    fast = mime_bytes(email, sender=SENDER, reply_to="Info <info@example.org>", date=at)
    slow = build_mime(email, sender=SENDER, reply_to="Info <info@example.org>", date=at)
    sent = slow.as_bytes(policy=slow.policy.clone(linesep="\r\n"))  # as smtplib's send_message sends it
    assert b"\n" not in fast.replace(b"\r\n", b"")  # CRLF throughout, as DATA wants it
    assert max(len(line) for line in fast.split(b"\r\n")) <= 998  # RFC 5322

    def head(data: bytes) -> bytes:
        return re.sub(rb"={15}\d{19}==", b"BOUNDARY", data.split(b"\r\n\r\n", 1)[0])

    def unbounded(part: EmailMessageMime) -> list[tuple[str, str]]:
        return [(k, re.sub(r"={15}\d{19}==", "BOUNDARY", v)) for k, v in part.items()]

    assert head(fast) == head(sent)
    fast_parts, slow_parts = list(parse(fast).walk()), list(parse(sent).walk())
    assert len(fast_parts) == len(slow_parts)
    for mine, theirs in zip(fast_parts, slow_parts, strict=True):
        assert unbounded(mine) == unbounded(theirs)
        assert mine.get_payload(decode=True) == theirs.get_payload(decode=True) or mine.is_multipart()


# -- outbox -------------------------------------------------------------------------------------------------


def test_outbox_email_writes_a_parseable_eml_named_after_the_key(tmp_path: Path) -> None:
    """The .eml file is the whole MIME message, with the .ics when there is one."""
    email = an_email(attachments=(Attachment("inbjudan.ics", "text/calendar; method=REQUEST", ICS),))
    receipt = OutboxEmail(tmp_path, sender=SENDER).send(email)

    path = tmp_path / f"{safe_key(email.key)}.eml"
    assert receipt.provider_id == f"outbox:{path.name}"
    parsed = parse(path.read_bytes())
    assert parsed["Subject"] == email.subject
    assert "Älvsbacka" in parsed.get_body(("plain",)).get_content()
    assert [a.get_filename() for a in parsed.iter_attachments()] == ["inbjudan.ics"]


def test_outbox_email_sent_twice_with_one_key_leaves_one_unchanged_file(tmp_path: Path) -> None:
    """Idempotent by key: the second send finds the file and does not write again."""
    outbox = OutboxEmail(tmp_path, sender=SENDER)
    first = outbox.send(an_email("same"))
    content = (tmp_path / "same.eml").read_bytes()
    second = outbox.send(an_email("same", subject="Ändrad"))

    assert first == second
    assert [p.name for p in tmp_path.iterdir()] == ["same.eml"]  # no temp files left either
    assert (tmp_path / "same.eml").read_bytes() == content


def test_outbox_sms_writes_json_with_segments_once_per_key(tmp_path: Path) -> None:
    """The JSON record says to whom, what, under which key and in how many segments."""
    outbox = OutboxSms(tmp_path)
    receipt = outbox.send(an_sms("sms-1", status_callback="/twilio/status"))
    outbox.send(an_sms("sms-1"))

    record = json.loads((tmp_path / "sms-1.json").read_text(encoding="utf-8"))
    assert receipt.provider_id == "outbox:sms-1.json"
    assert list(tmp_path.iterdir()) == [tmp_path / "sms-1.json"]
    assert record["to"] == PHONE and record["body"].startswith("Hej Åsa!") and record["key"] == "sms-1"
    assert (record["segments"], record["encoding"]) == (1, "GSM-7")
    assert record["status_callback"] == "/twilio/status" and record["created"]


def test_outbox_keys_with_unsafe_characters_get_distinct_safe_file_names() -> None:
    """Slashes and colons never reach the file system, and two keys never share a file."""
    assert safe_key("invite-anna") == "invite-anna"
    assert "/" not in safe_key("rule/../../etc:passwd")
    assert safe_key("a/b") != safe_key("a_b")
    assert len(safe_key("x" * 500)) < 140


def test_phone_numbers_are_masked_for_logs() -> None:
    """Enough digits to tell numbers apart, not enough to call one."""
    assert mask_phone("+46701234567") == "+4670****567"


# -- SMTP ---------------------------------------------------------------------------------------------------


@pytest.fixture(params=["pipelining", "one command at a time"])
def smtp_server(request: pytest.FixtureRequest) -> Iterator[SmtpServer]:
    """The SMTP tests run against a server that offers PIPELINING and one that does not: the channel
    sends MAIL, RCPT and DATA in one write to the first, one by one to the second."""
    server = SmtpServer(pipelining=request.param == "pipelining").start()
    yield server
    server.stop()


def test_smtp_delivers_the_message_to_a_real_smtp_server(smtp_server: SmtpServer) -> None:
    """The server gets the envelope and a MIME message whose Message-ID is the receipt's provider id."""
    channel = smtp_channel(smtp_server)
    receipt = channel.send(an_email())
    channel.close()

    (received,) = smtp_server.messages
    assert received.mail_from == "kallelse@example.org"
    assert received.rcpt_tos == ["asa.oberg@example.se"]
    parsed = received.parsed()
    assert parsed["Message-ID"] == receipt.provider_id
    assert parsed["Subject"] == an_email().subject
    assert "Älvsbacka" in parsed.get_body(("plain",)).get_content()


def test_smtp_sends_to_a_swedish_domain_in_idna_and_refuses_swedish_letters_before_the_at(
    smtp_server: SmtpServer,
) -> None:
    """RCPT carries the domain as its To header does (`xn--…`); a local part that needs SMTPUTF8 is a
    permanent error before anything is sent."""
    channel = smtp_channel(smtp_server)
    channel.send(an_email(to="asa@räksmörgås.se"))
    with pytest.raises(PermanentDeliveryError):
        channel.send(an_email("other", to="åsa@example.se"))
    channel.close()

    (received,) = smtp_server.messages
    assert received.rcpt_tos == ["asa@xn--rksmrgs-5wao1o.se"]


def test_smtp_reuses_one_connection_for_several_messages(smtp_server: SmtpServer) -> None:
    """Three messages, one connection: the server sees a single session."""
    channel = smtp_channel(smtp_server)
    for n in range(3):
        channel.send(an_email(f"key-{n}"))
    channel.close()

    assert len(smtp_server.messages) == 3
    assert smtp_server.connections == 1
    assert smtp_server.handler.noops == 0  # no round trip to ask whether the connection is still there


def test_smtp_reconnects_once_when_the_server_closed_the_connection(smtp_server: SmtpServer) -> None:
    """A reused connection the server hung up on shows at MAIL FROM, before DATA, when the server cannot
    have the message: it goes over a new connection at once, and the server has it exactly once."""
    channel = smtp_channel(smtp_server)
    channel.send(an_email("before"))
    smtp_server.drop_connections()
    channel.send(an_email("after"))
    channel.close()

    assert [m.parsed()["Message-ID"] for m in smtp_server.messages] == [
        message_id("before", "example.org"),
        message_id("after", "example.org"),
    ]
    assert smtp_server.connections == 2


def test_smtp_reconnects_once_when_the_server_closes_a_reused_connection_with_421(
    smtp_server: SmtpServer,
) -> None:
    """421 at MAIL FROM ("closing the channel", e.g. a per-connection limit) on a reused connection: the
    message goes over a new connection at once. On a new connection 421 stays a transient error."""
    channel = smtp_channel(smtp_server)
    channel.send(an_email("first"))
    smtp_server.reject_next(421, at="mail")
    channel.send(an_email("second"))
    channel.close()
    assert [m.parsed()["Message-ID"] for m in smtp_server.messages] == [
        message_id("first", "example.org"),
        message_id("second", "example.org"),
    ]
    assert smtp_server.connections == 2

    fresh = smtp_channel(smtp_server)
    smtp_server.reject_next(421, at="mail")
    with pytest.raises(TransientDeliveryError) as caught:
        fresh.send(an_email("third"))
    fresh.close()
    assert caught.value.code == "421" and len(smtp_server.messages) == 2


def test_smtp_logs_in_when_a_user_is_given(smtp_server: SmtpServer) -> None:
    """SMTP_USER/SMTP_PASSWORD become an AUTH on connect."""
    channel = smtp_channel(smtp_server, user="kallelse", password=SMTP_PASSWORD)
    channel.send(an_email())
    channel.close()

    assert smtp_server.logins == ["kallelse"]


def test_smtp_wrong_password_is_a_permanent_error(smtp_server: SmtpServer) -> None:
    """535 is a 5xx: retrying with the same password cannot help."""
    channel = smtp_channel(smtp_server, user="kallelse", password="fel")
    with pytest.raises(PermanentDeliveryError) as caught:
        channel.send(an_email())
    assert caught.value.code == "535"


@pytest.mark.parametrize(
    ("code", "stage", "error"),
    [
        (451, "data", TransientDeliveryError),
        (451, "rcpt", TransientDeliveryError),  # greylisting
        (452, "mail", TransientDeliveryError),
        (550, "rcpt", PermanentDeliveryError),
        (554, "data", PermanentDeliveryError),
        (553, "mail", PermanentDeliveryError),
    ],
)
def test_smtp_4xx_is_transient_and_5xx_permanent_at_every_stage(
    smtp_server: SmtpServer, code: int, stage: str, error: type[Exception]
) -> None:
    """The SMTP code decides, wherever it comes; the connection stays usable for the next message."""
    channel = smtp_channel(smtp_server)
    smtp_server.reject_next(code, at=stage)  # type: ignore[arg-type]

    with pytest.raises(error) as caught:
        channel.send(an_email("rejected"))
    channel.send(an_email("next"))
    channel.close()

    assert caught.value.code == str(code)  # type: ignore[attr-defined]
    assert [m.parsed()["Message-ID"] for m in smtp_server.messages] == [message_id("next", "example.org")]
    assert smtp_server.connections == 1


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the openssl command line."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture(params=["starttls", "tls"])
def tls_smtp_server(request: pytest.FixtureRequest, certificate: tuple[Path, Path]) -> Iterator[SmtpServer]:
    """An aiosmtpd server that insists on STARTTLS, or speaks TLS from the first byte."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    server = SmtpServer(request.param, context).start()
    yield server
    server.stop()


def test_smtp_encrypts_with_starttls_or_implicit_tls_and_then_logs_in(
    tls_smtp_server: SmtpServer, certificate: tuple[Path, Path]
) -> None:
    """SMTP_SECURITY=starttls upgrades a plain connection, tls wraps it at once; certificates are checked."""
    client_context = ssl.create_default_context(cafile=str(certificate[0]))
    channel = smtp_channel(
        tls_smtp_server, security=tls_smtp_server.security, ssl_context=client_context,
        user="kallelse", password=SMTP_PASSWORD,
    )  # fmt: skip
    channel.send(an_email())
    channel.close()

    assert len(tls_smtp_server.messages) == 1 and tls_smtp_server.logins == ["kallelse"]


def test_smtp_refuses_a_server_whose_certificate_it_cannot_verify(tls_smtp_server: SmtpServer) -> None:
    """An unverifiable certificate is not delivered to; the error is transient (it may be a hiccup)."""
    channel = smtp_channel(tls_smtp_server, security=tls_smtp_server.security)
    with pytest.raises(TransientDeliveryError):
        channel.send(an_email())
    assert tls_smtp_server.messages == []


def test_smtp_unreachable_server_is_a_transient_error() -> None:
    """Nothing listening: connection refused, worth retrying later."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        channel = SmtpChannel(
            "127.0.0.1", port, security="none", sender=SENDER, timeout=2.0, local_hostname="t"
        )
        with pytest.raises(TransientDeliveryError):
            channel.send(an_email())


def test_smtp_server_that_never_greets_times_out_as_a_transient_error() -> None:
    """A server that accepts the connection but never speaks is cut off at the timeout."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()  # the kernel accepts; nobody answers
        channel = SmtpChannel(
            "127.0.0.1",
            sock.getsockname()[1],
            security="none",
            sender=SENDER,
            timeout=0.2,
            local_hostname="t",
        )
        with pytest.raises(TransientDeliveryError) as caught:
            channel.send(an_email())
    assert caught.value.code == "timeout"


def test_smtp_sends_mail_rcpt_and_data_without_waiting_when_the_server_offers_pipelining() -> None:
    """A server offering PIPELINING that answers nothing until it has read MAIL, RCPT and DATA: the
    channel must have sent all three before its first reply, or it would wait out its timeout."""
    server = socket.create_server(("127.0.0.1", 0))
    got: list[bytes] = []

    def talk() -> None:
        conn, _ = server.accept()
        with conn, conn.makefile("rb") as lines:
            conn.sendall(b"220 strict ESMTP\r\n")
            lines.readline()
            conn.sendall(b"250-strict\r\n250 PIPELINING\r\n")
            got.extend(lines.readline() for _ in range(3))  # nothing answered until DATA has come
            conn.sendall(b"250 ok\r\n250 ok\r\n354 go ahead\r\n")
            while (line := lines.readline()) != b".\r\n":
                got.append(line)
            conn.sendall(b"250 queued\r\n")
            lines.readline()  # QUIT
            conn.sendall(b"221 bye\r\n")

    thread = threading.Thread(target=talk, daemon=True)
    thread.start()
    channel = SmtpChannel("127.0.0.1", server.getsockname()[1], security="none", sender=SENDER, timeout=2)
    channel.send(an_email())
    channel.close()
    thread.join(2)
    server.close()
    assert got[:3] == [
        b"MAIL FROM:<kallelse@example.org>\r\n",
        b"RCPT TO:<asa.oberg@example.se>\r\n",
        b"DATA\r\n",
    ]
    assert parse(b"".join(got[3:]))["Message-ID"] == message_id(an_email().key, "example.org")


def test_smtp_lines_that_begin_with_a_dot_arrive_as_written(smtp_server: SmtpServer) -> None:
    """Dot-stuffing (RFC 5321 4.5.2): a line of the body that begins with "." gets a second one on the
    wire, which the server takes off again; a lone "." does not end the message early."""
    text = ".\n..två punkter\n.en punkt\nslut\n.\n"
    channel = smtp_channel(smtp_server)
    channel.send(an_email(text=text, html=f"<pre>\n{text}</pre>\n"))
    channel.close()

    (received,) = smtp_server.messages
    body = received.parsed()
    assert body.get_body(("plain",)).get_content().replace("\r\n", "\n") == text
    assert body.get_body(("html",)).get_content().replace("\r\n", "\n") == f"<pre>\n{text}</pre>\n"


@pytest.mark.parametrize(
    ("before", "maybe_sent", "received"),
    [("data", False, 0), ("final reply", True, 1)],
    ids=["MAIL", "after DATA"],
)
def test_an_smtp_timeout_before_data_is_a_safe_retry_and_after_data_is_maybe_sent(
    before: str, maybe_sent: bool, received: int
) -> None:
    """Silence at MAIL FROM: the server cannot have the message (plain transient). Silence after the body:
    it may have it, so `maybe_sent` (issue 9, 7)."""
    server = SilentSmtp(before)  # type: ignore[arg-type]
    try:
        channel = SmtpChannel("127.0.0.1", server.port, security="none", sender=SENDER, timeout=0.3)
        with pytest.raises(TransientDeliveryError) as caught:
            channel.send(an_email())
    finally:
        server.stop()
    assert (caught.value.code, caught.value.maybe_sent, server.received) == ("timeout", maybe_sent, received)


# -- Twilio -------------------------------------------------------------------------------------------------


def test_twilio_posts_to_from_body_and_status_callback_and_returns_the_sid(twilio_server: FakeTwilio) -> None:
    """The real twilio client sends Twilio's form fields; a relative callback is resolved on PUBLIC_URL."""
    channel = twilio_channel(twilio_server, status_callback_base="https://kallelse.example.org")
    receipt = channel.send(an_sms(status_callback="/twilio/status?id=7"))

    (sent,) = twilio_server.messages
    assert sent.form == {
        "To": PHONE,
        "From": "+46700000000",
        "Body": "Hej Åsa! Bussen går 09:00 från Wood Hotel.",
        "StatusCallback": "https://kallelse.example.org/twilio/status?id=7",
    }
    assert receipt.provider_id == sent.sid and sent.sid.startswith("SM") and len(sent.sid) == 34
    assert receipt.status == "queued"


def test_twilio_sends_the_same_request_through_urllib3_and_through_requests_behind_a_proxy(
    twilio_server: FakeTwilio, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lean urllib3 client and the library's requests client (used when a proxy is configured) post the
    same form with the same credentials, and both read the answer alike."""
    direct = twilio_channel(twilio_server).send(an_sms(status_callback="https://cb.example.org/s?id=1"))
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    proxied_channel = twilio_channel(twilio_server)
    proxied = proxied_channel.send(an_sms(status_callback="https://cb.example.org/s?id=1"))

    assert type(proxied_channel.http).__name__ == "_RequestsClient"
    first, second = twilio_server.messages
    assert first.form == second.form and first.form["StatusCallback"] == "https://cb.example.org/s?id=1"
    assert (direct.provider_id, proxied.provider_id) == (first.sid, second.sid) and first.sid != second.sid
    found = twilio_channel(twilio_server).find_sent(an_sms(), datetime.now(UTC) - timedelta(minutes=5))
    assert found in {first.sid, second.sid}


def test_twilio_uses_the_messaging_service_when_one_is_configured(twilio_server: FakeTwilio) -> None:
    """With only a Messaging Service SID, no From is sent and Twilio answers 'accepted'."""
    channel = twilio_channel(twilio_server, from_number=None, messaging_service_sid="MG" + "0" * 32)
    receipt = channel.send(an_sms())

    (sent,) = twilio_server.messages
    assert sent.form["MessagingServiceSid"] == "MG" + "0" * 32 and "From" not in sent.form
    assert receipt.status == "accepted"


@pytest.mark.parametrize(
    ("reply", "code"), [(429, "20429"), (503, "503"), (500, "500"), (Reply(400, 21611), "21611")]
)
def test_twilio_busy_or_failing_server_is_a_transient_error(
    twilio_server: FakeTwilio, reply: int | Reply, code: str
) -> None:
    """429 (20429), 5xx and a full From queue are worth retrying; the next attempt goes through."""
    channel = twilio_channel(twilio_server)
    twilio_server.script(PHONE, [reply])

    with pytest.raises(TransientDeliveryError) as caught:
        channel.send(an_sms())
    channel.send(an_sms())

    assert caught.value.code == code
    assert len(twilio_server.requests) == 2 and len(twilio_server.messages) == 1


def test_twilio_invalid_number_is_a_permanent_error_with_code_21211(twilio_server: FakeTwilio) -> None:
    """Twilio's 21211 means the number can never work."""
    with pytest.raises(PermanentDeliveryError) as caught:
        twilio_channel(twilio_server).send(an_sms(to="0701234567"))
    assert caught.value.code == "21211"
    assert twilio_server.messages == []


def test_twilio_opted_out_number_is_a_permanent_error_with_code_21610(twilio_server: FakeTwilio) -> None:
    """A recipient who texted STOP stays unreachable until they text START."""
    twilio_server.opt_out(PHONE)
    with pytest.raises(PermanentDeliveryError) as caught:
        twilio_channel(twilio_server).send(an_sms())
    assert caught.value.code == "21610"


def test_twilio_wrong_credentials_are_a_permanent_error(twilio_server: FakeTwilio) -> None:
    """401 / 20003: a configuration problem no retry can fix."""
    channel = TwilioSms(
        twilio_server.account_sid, "wrong", from_number="+46700000000", api_url=twilio_server.url
    )
    with pytest.raises(PermanentDeliveryError) as caught:
        channel.send(an_sms())
    assert caught.value.code == "20003"


def test_twilio_server_that_does_not_answer_in_time_is_a_transient_maybe_sent_error(
    twilio_server: FakeTwilio,
) -> None:
    """A read timeout is transient, flagged as possibly accepted so the row gets reconciled, not resent."""
    twilio_server.script(None, [Reply(201, delay=2.0)])
    with pytest.raises(TransientDeliveryError) as caught:
        twilio_channel(twilio_server, timeout=0.2).send(an_sms())
    assert caught.value.code == "timeout" and caught.value.maybe_sent


def test_twilio_server_that_hangs_up_is_a_transient_maybe_sent_error(twilio_server: FakeTwilio) -> None:
    """The request went out and the line dropped: as ambiguous as a timeout."""
    twilio_server.script(None, [Reply(hang_up=True)])
    with pytest.raises(TransientDeliveryError) as caught:
        twilio_channel(twilio_server).send(an_sms())
    assert caught.value.code == "disconnected" and caught.value.maybe_sent


def test_twilio_unreachable_server_is_a_transient_network_error() -> None:
    """Connection refused: nothing reached Twilio, so a plain retry is safe."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with pytest.raises(TransientDeliveryError) as caught:
            TwilioSms("AC" + "0" * 32, "t", from_number="+46700000000", api_url=url, timeout=2).send(an_sms())
    assert caught.value.code == "network"


@pytest.fixture
def https_twilio(certificate: tuple[Path, Path]) -> Iterator[FakeTwilio]:
    """The Twilio-like server over HTTPS with a self-signed certificate for 127.0.0.1."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    server = FakeTwilio().start(tls=context)
    yield server
    server.stop()


def test_twilio_over_https_refuses_a_certificate_it_cannot_verify_before_sending_anything(
    https_twilio: FakeTwilio,
) -> None:
    """An unverifiable certificate is "network" (nothing reached Twilio: a plain retry is safe)."""
    with pytest.raises(TransientDeliveryError) as caught:
        twilio_channel(https_twilio).send(an_sms())
    assert caught.value.code == "network" and not caught.value.maybe_sent
    assert https_twilio.requests == []


def test_twilio_over_https_sends_when_the_environment_names_the_ca_bundle_as_for_requests(
    https_twilio: FakeTwilio, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate[0]))
    receipt = twilio_channel(https_twilio).send(an_sms())
    assert [m.sid for m in https_twilio.messages] == [receipt.provider_id]


def test_twilio_messages_can_be_listed_by_recipient_and_date_sent(twilio_server: FakeTwilio) -> None:
    """The list endpoint that reconciliation uses: filters by To and DateSent>, pages like Twilio."""
    channel = twilio_channel(twilio_server)
    sids = [channel.send(an_sms(f"k{n}")).provider_id for n in range(3)]
    channel.send(an_sms("other", to="+46709999999"))
    since = datetime.now(UTC) - timedelta(minutes=5)

    found = channel.client.messages.list(to=PHONE, date_sent_after=since, page_size=2)
    later = channel.client.messages.list(to=PHONE, date_sent_after=datetime.now(UTC) + timedelta(hours=1))

    assert sorted(m.sid for m in found) == sorted(sids)
    assert {m.status for m in found} == {"sent"}
    assert later == []


def test_twilio_logs_no_full_phone_number_or_body_at_info(
    twilio_server: FakeTwilio, caplog: pytest.LogCaptureFixture
) -> None:
    """Logs may be shipped anywhere; they carry masked numbers and no message text."""
    with caplog.at_level(logging.DEBUG):
        twilio_channel(twilio_server).send(an_sms())
    infos = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)
    assert PHONE not in infos and "Bussen" not in infos and mask_phone(PHONE) in infos


# -- factory ------------------------------------------------------------------------------------------------


def settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, **values)  # type: ignore[call-arg]


def test_factory_defaults_to_outbox_channels_under_data_dir(tmp_path: Path) -> None:
    """With no backends configured, emails land in outbox/email and texts in outbox/sms."""
    config = settings(tmp_path)
    email_channel(config).send(an_email("e1"))
    sms_channel(config).send(an_sms("s1"))

    assert (tmp_path / "outbox" / "email" / "e1.eml").is_file()
    assert (tmp_path / "outbox" / "sms" / "s1.json").is_file()


def test_factory_smtp_channel_delivers_with_the_configured_sender(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    """EMAIL_BACKEND=smtp builds an SmtpChannel from the SMTP_* settings."""
    config = settings(
        tmp_path,
        email_backend="smtp",
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        smtp_security="none",
        smtp_user="kallelse",
        smtp_password=SMTP_PASSWORD,
        email_from=SENDER,
    )
    channel = email_channel(config)
    channel.send(an_email())
    channel.close()

    assert smtp_server.messages[0].parsed()["From"] == SENDER
    assert smtp_server.logins == ["kallelse"]


def test_factory_twilio_channel_talks_to_twilio_api_url(tmp_path: Path, twilio_server: FakeTwilio) -> None:
    """SMS_BACKEND=twilio with TWILIO_API_URL reaches the server at that URL, callbacks on PUBLIC_URL."""
    config = settings(
        tmp_path,
        sms_backend="twilio",
        twilio_account_sid=twilio_server.account_sid,
        twilio_auth_token=twilio_server.auth_token,
        twilio_from="+46700000000",
        twilio_api_url=twilio_server.url,
        public_url="https://kallelse.example.org",
    )
    sms_channel(config).send(an_sms(status_callback="/twilio/status"))

    assert twilio_server.messages[0].status_callback == "https://kallelse.example.org/twilio/status"


def test_factory_twilio_without_credentials_or_sender_names_every_missing_setting(tmp_path: Path) -> None:
    """The ConfigError lists each setting to fix, by its environment name."""
    with pytest.raises(ConfigError) as caught:
        sms_channel(settings(tmp_path, sms_backend="twilio"))
    message = str(caught.value)
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM", "TWILIO_MESSAGING_SERVICE_SID"):
        assert name in message
