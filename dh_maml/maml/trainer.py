"""MAML-TRPO's learner: everything it owns — weights, RNG streams, the iteration counter — and the two
things it does: plan an iteration and turn sampled task groups into a meta-update. Who samples the groups
(observers over RPC, a thread, this process) is the caller's business.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from dh_maml.algorithms import Holders, split_evenly
from dh_maml.config import SpecError
from dh_maml.envs import make_family
from dh_maml.maml.held_terms import HeldTerms
from dh_maml.maml.inner import TaskGroup
from dh_maml.maml.learner import MAMLTRPO, GroupObjective, MetaStepStats
from dh_maml.maml.rollouts import MAMLRollouts
from dh_maml.policies import make_policy
from dh_maml.seeding import TrainingProgress
from dh_maml.spec import Spec


@dataclass
class Shard:
    """Tasks of one iteration sent to one observer, with the seed they are sampled with."""

    ids: list[int]
    seed: int


def split_shard(shard: Shard, parts: int) -> list[Shard]:
    """A failed shard cut for the survivors; seeds derived from the original so reruns are reproducible."""
    pieces = split_evenly(shard.ids, parts)
    return [
        Shard(ids, int(np.random.SeedSequence([shard.seed, i]).generate_state(1)[0])) for i, ids in enumerate(pieces)
    ]


@dataclass
class IterationPlan:
    """The tasks of one meta-iteration cut into shards, and what has come back so far."""

    version: int
    tasks: list
    jobs: list[Shard]
    groups: list[TaskGroup] = field(default_factory=list)
    objectives: list[GroupObjective] = field(default_factory=list)


def held_by_observers(products: str, device: torch.device) -> bool:
    """``trpo.products``: whether the observers compute the step's terms. ``auto`` leaves them to a CUDA
    learner, measured faster than the observers with up to 8 of them (docs/results.md), and otherwise to
    the observers, whose share shrinks as they are added."""
    return products == "observers" or (products == "auto" and device.type != "cuda")


class MetaTrainer(TrainingProgress):
    """The learner's side of MAML-TRPO; the agent drives it through ``plan``, ``call_args``, ``split``,
    ``consume``, ``update`` and ``record``, whoever samples."""

    entry = staticmethod(MAMLRollouts.sample)  # what observers run for it

    def __init__(self, spec: Spec, device: str | torch.device = "cpu"):
        super().__init__(spec)
        self.device = torch.device(device)
        self.family = make_family(spec.env)
        multiple = self.family.tasks_multiple
        if spec.maml.meta_batch_size % multiple:
            raise SpecError(
                [
                    f"maml.meta_batch_size: {self.family.name} draws every meta-batch evenly over its {multiple} "
                    f"train classes; expected a multiple of {multiple}, got {spec.maml.meta_batch_size}"
                ]
            )
        self.policy = make_policy(self.family.observation_space, self.family.action_space, spec.policy).to(self.device)
        self.learner = MAMLTRPO(self.policy, spec.maml, spec.trpo, spec.experiment.learner_threads)

    def plan(self, num_shards: int) -> IterationPlan:
        tasks = self.family.sample_tasks(self.spec.maml.meta_batch_size, self.task_rng)
        shards = split_evenly(range(len(tasks)), num_shards)
        seeds = [int(s) for s in self.sample_rng.integers(2**31, size=len(shards))]
        return IterationPlan(self.iteration, tasks, [Shard(ids, seed) for ids, seed in zip(shards, seeds)])

    @property
    def held(self) -> bool:
        """Whether the observers compute the TRPO step's terms of the groups they sample."""
        return held_by_observers(self.spec.trpo.products, self.device)

    def call_args(self, plan: IterationPlan, shard: Shard, weights: dict[str, torch.Tensor]) -> tuple:
        return plan.version, weights, [plan.tasks[i] for i in shard.ids], shard.ids, shard.seed, self.held

    split = staticmethod(split_shard)

    def consume(self, plan: IterationPlan, shard: Shard, group: TaskGroup) -> None:
        """Build the arriving group's second-order terms at once, while other groups are still sampling
        (unless its observer holds them)."""
        if not self.held:
            plan.objectives.append(self.objective(group))
        plan.groups.append(group)

    def cpu_weights(self) -> dict[str, torch.Tensor]:
        """A CPU copy of the weights, unaffected by later updates: what observers and checkpoints get."""
        return {k: v.detach().cpu().clone() for k, v in self.policy.state_dict().items()}

    def objective(self, group: TaskGroup) -> GroupObjective:
        """One group's second-order graph; build it as soon as the group arrives."""
        return self.learner.objective(group.to(self.device))

    def update(self, plan: IterationPlan, holders: Holders | None = None) -> MetaStepStats:
        """The TRPO step on the groups' terms: those built here as groups arrived, or those the observers
        hold (``trpo.products: observers``), asked for through ``holders``."""
        if self.held and holders is not None:
            terms = HeldTerms(plan.version, plan.groups, holders, self.learner, self.objective, self.device)
        else:
            terms = self.learner.terms(plan.objectives or [self.objective(g) for g in plan.groups])
        stats = self.learner.take_step(terms)
        self.iteration += 1
        return stats

    def record(
        self, plan: IterationPlan, stats: MetaStepStats, wall: float, consume: float, update: float, **times: float
    ) -> dict[str, Any]:
        kinds = self.family.task_kinds() is not None
        latent = (lambda i: str(self.family.latent(plan.tasks[i]))) if kinds else None
        return iteration_record(
            self.iteration, plan.groups, stats, wall=wall, latent=latent, graphs=consume, trpo=update, **times
        )

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: weights, iteration, every RNG, the spec."""
        return {"policy": self.cpu_weights(), **self.progress_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.load_progress(state)


def iteration_record(
    iteration: int,
    groups: Sequence[TaskGroup],
    stats: MetaStepStats,
    wall: float | None = None,
    latent: Callable[[int], str] | None = None,
    **times: float,
) -> dict[str, Any]:
    """The metrics of one iteration; ``time/iteration`` is ``wall``, else the sum of the named phases. Groups
    are taken in task order, so the order they arrived in never changes a bit of the record. ``latent`` (task
    id -> label, families with finitely many kinds of task) adds each kind's mean returns, so a learning curve
    shows whether one direction lags."""
    groups = sorted(groups, key=lambda g: g.task_ids[0])
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
    if latent is not None:
        labels = np.array([latent(i) for g in groups for i in g.task_ids])
        for label in sorted(set(labels)):
            mask = torch.from_numpy(labels == label)
            record[f"returns/pre/{label}"] = pre[mask].mean().item()
            record[f"returns/post/{label}"] = post[mask].mean().item()
    for key, batches in (("success/pre", [g.train[0] for g in groups]), ("success/post", [g.valid for g in groups])):
        rates = [b.task_success_rates() for b in batches]
        if all(r is not None for r in rates):
            record[key] = torch.cat(rates).mean().item()
    trpo = asdict(stats.trpo)
    record.update(
        {
            "loss/surrogate_before": trpo["loss_before"],
            "loss/surrogate_after": trpo["loss_after"],
            "kl/after": trpo["kl_after"],
            "cg/residual": trpo["cg_residual"],
            "line_search/steps": trpo["ls_steps"],
            "line_search/accepted": float(trpo["accepted"]),
            "step/norm": trpo["step_norm"],
            "time/gradient": stats.gradient_s,
            "time/cg": trpo["cg_s"],
            "time/line_search": trpo["line_search_s"],
        }
    )
    record.update({f"time/{k}": v for k, v in times.items()})
    return record
