"""Delegates: the validated, normalised people an event talks to, and the CSV import that makes them."""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from pipeline.errors import DelegateImportError

Rsvp = Literal["yes", "no", "none"]


@dataclass(frozen=True)
class Delegate:
    """One delegate as the planner and templates see them. Phones are E.164, emails lower-cased domain."""

    id: str
    name: str
    email: str | None = None
    phone: str | None = None
    language: Literal["sv", "en"] = "sv"
    organisation: str = ""
    role: str = "official"
    stop: str | None = None
    dinner: bool | None = None
    rsvp: Rsvp = "none"
    sms_opt_out: bool = False
    email_opt_out: bool = False
    survey_answered: bool = False
    dietary: str = ""  # from the RSVP page
    comment: str = ""
    phone_bad: bool = False  # Twilio said the number cannot get SMS; messages go by email where allowed

    @property
    def first_name(self) -> str:
        return self.name.split()[0] if self.name.strip() else self.name


# --- CSV import ---------------------------------------------------------------------------------
# A pure parser: bytes in, delegates and organiser-readable errors out. What to do with a partly bad
# file (store the good rows, --strict, --dry-run) is the caller's decision; this module only reports.

DEFAULT_REGION = "SE"  # national numbers such as 070-123 45 67 are Swedish

# Lower-cased header text -> column. Swedish aliases because Swedish organisers write Swedish headers.
HEADER_ALIASES: dict[str, str] = {
    "id": "id",
    "name": "name",
    "namn": "name",
    "email": "email",
    "e-mail": "email",
    "e-post": "email",
    "epost": "email",
    "phone": "phone",
    "mobile": "phone",
    "telefon": "phone",
    "mobil": "phone",
    "language": "language",
    "språk": "language",
    "organisation": "organisation",
    "organization": "organisation",
    "role": "role",
    "roll": "role",
    "stop": "stop",
    "hållplats": "stop",
    "dinner": "dinner",
    "middag": "dinner",
    "rsvp": "rsvp",
    "osa": "rsvp",
}
COLUMNS = ("id", "name", "email", "phone", "language", "organisation", "role", "stop", "dinner", "rsvp")
YES = frozenset({"yes", "y", "ja", "j", "true", "1", "x"})
NO = frozenset({"no", "n", "nej", "false", "0"})

# What the database holds per column (store/models.py; tests check they agree). SQLite would store longer
# text, PostgreSQL refuses it: the import checks, so a file is stored alike on both.
MAX_LENGTHS = {"id": 64, "name": 200, "email": 254, "phone": 20, "organisation": 200, "role": 50, "stop": 50}

Parsers = dict[str, Callable[[str], Any]]
Seen = dict[tuple[str, str], int]  # (column, comparable value) -> line of the accepted row


@dataclass(frozen=True)
class ImportResult:
    """What a delegate file held: the good rows in file order, and `FILE:LINE: column: reason` per problem."""

    delegates: list[Delegate]
    errors: list[str]
    lines: dict[str, int]  # delegate id -> line in the file, so later steps can point back at the row

    @property
    def ok(self) -> bool:
        return not self.errors


class _Invalid(ValueError):
    """One cell's value is wrong; the message is the reason shown to the organiser."""


@dataclass(frozen=True)
class _Header:
    source: str
    width: int  # cells in the header row
    index: dict[str, int]  # column -> position in the row
    written: dict[str, str]  # column -> header text as the file spells it, so errors match the sheet

    def label(self, column: str) -> str:
        return self.written.get(column, column)


