"""Atomic checkpoints of tensors and plain values, loadable with ``weights_only=True``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write to a temporary file in the same folder, fsync, then rename: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message says which file and why."""


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The saved state; an empty, truncated or foreign file (or a pickle that is not plain weights and
    values, which ``weights_only`` refuses) is a ``CheckpointError``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several kinds for a damaged file; all mean the same to a user
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"checkpoint '{path}' cannot be read: damaged, truncated or not a DH-MAML checkpoint ({reason})"
        ) from None
    if not isinstance(state, dict) or not isinstance(state.get("iteration"), int):
        raise CheckpointError(f"checkpoint '{path}' is not a DH-MAML checkpoint (no iteration in it)")
    return state


def restore(trainer: Any, state: dict[str, Any], path: str | Path) -> None:
    """``trainer.load_state_dict(state)``, or a ``CheckpointError`` when the state does not fit (missing
    keys, another architecture)."""
    try:
        trainer.load_state_dict(state)
    except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise CheckpointError(
            f"checkpoint '{path}' does not fit this run's spec (another policy or algorithm, or "
            f"missing parts: {type(exc).__name__}: {str(exc).strip()[:200]})"
        ) from None
