"""MAML-TRPO training state and the in-process loop (one process, no RPC: a notebook can run it).

``MetaTrainer`` is everything the learner owns — weights, RNG streams, the
iteration counter — and the two things it does: plan an iteration and turn
sampled task groups into a meta-update. Who samples the groups (this process or
observers over RPC) is the caller's business.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import torch

from dh_maml.algos.maml import MAMLTRPO, GroupObjective, MetaStepStats, TaskGroup, sample_group, split_evenly
from dh_maml.baseline import LinearFeatureBaseline
from dh_maml.envs import make_family
from dh_maml.meta_test import MetaTestResult, run_meta_test
from dh_maml.policies import make_policy
from dh_maml.sampling import Sampler
from dh_maml.seeding import Stream, stream_rng
from dh_maml.spec import Spec


@dataclass
class IterationPlan:
    """The tasks of one meta-iteration, cut into shards, each with its own sampling seed."""

    version: int
    tasks: list
    shards: list[list[int]]
    seeds: list[int]


class MetaTrainer:
    def __init__(self, spec: Spec, device: str | torch.device = "cpu"):
        self.spec = spec
        self.device = torch.device(device)
        torch.manual_seed(spec.experiment.seed)
        self.family = make_family(spec.env)
        self.policy = make_policy(self.family.observation_space, self.family.action_space, spec.policy).to(self.device)
        self.learner = MAMLTRPO(self.policy, spec.maml, spec.trpo, spec.experiment.learner_threads)
        self.task_rng = stream_rng(spec.experiment.seed, Stream.TRAIN_TASKS)
        self.sample_rng = stream_rng(spec.experiment.seed, Stream.TRAIN_SAMPLING)
        self.iteration = 0

    def plan(self, num_shards: int) -> IterationPlan:
        tasks = self.family.sample_tasks(self.spec.maml.meta_batch_size, self.task_rng)
        shards = split_evenly(range(len(tasks)), num_shards)
        seeds = [int(s) for s in self.sample_rng.integers(2**31, size=len(shards))]
        return IterationPlan(self.iteration, tasks, shards, seeds)

    def cpu_weights(self) -> dict[str, torch.Tensor]:
        """A CPU copy of the weights, unaffected by later updates: what observers and checkpoints get."""
        return {k: v.detach().cpu().clone() for k, v in self.policy.state_dict().items()}

    def objective(self, group: TaskGroup) -> GroupObjective:
        """One group's second-order graph; build it as soon as the group arrives."""
        return self.learner.objective(group.to(self.device))

    def update(self, objectives: Sequence[GroupObjective]) -> MetaStepStats:
        stats = self.learner.step(objectives)
        self.iteration += 1
        return stats

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: weights, iteration, every RNG, the spec."""
        return {
            "policy": self.cpu_weights(),
            "iteration": self.iteration,
            "task_rng": self.task_rng.bit_generator.state,
            "sample_rng": self.sample_rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "spec": self.spec.to_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.iteration = int(state["iteration"])
        self.task_rng.bit_generator.state = state["task_rng"]
        self.sample_rng.bit_generator.state = state["sample_rng"]
        torch.set_rng_state(state["torch_rng"])


class LocalTrainer(MetaTrainer):
    """The whole loop in this process: one group holds every task of the meta-batch."""

    def __init__(self, spec: Spec):
        super().__init__(spec)
        self.sampler = Sampler(self.family, self.policy)
        self.baseline = LinearFeatureBaseline(spec.maml.baseline_reg)

    def iterate(self) -> dict[str, Any]:
        """One meta-iteration; returns its metrics record."""
        t0 = time.perf_counter()
        plan = self.plan(1)
        group = sample_group(self.sampler, self.policy.params(), plan.tasks, plan.shards[0], self.spec.maml,
                             self.baseline, plan.seeds[0], plan.version)
        t1 = time.perf_counter()
        stats = self.update([self.objective(group)])
        t2 = time.perf_counter()
        return iteration_record(self.iteration, [group], stats, sampling=t1 - t0, trpo=t2 - t1)

    def meta_test(self) -> MetaTestResult:
        """Meta-test the current weights with the spec's ``meta_test`` settings, reusing this trainer's envs."""
        return run_meta_test(self.spec, self.sampler)

    def close(self) -> None:
        self.sampler.close()


def iteration_record(iteration: int, groups: Sequence[TaskGroup], stats: MetaStepStats, wall: float | None = None,
                     **times: float) -> dict[str, Any]:
    """The metrics of one iteration; ``time/iteration`` is ``wall``, else the sum of the named phases."""
    pre = torch.cat([g.train[0].task_returns() for g in groups])
    post = torch.cat([g.valid.task_returns() for g in groups])
    steps = sum(g.num_steps for g in groups)
    total = wall if wall is not None else sum(times.values())
    record = {
        "iteration": iteration,
        "returns/pre": pre.mean().item(),
        "returns/pre_std": pre.std().item() if len(pre) > 1 else 0.0,
        "returns/post": post.mean().item(),
        "returns/post_std": post.std().item() if len(post) > 1 else 0.0,
        "loss/inner": stats.inner_loss,
        "env_steps": steps,
        "env_steps_per_s": steps / total if total > 0 else 0.0,
        "time/iteration": total,
    }
    trpo = asdict(stats.trpo)
    record.update({
        "loss/surrogate_before": trpo["loss_before"], "loss/surrogate_after": trpo["loss_after"],
        "kl/after": trpo["kl_after"], "cg/residual": trpo["cg_residual"], "line_search/steps": trpo["ls_steps"],
        "line_search/accepted": float(trpo["accepted"]), "step/norm": trpo["step_norm"],
    })
    record.update({f"time/{k}": v for k, v in times.items()})
    return record
