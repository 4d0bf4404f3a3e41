"""The errors a user can fix (a flag, a spec key, a path, a checkpoint) and how the command-line entry points
report them: one line naming what to change and exit code 2, never a traceback from deep inside.

``launch.py`` and the scripts in ``bench/`` share this, so a missing checkpoint reads the same wherever it
is named.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """A flag or value the user can fix; reported in one paragraph with exit code 2."""


def user_error_types() -> tuple[type[Exception], ...]:
    """The exception types that mean bad input. Imported when asked for, not with this module: a command that
    fails on a flag should not first have imported the RPC runtime."""
    from dh_maml.checkpoint import CheckpointError
    from dh_maml.metrics import MetricsError
    from dh_maml.plots import PlotError
    from dh_maml.run_dir import RunDirError
    from dh_maml.runtime import WorldError
    from dh_maml.spec import SpecError

    return (SpecError, FileNotFoundError, UsageError, WorldError, PlotError, RunDirError, CheckpointError, MetricsError)


def reporting_user_errors(main: Callable[[], int | None]) -> int:
    """``main``'s exit code, or ``EXIT_BAD_INPUT`` after one ``error: ...`` line on stderr where it stopped on
    bad input."""
    try:
        return main() or 0
    except user_error_types() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
