"""Errors a user can fix: ``python -m pipeline`` prints them as one line and exits non-zero.

Raise ``UserFacingError`` with a message that says what was wrong and what to try (a flag, a
command). Anything else that escapes is a bug and keeps its traceback.
"""
from __future__ import annotations


class UserFacingError(Exception):
    """A problem with the user's input or environment, explained in ``str(error)``."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code
