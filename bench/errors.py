"""The one exception a user's mistake raises, and how the command line reports it.

Anything raised as :class:`UserError` (bad option value, a path that cannot be used, a file
that is not what it should be) reaches ``bench.cli.main``, which prints one line,
``error: <message>``, and exits with code 2. Everything else is a bug and keeps its traceback.
Library code raises ``UserError`` (or a subclass) only where the cause is the caller's input.
"""

from __future__ import annotations

#: exit codes of every ``bench`` command
EXIT_OK = 0
EXIT_REGRESSION = 1  # `bench gate`: the candidate is worse; `bench score`: some pair failed
EXIT_USAGE = 2  # a user's mistake: one line on stderr, nothing lost
EXIT_NOTHING_SCORED = 3  # `bench run`: every pair failed, no value was computed


class UserError(Exception):
    """A problem with the user's input; its message is shown as one line, exit code 2."""

    exit_code = EXIT_USAGE

    def __str__(self) -> str:
        # KeyError-style subclasses would quote their argument; show the plain message
        return str(self.args[0]) if self.args else self.__class__.__name__


def one_line(message: object) -> str:
    """Collapse a message to one line (newlines would break 'error: ...' parsing in CI logs)."""
    return " ".join(str(message).split())
