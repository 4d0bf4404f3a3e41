"""Run directories: runs/<experiment>/<timestamp>/ with the resolved spec, metrics, checkpoints, results."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

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


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")
