"""How every command of the project ends: exit statuses, and a user's mistake as one line, not a traceback.

The moderation and evaluation jobs and the stand-alone model commands (train,
soup, thresholds, export_data) all run their body through :func:`run_command`,
so a :class:`~flaxmodel.errors.ModerationError` (a flag, file or setting the
user can fix) ends every one of them the same way: ``PROG: error: MESSAGE`` on
stderr and exit status :data:`EXIT_CONFIGURATION_ERROR`.
"""

from __future__ import annotations

import sys
from typing import Callable

from flaxmodel.errors import ModerationError

EXIT_OK = 0
# Ran to the end, but its outcome must alert a scheduler (records lost, too many dead letters, drift).
EXIT_FAILED = 1
# Bad configuration, reported before any data is read.
EXIT_CONFIGURATION_ERROR = 2


def report_error(prog: str, message: str) -> int:
    """Prints ``PROG: error: MESSAGE`` to stderr and returns :data:`EXIT_CONFIGURATION_ERROR`."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return EXIT_CONFIGURATION_ERROR


def run_command(prog: str, body: Callable[[], int | None]) -> int:
    """Runs a command's body and turns its outcome into an exit status.

    Args:
      prog: the command's name, the start of its error line.
      body: the command; returns its exit status (None: :data:`EXIT_OK`).

    Returns:
      ``body``'s status, or :data:`EXIT_CONFIGURATION_ERROR` after printing a
      :class:`~flaxmodel.errors.ModerationError` as one line.
    """
    try:
        status = body()
    except ModerationError as err:
        return report_error(prog, str(err))
    return EXIT_OK if status is None else int(status)
