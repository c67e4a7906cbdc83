"""Which facts the event file marks not yet confirmed (`tbc`), and which planned messages show them.

Pure: the messages are rendered (as `kallelse check` renders them) with a listener that notes every
unconfirmed value a template printed or asked about; the send date is the planner's, for each delegate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import jinja2

from pipeline.delegates import Delegate
from pipeline.planner import choose_channels, in_audience, window
from pipeline.render import build_context, facts_shown, template_path
from pipeline.timetable import Event, Rule

_PARTS = {"email": ("subject.txt", "txt", "html"), "sms": ("sms.txt",)}


@dataclass(frozen=True)
class Showing:
    """One rule that shows an unconfirmed fact: when its first such message goes out, and to how many."""

    fact: str
    rule: str
    first_due: datetime  # aware, the event's local time
    delegates: int


def unconfirmed_facts(event: Event) -> list[str]:
    """Every fact the event file marks `tbc`, named as in `Showing.fact`."""
    facts = [f"stops.{s.id}.{name}" for s in event.stops for name in s.tbc]
    for item in event.items:
        facts += [f"items.{item.id}.{name}" for name in item.tbc]
        facts += [f"items.{item.id}.sessions.{s.id}.{name}" for s in item.sessions for name in s.tbc]
    return facts


def showings(
    env: jinja2.Environment, event: Event, delegates: Iterable[Delegate], links: Mapping[str, str]
) -> list[Showing]:
    """For each rule and unconfirmed fact it shows: the first send date and the number of delegates."""
    people = list(delegates)
    found: dict[tuple[str, str], tuple[datetime, set[str]]] = {}
    for rule in event.rules:
        for delegate in people:
            times = window(event, rule, delegate.stop)
            if times is None or not _would_get(rule, delegate):
                continue
            for fact in _shown_to(env, event, rule, delegate, links):
                due, who = found.get((fact, rule.id), (times[0], set()))
                found[(fact, rule.id)] = (min(due, times[0]), who | {delegate.id})
    out = [
        Showing(fact, rule, due.astimezone(event.tz), len(who)) for (fact, rule), (due, who) in found.items()
    ]
    return sorted(out, key=lambda s: (s.fact, s.first_due, s.rule))


def _would_get(rule: Rule, delegate: Delegate) -> bool:
    # An RSVP or a survey answer is still to come: judge the audience as if it had been given.
    a = rule.audience
    hopeful = dataclasses.replace(
        delegate,
        rsvp=a.rsvp[0] if a.rsvp else delegate.rsvp,
        survey_answered=delegate.survey_answered if a.survey_answered is None else a.survey_answered,
    )
    return in_audience(rule, hopeful)


def _shown_to(
    env: jinja2.Environment, event: Event, rule: Rule, delegate: Delegate, links: Mapping[str, str]
) -> set[str]:
    context = build_context(event, delegate, rule.id, links)
    seen: set[str] = set()
    occurrence = delegate.stop if rule.anchor == "own_stop" and delegate.stop else "-"
    for channel in choose_channels(event, rule, occurrence, delegate, {}):
        for part in _PARTS[channel]:
            path = template_path(context["lang"], rule.template, part)
            seen |= facts_shown(env.get_template(path).render, context)[1]
    return seen


def describe_showings(event: Event, items: list[Showing]) -> list[str]:
    """Lines for `kallelse check`: each unconfirmed fact, then the rules that show it and when."""
    lines = []
    for fact in unconfirmed_facts(event):
        lines.append(f'not confirmed: {fact} (messages say "meddelas senare" / "to be announced")')
        shown = [s for s in items if s.fact == fact]
        lines += [
            f"  shown by rule {s.rule!r}, first sent {s.first_due:%Y-%m-%d %H:%M} ({s.delegates} delegates)"
            for s in shown
        ]
        if not shown:
            lines.append("  shown by no planned message")
    return lines
