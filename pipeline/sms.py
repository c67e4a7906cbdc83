"""SMS text: GSM 03.38 segment counting, and making a text travel as GSM-7 where it honestly can."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")  # each is ESC + a septet: two units


@dataclass(frozen=True)
class Segments:
    encoding: Literal["GSM-7", "UCS-2"]
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    segments: int


def sms_segments(text: str) -> Segments:
    """How a text travels: GSM-7 when every character fits, else UCS-2 (UTF-16, emoji count twice)."""
    if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text):
        units = sum(2 if c in GSM7_EXTENSION else 1 for c in text)
        return Segments("GSM-7", units, _count(units, single=160, multi=153))
    units = len(text.encode("utf-16-le")) // 2
    return Segments("UCS-2", units, _count(units, single=70, multi=67))


def _count(units: int, *, single: int, multi: int) -> int:
    # Concatenated texts give up 7 septets (or 3 UTF-16 units) of each part to the UDH header.
    if units <= single:
        return 1
    return -(-units // multi)


# Typography that is right in an email but would push a whole SMS into UCS-2 (70 characters a part).
_GSM_PLAIN = str.maketrans(
    {"–": "-", "—": "-", "‘": "'", "’": "'", "“": '"', "”": '"', "…": "...", "\u00a0": " ", "\u2011": "-"}
)


def sms_text(text: str) -> str:
    """Template lines joined with spaces, a blank line a line break; typography and accents made GSM-7."""
    paragraphs = re.split(r"\n\s*\n", gsm_friendly(text.strip()))
    return "\n".join(one_line(p) for p in paragraphs if p.strip())


def gsm_friendly(text: str) -> str:
    """Dashes and quotes made plain, and a letter outside GSM-7 written without its accent when that fits.

    One "Zoë" would otherwise turn the whole text into UCS-2 and a one-part SMS into three. Scripts with
    no GSM-7 form (Cyrillic, emoji) are left alone: they are sent as UCS-2.
    """
    out = []
    for char in text.translate(_GSM_PLAIN):
        if char not in GSM7_BASIC and char not in GSM7_EXTENSION:
            base = "".join(c for c in unicodedata.normalize("NFD", char) if not unicodedata.combining(c))
            char = base if base and all(c in GSM7_BASIC for c in base) else char
        out.append(char)
    return "".join(out)


def one_line(text: str) -> str:
    """A subject (or an SMS paragraph) is a single line, however the template wraps it."""
    return " ".join(text.split())
