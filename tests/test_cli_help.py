"""Every command-line tool's --help prints its usage and its examples as written (commands split over lines with a
trailing backslash stay split, so they can be copied)."""

from __future__ import annotations

import re
import runpy
import sys

import pytest

TOOLS = ["average", "export", "inspect", "embed", "mine", "search", "score", "select", "aot"]


@pytest.mark.parametrize("tool", TOOLS)
def test_help_shows_usage_and_unbroken_examples(tool: str, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", [f"python -m stilts_jax.{tool}", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module(f"stilts_jax.{tool}", run_name="__main__", alter_sys=False)
    assert exit_info.value.code in (0, None)
    text = capsys.readouterr().out
    assert "usage: python -m stilts_jax." in text
    for line in text.splitlines():
        if "python -m stilts_jax" in line:
            # A continuation backslash read as an escape joins two lines with a run of spaces.
            assert not re.search(r"\S {4,}\S", line.strip()), line
