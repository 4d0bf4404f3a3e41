"""One console line per iteration: a bar, the headline returns, seconds per iteration and the ETA."""

from __future__ import annotations

import contextlib
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO


def format_duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def shell_command(program: str, *args: object) -> str:
    """A command that works pasted into a fresh shell here: ``program`` is this interpreter or a script
    beside it (the project's virtual environment needs no activating), shown relative when below here."""
    path = Path(sys.executable) if program == "python" else Path(sys.executable).with_name(program)
    return shlex.join([_here(p) for p in (path, *args)])


def _here(part: object) -> str:
    """A path relative to the working directory when it lies below it; anything else as it is."""
    if isinstance(part, Path) and part.is_absolute():
        with contextlib.suppress(ValueError):
            return str(part.relative_to(Path.cwd()))
    return str(part)


class Progress:
    def __init__(
        self, total: int, start: int, headline: Sequence[tuple[str, str]], stream: TextIO = sys.stdout, width: int = 20
    ):
        self.total, self.start, self.stream, self.width = total, start, stream, width
        self.headline = headline  # (label, metric) pairs; a metric missing from a record is left out
        self.started = time.perf_counter()

    def update(self, record: dict[str, Any]) -> None:
        done = record["iteration"]
        rate = (time.perf_counter() - self.started) / max(done - self.start, 1)
        filled = int(self.width * done / self.total)
        bar = "#" * filled + "-" * (self.width - filled)
        returns = "".join(f"  {label} {record[key]:8.2f}" for label, key in self.headline if key in record)
        self.stream.write(
            f"[{bar}] {done:>{len(str(self.total))}}/{self.total}{returns}  {record['time/iteration']:5.2f} s/it  "
            f"ETA {format_duration(rate * (self.total - done))}\n"
        )
        self.stream.flush()

    def note(self, text: str) -> None:
        self.stream.write(f"       {text}\n")
        self.stream.flush()
