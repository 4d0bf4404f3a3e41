import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("WANDB_MODE", "disabled")
torch.set_num_threads(1)


@pytest.fixture
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, or a process gone while we look, is not running)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def descendants(pid):
    """Every live process below ``pid`` (read from /proc, no extra dependency)."""
    children = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


class Launch:
    """A ``launch.py`` process that is always reaped, with its whole group, even when a test fails."""

    def __init__(self, *args):
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "launch.py"), *map(str, args)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def wait(self, timeout=300):
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.communicate()


@pytest.fixture
def launcher():
    started = []

    def start(*args):
        started.append(Launch(*args))
        return started[-1]

    yield start
    for launch in started:
        launch.kill()


def metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def wait_for_iterations(run, n=1, timeout=120):
    """Until ``n`` iterations are logged: the world is up and training."""
    path = run / "metrics.jsonl"
    deadline = time.monotonic() + timeout
    while not (path.exists() and len(path.read_text().splitlines()) >= n):
        assert time.monotonic() < deadline, f"{n} iteration(s) never logged in {path}"
        time.sleep(0.2)
