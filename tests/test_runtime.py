"""The runtime's event file: re-read when it changes, looked at on a timer rather than on every access."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pipeline.runtime import EventFile

ROOT = Path(__file__).resolve().parent.parent


class Ticker:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def edit(path: Path) -> None:
    text = path.read_text(encoding="utf-8").replace("2021-11-11T23:59:00", "2021-11-12T23:59:00")
    path.write_text(text, encoding="utf-8")
    os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 5))  # a new mtime even on coarse clocks


def test_an_edited_event_file_is_seen_once_the_check_interval_has_passed(tmp_path: Path) -> None:
    """Within the interval the event is served without looking at the file; after it, the edit shows."""
    path = tmp_path / "event.toml"
    shutil.copy(ROOT / "config" / "event.toml", path)
    ticker = Ticker()
    events = EventFile(path, check_every=1.0, monotonic=ticker)
    before = events.load()
    edit(path)
    ticker.now = 0.5
    assert events.load() is before
    ticker.now = 1.5
    after = events.load()
    assert after.event.rsvp_deadline != before.event.rsvp_deadline
    assert events.version == 2


def test_refresh_looks_at_the_file_at_once(tmp_path: Path) -> None:
    """The scheduler, having seen the file change, re-plans from the new file without waiting."""
    path = tmp_path / "event.toml"
    shutil.copy(ROOT / "config" / "event.toml", path)
    events = EventFile(path, check_every=60.0, monotonic=Ticker())
    before = events.load()
    edit(path)
    assert events.refresh().event.rsvp_deadline != before.event.rsvp_deadline
    assert events.load() is events.refresh()
