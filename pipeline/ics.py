"""The event as an iCalendar file: one VEVENT with a stable UID, so a later SEQUENCE updates it."""

from __future__ import annotations

from datetime import UTC, date, datetime

import icalendar

from pipeline.render import clock, day, group_by_day, item_view, language_code, phone
from pipeline.timetable import Event


def event_ics(
    event: Event,
    *,
    sequence: int = 0,
    method: str = "REQUEST",
    stamp: datetime | None = None,
    language: str | None = None,
) -> bytes:
    """The event as one VEVENT with a stable UID: a later SEQUENCE updates the same calendar entry.

    One VEVENT for the whole meeting, not one per day: an iTIP REQUEST carries a single UID, Outlook and
    Gmail act on one event per invitation, and one UID is one entry to update or cancel. `stamp`
    (DTSTAMP) defaults to the event's start so the same input gives the same bytes: the worker makes one
    .ics per event version and sequence (`Runtime.cached`) and passes no stamp.
    """
    lang = language_code(language or event.event.default_language)
    start, end = event.local(event.event.start), event.local(event.event.end)
    venue = event.event.venue
    organiser = event.contact("secretariat") if _has_contact(event, "secretariat") else event.duty_contact
    vevent = icalendar.Event()
    vevent.add("uid", f"{event.event.id}@kallelse")
    vevent.add("sequence", sequence)
    vevent.add("dtstamp", (stamp or start).astimezone(UTC))
    vevent.add("dtstart", start)
    vevent.add("dtend", end)
    vevent.add("summary", event.event.name(lang))
    vevent.add("location", f"{venue.name}, {venue.address}, {venue.city}")
    vevent.add("description", _ics_description(event, lang))
    organizer = icalendar.vCalAddress(f"mailto:{organiser.email}")
    organizer.params["cn"] = icalendar.vText(organiser.name)
    vevent.add("organizer", organizer)
    vevent.add("status", "CANCELLED" if method == "CANCEL" else "CONFIRMED")
    vevent.add("transp", "OPAQUE")
    cal = icalendar.Calendar()
    cal.add("prodid", "-//kallelse//kallelse//EN")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", method)
    cal.add_component(_vtimezone(event, start, end))  # before the VEVENT: Outlook reads it first
    cal.add_component(vevent)
    return cal.to_ical()


def _has_contact(event: Event, contact_id: str) -> bool:
    return any(c.id == contact_id for c in event.contacts)


def _vtimezone(event: Event, start: datetime, end: datetime) -> icalendar.Timezone:
    # Only the transitions of the event's year(s): a short VTIMEZONE that Outlook and Google both read.
    return icalendar.Timezone.from_tzinfo(
        event.tz,
        tzid=event.event.timezone,
        first_date=date(start.year, 1, 1),
        last_date=date(end.year + 1, 1, 1),
    )


def _ics_description(event: Event, lang: str) -> str:
    lines: list[str] = []
    for d in group_by_day(item_view(event, i, lang) for i in event.items):
        lines += ["", day(d.date, lang).upper()] if lines else [day(d.date, lang).upper()]
        lines += [f"{clock(i.start, lang)} {i.title}" for i in d.items]
    duty = event.duty_contact
    ask = "Questions" if lang == "en" else "Frågor"
    lines += ["", f"{ask}: {duty.name}, {phone(duty.phone, lang)}, {duty.email}"]
    return "\n".join(lines)
