"""The one exception type that reaches the user.

Configuration, interface, permission and unreadable-capture problems raise
:class:`WormwatchError` with a message that says what is wrong and what to do;
the CLI prints it as one line and exits non-zero. Packet problems are never
exceptions: they are counted by the decode stage.
"""

from __future__ import annotations


class WormwatchError(Exception):
    """A problem the operator can fix; ``str(err)`` is the whole message."""

    def __init__(self, message: str, *, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
