"""The delegate CSV parser: what an organiser's spreadsheet becomes, and what they read when it is wrong."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.delegates import Delegate, ImportResult, parse_delegates, read_delegates
from pipeline.errors import DelegateImportError

STOPS = {"hotel", "airport"}
EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "delegates.example.csv"
HEADER = "id,name,email,phone,language,organisation,role,stop,dinner,rsvp"
GOOD = "a1,Anna Berg,anna@example.se,070-174 06 05,sv,Skellefteå kommun,kso,hotel,yes,yes"


def parse(text: str | bytes, stops: set[str] = STOPS) -> ImportResult:
    data = text.encode() if isinstance(text, str) else text
    return parse_delegates(data, "delegates.csv", stops)


def one_row(**cells: str) -> str:
    """A file with the header and one row: Anna's good row with some cells replaced."""
    row = dict(zip(HEADER.split(","), GOOD.split(","), strict=True)) | cells
    return HEADER + "\n" + ",".join(row.values()) + "\n"


# --- The shipped example -------------------------------------------------------------------------


def test_the_shipped_example_file_parses_without_errors() -> None:
    """config/delegates.example.csv is what a new organiser copies: it must import cleanly."""
    result = read_delegates(EXAMPLE, STOPS)

    assert result.errors == []
    assert len(result.delegates) >= 12
    assert list(result.lines.values()) == sorted(result.lines.values())


def test_the_shipped_example_file_covers_every_path_the_plan_can_take() -> None:
    """Hotel and airport riders, no bus, KSO and officials, sv and en, one channel, no dinner, every RSVP."""
    delegates = read_delegates(EXAMPLE, STOPS).delegates

    def having(**wanted: object) -> list[Delegate]:
        return [d for d in delegates if all(getattr(d, k) == v for k, v in wanted.items())]

    assert having(stop="hotel", rsvp="yes") and having(stop="airport", rsvp="yes") and having(stop=None)
    assert having(role="kso", rsvp="yes") and having(role="official", rsvp="yes")
    assert having(language="sv") and having(language="en")
    assert having(phone=None) and having(email=None)
    assert having(dinner=False) and having(dinner=None)
    assert len(having(rsvp="no")) == 1 and len(having(rsvp="none")) >= 2
    assert len(having(rsvp="yes")) > len(delegates) / 2
    assert any(ch in d.name for d in delegates for ch in "åäöÅÄÖ")


# --- Normalisation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "e164"),
    [
        ("070-123 45 67", "+46701234567"),
        ("0701234567", "+46701234567"),
        ("+46 70 123 45 67", "+46701234567"),
        ("0046 70-123 45 67", "+46701234567"),
        ("08-123 456 78", "+46812345678"),
        ("+358 40 1234567", "+358401234567"),
    ],
)
def test_phone_numbers_are_stored_as_e164_with_sweden_as_the_default_region(written: str, e164: str) -> None:
    """However a number is written, the delegate gets one E.164 form; foreign numbers stay foreign."""
    assert parse(one_row(phone=written)).delegates[0].phone == e164


@pytest.mark.parametrize(
    ("column", "cell", "expected"),
    [
        ("name", "  Anna   Berg ", "Anna Berg"),
        ("email", "Anna.Berg@Example.SE", "Anna.Berg@example.se"),
        ("email", "", None),
        ("phone", "", None),
        ("language", "", "sv"),
        ("language", "EN", "en"),
        ("organisation", "", ""),
        ("role", "", "official"),
        ("role", " KSO ", "kso"),
        ("stop", "", None),
        ("stop", "Hotel", "hotel"),
        ("dinner", "", None),
        ("dinner", "ja", True),
        ("dinner", "Yes", True),
        ("dinner", "x", True),
        ("dinner", "1", True),
        ("dinner", "true", True),
        ("dinner", "nej", False),
        ("dinner", "no", False),
        ("dinner", "0", False),
        ("dinner", "FALSE", False),
        ("rsvp", "", "none"),
        ("rsvp", "ja", "yes"),
        ("rsvp", "YES", "yes"),
        ("rsvp", "nej", "no"),
        ("rsvp", "no", "no"),
    ],
)
def test_cells_are_trimmed_and_normalised(column: str, cell: str, expected: object) -> None:
    """Case, spacing and Swedish answers (ja/nej) become the one value the planner compares against."""
    result = parse(one_row(**{column: cell}))

    assert result.errors == []
    assert getattr(result.delegates[0], column) == expected


