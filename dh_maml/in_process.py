"""Any registered algorithm's whole training loop in this process, no RPC and no threads: for notebooks,
benchmarks and tests. The learner and the rollout service are the ones the processes use; only the
transport is gone."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from dh_maml.algorithms import get_algorithm
from dh_maml.spec import Spec


class OneHolder:
    """``algorithms.Holders`` in this process: its one rollout service holds every job."""

    def __init__(self, rollouts: Any, jobs: list):
        self.rollouts, self.jobs = rollouts, jobs

    def call(self, entry: Callable[..., Any], args_of: Callable[[Any], tuple]) -> list[tuple[Any, Any]]:
        return [(job, entry(self.rollouts, *args_of(job))) for job in self.jobs]


class InProcess:
    def __init__(self, spec: Spec, device: str = "cpu"):
        algorithm = get_algorithm(spec.experiment.algorithm)
        self.trainer = algorithm.trainer(spec, device)
        self.rollouts = algorithm.rollouts(spec)

    def iterate(self) -> dict[str, Any]:
        """One iteration, all of it as one job; returns its metrics record."""
        trainer = self.trainer
        t0 = time.perf_counter()
        left = trainer.deferred() if hasattr(trainer, "deferred") else None
        if left is not None:  # the previous round's update, which the agent overlaps with sampling
            left()
        plan = trainer.plan(1)
        weights = trainer.cpu_weights()
        results = [(job, trainer.entry(self.rollouts, *trainer.call_args(plan, job, weights))) for job in plan.jobs]
        t1 = time.perf_counter()
        for job, result in results:
            trainer.consume(plan, job, result)
        t2 = time.perf_counter()
        stats = trainer.update(plan, OneHolder(self.rollouts, plan.jobs))
        t3 = time.perf_counter()
        return trainer.record(plan, stats, wall=t3 - t0, sampling=t1 - t0, consume=t2 - t1, update=t3 - t2)

    def close(self) -> None:
        self.rollouts.close()
