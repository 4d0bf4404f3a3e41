"""What an observer computes: rollouts of a CPU policy copy on the tasks it is sent.

No RPC here, so the agent can also run one in its own process (``--observers 0``).
"""

from __future__ import annotations

import os
import socket
from typing import Any, Sequence

import numpy as np
import torch

from dh_maml.algos.maml import TaskGroup, sample_group
from dh_maml.baseline import LinearFeatureBaseline
from dh_maml.envs import make_family
from dh_maml.meta_test import MetaTestChunk, meta_test_returns
from dh_maml.policies import make_policy
from dh_maml.sampling import Sampler
from dh_maml.spec import Spec


class Rollouts:
    """Envs, a CPU policy copy and a baseline, built once from the run's spec and reused every call."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.family = make_family(spec.env)
        self.policy = make_policy(self.family.observation_space, self.family.action_space, spec.policy)
        self.sampler = Sampler(self.family, self.policy)
        self.baseline = LinearFeatureBaseline(spec.maml.baseline_reg)

    @staticmethod
    def identity() -> dict[str, Any]:
        return {"pid": os.getpid(), "host": socket.gethostname()}

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
