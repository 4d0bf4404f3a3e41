"""MAML's observer side: a CPU policy copy, envs and a baseline, built once from the run's spec and reused by
every job. No RPC here, so the agent can also run one in its own process (``--observers 0``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dh_maml.baseline import LinearFeatureBaseline
from dh_maml.envs import make_family
from dh_maml.maml.inner import TaskGroup, sample_group
from dh_maml.maml.meta_test import MetaTestChunk, meta_test_returns
from dh_maml.policies import make_policy
from dh_maml.sampling import Sampler
from dh_maml.spec import Spec


class MAMLRollouts:
    """Envs, a CPU policy copy and a baseline, built once from the run's spec and reused every call."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.family = make_family(spec.env)
        self.policy = make_policy(self.family.observation_space, self.family.action_space, spec.policy)
        self.sampler = Sampler(self.family, self.policy)
        self.baseline = LinearFeatureBaseline(spec.maml.baseline_reg)

    def sample(
        self, version: int, weights: dict[str, torch.Tensor], tasks: Sequence, task_ids: Sequence[int], seed: int
    ) -> TaskGroup:
        """One iteration's batches for ``tasks``, sampled with the weights of ``version``."""
        self.policy.load_state_dict(weights)
        return sample_group(
            self.sampler, self.policy.params(), tasks, task_ids, self.spec.maml, self.baseline, seed, version
        )

    def meta_test(
        self, weights: dict[str, torch.Tensor], chunk: MetaTestChunk, num_steps: int, paper_protocol: bool
    ) -> np.ndarray:
        """The chunk's returns before and after each inner step, [tasks, K+1]."""
        self.policy.load_state_dict(weights)
        return meta_test_returns(self.sampler, self.policy.params(), chunk, self.spec.maml, num_steps, paper_protocol)

    def close(self) -> None:
        self.sampler.close()
