"""Shared fixtures. Service fixtures live in tests/fixtures/ and are registered here."""

from __future__ import annotations

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.smtp",
    "tests.fixtures.twilio",
    "tests.fixtures.imap",
    "tests.fixtures.day",
]
