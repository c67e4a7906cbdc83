"""The ledger's states and the moves between them, written down once.

    planned ──► queued ──► sending ──► sent ──► delivered
      ▲  │        ▲ │         │  │       └────► failed        (a delivery-status callback)
      │  │        └─┼─────────┘  └──► failed | unknown        (retry → queued; provider said no / no answer)
      │  └────────► expired | skipped  ◄── queued, sending   (validity ended; opted out, left the audience)
      └── skipped, failed, unknown                            (re-planned; an organiser's retry)
    unknown ──► sent | queued                                 (in Twilio's list | absent after the window)

Every move is a compare-and-set in `pipeline.store`, guarded by states that `MOVES` lets precede it.
A `StrEnum`, so a state compares equal to the string stored in the database.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class LedgerState(StrEnum):
    PLANNED = "planned"  # waiting for its due time
    QUEUED = "queued"  # due, handed to the broker (or waiting for a retry)
    SENDING = "sending"  # claimed by one worker, the provider is being called
    SENT = "sent"  # the provider took it (its id is recorded)
    DELIVERED = "delivered"  # the provider says it reached the phone
    FAILED = "failed"  # will not go out without an organiser's retry
    EXPIRED = "expired"  # its validity ended before it could go out
    SKIPPED = "skipped"  # not for this delegate (any more): opted out, left the audience
    UNKNOWN = "unknown"  # may or may not have gone out: check before resending


S = LedgerState

# state → the states it may move to. `store/` guards every UPDATE with the reverse of this table.
MOVES: dict[LedgerState, frozenset[LedgerState]] = {
    S.PLANNED: frozenset({S.QUEUED, S.EXPIRED, S.SKIPPED}),
    S.QUEUED: frozenset({S.SENDING, S.FAILED, S.EXPIRED, S.SKIPPED}),
    S.SENDING: frozenset({S.SENT, S.QUEUED, S.FAILED, S.UNKNOWN, S.EXPIRED, S.SKIPPED}),
    S.SENT: frozenset({S.DELIVERED, S.FAILED}),
    S.DELIVERED: frozenset(),
    S.FAILED: frozenset({S.PLANNED}),
    S.EXPIRED: frozenset(),
    S.SKIPPED: frozenset({S.PLANNED, S.EXPIRED}),
    S.UNKNOWN: frozenset({S.PLANNED, S.SENT, S.QUEUED}),  # an organiser's retry; a look in the list
}


def allowed_sources(sources: Iterable[LedgerState], to: LedgerState) -> list[LedgerState]:
    """The guard of one UPDATE, checked against `MOVES`: a move this table does not allow is a bug."""
    sources = list(sources)
    wrong = [state for state in sources if to not in MOVES[state]]
    if wrong:
        raise ValueError(f"the ledger does not move {', '.join(wrong)} → {to}")
    return sources


# The planner may still re-decide these (move them, skip them, plan them again).
OPEN_STATES = frozenset({S.PLANNED, S.SKIPPED})
# Not finished yet: a batch sent from the command waits for these.
PENDING_STATES = (S.PLANNED, S.QUEUED, S.SENDING)
# The provider took it.
SENT_STATES = (S.SENT, S.DELIVERED)
# An organiser should look at these.
ATTENTION_STATES = (S.FAILED, S.UNKNOWN)
