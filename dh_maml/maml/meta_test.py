"""Meta-test: returns on held-out tasks after 0..K inner steps, mean and standard error over tasks."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from dh_maml.algorithms import EvaluationSettings, Gather, Trainer
from dh_maml.baseline import LinearFeatureBaseline
from dh_maml.envs.base import TaskFamily
from dh_maml.maml.inner import adaptation_steps, step_sizes
from dh_maml.policies import Params
from dh_maml.sampling import Sampler
from dh_maml.seeding import Stream, stream_rng
from dh_maml.spec import Spec

if TYPE_CHECKING:
    from dh_maml.spec import MAMLSpec

CHUNK_TASKS = 20


@dataclass
class LatentReturns:
    """One kind of task's returns (a direction family's forward or backward tasks): mean and standard error
    over its tasks, per number of inner steps."""

    tasks: int
    mean: list[float]
    se: list[float]


@dataclass
class PairedChange:
    """The mean over tasks of each task's return after ``end`` inner steps less its return after ``start``,
    and that difference's standard error: paired by task, so the spread between tasks (far larger than
    what a step adds on a velocity family) cancels out of the error."""

    start: int
    end: int
    mean: float
    se: float


@dataclass
class MetaTestResult:
    steps: list[int]
    mean: list[float]
    se: list[float]
    tasks: int
    seed: int
    per_task: list[list[float]]  # [task][step]
    # families that report success (Meta-World): the share of episodes that succeeded at some step
    success: list[float] | None = None  # mean over tasks, per step
    success_se: list[float] | None = None
    per_task_success: list[list[float]] | None = None  # [task][step]
    success_by_latent: dict[str, list[float]] | None = None  # per task class (latent), per step
    scored_episodes: int = 0  # per task and step; 0: the episodes the next step adapts on
    scored_actions: str = "sampled"  # how the scored episodes acted: sampled, or the policy's mean
    # families with finitely many kinds of task (directions): each kind's returns, and whether the held-out
    # tasks were balanced over the kinds (equally many of each, up to one) rather than drawn
    returns_by_latent: dict[str, LatentReturns] | None = None
    balanced: bool = False
    # each step against the one before, and the first step against the last (with 3 or more)
    paired: list[PairedChange] | None = None

    def write(self, out: Path, title: str, tested: dict[str, Any] | None = None) -> list[Path]:
        return write_meta_test(self, out, title, tested)

    def report(self) -> list[str]:
        lines = [f"after {k} step(s): {m:9.2f} ± {s:.2f}" for k, m, s in zip(self.steps, self.mean, self.se)]
        if self.success is not None:
            lines += [
                f"success after {k} step(s): {100 * m:5.1f} % ± {100 * s:.1f}"
                for k, m, s in zip(self.steps, self.success, self.success_se)
            ]
        if self.paired:
            changes = ", ".join(
                f"{c.start}→{c.end} {c.mean:+.2f} ± {c.se:.2f}" + (f" ({c.mean / c.se:+.1f} s.e.)" if c.se > 0 else "")
                for c in self.paired
            )
            lines.append(f"paired change per task: {changes}")
        for label, kind in (self.returns_by_latent or {}).items():
            per_step = "  ".join(f"{k}: {m:.2f} ± {s:.2f}" for k, m, s in zip(self.steps, kind.mean, kind.se))
            lines.append(f"{label} ({kind.tasks} tasks), after steps {per_step}")
        scored = (
            f", {self.scored_episodes} scored episode(s) per task and step ({self.scored_actions} actions)"
            if self.scored_episodes
            else ""
        )
        held_out = "balanced over task kinds, " if self.balanced else ""
        return [*lines, f"{self.tasks} held-out tasks ({held_out}seed {self.seed}){scored}"]

    def note(self) -> str:
        note = "meta-test: " + "  ".join(f"{k} step(s) {m:.2f}" for k, m in zip(self.steps, self.mean))
        if self.success is not None:
            note += "  success " + " / ".join(f"{100 * m:.1f} %" for m in self.success)
        return note


@dataclass
class MetaTestChunk:
    """Held-out tasks sampled together with one seed; a fixed unit of work whoever runs it."""

    tasks: list
    seed: int


def held_out_tasks(family: TaskFamily, num_tasks: int, seed: int, balanced: bool = False) -> list:
    """Held-out tasks from their own stream; ``balanced`` (families with finitely many kinds of task): each
    kind equally often, up to one, in a shuffled order, instead of drawn independently."""
    rng = stream_rng(seed, Stream.META_TEST_TASKS)
    kinds = family.task_kinds() if balanced else None
    if kinds is None:
        return family.held_out_tasks(num_tasks, rng)
    return [kinds[i % len(kinds)] for i in rng.permutation(num_tasks)]


def held_out_chunks(family: TaskFamily, num_tasks: int, seed: int, balanced: bool = False) -> list[MetaTestChunk]:
    """Held-out tasks cut into chunks whose seeds depend only on ``seed`` and position, so results do not
    depend on how many processes share the work."""
    tasks = held_out_tasks(family, num_tasks, seed, balanced)
    return [
        MetaTestChunk(tasks[i : i + CHUNK_TASKS], int(np.random.SeedSequence([seed, i]).generate_state(1)[0]))
        for i in range(0, len(tasks), CHUNK_TASKS)
    ]


@dataclass
class ChunkScores:
    """A chunk's [tasks, K+1] mean returns and success rates (None where the family reports no success)."""

    returns: np.ndarray
    successes: np.ndarray | None


