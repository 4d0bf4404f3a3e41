"""MAML's observer side: a CPU policy copy, envs and a baseline, built once from the run's spec and reused by
every job. No RPC here, so the agent can also run one in its own process (``--observers 0``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dh_maml.baseline import LinearFeatureBaseline
from dh_maml.envs import make_family
from dh_maml.maml.inner import TaskGroup, sample_group
from dh_maml.maml.learner import MAMLTRPO, LocalTerms, Sums
from dh_maml.maml.meta_test import ChunkScores, MetaTestChunk, meta_test_scores
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
        self.learner: MAMLTRPO | None = None  # built on the first group it must hold (trpo.products: observers)
        self.held: dict[tuple[int, tuple[int, ...]], LocalTerms] = {}  # (version, task ids) -> terms

    def sample(
        self,
        version: int,
        weights: dict[str, torch.Tensor],
        tasks: Sequence,
        task_ids: Sequence[int],
        seed: int,
        hold: bool = False,
    ) -> TaskGroup:
        """One iteration's batches for ``tasks``, sampled with the weights of ``version``; with ``hold`` this
        observer also builds their terms for the TRPO step and keeps them until a newer version arrives."""
        self.policy.load_state_dict(weights)
        group = sample_group(
            self.sampler, self.policy.params(), tasks, task_ids, self.spec.maml, self.baseline, seed, version
        )
        self.held = {key: terms for key, terms in self.held.items() if key[0] == version}
        if hold:
            if self.learner is None:
                self.learner = MAMLTRPO(self.policy, self.spec.maml, self.spec.trpo)
            # the terms keep the parameters they were built at: a copy, so no later load can change them
            params = [p.detach().clone() for p in self.policy.parameters()]
            self.held[(version, tuple(group.task_ids))] = self.learner.terms([self.learner.objective(group, params)])
        return group

    def _terms(self, version: int, task_ids: Sequence[int]) -> LocalTerms:
        terms = self.held.get((version, tuple(task_ids)))
        if terms is None:
            raise LookupError(f"this observer holds no terms for tasks {list(task_ids)} of version {version}")
        return terms

    def held_start(self, version: int, task_ids: Sequence[int]) -> Sums:
        """The held tasks' sums at the start of the TRPO step."""
        return self._terms(version, task_ids).start()

    def held_product(self, version: int, task_ids: Sequence[int], v: torch.Tensor) -> torch.Tensor:
        """Σ over the held tasks of their KL's Hessian times ``v``."""
        return self._terms(version, task_ids).product(v)

    def held_score(self, version: int, task_ids: Sequence[int], vector: torch.Tensor) -> torch.Tensor:
        """The held tasks' summed surrogate and KL after adapting from the flat parameters ``vector``."""
        return self._terms(version, task_ids).score(vector)

    def meta_test(
        self, weights: dict[str, torch.Tensor], chunk: MetaTestChunk, num_steps: int, paper_protocol: bool
    ) -> ChunkScores:
        """The chunk's returns (and success rates) before and after each inner step, [tasks, K+1]."""
        self.policy.load_state_dict(weights)
        mt = self.spec.meta_test
        params = self.policy.params()
        return meta_test_scores(
            self.sampler, params, chunk, self.spec.maml, num_steps, paper_protocol, mt.eval_episodes, mt.scored_actions
        )

    def close(self) -> None:
        self.sampler.close()
