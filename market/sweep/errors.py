"""Sweep errors: each problem is one line a user can act on (where, what is wrong, the fix)."""

from __future__ import annotations

from collections.abc import Sequence


class SweepError(Exception):
    """A sweep that cannot start or continue.

    ``lines`` holds one line per problem (a bad grid key, value or cell, a bad flag), each naming
    the flag, key or file and the fix; the command line prints each as its own error line.
    """

    def __init__(self, lines: str | Sequence[str]) -> None:
        self.lines = (lines,) if isinstance(lines, str) else tuple(lines)
        super().__init__("\n".join(self.lines))


class JobFailed(SweepError):
    """A job raised: the sweep stopped; the finished jobs are kept and the sweep can resume."""
