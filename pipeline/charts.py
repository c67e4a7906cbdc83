"""The dashboard's pictures, drawn on the server with matplotlib (the one chart library; no scripts in the
page): RSVPs over time against the deadline, messages per hour by state, and per bus stop the riders
expected against the pickup texts that went. Each function takes plain data and returns PNG bytes.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from datetime import datetime

# The dashboard's colours for the ledger's states, so a chart and the state badges agree.
STATE_COLOURS = {
    "planned": "#9db8d9",
    "queued": "#5b8fc7",
    "sending": "#3b6ea8",
    "sent": "#4c9a6a",
    "delivered": "#2e7d4f",
    "failed": "#c0392b",
    "unknown": "#e67e22",
    "expired": "#9e9e9e",
    "skipped": "#cfcfcf",
}


def _figure(width: float = 8, height: float = 3.6):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)  # attaches the Agg canvas that savefig renders with
    return figure


def _png(figure) -> bytes:
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()


def rsvp_chart(
    answers: Sequence[tuple[datetime, str]],
    window: tuple[datetime, datetime],
    deadline: datetime,
    total: int,
    labels: dict[str, str],
) -> bytes:
    """Cumulative yes and no answers (local times, oldest first) with the deadline as a line. Answers
    from before the window (an import months ahead) are drawn at its start."""
    figure = _figure()
    axes = figure.subplots()
    start, end = window
    for answer, colour in (("yes", "#2e7d4f"), ("no", "#c0392b")):
        times = [min(max(at, start), end) for at, a in answers if a == answer]
        if times:  # the count so far, held to the window's end
            counts = list(range(1, len(times) + 1))
            axes.step([*times, end], [*counts, counts[-1]], where="post", color=colour, label=labels[answer])
    axes.axvline(deadline, color="#1d2530", linestyle="--", label=labels["deadline"])
    axes.axhline(total, color="#9e9e9e", linewidth=0.8, label=labels["total"].format(n=total))
    axes.set_ylim(0, max(total, 1) * 1.1)
    axes.set_xlim(start, end)
    axes.set_ylabel(labels["axis"])
    axes.legend(loc="upper left", fontsize=8)
    axes.xaxis.set_major_formatter(_day_month(labels["months"].split()))
    return _png(figure)


def _day_month(months: list[str]):
    """Dates on the axis as "7 okt": the dashboard's language, not the server's locale."""
    from matplotlib.dates import num2date
    from matplotlib.ticker import FuncFormatter

    def label(value: float, _position: int) -> str:
        at = num2date(value)
        return f"{at.day} {months[at.month - 1]}"

    return FuncFormatter(label)


def hourly_chart(hours: Sequence[tuple[str, dict[str, int]]], states: Mapping[str, str], title: str) -> bytes:
    """Stacked bars: one per hour that has messages (its label), split by state."""
    figure = _figure(8, 3.8)
    axes = figure.subplots()
    names = [label for label, _ in hours]
    bottom = [0] * len(hours)
    for state, colour in STATE_COLOURS.items():
        counts = [per_state.get(state, 0) for _, per_state in hours]
        if any(counts):
            axes.bar(names, counts, bottom=bottom, color=colour, label=states.get(state, state))
            bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    axes.set_title(title, loc="left", fontsize=10)
    axes.tick_params(axis="x", labelrotation=60, labelsize=7)
    axes.yaxis.get_major_locator().set_params(integer=True)
    if hours:
        axes.legend(fontsize=7, ncols=3)
    return _png(figure)


def stops_chart(stops: Sequence[tuple[str, int, int]], labels: dict[str, str]) -> bytes:
    """Per stop (its name): riders expected (said yes) and pickup texts sent, side by side."""
    figure = _figure(8, 1.4 + 0.8 * max(1, len(stops)))
    axes = figure.subplots()
    rows = range(len(stops))
    expected = axes.barh([r + 0.2 for r in rows], [e for _, e, _ in stops], 0.4, color="#9db8d9")
    texted = axes.barh([r - 0.2 for r in rows], [t for _, _, t in stops], 0.4, color="#2e7d4f")
    axes.bar_label(expected, padding=3)
    axes.bar_label(texted, padding=3)
    axes.set_yticks(list(rows), [name for name, _, _ in stops])
    axes.invert_yaxis()  # the first stop of the route on top
    figure.legend(
        [expected, texted],
        [labels["expected"], labels["texted"]],
        fontsize=8,
        loc="outside upper center",
        ncols=2,
    )
    axes.set_xlim(0, max([1] + [e for _, e, _ in stops]) * 1.2)
    axes.xaxis.get_major_locator().set_params(integer=True)
    return _png(figure)
