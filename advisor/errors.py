"""The project's one error hierarchy; the CLI turns these into one-line messages and exit codes.

Exit codes (documented in the README): 0 ok, 2 bad input, 3 infeasible targets, 1 other failures.
"""

from __future__ import annotations


class AdvisorError(Exception):
    """Base of every error the advisor raises on purpose."""

    exit_code = 1

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} ({fix})" if fix else problem)

    def one_line(self) -> str:
        text = self.problem if not self.fix else f"{self.problem}; {self.fix}"
        return " ".join(text.split())


class BadInput(AdvisorError):
    """The user's input is wrong: a path, a name, a value. Exit code 2."""

    exit_code = 2


class Infeasible(AdvisorError):
    """No candidate can meet the targets. Exit code 3."""

    exit_code = 3
