"""Read a reply e-mail for `kallelse inbox`: who sent it, whether a machine did, the new text above quotes.

Pure: bytes in, a `MailReply` out; never raises on what arrives in a mailbox. A body is decoded with its
declared charset if the bytes fit it, else as UTF-8 if they fit that, else with errors="replace" in the
declared charset, or Windows-1252 when that is unknown or "us-ascii": Swedish mail that is not UTF-8 is
almost always Latin-1 or its Windows superset.
Message ids keep their angle brackets, as in the Message-ID header we send.
"""

from __future__ import annotations

import codecs
import email
import email.policy
import re
from dataclasses import dataclass, field
from email.message import Message
from email.utils import getaddresses
from html.parser import HTMLParser


@dataclass(frozen=True)
class MailReply:
    """The parts of a reply that `kallelse inbox` acts on."""

    sender: str | None
    subject: str
    automatic: bool
    answer_text: str
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)


_AUTO_SUBJECTS = (
    "autosvar", "frånvaro", "automatiskt svar", "out of office", "automatic reply", "auto-reply", "autoreply",
    "abwesenheit", "auto:",
)  # fmt: skip
_AUTO_PRECEDENCE = frozenset({"auto_reply", "bulk", "junk"})
_MSG_ID = re.compile(r"<[^<>\s]+>")


def read_reply(raw: bytes) -> MailReply:
    """Parse one raw RFC 5322 message into a `MailReply`."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    subject = _header(msg, "Subject")
    in_reply_to = _MSG_ID.findall(_header(msg, "In-Reply-To"))
    return MailReply(
        sender=_sender(_header(msg, "From")),
        subject=subject,
        automatic=_automatic(msg, subject),
        answer_text=first_answer_lines(_body_text(msg)),
        in_reply_to=in_reply_to[0] if in_reply_to else None,
        references=_MSG_ID.findall(_header(msg, "References")),
    )


def _header(msg: Message, name: str) -> str:
    """A header as clean text; malformed headers read as empty rather than raising."""
    try:
        value = msg.get(name)
    except Exception:  # the header parser has raised on malformed input before; a bad header is no answer
        return ""
    return "" if value is None else " ".join(_unescape(str(value)).split())


def _unescape(text: str) -> str:
    """Undo surrogate escapes the parser leaves for undecodable bytes: UTF-8 if it is, else replaced."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeError:
        return text.encode("utf-8", "replace").decode("utf-8")


def _sender(from_header: str) -> str | None:
    addresses = [addr for _, addr in getaddresses([from_header]) if "@" in addr]
    return addresses[0].lower() if addresses else None


def _automatic(msg: Message, subject: str) -> bool:
    auto_submitted = _header(msg, "Auto-Submitted").split(";")[0].strip().lower()
    return (
        auto_submitted not in ("", "no")
        or bool(_header(msg, "X-Autoreply") or _header(msg, "X-Autorespond"))
        or _header(msg, "Precedence").lower() in _AUTO_PRECEDENCE
        or subject.lower().startswith(_AUTO_SUBJECTS)
        or msg.get_content_type() == "multipart/report"  # bounces and read receipts
    )


def _body_text(msg: Message) -> str:
    """The first inline text/plain part, else the first text/html part with its tags stripped."""
    parts = [p for p in msg.walk() if not p.is_multipart() and p.get_content_disposition() != "attachment"]
    for subtype, convert in (("plain", str), ("html", html_to_text)):
        for part in parts:
            if part.get_content_type() == f"text/{subtype}":
                return convert(_decode(part))
    return ""


def _decode(part: Message) -> str:
    try:
        payload = part.get_payload(decode=True)
        declared = part.get_content_charset()
    except Exception:  # broken transfer encodings or parameters: treat as an empty part
        return ""
    return _decode_bytes(payload, declared) if isinstance(payload, bytes) else ""


def _decode_bytes(payload: bytes, declared: str | None) -> str:
    """The declared charset if it fits, else UTF-8 if it fits, else the fallback with replacements."""
    for charset in (declared, "utf-8"):
        try:
            return payload.decode(charset) if charset else payload.decode("utf-8")
        except (LookupError, UnicodeError):  # unknown names, and bytes-to-bytes codecs like "base64"
            continue
    try:  # a wrong "us-ascii" label on 8-bit mail is common; Windows-1252 reads more of it than ASCII
        if declared and codecs.lookup(declared).name != "ascii":
            return payload.decode(declared, "replace")
    except (LookupError, UnicodeError):
        pass
    return payload.decode("cp1252", "replace")


class _TextExtractor(HTMLParser):
    """Visible text of an HTML body; a quote (<blockquote>, Gmail's quote div) becomes a ">" line."""

    _BREAKS = frozenset({"br", "p", "div", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "table"})
    _HIDDEN = frozenset({"script", "style", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = " ".join(value or "" for name, value in attrs if name in ("class", "id"))
        if tag == "blockquote" or "gmail_quote" in classes or "divRplyFwdMsg" in classes:
            self.chunks.append("\n>\n")
        elif tag in self._HIDDEN:
            self._hidden += 1
        elif tag in self._BREAKS:
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in self._BREAKS:
            self.chunks.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.chunks.append(data)


def html_to_text(html: str) -> str:
    """Strip tags, keep line breaks, mark quoted blocks with ">" so the quote cut finds them."""
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # HTMLParser is lenient, but a reply must never crash the inbox
        pass
    return "".join(parser.chunks)


_QUOTE_LINE = re.compile(
    r"^(>|-{2,}\s*(original message|ursprungligt meddelande|originalmeddelande|forwarded message|"
    r"vidarebefordrat meddelande)|_{10,}\s*$|--\s*$|"
    r"(sent from|skickat från|get outlook for|hämta outlook)\b)",
    re.IGNORECASE,
)
_WROTE = re.compile(r"\b(wrote|skrev|schrieb)\b", re.IGNORECASE)
_ATTRIBUTION_START = re.compile(r"^(on|den|am)\b", re.IGNORECASE)
_OUTLOOK_FROM = re.compile(r"^\**(från|from|von)\s*:", re.IGNORECASE)
_OUTLOOK_NEXT = re.compile(
    r"^\**(skickat|sent|datum|date|till|to|ämne|subject|gesendet|an|betreff)\s*:", re.IGNORECASE
)


def first_answer_lines(text: str, n: int = 3) -> str:
    """The first `n` non-empty lines above the first quote marker, stripped and joined by newlines."""
    lines = [" ".join(line.split()) for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    answer: list[str] = []
    for index, line in enumerate(lines):
        if _starts_quote(line, lines[index + 1 : index + 4]):
            break
        if line:
            answer.append(line)
        if len(answer) == n:
            break
    return "\n".join(answer)


def _starts_quote(line: str, following: list[str]) -> bool:
    if _QUOTE_LINE.match(line):
        return True
    if _OUTLOOK_FROM.match(line):  # Outlook's header block: "Från: …" then "Skickat: …", "Till: …"
        return any(_OUTLOOK_NEXT.match(later) for later in following)
    return _is_attribution(line, following[0] if following else "")


def _is_attribution(line: str, next_line: str) -> bool:
    """ "On … wrote:" / "Den … skrev …:" / "7 okt. 2021 kl. 09:00 skrev …:", often wrapped onto two lines."""
    starts = bool(_ATTRIBUTION_START.match(line))
    if _WROTE.search(line) and (starts or any(c.isdigit() for c in line)):
        return line.endswith(":") or next_line.endswith(":")
    return starts and bool(_WROTE.search(next_line)) and next_line.endswith(":")
