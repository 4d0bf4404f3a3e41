"""Meta-test: returns on held-out tasks after 0..K inner steps, mean and standard error over tasks."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from dh_maml.algorithms import EvaluationSettings, Gather, Trainer
from dh_maml.baseline import LinearFeatureBaseline
from dh_maml.envs.base import TaskFamily
from dh_maml.maml.inner import adaptation_batches, step_sizes
from dh_maml.policies import Params
from dh_maml.sampling import Sampler
from dh_maml.seeding import Stream, stream_rng
from dh_maml.spec import Spec

if TYPE_CHECKING:
    from dh_maml.spec import MAMLSpec

CHUNK_TASKS = 20


@dataclass
class MetaTestResult:
    steps: list[int]
    mean: list[float]
    se: list[float]
    tasks: int
    seed: int
    per_task: list[list[float]]  # [task][step]

    def write(self, out: Path, title: str) -> list[Path]:
        return write_meta_test(self, out, title)

    def report(self) -> list[str]:
        lines = [f"after {k} step(s): {m:9.2f} ± {s:.2f}" for k, m, s in zip(self.steps, self.mean, self.se)]
        return [*lines, f"{self.tasks} held-out tasks (seed {self.seed})"]

    def note(self) -> str:
        return "meta-test: " + "  ".join(f"{k} step(s) {m:.2f}" for k, m in zip(self.steps, self.mean))


@dataclass
class MetaTestChunk:
    """Held-out tasks sampled together with one seed; a fixed unit of work whoever runs it."""

    tasks: list
    seed: int


def held_out_chunks(family: TaskFamily, num_tasks: int, seed: int) -> list[MetaTestChunk]:
    """Held-out tasks from their own stream, cut into chunks whose seeds depend only on ``seed`` and position,
    so results do not depend on how many processes share the work."""
    tasks = family.sample_tasks(num_tasks, stream_rng(seed, Stream.META_TEST_TASKS))
    return [
        MetaTestChunk(tasks[i : i + CHUNK_TASKS], int(np.random.SeedSequence([seed, i]).generate_state(1)[0]))
        for i in range(0, len(tasks), CHUNK_TASKS)
    ]


def meta_test_returns(
    sampler: Sampler,
    params: Params,
    chunk: MetaTestChunk,
    maml_spec: MAMLSpec,
    num_steps: int,
    paper_protocol: bool = False,
) -> np.ndarray:
    """Mean return of each task's ``fast_batch_size`` episodes before and after each inner step; [tasks, K+1]."""
    lrs = step_sizes(maml_spec.fast_lr, num_steps, paper_protocol)
    batches = adaptation_batches(
        sampler, params, chunk.tasks, maml_spec, lrs, chunk.seed, LinearFeatureBaseline(maml_spec.baseline_reg)
    )
    return torch.stack([b.task_returns() for b in batches], dim=1).numpy()


def summarize(per_task: np.ndarray, seed: int) -> MetaTestResult:
    """Mean and standard error over tasks of a [tasks, K+1] matrix of returns."""
    n, k = per_task.shape
    se = per_task.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.zeros(k)
    return MetaTestResult(list(range(k)), per_task.mean(axis=0).tolist(), se.tolist(), n, seed, per_task.tolist())


def meta_test_settings(spec: Spec, settings: EvaluationSettings) -> tuple[int, int, int, bool]:
    """(tasks, steps, seed, paper_protocol), each from ``settings`` when given, else from the spec's
    ``meta_test``."""
    mt = spec.meta_test
    return (
        mt.num_tasks if settings.tasks is None else settings.tasks,
        mt.num_steps if settings.steps is None else settings.steps,
        mt.seed if settings.seed is None else settings.seed,
        mt.paper_protocol if settings.paper_protocol is None else settings.paper_protocol,
    )


async def meta_test(gather: Gather, trainer: Trainer, settings: EvaluationSettings) -> MetaTestResult:
    """The current weights on held-out tasks, one job per chunk of tasks; chunks are seeded by position, so
    the result does not depend on how many observers share them."""
    from dh_maml.maml.rollouts import MAMLRollouts  # here: the rollouts import this module

    tasks, steps, seed, protocol = meta_test_settings(trainer.spec, settings)
    weights = trainer.cpu_weights()
    rows = await gather(
        MAMLRollouts.meta_test,
        held_out_chunks(trainer.family, tasks, seed),
        lambda chunk: (weights, chunk, steps, protocol),
    )
    return summarize(np.concatenate(rows), seed)


def write_meta_test(result: MetaTestResult, out: str | Path, title: str = "meta-test") -> list[Path]:
    """``out`` is the JSON path; the CSV and PNG go beside it with the same stem."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(asdict(result), indent=2))
    csv_path, png_path = out.with_suffix(".csv"), out.with_suffix(".png")
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["steps", "mean", "se"])
        writer.writerows(zip(result.steps, result.mean, result.se))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.errorbar(result.steps, result.mean, yerr=result.se, marker="o", capsize=4)
    ax.set_xlabel("inner gradient steps")
    ax.set_ylabel("mean return")
    ax.set_xticks(result.steps)
    ax.set_title(f"{title} ({result.tasks} held-out tasks, ± s.e.)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
    return [out, csv_path, png_path]
