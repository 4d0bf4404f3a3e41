"""Run directories: runs/<experiment>/<timestamp>/ with the resolved spec, metrics, checkpoints, results."""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from dh_maml.spec import Spec, spec_from_dict


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
    path = Path(run_dir) / "spec.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"'{run_dir}' is not a run directory (no spec.yaml in it)")
    return spec_from_dict(yaml.safe_load(path.read_text()), source=str(path))


def checkpoint_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints" / "latest.pt"


def truncate_metrics(run_dir: str | Path, iteration: int) -> int:
    """Drop metrics records after ``iteration`` (logged after the checkpoint a resume starts from), atomically;
    returns how many were dropped."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if line.strip() and json.loads(line).get("iteration", 0) <= iteration]
    if len(kept) != len(lines):
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(kept))
        tmp.replace(path)
    return len(lines) - len(kept)
