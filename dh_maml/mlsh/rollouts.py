"""MLSH's observer side: envs and a CPU copy of the shared sub-policies; masters arrive with each job and
leave with its result, so an observer holds no state between rounds."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dh_maml.envs import VectorEnvCache, make_family
from dh_maml.mlsh.adaptation import AdaptationJob, Curves, run_adaptation
from dh_maml.mlsh.policies import SubPolicies
from dh_maml.mlsh.updates import SlotBatch, SlotJob, run_slots
from dh_maml.spec import Spec


class MLSHRollouts:
    """Envs and a CPU copy of the shared sub-policies; masters arrive with each job and leave with its result."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.family = make_family(spec.env)
        self.subpolicies = SubPolicies(
            self.family.observation_space,
            self.family.action_space,
            spec.mlsh.num_subpolicies,
            spec.policy,
            spec.mlsh.shared_body,
            spec.mlsh.normalize_obs,
        )
        self.envs = VectorEnvCache(self.family)
        self._evaluation: VectorEnvCache | None = None  # built on the first adaptation test

    def run_slots(self, version: int, weights: dict[str, torch.Tensor], jobs: Sequence[SlotJob]) -> SlotBatch:
        """One iteration of each job's task with the sub-policies of ``version``; masters update here."""
        self.subpolicies.load_state_dict(weights)
        env = self.envs.get(len(jobs) * self.spec.mlsh.episodes)
        return SlotBatch(
            version, run_slots(env, self.subpolicies, jobs, self.spec.mlsh, self.spec.policy, self.family.horizon)
        )

    def adaptation(
        self, weights: dict[str, torch.Tensor], job: AdaptationJob, iterations: int, flat_lr: float
    ) -> Curves:
        """One method's adaptation curves on some held-out tasks, with the evaluation reward."""
        self.subpolicies.load_state_dict(weights)
        if self._evaluation is None:
            self._evaluation = VectorEnvCache(self.family.for_evaluation())
        return run_adaptation(
            self._evaluation.get,
            self._evaluation.family,
            self.subpolicies,
            job,
            self.spec.mlsh,
            self.spec.policy,
            iterations,
            flat_lr,
        )

    def close(self) -> None:
        self.envs.close()
        if self._evaluation is not None:
            self._evaluation.close()
