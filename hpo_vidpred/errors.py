"""The one exception type a user sees: a single line that says what went wrong and what to do."""

from __future__ import annotations

__all__ = ["HpoError"]


class HpoError(Exception):
    """A user-facing failure. The CLI prints ``str(error)`` as one line and exits non-zero.

    Raise it (never a bare ``ValueError``) wherever bad input, missing data or an unreachable store is
    detected, with a message that names the problem and the fix, e.g.
    ``HpoError("unknown cell 'gru'; choose one of: convlstm, stlstm")``.
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(" ".join(message.split()))  # always one line
        self.exit_code = exit_code
