"""`kallelse survey report`: results per question, as text and as a PNG chart."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.delegates import Delegate
from pipeline.reports import SurveyReport, format_report, survey_report, write_chart
from pipeline.store import Store, open_store
from pipeline.store.people import upsert_delegates
from pipeline.store.responses import record_survey_answer
from pipeline.timetable import Event, load_event

EVENT_FILE = Path(__file__).resolve().parent.parent / "config" / "event.toml"
NOW = datetime(2021, 11, 27, 12, 0, tzinfo=UTC)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def event() -> Event:
    return load_event(EVENT_FILE)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """Five delegates who said yes, one who said no; three of the five answered the survey."""
    store = open_store(f"sqlite:///{tmp_path / 'kallelse.sqlite3'}")
    delegates = [Delegate(f"d0{i}", f"Delegat {i}", rsvp="yes") for i in range(1, 6)]
    with store.session() as session:
        upsert_delegates(session, [*delegates, Delegate("d09", "Nej Tack", rsvp="no")], NOW)
        for delegate_id, overall, tour in (("d01", 5, 4), ("d02", 4, None), ("d03", 4, 2)):
            record_survey_answer(session, delegate_id, "overall", rating=overall, channel="web", now=NOW)
            if tour is not None:
                record_survey_answer(session, delegate_id, "tour", rating=tour, channel="sms", now=NOW)
        record_survey_answer(
            session, "d01", "comments", text="Mer om upphandling, tack!", channel="web", now=NOW
        )
        record_survey_answer(session, "d03", "comments", text="  ", channel="web", now=NOW)
    yield store
    store.close()


@pytest.fixture
def report(store: Store, event: Event) -> SurveyReport:
    with store.session() as session:
        return survey_report(session, event)


def question(report: SurveyReport, question_id: str):
    return next(q for q in report.questions if q.id == question_id)


def test_the_report_counts_respondents_against_the_delegates_who_said_yes(report):
    """Three of the five delegates who accepted answered; the one who declined is not invited."""
    assert (report.respondents, report.invited) == (3, 5)
    assert report.response_rate == pytest.approx(0.6)


def test_a_rating_question_has_its_count_mean_and_distribution_from_one_to_five(report):
    """overall: 5, 4, 4 gives three answers, mean 4.33 and the spread over 1–5."""
    overall = question(report, "overall")
    assert overall.count == 3
    assert overall.mean == pytest.approx(13 / 3)
    assert overall.distribution == {1: 0, 2: 0, 3: 0, 4: 2, 5: 1}


def test_a_rating_question_nobody_answered_has_no_mean(report):
    """A question without answers reports zero answers and no mean, not a division by zero."""
    separate = question(report, "separate")
    assert (separate.count, separate.mean) == (0, None)


def test_a_free_text_question_lists_every_non_empty_answer(report):
    """Free-text answers come back in full; a blank answer is not counted."""
    comments = question(report, "comments")
    assert (comments.count, comments.texts) == (1, ["Mer om upphandling, tack!"])


def test_the_report_follows_the_order_of_the_survey_in_the_event_file(report, event):
    """One result per question of event.toml, in the file's order."""
    assert [q.id for q in report.questions] == [q.id for q in event.survey]


def test_the_swedish_text_report_shows_questions_means_with_a_decimal_comma_and_the_texts(report):
    """The terminal text is Swedish by default: question texts, "medel 4,3", bars and the comments."""
    text = format_report(report)
    assert "3 av 5 som tackat ja har svarat (60 %)" in text
    assert "Vad tyckte du om mötet som helhet? (1–5)" in text
    assert "3 svar, medel 4,3" in text
    assert "– Mer om upphandling, tack!" in text
    assert "inga svar ännu" in text


def test_the_english_text_report_uses_the_english_question_texts(report):
    """With lang="en" the questions and words are English and the decimal point a point."""
    text = format_report(report, lang="en")
    assert "How was the meeting overall? (1–5)" in text
    assert "3 answers, mean 4.3" in text


def test_the_chart_is_a_valid_png_of_a_sensible_size(report, tmp_path):
    """write_chart makes a PNG file (magic bytes, IHDR size) big enough to read and not absurdly large."""
    path = write_chart(report, tmp_path / "charts" / "enkät.png")
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk follows the magic bytes
    assert 600 <= width <= 2000 and 400 <= height <= 3000
    assert 10_000 < len(data) < 2_000_000


def test_the_chart_opens_in_pillow_when_it_is_installed(report, tmp_path):
    """Pillow (a matplotlib dependency) reads the chart as a PNG it can decode."""
    image_module = pytest.importorskip("PIL.Image")
    with image_module.open(write_chart(report, tmp_path / "chart.png")) as image:
        image.load()
        assert image.format == "PNG"
        assert image.getextrema() != ((255, 255), (255, 255), (255, 255), (255, 255))  # not blank


def test_the_chart_has_one_panel_per_rating_question(report, tmp_path, monkeypatch):
    """Four rating questions give four panels; the text question gets none."""
    from matplotlib.figure import Figure

    saved: list[Figure] = []
    original = Figure.savefig
    monkeypatch.setattr(
        Figure, "savefig", lambda self, *a, **k: (saved.append(self), original(self, *a, **k))
    )
    write_chart(report, tmp_path / "chart.png")
    titles = [axes.get_title(loc="left") for axes in saved[0].axes]
    assert len(titles) == 4
    assert titles[0].startswith("Vad tyckte du om mötet som helhet?")


def test_a_survey_without_answers_still_draws_a_chart(event, tmp_path):
    """An empty store (no delegates, no answers) gives a report of zeros and a valid PNG."""
    empty = open_store(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    with empty.session() as session:
        report = survey_report(session, event)
    empty.close()
    assert (report.respondents, report.invited, report.response_rate) == (0, 0, None)
    assert write_chart(report, tmp_path / "empty.png").read_bytes().startswith(PNG_MAGIC)