def read_delegates(path: Path, stops: Collection[str]) -> ImportResult:
    """Read and parse a delegate file; errors name the path as given."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DelegateImportError(f"{path}: cannot read the file ({e.strerror})") from e
    return parse_delegates(data, str(path), stops)


def parse_delegates(data: bytes, source: str, stops: Collection[str]) -> ImportResult:
    """Parse a delegate CSV (comma or semicolon, UTF-8 or Windows-1252); raises only if it is unusable."""
    text = _decode(data, source)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_sniff_delimiter(text))
    state = _Import(source, _parsers(stops))
    line = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:  # a quote in the wrong place, a cell of over 128 KiB: this row only
            state.result.errors.append(f"{source}:{line}: row: cannot be read as CSV ({e}); check its quotes")
            line = reader.line_num + 1
            continue
        if any(cell.strip() for cell in row):  # blank lines and Excel's ";;;;" rows are skipped
            state.add(row, line)
        line = reader.line_num + 1  # the next record starts after this one, quoted newlines included
    if state.header is None:
        raise DelegateImportError(
            f"{source}: the file is empty; expected a header row ({', '.join(COLUMNS)})"
        )
    return state.result


def parse_one(values: Mapping[str, str], source: str, stops: Collection[str]) -> ImportResult:
    """One delegate typed into a form or given as options, checked exactly as a CSV row would be
    (the errors name `source` and the column)."""
    columns = list(COLUMNS)
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";")
    writer.writerow(columns)
    writer.writerow([values.get(c, "") for c in columns])
    return parse_delegates(out.getvalue().encode("utf-8"), source, stops)


def _decode(data: bytes, source: str) -> str:
    try:
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # Excel's "Unicode text"
            return data.decode("utf-16")
        return data.decode("utf-8-sig")  # also strips the BOM Excel writes for "CSV UTF-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252")  # what Swedish Excel saves as plain "CSV"
    except UnicodeDecodeError as e:
        raise DelegateImportError(
            f"{source}: cannot read the file: it is neither UTF-8 nor Windows-1252 text"
        ) from e


def _sniff_delimiter(text: str) -> str:
    lines = text.lstrip("\r\n").splitlines()
    first_line = lines[0] if lines else ""
    return max((",", ";", "\t"), key=first_line.count)  # a tie (e.g. a single column) means comma


def _read_header(row: list[str], source: str, line: int) -> _Header:
    cells = [cell.strip() for cell in row]
    index: dict[str, int] = {}
    for position, cell in enumerate(cells):
        column = HEADER_ALIASES.get(cell.lower())
        if column in index:
            raise DelegateImportError(
                f"{source}:{line}: {cell}: the same column as {cells[index[column]]!r}; keep only one of them"
            )
        if column is not None:  # unknown columns (notes, seat numbers, …) are the organiser's business
            index[column] = position
    found = ", ".join(cell for cell in cells if cell)
    if "name" not in index:
        raise DelegateImportError(f"{source}:{line}: name: missing column (the header has: {found})")
    if "email" not in index and "phone" not in index:
        raise DelegateImportError(
            f"{source}:{line}: email/phone: missing column, need at least one of them "
            f"(the header has: {found})"
        )
    return _Header(source, len(cells), index, {column: cells[i] for column, i in index.items()})


@dataclass
class _Import:
    """One file's parse in progress: the header once read, and the rows accepted so far."""

    source: str
    parsers: Parsers
    header: _Header | None = None
    seen: Seen = field(default_factory=dict)
    result: ImportResult = field(default_factory=lambda: ImportResult(delegates=[], errors=[], lines={}))

    def add(self, row: list[str], line: int) -> None:
        if self.header is None:
            self.header = _read_header(row, self.source, line)
            return
        problems = self._problems_or_accept(row, line, self.header)
        self.result.errors.extend(
            f"{self.source}:{line}: {self.header.label(column)}: {reason}" for column, reason in problems
        )

    def _problems_or_accept(self, row: list[str], line: int, header: _Header) -> list[tuple[str, str]]:
        if any(cell.strip() for cell in row[header.width :]):
            # More values than header cells: a separator inside an unquoted value shifted the row.
            return [
                (
                    "row",
                    f"has {len(row)} values but the header has {header.width} columns; "
                    "put quotes around a value that contains the separator",
                )
            ]
        values, problems = _parse_cells(row, header, self.parsers)
        derived = not values.get("id")
        if derived:
            values["id"] = derived_id(values.get("email"), values.get("phone"))
        problems += _duplicates(values, derived, self.seen)
        if not problems:
            self._accept(Delegate(**values), line)
        return problems

    def _accept(self, delegate: Delegate, line: int) -> None:
        self.result.delegates.append(delegate)
        self.result.lines[delegate.id] = line
        for key in _identity(delegate.id, delegate.email, delegate.phone):
            self.seen[key] = line