def test_a_row_without_an_id_gets_a_stable_one_from_its_email_or_phone() -> None:
    """Re-importing the same file must find the same delegates, so a made-up id depends only on the row."""
    first = parse(one_row(id="", email="Anna@Example.se")).delegates[0]
    again = parse(one_row(id="", email="anna@example.SE", phone="")).delegates[0]
    phone_only = parse(one_row(id="", email="", phone="070-174 06 05")).delegates[0]
    same_phone = parse(one_row(id="", email="", phone="+46 70 174 06 05")).delegates[0]

    assert first.id == again.id and re.fullmatch(r"d-[0-9a-f]{10}", first.id)
    assert phone_only.id == same_phone.id != first.id


def test_unknown_columns_are_ignored_and_headers_are_read_loosely() -> None:
    """Organisers keep their own columns; header case, spacing and Swedish names do not matter."""
    text = (
        " NAMN ;Anteckning; E-post ;Hållplats;Middag;OSA;Språk;Roll\n"
        "Åsa Öberg;vegetarian;asa@example.se;airport;nej;ja;en;KSO\n"
    )

    [asa] = parse(text).delegates

    assert asa == Delegate(
        id=asa.id,
        name="Åsa Öberg",
        email="asa@example.se",
        language="en",
        role="kso",
        stop="airport",
        dinner=False,
        rsvp="yes",
    )


# --- Encodings and separators --------------------------------------------------------------------

ÅSA = "id;name;phone;organisation\nö1;Åsa Öberg;070-174 06 06;Sandvikens kommun\n"
ÅSA_DELEGATE = Delegate(id="ö1", name="Åsa Öberg", phone="+46701740606", organisation="Sandvikens kommun")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(ÅSA.encode(), id="utf-8 with semicolons"),
        pytest.param(ÅSA.replace(";", ",").encode(), id="utf-8 with commas"),
        pytest.param(ÅSA.encode("utf-8-sig"), id="utf-8 with a BOM (Excel: CSV UTF-8)"),
        pytest.param(ÅSA.encode("cp1252"), id="windows-1252 (Swedish Excel: CSV)"),
        pytest.param(ÅSA.replace("\n", "\r\n").encode("cp1252"), id="windows-1252 with CRLF"),
        pytest.param(
            ÅSA.replace(";", "\t").encode("utf-16"), id="utf-16 tab-separated (Excel: Unicode text)"
        ),
    ],
)
def test_files_as_excel_saves_them_read_the_same(data: bytes) -> None:
    """Å, Ä and Ö survive every encoding Swedish Excel writes, and the separator is found from the header."""
    result = parse(data)

    assert result.errors == []
    assert result.delegates == [ÅSA_DELEGATE]