def meta_test_scores(
    sampler: Sampler,
    params: Params,
    chunk: MetaTestChunk,
    maml_spec: MAMLSpec,
    num_steps: int,
    paper_protocol: bool = False,
    eval_episodes: int = 0,
    scored_actions: str = "sampled",
) -> ChunkScores:
    """Each task's mean return and success rate before and after each inner step: over the
    ``fast_batch_size`` episodes the next step adapts on, or over ``eval_episodes`` more run with the
    adapted policy, its actions sampled or its mean (their seeds from a stream of their own, so adaptation
    is the same either way)."""
    lrs = step_sizes(maml_spec.fast_lr, num_steps, paper_protocol)
    baseline = LinearFeatureBaseline(maml_spec.baseline_reg)
    steps = adaptation_steps(sampler, params, chunk.tasks, maml_spec, lrs, chunk.seed, baseline)
    scoring_rng = np.random.default_rng([chunk.seed, 1])
    scored = []
    for batch, current, per_task in steps:
        if eval_episodes:
            seed = int(scoring_rng.integers(2**31))
            mode = scored_actions == "mean"
            batch = sampler.sample(current, list(chunk.tasks), eval_episodes, seed, per_task_params=per_task, mode=mode)
        scored.append(batch)
    successes = [b.task_success_rates() for b in scored]
    return ChunkScores(
        torch.stack([b.task_returns() for b in scored], dim=1).numpy(),
        None if any(s is None for s in successes) else torch.stack(successes, dim=1).numpy(),
    )


def _mean_se(per_task: np.ndarray) -> tuple[list[float], list[float]]:
    n, k = per_task.shape
    se = per_task.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.zeros(k)
    return per_task.mean(axis=0).tolist(), se.tolist()


def paired_changes(per_task: np.ndarray) -> list[PairedChange]:
    """Step k against step k-1 for every k >= 1, then step 1 against the last step when that is not
    already one of them (3 or more steps)."""
    last = per_task.shape[1] - 1
    pairs = [(k - 1, k) for k in range(1, last + 1)] + ([(1, last)] if last >= 3 else [])
    changes = []
    for start, end in pairs:
        [mean], [se] = _mean_se(per_task[:, end : end + 1] - per_task[:, start : start + 1])
        changes.append(PairedChange(start, end, mean, se))
    return changes


