"""One console line per iteration: a bar, the headline returns, seconds per iteration and the ETA."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    def __init__(self, total: int, start: int, stream: TextIO = sys.stdout, width: int = 20):
        self.total, self.start, self.stream, self.width = total, start, stream, width
        self.started = time.perf_counter()

    def update(self, record: dict[str, Any]) -> None:
        done = record["iteration"]
        rate = (time.perf_counter() - self.started) / max(done - self.start, 1)
        filled = int(self.width * done / self.total)
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(
            f"[{bar}] {done:>{len(str(self.total))}}/{self.total}  pre {record['returns/pre']:8.2f}  "
            f"post {record['returns/post']:8.2f}  {record['time/iteration']:5.2f} s/it  "
            f"ETA {format_duration(rate * (self.total - done))}\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        self.stream.write(f"       {text}\n")
        self.stream.flush()