# --- Errors the organiser sees -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "errors"),
    [
        pytest.param(
            one_row(phone="070-12"),
            ["delegates.csv:2: phone: '070-12' is not a valid phone number"],
            id="bad phone",
        ),
        pytest.param(
            one_row(phone="ring Anna"),
            ["delegates.csv:2: phone: 'ring Anna' is not a valid phone number"],
            id="phone that is not a number at all",
        ),
        pytest.param(
            one_row(email="anna@"),
            [
                "delegates.csv:2: email: 'anna@' is not a valid email address "
                "(There must be something after the @-sign)"
            ],
            id="bad email",
        ),
        pytest.param(
            one_row(email="anna berg@example.se"),
            [
                "delegates.csv:2: email: 'anna berg@example.se' is not a valid email address "
                "(The email address contains invalid characters before the @-sign: SPACE)"
            ],
            id="email with a space",
        ),
        pytest.param(
            one_row(email="", phone=""),
            ["delegates.csv:2: email/phone: give at least one of email or phone"],
            id="neither phone nor email",
        ),
        pytest.param(one_row(name=" "), ["delegates.csv:2: name: required"], id="no name"),
        pytest.param(
            one_row(stop="station"),
            ["delegates.csv:2: stop: unknown stop 'station' (known: airport, hotel)"],
            id="unknown stop",
        ),
        pytest.param(
            one_row(language="de"),
            ["delegates.csv:2: language: 'de' should be sv or en (empty means sv)"],
            id="unknown language",
        ),
        pytest.param(
            one_row(dinner="kanske"),
            ["delegates.csv:2: dinner: 'kanske' should be yes or no (or empty if not known)"],
            id="dinner neither yes nor no",
        ),
        pytest.param(
            one_row(rsvp="maybe"),
            ["delegates.csv:2: rsvp: 'maybe' should be yes, no or empty (not answered yet)"],
            id="rsvp neither yes nor no",
        ),
        pytest.param(
            one_row(name="", email="anna@", phone="070-12", stop="bus"),
            [
                "delegates.csv:2: name: required",
                "delegates.csv:2: email: 'anna@' is not a valid email address "
                "(There must be something after the @-sign)",
                "delegates.csv:2: phone: '070-12' is not a valid phone number",
                "delegates.csv:2: stop: unknown stop 'bus' (known: airport, hotel)",
            ],
            id="every problem in a row is its own line",
        ),
        pytest.param(
            HEADER + "\n" + GOOD.replace(",kso", ",Boliden, kso") + "\n",
            [
                "delegates.csv:2: row: has 11 values but the header has 10 columns; "
                "put quotes around a value that contains the separator"
            ],
            id="unquoted separator inside a value",
        ),
    ],
)
def test_bad_cells_are_reported_as_file_line_column_reason(text: str, errors: list[str]) -> None:
    """Each problem names the file, the spreadsheet line (header = 1) and the column; the row is left out."""
    result = parse(text)

    assert result.errors == errors
    assert result.delegates == []


@pytest.mark.parametrize(
    ("rows", "errors"),
    [
        pytest.param(
            ["a1,Anna Berg,anna@example.se,,", "a1,Anders Berg,anders@example.se,,"],
            ["delegates.csv:3: id: duplicate of line 2"],
            id="same id",
        ),
        pytest.param(
            ["a1,Anna Berg,anna@example.se,,", "a2,Anna Berg,ANNA@example.se,,"],
            ["delegates.csv:3: email: duplicate of line 2"],
            id="same email in another case",
        ),
        pytest.param(
            ["a1,Anna Berg,,070-174 06 05,", "a2,Anna B,,+46701740605,"],
            ["delegates.csv:3: phone: duplicate of line 2"],
            id="same phone written differently",
        ),
        pytest.param(
            [",Anna Berg,anna@example.se,,", ",Anna Berg,anna@example.se,,"],
            ["delegates.csv:3: email: duplicate of line 2"],
            id="no ids: named by the email, not the made-up id",
        ),
        pytest.param(
            [
                "a1,Anna Berg,anna@example.se,070-174 06 05,",
                "b1,Bo Ek,bo@example.se,,",
                "a1,Anna,anna@example.se,,",
            ],
            ["delegates.csv:4: id: duplicate of line 2", "delegates.csv:4: email: duplicate of line 2"],
            id="several duplicate columns",
        ),
        pytest.param(
            ["a1,Anna Berg,anna@example.se,070-12,", "a2,Anna Berg,anna@example.se,070-174 06 05,"],
            ["delegates.csv:2: phone: '070-12' is not a valid phone number"],
            id="a rejected row is no original: the corrected copy is kept",
        ),
    ],
)
def test_duplicates_in_one_file_are_reported_on_the_later_row(rows: list[str], errors: list[str]) -> None:
    """A person listed twice is kept once; the later row names the line it repeats."""
    text = "id,name,email,phone,stop\n" + "\n".join(rows) + "\n"

    assert parse(text).errors == errors


def test_good_rows_are_kept_in_file_order_with_their_line_numbers() -> None:
    """Bad rows do not stop the import; line numbers count blank lines and quoted line breaks as files do."""
    text = (
        "id,name,email,phone,organisation\n"
        "a1,Anna Berg,anna@example.se,,\n"
        "\n"
        ",,,,\n"
        'b1,Bo Ek,bo@,,"Oxelösunds\nkommun"\n'
        "c1,Cecilia Dahl,,070-12,\n"
        "d1,Dan Eng,,070-174 06 07,\n"
    )
    result = parse(text)

    assert [d.id for d in result.delegates] == ["a1", "d1"]
    assert result.lines == {"a1": 2, "d1": 8}
    assert result.errors == [
        "delegates.csv:5: email: 'bo@' is not a valid email address "
        "(There must be something after the @-sign)",
        "delegates.csv:7: phone: '070-12' is not a valid phone number",
    ]


