"""MetricsSink: training hands records to one bounded queue; one consumer thread writes every backend.

Writing TensorBoard events, JSON lines or wandb can stall (disk, network); the
learner must not. ``log`` never blocks: when the queue is full the record is
dropped and counted, and the count travels in later records as ``metrics/dropped``.
Every backend uses the record's ``iteration`` as its step.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from dh_maml.spec import Spec

_STOP = object()


class Backend(Protocol):
    def write(self, record: dict[str, Any], step: int) -> None: ...

    def close(self) -> None: ...


class JsonlBackend:
    def __init__(self, path: Path):
        self._file = path.open("a")

    def write(self, record: dict[str, Any], step: int) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class TensorBoardBackend:
    def __init__(self, logdir: Path, purge_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=str(logdir), purge_step=purge_step)

    def write(self, record: dict[str, Any], step: int) -> None:
        for key, value in record.items():
            if key != "iteration" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self._writer.add_scalar(key, value, global_step=step)

    def close(self) -> None:
        self._writer.close()


class MetricsError(ValueError):
    """A metrics backend that cannot start; the message says what to change."""


class WandbBackend:
    def __init__(self, run_dir: Path, wandb_spec: Any, name: str, config: dict[str, Any]):
        try:
            import wandb
        except ImportError:
            raise MetricsError(
                "metrics.wandb.enabled is true but wandb is not installed: "
                "pip install -e '.[wandb]' or set metrics.wandb.enabled=false"
            ) from None
        chosen = {
            "project": wandb_spec.project or os.environ.get("WANDB_PROJECT") or "dh-maml",
            "entity": wandb_spec.entity,
            "mode": wandb_spec.mode,
        }
        try:
            self._run = wandb.init(
                name=name,
                dir=str(run_dir),
                config=config,
                reinit="create_new",
                **{k: v for k, v in chosen.items() if v is not None},
            )
        except Exception as exc:  # wandb's own errors (no API key, no network, bad entity) vary by version
            raise MetricsError(
                f"metrics.wandb: wandb could not start ({type(exc).__name__}: {str(exc).strip()[:300]}); log in "
                "with `wandb login`, or run it with WANDB_MODE=offline (or metrics.wandb.mode=offline)"
            ) from None

    def write(self, record: dict[str, Any], step: int) -> None:
        self._run.log({k: v for k, v in record.items() if k != "iteration"}, step=step)

    def close(self) -> None:
        self._run.finish()


class MetricsSink:
    """One bounded queue, one consumer thread, several backends."""

    def __init__(self, backends: list[Backend], queue_size: int = 1024):
        self._backends = backends
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.dropped = 0
        self.failures: list[str] = []
        self._thread = threading.Thread(target=self._consume, name="metrics-sink", daemon=True)
        self._thread.start()

    def log(self, record: dict[str, Any]) -> bool:
        """Queue a record (it must hold ``iteration``); False when the queue was full and it was dropped."""
        record = {**record, "metrics/dropped": self.dropped}
        try:
            self._queue.put_nowait(record)
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def _consume(self) -> None:
        while True:
            record = self._queue.get()
            if record is _STOP:
                return
            for backend in self._backends:
                try:
                    backend.write(record, int(record["iteration"]))
                except Exception as exc:  # a broken backend must not take the others (or training) down
                    message = f"{type(backend).__name__}: {exc}"
                    if message not in self.failures:
                        self.failures.append(message)
                        print(f"warning: metrics backend failed: {message}", file=sys.stderr)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then close every backend."""
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)
        for backend in self._backends:
            backend.close()


def open_sink(run_dir: Path, spec: Spec, resume_at: int | None = None) -> MetricsSink:
    """TensorBoard and JSONL in the run directory always; wandb when the spec enables it.

    ``resume_at``: the iteration a resumed run continues from; TensorBoard hides
    the events an interrupted run logged after it.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    purge = None if resume_at is None else resume_at + 1
    wb = spec.metrics.wandb
    # wandb first: the one that can fail at start, before anything else is written
    backends: list[Backend] = (
        [WandbBackend(run_dir, wb, f"{spec.experiment.name}/{run_dir.name}", spec.to_dict())] if wb.enabled else []
    )
    backends += [JsonlBackend(run_dir / "metrics.jsonl"), TensorBoardBackend(run_dir / "tensorboard", purge)]
    return MetricsSink(backends, spec.metrics.queue_size)
