"""Run directories: runs/<experiment>/<timestamp>/ with the resolved spec, metrics, checkpoints, results.

A run directory belongs to one run: a new run refuses a directory that already holds files, and the
process that trains into a directory holds a lock on it, so a second process (a reused ``--run-dir``,
a ``--resume`` of a run still training) is refused instead of interleaving its records and overwriting
the checkpoint.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

import yaml

from dh_maml.config import SpecError, load_yaml
from dh_maml.spec import Spec, spec_from_dict

LOCK_NAME = ".lock"


class RunDirError(ValueError):
    """A run directory that cannot be used as asked; the message names the flag and what to do."""


def claim_run_dir(run_dir: Path, resuming: bool) -> None:
    """Create (a new run) or open (``resuming``) a run directory and lock it for this process: the lock is
    an open descriptor that the process holds until it ends, however it ends (observers are spawned, so
    they do not inherit it)."""
    flag = "--resume" if resuming else "--run-dir"
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"{flag} {run_dir}: is a file, not a directory")
    if not resuming and run_dir.is_dir() and any(run_dir.iterdir()):
        raise RunDirError(
            f"--run-dir {run_dir}: already holds files, and a run directory belongs to one run; continue that "
            f"run with --resume {run_dir}, or give a new directory (without --run-dir each run gets its own)"
        )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise RunDirError(f"{flag} {run_dir}: cannot write there ({exc.strerror or exc})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RunDirError(
            f"{flag} {run_dir}: another DH-MAML process (pid {holder}) is training into it; wait for it to end "
            "or stop it first"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())


def new_run_dir(spec: Spec, root: str | Path = "runs") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / spec.experiment.name / stamp
    suffix = 1
    while path.exists():
        path = Path(root) / spec.experiment.name / f"{stamp}-{suffix}"
        suffix += 1
    return path


def write_spec(spec: Spec, run_dir: Path) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "spec.yaml"
    path.write_text(yaml.safe_dump(spec.to_dict(), sort_keys=False))
    return path


def read_run_spec(run_dir: str | Path) -> Spec:
    """The spec a run was started with; a missing, empty or damaged one is a ``SpecError`` that says so."""
    path = Path(run_dir) / "spec.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"'{run_dir}' is not a run directory (no spec.yaml in it)")
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SpecError([f"the run's spec.yaml is damaged ({str(exc).splitlines()[0][:200]})"], str(path)) from None
    if not isinstance(data, dict) or not data:
        raise SpecError(["the run's spec.yaml is empty or not a mapping of sections: the file is damaged"], str(path))
    return spec_from_dict(data, source=str(path))


def checkpoint_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints" / "latest.pt"


def run_and_checkpoint(path: str | Path) -> tuple[Path, Path]:
    """The run directory and checkpoint that ``path`` names: a run directory (its ``latest.pt``) or a checkpoint
    file in one's ``checkpoints/`` (e.g. a kept ``iter-0400.pt``), so runs can be compared at equal rounds."""
    path = Path(path)
    if path.is_file() and path.parent.name == "checkpoints":
        return path.parent.parent, path
    if path.is_file():
        raise FileNotFoundError(
            f"'{path}' is a file outside a run's checkpoints/ folder: give a run directory or one of its checkpoints"
        )
    return path, checkpoint_path(path)


def kept_checkpoint_path(run_dir: str | Path, iteration: int) -> Path:
    """Where ``checkpoint.keep_every`` keeps an iteration's state beside ``latest.pt``."""
    return Path(run_dir) / "checkpoints" / f"iter-{iteration:04d}.pt"


def _iteration_of(line: str) -> int | None:
    """The iteration of a metrics line; None for a blank or broken one (a crash's cut-off last line)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return int(record.get("iteration", 0)) if isinstance(record, dict) else None


def truncate_metrics(run_dir: str | Path, iteration: int) -> int:
    """Drop metrics records after ``iteration`` (logged after the checkpoint a resume starts from) and any
    broken line, atomically; returns how many were dropped."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return 0
    lines = path.read_text(errors="replace").splitlines(keepends=True)
    kept = [line for line in lines if _iteration_of(line) is not None and _iteration_of(line) <= iteration]
    if len(kept) != len(lines):
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(kept))
        tmp.replace(path)
    return len(lines) - len(kept)