def test_errors_use_the_column_names_the_file_uses() -> None:
    """An organiser with Swedish headers is pointed at 'telefon', not at a column they never wrote."""
    text = "Namn;E-post;Telefon\nÅsa Öberg;;070-12\nBo Ek;;\n"

    assert parse(text.encode("cp1252")).errors == [
        "delegates.csv:2: Telefon: '070-12' is not a valid phone number",
        "delegates.csv:3: E-post/Telefon: give at least one of email or phone",
    ]


def test_an_event_without_bus_stops_rejects_every_stop() -> None:
    """With no stops in the event there is nothing to board at, and the message says so."""
    assert parse(one_row(stop="hotel"), stops=set()).errors == [
        "delegates.csv:2: stop: unknown stop 'hotel' (known: none)"
    ]


# --- Files that cannot be imported at all ----------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(
            b"id,email,phone\na1,anna@example.se,\n",
            "delegates.csv:1: name: missing column (the header has: id, email, phone)",
            id="no name column",
        ),
        pytest.param(
            "id;namn;hållplats\n".encode("cp1252"),
            "delegates.csv:1: email/phone: missing column, need at least one of them "
            "(the header has: id, namn, hållplats)",
            id="neither email nor phone column",
        ),
        pytest.param(
            b"name,email,e-post\n",
            "delegates.csv:1: e-post: the same column as 'email'; keep only one of them",
            id="one column twice",
        ),
        pytest.param(
            b"\xef\xbb\xbf\r\n\r\n",
            "delegates.csv: the file is empty; expected a header row "
            "(id, name, email, phone, language, organisation, role, stop, dinner, rsvp)",
            id="empty",
        ),
        pytest.param(
            b"name,email\n\x81\x8d\xff\n",
            "delegates.csv: cannot read the file: it is neither UTF-8 nor Windows-1252 text",
            id="not text",
        ),
    ],
)
def test_a_file_that_cannot_be_imported_raises_an_error_naming_the_file(data: bytes, message: str) -> None:
    """Without a usable header or text there are no rows to report on: the whole file is refused."""
    with pytest.raises(DelegateImportError, match=f"^{re.escape(message)}$"):
        parse(data)


def test_reading_from_disk_names_the_path_in_errors(tmp_path: Path) -> None:
    """read_delegates reports lines against the path the organiser gave."""
    path = tmp_path / "anmälda.csv"
    path.write_bytes(one_row(phone="070-12").encode("cp1252"))

    assert read_delegates(path, STOPS).errors == [f"{path}:2: phone: '070-12' is not a valid phone number"]
    with pytest.raises(DelegateImportError, match=r"saknas\.csv: cannot read the file"):
        read_delegates(tmp_path / "saknas.csv", STOPS)


# --- What the database enforces, checked before storing -------------------------------------------


def test_a_nul_character_in_a_cell_is_reported_with_line_and_column() -> None:
    result = parse(one_row(name="Anna\x00Berg"))
    assert result.delegates == []
    assert result.errors == [
        "delegates.csv:2: name: contains a NUL character (a damaged or binary file?); retype the value"
    ]


def test_a_cell_longer_than_the_database_column_is_reported() -> None:
    result = parse(one_row(organisation="x" * 201))
    assert result.errors == ["delegates.csv:2: organisation: too long (201 characters, at most 200)"]


def test_a_row_the_csv_reader_cannot_read_is_reported_and_the_next_rows_still_count() -> None:
    text = (
        HEADER
        + "\n"
        + 'b1,"Bo" Ek,,0701740601\n'
        + "c1,Cilla,"
        + "x" * 140_000
        + ",0701740602\n"
        + GOOD
        + "\n"
    )
    result = parse(text)
    assert [d.id for d in result.delegates] == ["b1", "a1"]
    assert result.errors == [
        "delegates.csv:3: row: cannot be read as CSV (field larger than field limit (131072)); "
        "check its quotes"
    ]


def test_the_import_limits_match_the_database_columns() -> None:
    from pipeline.delegates import MAX_LENGTHS
    from pipeline.store.models import DelegateRow

    columns = DelegateRow.__table__.columns
    assert {name: columns[name].type.length for name in MAX_LENGTHS} == MAX_LENGTHS