def _parse_cells(
    row: list[str], header: _Header, parsers: Parsers
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    values: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for column, parse in parsers.items():
        position = header.index.get(column)
        text = row[position].strip() if position is not None and position < len(row) else ""
        try:
            values[column] = _checked(column, parse(_no_nul(text)))
        except _Invalid as e:
            problems.append((column, str(e)))
    if not values.get("email") and not values.get("phone") and not _failed(problems, "email", "phone"):
        label = f"{header.label('email')}/{header.label('phone')}"
        problems.append((label, "give at least one of email or phone"))
    return values, problems


def _no_nul(text: str) -> str:
    if "\x00" in text:
        raise _Invalid("contains a NUL character (a damaged or binary file?); retype the value")
    return text


def _checked(column: str, value: Any) -> Any:
    limit = MAX_LENGTHS.get(column)
    if limit is not None and isinstance(value, str) and len(value) > limit:
        raise _Invalid(f"too long ({len(value)} characters, at most {limit})")
    return value


def _failed(problems: list[tuple[str, str]], *columns: str) -> bool:
    return any(column in columns for column, _ in problems)


def _duplicates(values: dict[str, Any], derived: bool, seen: Seen) -> list[tuple[str, str]]:
    keys = _identity(values["id"], values.get("email"), values.get("phone"))
    found = [
        (column, f"duplicate of line {seen[(column, value)]}")
        for column, value in keys
        if (column, value) in seen
    ]
    if derived:  # a made-up id only collides when email or phone does: name the column the organiser wrote
        found = [problem for problem in found if problem[0] != "id"] or found
    return found


def _identity(id_: str, email: str | None, phone: str | None) -> list[tuple[str, str]]:
    """The values that make two rows the same person: id, email (case-insensitive) and phone."""
    keys = [("id", id_), ("email", (email or "").lower()), ("phone", phone or "")]
    return [(column, value) for column, value in keys if value]


def derived_id(email: str | None, phone: str | None) -> str:
    """A stable id for a row without one, so importing the same file again matches the same delegate."""
    basis = (email or "").lower() or phone or ""
    return "d-" + hashlib.sha1(basis.encode(), usedforsecurity=False).hexdigest()[:10]


# --- One parser per column: text (stripped) -> value, or _Invalid with the reason ----------------


def _parsers(stops: Collection[str]) -> Parsers:
    known = {stop.lower(): stop for stop in stops}
    return {
        "id": str,
        "name": _name,
        "email": _email,
        "phone": _phone,
        "language": _language,
        "organisation": str,
        "role": lambda text: text.lower() or "official",
        "stop": lambda text: _stop(text, known),
        "dinner": _dinner,
        "rsvp": _rsvp,
    }


def _name(text: str) -> str:
    if not text:
        raise _Invalid("required")
    return " ".join(text.split())


def _email(text: str) -> str | None:
    if not text:
        return None
    try:
        return validate_email(text, check_deliverability=False).normalized  # no DNS: imports work offline
    except EmailNotValidError as e:
        raise _Invalid(f"{text!r} is not a valid email address ({str(e).rstrip('.')})") from e


def _phone(text: str) -> str | None:
    if not text:
        return None
    try:
        number = phonenumbers.parse(text, DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        raise _Invalid(f"{text!r} is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _language(text: str) -> str:
    language = text.lower() or "sv"
    if language not in ("sv", "en"):
        raise _Invalid(f"{text!r} should be sv or en (empty means sv)")
    return language


def _stop(text: str, known: dict[str, str]) -> str | None:
    if not text:
        return None
    if text.lower() not in known:
        raise _Invalid(f"unknown stop {text!r} (known: {', '.join(sorted(known.values())) or 'none'})")
    return known[text.lower()]


def _dinner(text: str) -> bool | None:
    if not text:
        return None
    if text.lower() in YES | NO:
        return text.lower() in YES
    raise _Invalid(f"{text!r} should be yes or no (or empty if not known)")


def _rsvp(text: str) -> Rsvp:
    answer = text.lower()
    if answer in ("", "none"):  # "none" is what an export writes for no answer yet
        return "none"
    if answer in ("yes", "ja", "no", "nej"):
        return "yes" if answer in ("yes", "ja") else "no"
    raise _Invalid(f"{text!r} should be yes, no or empty (not answered yet)")
