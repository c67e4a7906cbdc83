"""`kallelse status`: who is coming, what was sent, what failed and what goes out next.

`event_status` returns plain data (the dashboard shows the same); `format_status` writes it for a terminal.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipeline.states import ATTENTION_STATES, LedgerState
from pipeline.store import ledger
from pipeline.store.models import DelegateRow, LedgerRow
from pipeline.timetable import Event

S = LedgerState
STATES = tuple(LedgerState)
WAITING = (S.PLANNED, S.QUEUED)  # the next sends
RSVP = ("yes", "no", "none")


@dataclass(frozen=True)
class NextSend:
    due_at: datetime  # local to the event
    rule: str
    channel: str
    delegate_id: str
    name: str


@dataclass
class Status:
    rsvp: dict[str, int]  # yes | no | none → count
    by_rule: dict[tuple[str, str], dict[str, int]]  # (rule, channel) → state → count
    totals: dict[str, int]  # state → count
    failures: list[tuple[str, int]]  # (reason, count), most common first
    next_sends: list[NextSend] = field(default_factory=list)

    def as_json(self) -> dict:
        return {
            "rsvp": self.rsvp,
            "rules": [{"rule": r, "channel": c, "counts": n} for (r, c), n in self.by_rule.items()],
            "totals": self.totals,
            "failures": [{"reason": reason, "count": n} for reason, n in self.failures],
            "next": [
                {
                    "due_at": s.due_at.isoformat(),
                    "rule": s.rule,
                    "channel": s.channel,
                    "delegate": s.delegate_id,
                }
                for s in self.next_sends
            ],
        }


def event_status(session: Session, event: Event, *, limit: int = 10) -> Status:
    """RSVP counts, ledger counts per rule and channel by state, top failure reasons, the next sends."""
    rsvp = dict.fromkeys(RSVP, 0)
    for answer, n in session.execute(select(DelegateRow.rsvp, func.count()).group_by(DelegateRow.rsvp)):
        rsvp[answer] = n
    by_rule: dict[tuple[str, str], dict[str, int]] = {}
    totals: Counter[str] = Counter()
    for (rule, channel, state), n in ledger.counts_by_state(session, event.event.id).items():
        by_rule.setdefault((rule, channel), {})[state] = n
        totals[state] += n
    return Status(
        rsvp,
        dict(sorted(by_rule.items())),
        dict(totals),
        _failures(session, event, limit),
        _next(session, event, limit),
    )


def _failures(session: Session, event: Event, limit: int) -> list[tuple[str, int]]:
    query = (
        select(LedgerRow.reason, func.count())
        .where(LedgerRow.event_id == event.event.id, LedgerRow.state.in_(ATTENTION_STATES))
        .group_by(LedgerRow.reason)
        .order_by(func.count().desc(), LedgerRow.reason)
        .limit(limit)
    )
    return [(reason or "(no reason recorded)", n) for reason, n in session.execute(query)]


def _next(session: Session, event: Event, limit: int) -> list[NextSend]:
    query = (
        select(LedgerRow.due_at, LedgerRow.rule, LedgerRow.channel, LedgerRow.delegate_id, DelegateRow.name)
        .outerjoin(DelegateRow, DelegateRow.id == LedgerRow.delegate_id)
        .where(
            LedgerRow.event_id == event.event.id,
            LedgerRow.state.in_([LedgerState.PLANNED, LedgerState.QUEUED]),
        )
        .order_by(LedgerRow.due_at, LedgerRow.id)
        .limit(limit)
    )
    return [
        NextSend(due.astimezone(event.tz), rule, channel, delegate_id, name or "")
        for due, rule, channel, delegate_id, name in session.execute(query)
    ]


def format_status(status: Status, event: Event) -> list[str]:
    """Lines for a terminal."""
    r = status.rsvp
    lines = [
        f"RSVP: {r['yes']} yes, {r['no']} no, {r['none']} not answered ({sum(r.values())} delegates)",
        "",
    ]
    shown = [s for s in STATES if any(counts.get(s) for counts in status.by_rule.values())] or [
        LedgerState.PLANNED
    ]
    lines.append(f"{'rule':24} {'channel':7} " + " ".join(f"{s:>9}" for s in shown))
    for (rule, channel), counts in status.by_rule.items():
        lines.append(f"{rule[:24]:24} {channel:7} " + " ".join(f"{counts.get(s, 0):>9}" for s in shown))
    lines.append("total: " + ", ".join(f"{status.totals.get(s, 0)} {s}" for s in shown))
    if status.failures:
        lines += ["", "Failures:"] + [f"  {n} × {reason}" for reason, n in status.failures]
    lines += ["", f"Next sends ({event.event.timezone}):" if status.next_sends else "Nothing planned."]
    lines += [
        f"  {s.due_at:%Y-%m-%d %H:%M}  {s.rule[:24]:24} {s.channel:5} {s.name or s.delegate_id}"
        for s in status.next_sends
    ]
    return lines
