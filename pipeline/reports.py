"""Survey results for `kallelse survey report`: counts per question, terminal text and a PNG chart.

`survey_report` reads the store; `format_report` and `write_chart` are pure apart from the chart's file.
"Invited" are the delegates who said yes: only they are sent the survey (see the rules in event.toml).
The chart uses matplotlib's Agg canvas directly (no pyplot), so it works without a display and leaves the
process-wide backend alone.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipeline.store.models import DelegateRow
from pipeline.store.responses import survey_answers
from pipeline.timetable import Event, SurveyQuestion, Text

RATINGS = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class QuestionResult:
    """One question's answers: for a rating the count, mean and 1–5 distribution; for text every answer."""

    id: str
    kind: Literal["rating", "text"]
    text: Text
    count: int = 0
    mean: float | None = None
    distribution: dict[int, int] = field(default_factory=lambda: dict.fromkeys(RATINGS, 0))
    texts: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SurveyReport:
    event_name: Text
    invited: int  # delegates whose latest RSVP is yes
    respondents: int  # delegates who answered at least one question
    questions: list[QuestionResult]

    @property
    def response_rate(self) -> float | None:
        return self.respondents / self.invited if self.invited else None


def survey_report(session: Session, event: Event) -> SurveyReport:
    """The answers per question of `event.survey`; answers to questions no longer defined are left out."""
    answers = survey_answers(session)
    invited = session.scalar(select(func.count()).select_from(DelegateRow).where(DelegateRow.rsvp == "yes"))
    results = [_result(q, [a for a in answers if a.question == q.id]) for q in event.survey]
    known = {q.id for q in event.survey}
    respondents = len({a.delegate_id for a in answers if a.question in known})
    return SurveyReport(event.event.name, invited or 0, respondents, results)


def _result(question: SurveyQuestion, answers: list) -> QuestionResult:
    if question.kind == "text":
        texts = [a.text.strip() for a in answers if a.text and a.text.strip()]
        return QuestionResult(question.id, "text", question.text, count=len(texts), texts=texts)
    ratings = [a.rating for a in answers if a.rating in RATINGS]
    distribution = {r: ratings.count(r) for r in RATINGS}
    mean = sum(ratings) / len(ratings) if ratings else None
    return QuestionResult(question.id, "rating", question.text, len(ratings), mean, distribution)


# -- terminal text ------------------------------------------------------------------------------

_WORDS = {
    "sv": {
        "title": "Enkätresultat",
        "respondents": "{n} av {invited} som tackat ja har svarat",
        "answers": "{n} svar",
        "mean": "medel {mean}",
        "none": "inga svar ännu",
        "axis": "Antal svar",
        "rating": "Betyg",
        "no_ratings": "Inga betygsfrågor i enkäten",
    },
    "en": {
        "title": "Survey results",
        "respondents": "{n} of {invited} who accepted have answered",
        "answers": "{n} answers",
        "mean": "mean {mean}",
        "none": "no answers yet",
        "axis": "Answers",
        "rating": "Rating",
        "no_ratings": "No rating questions in the survey",
    },
}
_BAR_WIDTH = 30


def format_report(report: SurveyReport, lang: str = "sv") -> str:
    """The report as plain text for a terminal, in Swedish or English."""
    words = _WORDS.get(lang, _WORDS["sv"])
    lines = [f"{words['title']}: {report.event_name(lang)}", _respondents_line(report, lang), ""]
    for question in report.questions:
        lines.append(question.text(lang))
        body = _rating_lines(question, lang) if question.kind == "rating" else _text_lines(question, lang)
        lines.extend(body or [f"  {words['none']}"])
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _respondents_line(report: SurveyReport, lang: str) -> str:
    line = _WORDS[lang if lang in _WORDS else "sv"]["respondents"].format(
        n=report.respondents, invited=report.invited
    )
    rate = report.response_rate
    return line if rate is None else f"{line} ({_number(rate * 100, lang, 0)} %)"


def _rating_lines(question: QuestionResult, lang: str) -> list[str]:
    if not question.count or question.mean is None:
        return []
    words = _WORDS.get(lang, _WORDS["sv"])
    mean = words["mean"].format(mean=_number(question.mean, lang, 1))
    lines = [f"  {words['answers'].format(n=question.count)}, {mean}"]
    most = max(question.distribution.values())
    for rating in reversed(RATINGS):
        n = question.distribution[rating]
        lines.append(f"  {rating} {'█' * round(_BAR_WIDTH * n / most):<{_BAR_WIDTH}} {n}")
    return lines


def _text_lines(question: QuestionResult, lang: str) -> list[str]:
    if not question.texts:
        return []
    lines = [f"  {_WORDS.get(lang, _WORDS['sv'])['answers'].format(n=question.count)}"]
    for text in question.texts:
        wrapped = textwrap.wrap(" ".join(text.split()), 96) or [""]
        lines.append(f"  – {wrapped[0]}")
        lines.extend(f"    {more}" for more in wrapped[1:])
    return lines


def _number(value: float, lang: str, decimals: int) -> str:
    """Swedish writes a decimal comma."""
    text = f"{value:.{decimals}f}"
    return text.replace(".", ",") if lang == "sv" else text


# -- chart --------------------------------------------------------------------------------------


def write_chart(report: SurveyReport, path: Path, lang: str = "sv") -> Path:
    """A PNG with one panel of horizontal bars (ratings 1–5) per rating question. Returns `path`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ratings = [q for q in report.questions if q.kind == "rating"]
    words = _WORDS.get(lang, _WORDS["sv"])
    figure = Figure(figsize=(8, 1.2 + 2.1 * max(1, len(ratings))), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)  # attaches the Agg canvas that savefig renders with
    figure.suptitle(f"{words['title']}: {report.event_name(lang)}\n{_respondents_line(report, lang)}")
    if not ratings:
        figure.text(0.5, 0.5, words["no_ratings"], ha="center", va="center")
    for axes, question in zip(figure.subplots(len(ratings), 1, squeeze=False)[:, 0], ratings, strict=False):
        _draw_question(axes, question, lang)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def _draw_question(axes, question: QuestionResult, lang: str) -> None:
    words = _WORDS.get(lang, _WORDS["sv"])
    counts = [question.distribution[r] for r in RATINGS]
    bars = axes.barh([str(r) for r in RATINGS], counts, color="#2b6f8f")
    axes.bar_label(bars, padding=3)
    title = textwrap.fill(question.text(lang), 80)
    if question.mean is not None:
        title += f"  ({words['mean'].format(mean=_number(question.mean, lang, 1))}, n = {question.count})"
    axes.set_title(title, loc="left", fontsize=10)
    axes.set_ylabel(words["rating"])
    axes.set_xlabel(words["axis"])
    axes.set_xlim(0, max(1, *counts) * 1.15)  # room for the count labels; an empty question still draws
    axes.xaxis.get_major_locator().set_params(integer=True)
