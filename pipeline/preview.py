"""What a delegate will receive, before it is sent: every planned message rendered as the worker would.

`kallelse preview DELEGATE` and the dashboard's "Visa" use this. It renders through the same templates,
links and .ics as delivery does, and sends nothing. A payload row (a broadcast, a change notice) is
rendered from its payload; a planned message from its rule's template.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import jinja2

from pipeline.delegates import Delegate
from pipeline.ics import delegate_ics
from pipeline.render import ICS_TEMPLATES, message_template, render_email, render_sms
from pipeline.sms import Segments, sms_segments
from pipeline.timetable import Event


@dataclass(frozen=True)
class Planned:
    """One message to show: from the planner or from a ledger row."""

    key: str
    rule: str
    channel: str
    due_at: datetime
    state: str
    payload: str | None = None  # JSON for broadcasts and change notices


@dataclass(frozen=True)
class Shown:
    """A message as the delegate will see it."""

    planned: Planned
    subject: str = ""  # email only
    text: str = ""  # the SMS, or the email's text part
    html: str = ""
    segments: Segments | None = None  # SMS only
    ics: bytes | None = None
    problem: str = ""  # why it cannot be rendered (no phone, a template error)


def show(
    env: jinja2.Environment,
    event: Event,
    delegate: Delegate,
    planned: Planned,
    links: Mapping[str, str],
) -> Shown:
    """Render one message for one delegate; a failure to render is reported, not raised."""
    try:
        template, extra = message_template(event, planned.rule, planned.payload)
        if planned.channel == "sms":
            body = render_sms(env, event, delegate, template, key=planned.key, links=links, extra=extra).body
            return Shown(planned, text=body, segments=sms_segments(body))
        ics = _calendar(event, delegate, planned, extra, links) if template in ICS_TEMPLATES else None
        email = render_email(
            env, event, delegate, template, key=planned.key, links=links, extra=extra, ics=ics
        )
    except (jinja2.TemplateError, LookupError, ValueError) as e:
        return Shown(planned, problem=str(e))
    return Shown(planned, subject=email.subject, text=email.text, html=email.html, ics=ics)


def _calendar(
    event: Event, delegate: Delegate, planned: Planned, extra: dict, links: Mapping[str, str]
) -> bytes:
    # The delegate's own calendar, stamped at the message's due time. A planned invitation shows SEQUENCE
    # 0 here; the worker gives it the applied event file's sequence when it is sent.
    sequence = int(extra.get("sequence", 0))
    return delegate_ics(
        event, delegate, stamp=planned.due_at, sequence=sequence, rsvp_url=links.get("rsvp_url")
    )
