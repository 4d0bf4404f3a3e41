"""What an observer computes: rollouts of a CPU policy copy on the work it is sent.

No RPC here, so the agent can also run one in its own process (``--observers 0``).
``make_rollouts`` picks the algorithm's side from the spec; the service only
forwards calls to it.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from dh_maml.algos.maml import TaskGroup, sample_group
from dh_maml.algos.mlsh import SlotJob, run_slots
from dh_maml.baseline import LinearFeatureBaseline
from dh_maml.envs import VectorEnvCache, make_family
from dh_maml.meta_test import MetaTestChunk, meta_test_returns
from dh_maml.mlsh_adaptation import AdaptationJob, Curves, run_adaptation
from dh_maml.mlsh_training import SlotBatch
from dh_maml.policies import make_policy
from dh_maml.policies.hierarchy import SubPolicies
from dh_maml.sampling import Sampler
from dh_maml.spec import Spec


def identity() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname()}


@dataclass
class Timed:
    """A job's result with the seconds its observer spent computing it: the agent's round trip less this
    is the job's transfer and queueing, so an iteration's time splits into sampling and moving data."""

    result: Any
    compute_s: float


def timed(work: Callable[[], Any]) -> Timed:
    start = time.perf_counter()
    result = work()
    return Timed(result, time.perf_counter() - start)


class MAMLRollouts:
    """Envs, a CPU policy copy and a baseline, built once from the run's spec and reused every call."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.family = make_family(spec.env)
        self.policy = make_policy(self.family.observation_space, self.family.action_space, spec.policy)
        self.sampler = Sampler(self.family, self.policy)
        self.baseline = LinearFeatureBaseline(spec.maml.baseline_reg)

    def sample(self, version: int, weights: dict[str, torch.Tensor], tasks: Sequence, task_ids: Sequence[int],
               seed: int) -> TaskGroup:
        """One iteration's batches for ``tasks``, sampled with the weights of ``version``."""
        self.policy.load_state_dict(weights)
        return sample_group(self.sampler, self.policy.params(), tasks, task_ids, self.spec.maml, self.baseline,
                            seed, version)

    def meta_test(self, weights: dict[str, torch.Tensor], chunks: Sequence[MetaTestChunk], num_steps: int,
                  paper_protocol: bool) -> list[np.ndarray]:
        """Returns [tasks, K+1] of each chunk, in the order given."""
        self.policy.load_state_dict(weights)
        params = self.policy.params()
        return [meta_test_returns(self.sampler, params, c, self.spec.maml, num_steps, paper_protocol)
                for c in chunks]

    def close(self) -> None:
        self.sampler.close()


class MLSHRollouts:
    """Envs and a CPU copy of the shared sub-policies; masters arrive with each job and leave with its result."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.family = make_family(spec.env)
        self.subpolicies = SubPolicies(self.family.observation_space, self.family.action_space,
                                       spec.mlsh.num_subpolicies, spec.policy)
        self.envs = VectorEnvCache(self.family)
        self._evaluation: VectorEnvCache | None = None  # built on the first adaptation test

    def run_slots(self, version: int, weights: dict[str, torch.Tensor], jobs: Sequence[SlotJob]) -> SlotBatch:
        """One iteration of each job's task with the sub-policies of ``version``; masters update here."""
        self.subpolicies.load_state_dict(weights)
        env = self.envs.get(len(jobs) * self.spec.mlsh.episodes)
        return SlotBatch(version, run_slots(env, self.subpolicies, jobs, self.spec.mlsh, self.spec.policy,
                                            self.family.horizon))

    def adaptation(self, weights: dict[str, torch.Tensor], job: AdaptationJob, iterations: int,
                   flat_lr: float) -> Curves:
        """One method's adaptation curves on some held-out tasks, with the evaluation reward."""
        self.subpolicies.load_state_dict(weights)
        if self._evaluation is None:
            self._evaluation = VectorEnvCache(self.family.for_evaluation())
        return run_adaptation(self._evaluation.get, self._evaluation.family, self.subpolicies, job, self.spec.mlsh,
                              self.spec.policy, iterations, flat_lr)

    def close(self) -> None:
        self.envs.close()
        if self._evaluation is not None:
            self._evaluation.close()


def make_rollouts(spec: Spec) -> MAMLRollouts | MLSHRollouts:
    return MLSHRollouts(spec) if spec.experiment.algorithm == "mlsh" else MAMLRollouts(spec)
