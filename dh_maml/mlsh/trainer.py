"""MLSH training state on the learner's side: the shared sub-policies, the task slots, and one round.

A round gives every task slot one iteration. Slots start staggered, slot s of S
``s * (W + U) // S`` iterations into its first task, so that joint iterations
(the sub-policies' data) fall in every round rather than all in the same one.
Masters travel with their slot's job (``MasterState``): observers hold no state
between rounds, a lost observer's slots run elsewhere unchanged, and a
checkpoint holds everything needed to continue exactly.

With ``mlsh.overlap_update`` a round's sub-policy update is left to ``deferred``,
which the agent runs on its learner thread while the observers sample the next
round; that round acts with the sub-policies as they were before the update (a
snapshot), in every run alike, so a run stays exactly reproducible. Checkpoints
then hold the snapshot, the optimisers before the update and the segments it
learns from.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dh_maml.algorithms import Holders, split_evenly
from dh_maml.config import SpecError
from dh_maml.envs import make_family
from dh_maml.mlsh.policies import SubPolicies
from dh_maml.mlsh.ppo import Samples
from dh_maml.mlsh.rollouts import MLSHRollouts
from dh_maml.mlsh.updates import MasterState, Segments, SlotBatch, SlotJob, SlotResult, SubPolicyLearner
from dh_maml.seeding import TrainingProgress
from dh_maml.spec import Spec


@dataclass
class Slot:
    """Where one task slot stands between rounds."""

    task: Any = None  # None: draw a new task at the next round
    phase: int = 0
    master_seed: int = 0
    master: MasterState | None = None


@dataclass
class RoundPlan:
    version: int
    jobs: list[list[SlotJob]]  # one list per observer
    results: list[SlotResult] = field(default_factory=list)


@dataclass
class RoundStats:
    samples: list[int]  # steps each sub-policy learned from this round


class MLSHTrainer(TrainingProgress):
    entry = staticmethod(MLSHRollouts.run_slots)  # what observers run for it

    def __init__(self, spec: Spec, device: str = "cpu"):
        if device != "cpu":
            raise SpecError(
                [
                    f"experiment.device={device} (--device {device}): MLSH's learner runs on the CPU (its "
                    "sub-policies are small MLPs updated by minibatch PPO); leave --device and "
                    "experiment.device at cpu"
                ]
            )
        super().__init__(spec)
        self.mlsh = spec.mlsh
        self.family = make_family(spec.env)
        self.subpolicies = SubPolicies(
            self.family.observation_space,
            self.family.action_space,
            self.mlsh.num_subpolicies,
            spec.policy,
            self.mlsh.shared_body,
            self.mlsh.normalize_obs,
        )
        self.learner = SubPolicyLearner(self.subpolicies, self.mlsh, spec.experiment.seed)
        self.slots = [Slot(phase=s * self.period // self.mlsh.slots) for s in range(self.mlsh.slots)]
        # overlap_update: the sub-policies and optimisers before the last round's update and the segments it
        # learns from, kept (and checkpointed) until the next round's update, whether or not it ran yet
        self._sampling: dict[str, torch.Tensor] | None = None
        self._learner_state: dict[str, Any] | None = None
        self._pending: list[Segments] = []
        self._handed_out = False  # ``deferred`` gave the pending update away

    @property
    def period(self) -> int:
        return self.mlsh.warmup + self.mlsh.joint

    def plan(self, num_shards: int) -> RoundPlan:
        jobs = []
        for s, slot in enumerate(self.slots):
            if slot.task is None:
                slot.task = self.family.sample_tasks(1, self.task_rng)[0]
                slot.master_seed, slot.master = int(self.sample_rng.integers(2**31)), None
            seed = int(self.sample_rng.integers(2**31))
            jobs.append(SlotJob(s, slot.task, slot.phase, slot.master_seed, slot.master, seed, self._commit(slot)))
        return RoundPlan(
            self.iteration, [[jobs[i] for i in part] for part in split_evenly(range(len(jobs)), num_shards)]
        )

    def _commit(self, slot: Slot) -> float:
        """The slot's share of committed episodes this round: joint iterations only, in the first
        ``joint_commit_rounds`` rounds."""
        rounds = self.mlsh.joint_commit_rounds
        joint = slot.phase >= self.mlsh.warmup
        return self.mlsh.joint_commit if joint and (rounds is None or self.iteration < rounds) else 0.0

    def cpu_weights(self) -> dict[str, torch.Tensor]:
        """The sub-policies the next round acts with: with ``overlap_update``, as they were before the latest
        update (which may still be running)."""
        return self._sampling if self._sampling is not None else self._live_weights()

    def _live_weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.subpolicies.state_dict().items()}

    def call_args(self, plan: RoundPlan, jobs: list[SlotJob], weights: dict[str, torch.Tensor]) -> tuple:
        return plan.version, weights, jobs

    @staticmethod
    def split(jobs: list[SlotJob], parts: int) -> list[list[SlotJob]]:
        return [[jobs[i] for i in part] for part in split_evenly(range(len(jobs)), parts)]

    def consume(self, plan: RoundPlan, jobs: list[SlotJob], batch: SlotBatch) -> None:
        plan.results.extend(batch.results)

    def update(self, plan: RoundPlan, holders: Holders | None = None) -> RoundStats:
        """Every slot's master moves on; the sub-policies learn from the joint iterations' segments."""
        results = sorted(plan.results, key=lambda r: r.slot)
        for r in results:
            slot = self.slots[r.slot]
            slot.master, slot.phase = r.master, slot.phase + 1
            if slot.phase == self.period:
                self.slots[r.slot] = Slot()
        segments = [r.segments for r in results if r.segments is not None]
        self.iteration += 1
        if not self.mlsh.overlap_update:
            return RoundStats(self.learner.update(segments))
        self._sampling, self._learner_state = self._live_weights(), copy.deepcopy(self.learner.state_dict())
        self._pending, self._handed_out = segments, False
        return RoundStats(self.learner.counts(segments))

    def deferred(self) -> Callable[[], Any] | None:
        """The update ``update`` left (``overlap_update``), to run before the next ``update``: the agent runs
        it on the learner thread while the observers sample the next round."""
        if self._handed_out or not self._pending:
            return None
        self._handed_out, segments = True, self._pending
        return lambda: self.learner.update(segments)

    def record(self, plan: RoundPlan, stats: RoundStats, wall: float, **times: float) -> dict[str, Any]:
        phases = {j.slot: j.phase for jobs in plan.jobs for j in jobs}
        returns = {r.slot: r.returns for r in sorted(plan.results, key=lambda r: r.slot)}  # arrival order never counts
        steps = sum(r.steps for r in plan.results)
        every = torch.cat(list(returns.values()))
        record: dict[str, Any] = {
            "iteration": self.iteration,
            "returns/mean": every.mean().item(),
            "returns/std": every.std().item() if every.numel() > 1 else 0.0,
            "env_steps": steps,
            "env_steps_per_s": steps / wall if wall > 0 else 0.0,
            "time/iteration": wall,
        }
        for name, phase in (("first", 0), ("last", self.period - 1)):
            at = [returns[s].mean().item() for s, p in phases.items() if p == phase]
            if at:
                record[f"returns/{name}"] = float(np.mean(at))
        record.update({f"mlsh/samples_sub{k}": n for k, n in enumerate(stats.samples)})
        record.update({f"time/{k}": v for k, v in times.items()})
        return record

    def state_dict(self) -> dict[str, Any]:
        """Safe to take while a deferred update runs: with ``overlap_update`` it holds the snapshots from
        before that update and the segments it learns from."""
        overlap = self._sampling is not None
        pending = {"pending": [_segments_state(s) for s in self._pending]} if overlap else {}
        return {
            "subpolicies": self.cpu_weights(),
            "learner": self._learner_state if overlap else self.learner.state_dict(),
            **pending,
            "slots": [
                {
                    "task": None if s.task is None else dataclasses.asdict(s.task),
                    "phase": s.phase,
                    "master_seed": s.master_seed,
                    "master": None if s.master is None else dataclasses.asdict(s.master),
                }
                for s in self.slots
            ],
            **self.progress_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.subpolicies.unshared_in(state["subpolicies"]):
            raise SpecError(
                [
                    "mlsh.shared_body=true: the checkpoint's sub-policies have hidden layers of their own (trained "
                    "with mlsh.shared_body false); resume with mlsh.shared_body false"
                ]
            )
        self.subpolicies.load_state_dict(state["subpolicies"])
        self.learner.load_state_dict(state["learner"])
        if "pending" in state:
            self._sampling, self._learner_state = self._live_weights(), copy.deepcopy(self.learner.state_dict())
            self._pending = [Segments(Samples(**s["samples"]), s["owner"]) for s in state["pending"]]
            self._handed_out = False
        self.slots = [
            Slot(
                None if s["task"] is None else self.family.Task(**s["task"]),
                s["phase"],
                s["master_seed"],
                None if s["master"] is None else MasterState(**s["master"]),
            )
            for s in state["slots"]
        ]
        self.load_progress(state)


def _segments_state(segments: Segments) -> dict[str, Any]:
    return {"samples": dataclasses.asdict(segments.samples), "owner": segments.owner}