def summarize(
    per_task: np.ndarray,
    seed: int,
    successes: np.ndarray | None = None,
    latents: Sequence[str] = (),
    scored_episodes: int = 0,
    scored_actions: str = "sampled",
    returns_by_latent: bool = False,
    balanced: bool = False,
) -> MetaTestResult:
    """Mean and standard error over tasks of [tasks, K+1] returns (and success rates, also per latent; and
    with ``returns_by_latent``, returns per latent)."""
    n, k = per_task.shape
    mean, se = _mean_se(per_task)
    result = MetaTestResult(
        list(range(k)),
        mean,
        se,
        n,
        seed,
        per_task.tolist(),
        scored_episodes=scored_episodes,
        scored_actions=scored_actions,
        balanced=balanced,
        paired=paired_changes(per_task),
    )
    labels = np.array([str(latent) for latent in latents])
    if returns_by_latent:
        result.returns_by_latent = {
            label: LatentReturns(int((labels == label).sum()), *_mean_se(per_task[labels == label]))
            for label in dict.fromkeys(labels)
        }
    if successes is not None:
        result.success, result.success_se = _mean_se(successes)
        result.per_task_success = successes.tolist()
        result.success_by_latent = {
            label: successes[labels == label].mean(axis=0).tolist() for label in dict.fromkeys(labels)
        }
    return result


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
    mt = trainer.spec.meta_test
    by_kind = trainer.family.task_kinds() is not None
    chunks = held_out_chunks(trainer.family, tasks, seed, mt.balanced)
    scores = await gather(MAMLRollouts.meta_test, chunks, lambda chunk: (weights, chunk, steps, protocol))
    successes = [s.successes for s in scores]
    return summarize(
        np.concatenate([s.returns for s in scores]),
        seed,
        None if any(s is None for s in successes) else np.concatenate(successes),
        [trainer.family.latent(task) for chunk in chunks for task in chunk.tasks],
        mt.eval_episodes,
        mt.scored_actions,
        returns_by_latent=by_kind,
        balanced=mt.balanced and by_kind,
    )


def write_meta_test(
    result: MetaTestResult, out: str | Path, title: str = "meta-test", tested: dict[str, Any] | None = None
) -> list[Path]:
    """``out`` is the JSON path; the CSV and PNG go beside it with the same stem. ``tested``: what the JSON
    records of how the test was run (checkpoint, overrides), so that a result file says what produced it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**asdict(result), **({"tested": tested} if tested else {})}, indent=2))
    csv_path, png_path = out.with_suffix(".csv"), out.with_suffix(".png")
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["steps", "mean", "se"])
        writer.writerows(zip(result.steps, result.mean, result.se))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.errorbar(result.steps, result.mean, yerr=result.se, marker="o", capsize=4, label="all tasks")
    for label, kind in (result.returns_by_latent or {}).items():
        ax.errorbar(
            result.steps, kind.mean, yerr=kind.se, marker=".", capsize=3, alpha=0.8, label=f"{label} ({kind.tasks})"
        )
    if result.returns_by_latent:
        ax.legend(fontsize=8)
    ax.set_xlabel("inner gradient steps")
    ax.set_ylabel("mean return")
    ax.set_xticks(result.steps)
    ax.set_title(f"{title} ({result.tasks} held-out tasks, ± s.e.)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
    if result.success_by_latent is None:
        return [out, csv_path, png_path]
    return [out, csv_path, png_path, write_success_chart(result, out.with_name(f"{out.stem}_success.png"), title)]


def write_success_chart(result: MetaTestResult, png_path: Path, title: str) -> Path:
    """Success rate per task class, one bar per number of inner steps."""
    import matplotlib.pyplot as plt

    labels = list(result.success_by_latent)
    width = 0.8 / len(result.steps)
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(labels) + 2), 3.8))
    for j, k in enumerate(result.steps):
        values = [100 * result.success_by_latent[label][j] for label in labels]
        ax.bar(np.arange(len(labels)) + j * width, values, width, label=f"after {k} step(s)")
    ax.set_xticks(np.arange(len(labels)) + width * (len(result.steps) - 1) / 2, labels, rotation=45, ha="right")
    ax.set_ylabel("success rate (%)")
    ax.set_ylim(0, 100)
    scored = f", {result.scored_actions} actions" if result.scored_episodes else ""
    ax.set_title(f"{title}: success per class\n({result.tasks} held-out tasks{scored})", fontsize="medium")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
    return png_path
