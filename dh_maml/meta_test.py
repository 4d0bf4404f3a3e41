"""Meta-test: returns on held-out tasks after 0..K inner steps, mean and standard error over tasks."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from dh_maml.algos.maml import adapt_each, detached, step_sizes, with_advantages
from dh_maml.baseline import LinearFeatureBaseline
from dh_maml.envs import make_family
from dh_maml.policies import Params, make_policy
from dh_maml.sampling import Sampler
from dh_maml.seeding import Stream, stream_rng
from dh_maml.spec import Spec


@dataclass
class MetaTestResult:
    steps: list[int]
    mean: list[float]
    se: list[float]
    tasks: int
    seed: int
    per_task: list[list[float]]  # [task][step]


def meta_test(sampler: Sampler, params: Params, tasks: Sequence, maml_spec, num_steps: int, seed: int,
              paper_protocol: bool = False, chunk: int = 20) -> MetaTestResult:
    """Sample ``fast_batch_size`` episodes per task before and after each of ``num_steps`` inner steps."""
    rng = np.random.default_rng(seed)
    baseline = LinearFeatureBaseline(maml_spec.baseline_reg)
    lrs = step_sizes(maml_spec.fast_lr, num_steps, paper_protocol)
    eps = maml_spec.fast_batch_size
    per_task: list[list[float]] = []
    for start in range(0, len(tasks), chunk):
        group = list(tasks[start:start + chunk])
        current, stacked = detached(params), False
        returns = []
        for k in range(num_steps + 1):
            batch = sampler.sample(current, group, eps, int(rng.integers(2**31)), per_task_params=stacked)
            parts = batch.split(len(group))
            returns.append([p.episode_returns().mean().item() for p in parts])
            if k < num_steps:
                parts = [with_advantages(p, baseline, maml_spec) for p in parts]
                current, stacked = adapt_each(sampler.policy, current, parts, lrs[k], stacked), True
        per_task.extend(map(list, zip(*returns)))
    matrix = np.asarray(per_task)
    se = matrix.std(axis=0, ddof=1) / np.sqrt(len(matrix)) if len(matrix) > 1 else np.zeros(num_steps + 1)
    return MetaTestResult(list(range(num_steps + 1)), matrix.mean(axis=0).tolist(), se.tolist(), len(matrix),
                          seed, matrix.tolist())


def run_meta_test(spec: Spec, sampler: Sampler, tasks: int | None = None, steps: int | None = None,
                  seed: int | None = None, paper_protocol: bool | None = None) -> MetaTestResult:
    """Meta-test the sampler's policy on held-out tasks; unset arguments come from the spec's ``meta_test``."""
    mt = spec.meta_test
    seed = mt.seed if seed is None else seed
    held_out = sampler.family.sample_tasks(mt.num_tasks if tasks is None else tasks,
                                           stream_rng(seed, Stream.META_TEST_TASKS))
    return meta_test(sampler, sampler.policy.params(), held_out, spec.maml, mt.num_steps if steps is None else steps,
                     seed, mt.paper_protocol if paper_protocol is None else paper_protocol)


def meta_test_policy(spec: Spec, policy_state: dict, **kwargs) -> MetaTestResult:
    """``run_meta_test`` for saved weights, on envs built for the purpose."""
    family = make_family(spec.env)
    policy = make_policy(family.observation_space, family.action_space, spec.policy)
    policy.load_state_dict(policy_state)
    sampler = Sampler(family, policy)
    try:
        return run_meta_test(spec, sampler, **kwargs)
    finally:
        sampler.close()


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
