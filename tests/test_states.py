"""The ledger's states and moves, written once in pipeline.states (pure: no database)."""

from __future__ import annotations

import pytest

from pipeline.states import MOVES, OPEN_STATES, LedgerState, allowed_sources

S = LedgerState


def test_a_state_compares_equal_to_the_string_the_database_stores() -> None:
    """StrEnum: rows read back as plain strings still match the states they name."""
    assert S.SENT == "sent" and "planned" in OPEN_STATES and f"{S.UNKNOWN}" == "unknown"


def test_every_state_has_its_moves_written_down() -> None:
    """The table covers every state, and end states lead nowhere."""
    assert set(MOVES) == set(LedgerState)
    assert MOVES[S.DELIVERED] == MOVES[S.EXPIRED] == frozenset()


@pytest.mark.parametrize(
    ("sources", "to"),
    [([S.SENT], S.QUEUED), ([S.DELIVERED], S.FAILED), ([S.PLANNED], S.SENT), ([S.EXPIRED], S.PLANNED)],
)
def test_a_guard_naming_a_move_the_table_does_not_allow_is_refused(sources, to) -> None:
    """A compare-and-set from a state that may not precede its target is a bug, caught before any SQL."""
    with pytest.raises(ValueError, match="does not move"):
        allowed_sources(sources, to)


def test_a_guard_the_table_allows_is_the_guard_used() -> None:
    assert allowed_sources([S.FAILED, S.UNKNOWN], S.PLANNED) == [S.FAILED, S.UNKNOWN]
