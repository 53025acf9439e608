"""Exceptions. Everything a user can cause is a ``GidxError``: the CLI prints
its message as one ``Error: ...`` line and exits with status 2, no traceback."""

from __future__ import annotations


class GidxError(Exception):
    """A problem with the user's input or index, explained in the message."""

    exit_code = 2


class InputError(GidxError):
    """A bad input file. ``problems`` holds every ``FILE:LINE: problem`` found
    (up to a cap); the message is the first one plus a count of the rest."""

    def __init__(self, problems: list[str], total: int | None = None, hint: str | None = None):
        self.problems = list(problems)
        self.total = total if total is not None else len(problems)
        self.hint = hint
        msg = self.problems[0] if self.problems else "invalid input"
        if self.total > 1:
            msg += f" (and {self.total - 1} more problem{'s' if self.total > 2 else ''})"
        if hint:
            msg += f"; {hint}"
        super().__init__(msg)


class IndexStateError(GidxError):
    """The index folder is missing, locked, of another schema revision, or damaged."""


class IndexLockedError(IndexStateError):
    """Another gidx process holds the catalog for writing longer than we waited."""
