"""The `advisor` command line: `main` (one function per sub-command, errors as one line and an
exit code), `parser` (flags, defaults read from the config dataclasses), `console` (rich tables
for people, JSON for programs)."""

from __future__ import annotations

from advisor.cli.main import main

__all__ = ["main"]
