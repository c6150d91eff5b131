"""The README is for users (issue 21, item 7): the two set-up commands first, nothing pointing
outside the repository, every command it names exists, and it stays short."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_starts_with_the_two_commands_and_stays_in_the_repository() -> None:
    text = README.read_text()
    first_block = text.split("```")[1]
    assert [line.split()[:2] for line in first_block.splitlines() if line.strip()][1:] == [
        ["make", "demo"], ["make", "test"]]
    assert len(text.encode()) < 20_000, "status, counts and timings belong in CHANGELOG.md"
    for link in re.findall(r"\]\(([^)]+)\)", text):
        if "://" in link or link.startswith("#"):
            continue
        target = (README.parent / link.split("#")[0]).resolve()
        assert target.is_relative_to(README.parent) and target.exists(), link
    assert "../" not in text and "/work/" not in text


def test_every_command_the_readme_names_exists() -> None:
    import argparse

    from advisor.cli.parser import build_parser

    subs = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    named = set(re.findall(r"`advisor ([a-z]+)", README.read_text()))
    assert named and named <= set(subs.choices), named - set(subs.choices)
