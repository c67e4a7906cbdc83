"""The README and .env.example stay true to the code: every setting documented, CI runs the README's tests."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_documented_in_the_readme() -> None:
    """Each Settings field appears as `NAME` in the README's settings table."""
    missing = [name.upper() for name in Settings.model_fields if f"| `{name.upper()}` |" not in README]
    assert missing == []


def test_env_example_names_only_real_settings() -> None:
    """A misspelt name in .env.example would silently do nothing."""
    names = re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE)
    known = {name.upper() for name in Settings.model_fields}
    assert names and set(names) <= known


def test_ci_runs_exactly_the_readmes_test_command() -> None:
    """The Quick start's second command is the one .ci/run calls."""
    commands = re.findall(r"```sh\n(python3 -m venv[^\n]*)\n```", README)
    assert len(commands) == 2
    assert commands[1] in (ROOT / ".ci" / "run").read_text()
