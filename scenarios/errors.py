"""Scenario errors: one line a user can act on — where, what is wrong, how to fix it."""

from __future__ import annotations


class FieldError(ValueError):
    """A problem with one field, raised inside validation and located by the loader.

    ``path`` is dotted and relative to where the check runs ("" for the field being checked).
    """

    def __init__(self, path: str, problem: str, fix: str) -> None:
        self.path = path
        self.problem = problem
        self.fix = fix
        super().__init__(f"{path + ': ' if path else ''}{problem} — {fix}")


class ScenarioError(ValueError):
    """A scenario that cannot be loaded. ``str(err)`` is one line:

    ``<file>: <field.path>: <problem> — <fix>``
    """

    def __init__(self, origin: str, path: str, problem: str, fix: str) -> None:
        self.origin = origin
        self.path = path or "(top level)"
        self.problem = _one_line(problem)
        self.fix = _one_line(fix)
        super().__init__(f"{origin}: {self.path}: {self.problem} — {self.fix}")


def join_path(*parts: object) -> str:
    """Join path pieces ("advertisers", 0, "policy.kwargs") into "advertisers.0.policy.kwargs"."""
    return ".".join(str(p) for p in parts if str(p) != "")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())
