"""MLSH (Frans et al. 2017, the published code's conventions): master macro-steps, the routing of each
step to the sub-policy that took it, task slots and the shared sub-policies' update.

Work is cut into task slots. A slot runs one task at a time: a fresh master
and optimiser, ``warmup`` iterations updating the master alone, then ``joint``
iterations that also hand the steps to the shared sub-policies. Whoever samples
a slot updates its master (``run_slots``); the segments of every slot in a
joint iteration are pooled for one update of the sub-policies
(``SubPolicyLearner``). Rollouts are [T, E] (time, episodes); the master acts
at t = 0, N, 2N, ...
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from dh_maml.envs.base import TaskVectorEnv
from dh_maml.episodes import gae
from dh_maml.mlsh.policies import ActorCritic, SubPolicies, make_master
from dh_maml.mlsh.ppo import LossWeights, Samples, adam, ppo_update
from dh_maml.mlsh.sampling import HierarchyRollout, sample_hierarchy

if TYPE_CHECKING:
    from dh_maml.spec import MLSHSpec, PolicySpec


@dataclass
class MacroSteps:
    """The master's transitions: observation at each macro start, its choice, and the summed reward."""

    obs: Tensor  # [Tm, E, obs_dim]
    choices: Tensor  # [Tm, E]
    rewards: Tensor  # [Tm, E]: plain sum of the N step rewards of the slice
    mask: Tensor  # [Tm, E]: 1 where the slice holds at least one step of the episode


def macro_steps(obs: Tensor, choices: Tensor, rewards: Tensor, mask: Tensor, macro_len: int) -> MacroSteps:
    """Cut [T, E] step data into N-step macro steps (the last may be shorter than N)."""
    if macro_len < 1:
        raise ValueError(f"macro_len: expected at least 1, got {macro_len}")
    t, e = rewards.shape
    tm = -(-t // macro_len)
    pad = tm * macro_len - t
    summed = torch.nn.functional.pad(rewards * mask, (0, 0, 0, pad)).reshape(tm, macro_len, e).sum(1)
    alive = torch.nn.functional.pad(mask, (0, 0, 0, pad)).reshape(tm, macro_len, e).amax(1)
    return MacroSteps(obs[::macro_len], choices, summed, alive)


def advantages_and_returns(
    rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float
) -> tuple[Tensor, Tensor]:
    """GAE(γ, λ) over [T, E] and the TD(λ) value targets (advantage + prediction)."""
    adv = gae(rewards[None], values[None], mask[None], gamma, lam)[0]
    return adv, (adv + values) * mask


def owners(choices: Tensor, macro_len: int, steps: int) -> Tensor:
    """[T, E]: the sub-policy that acted at each step (the master's choice of that step's slice)."""
    return choices.repeat_interleave(macro_len, dim=0)[:steps]


def split_by_subpolicy(samples: Samples, owner: Tensor, num_subpolicies: int) -> list[Samples]:
    """Each sub-policy's samples: only the steps where it acted (flat samples, ``owner`` flat too)."""
    return [samples.take(torch.nonzero(owner == k).squeeze(-1)) for k in range(num_subpolicies)]


def master_samples(roll: HierarchyRollout, macro_len: int, gamma: float, lam: float) -> Samples:
    """The master's PPO samples: one per macro step that an episode reached, GAE over macro steps."""
    macro = macro_steps(roll.obs, roll.choices, roll.rewards, roll.mask, macro_len)
    adv, ret = advantages_and_returns(macro.rewards, roll.master_values, macro.mask, gamma, lam)
    keep = macro.mask.reshape(-1) > 0
    return Samples(
        macro.obs.reshape(keep.numel(), -1)[keep],
        macro.choices.reshape(-1)[keep],
        roll.master_log_probs.reshape(-1)[keep],
        adv.reshape(-1)[keep],
        ret.reshape(-1)[keep],
    )


@dataclass
class Segments:
    """Sub-policy training data of one task's iteration: every step, labelled with the sub-policy that took it."""

    samples: Samples
    owner: Tensor  # [M]

    @staticmethod
    def pooled(parts: Sequence[Segments]) -> Segments:
        return Segments(
            Samples(*(torch.cat([getattr(p.samples, f.name) for p in parts]) for f in fields(Samples))),
            torch.cat([p.owner for p in parts]),
        )


def slice_advantages(
    roll: HierarchyRollout, subpolicies: SubPolicies, macro_len: int, gamma: float, lam: float
) -> tuple[Tensor, Tensor]:
    """GAE(γ, λ) and value targets within each N-step slice, so a sub-policy is credited only with what
    happened while it acted: each slice ends on the acting sub-policy's own value of the next slice's first
    state (0 where the episode ended)."""
    t, e = roll.rewards.shape
    tm, n = -(-t // macro_len), macro_len
    pad = tm * n - t

    def slices(x: Tensor) -> Tensor:  # [T, E] -> [N, Tm * E]: every slice a column of its own
        return torch.nn.functional.pad(x, (0, 0, 0, pad)).reshape(tm, n, e).permute(1, 0, 2).reshape(n, tm * e)

    starts = roll.obs[n::n]  # [Tm - 1, E, obs]: the first state of every slice but the first
    with torch.no_grad():
        own = torch.stack([sub.value(starts) for sub in subpolicies])  # [K, Tm - 1, E]
    following = own.gather(0, roll.choices[None, :-1]).squeeze(0) * roll.mask[n::n]
    rewards = torch.nn.functional.pad(roll.rewards * roll.mask, (0, 0, 0, pad)).reshape(tm, n, e).clone()
    rewards[:-1, -1] += gamma * following  # a slice is full whenever another one follows it
    rewards = rewards.permute(1, 0, 2).reshape(n, tm * e)
    adv, ret = advantages_and_returns(rewards, slices(roll.values), slices(roll.mask), gamma, lam)

    def steps(x: Tensor) -> Tensor:
        return x.reshape(n, tm, e).permute(1, 0, 2).reshape(tm * n, e)[:t]

    return steps(adv), steps(ret)


def subpolicy_segments(
    roll: HierarchyRollout, macro_len: int, gamma: float, lam: float, within: SubPolicies | None = None
) -> Segments:
    """The steps of a rollout as sub-policy samples. Advantages are GAE over the episode against the acting
    sub-policy's value predictions (the published code's convention), or, given the sub-policies ``within``,
    within each slice (``slice_advantages``)."""
    if within is None:
        adv, ret = advantages_and_returns(roll.rewards, roll.values, roll.mask, gamma, lam)
    else:
        adv, ret = slice_advantages(roll, within, macro_len, gamma, lam)
    keep = roll.mask.reshape(-1) > 0
    n = keep.numel()
    flat = Samples(
        roll.obs.reshape(n, -1)[keep],
        roll.actions.reshape(n, *roll.actions.shape[2:])[keep],
        roll.log_probs.reshape(-1)[keep],
        adv.reshape(-1)[keep],
        ret.reshape(-1)[keep],
    )
    return Segments(flat, owners(roll.choices, macro_len, roll.rewards.shape[0]).reshape(-1)[keep])


def learn(
    spec: MLSHSpec,
    model: ActorCritic,
    optimizer: torch.optim.Optimizer,
    samples: Samples,
    minibatch: int,
    generator: torch.Generator,
) -> None:
    """One update by the spec's rule: PPO (``epochs`` passes in minibatches of ``minibatch``), or A2C (one step
    on the whole batch, which is PPO's first step: every ratio is 1 there, so the clipped surrogate's gradient
    is exactly the advantage actor-critic one). Then the samples' observations join ``model``'s normalizer
    statistics, if it has one: after the update, which sees them as they were sampled."""
    epochs, size = (1, len(samples)) if spec.update == "a2c" else (spec.epochs, minibatch)
    weights = LossWeights(spec.value_coef, spec.entropy_coef, spec.max_grad_norm)
    ppo_update(model, optimizer, samples, spec.clip, epochs, size, generator, weights)
    model.fold(samples.obs)


def sub_minibatch(spec: MLSHSpec, samples: int) -> int:
    """Sub-policy minibatches: the batch cut into ``sub_minibatches`` parts, as the published code does."""
    return math.ceil(samples / spec.sub_minibatches)


@dataclass
class MasterState:
    """A task's master between iterations: weights and Adam state as tensors and plain values, so it can
    travel to whichever observer runs the task's next iteration and sit in a checkpoint."""

    weights: dict[str, Tensor]
    optimizer: dict[str, Any]


def restore_master(
    observation_space: gym.Space,
    num_subpolicies: int,
    policy_spec: PolicySpec,
    lr: float,
    seed: int,
    state: MasterState | None,
) -> tuple[ActorCritic, torch.optim.Optimizer]:
    """The task's master and its optimiser: fresh (weights from ``seed``, no Adam moments) when ``state`` is
    None, as every new task starts; otherwise as the task's last iteration left them."""
    master = make_master(observation_space, num_subpolicies, policy_spec, seed)
    optimizer = adam(master.parameters(), lr)
    if state is not None:
        master.load_state_dict(state.weights)
        optimizer.load_state_dict(state.optimizer)
    return master, optimizer


def master_state(master: ActorCritic, optimizer: torch.optim.Optimizer) -> MasterState:
    return MasterState(
        {k: v.detach().clone() for k, v in master.state_dict().items()}, copy.deepcopy(optimizer.state_dict())
    )


@dataclass
class SlotJob:
    """One iteration of one task slot: the task, where it stands, and its master so far."""

    slot: int
    task: Any
    phase: int  # iterations the task has had: below ``warmup`` only the master learns
    master_seed: int  # the task's fresh master is drawn from this
    master: MasterState | None  # None at the task's first iteration
    seed: int  # this iteration's rollouts and minibatch order
    commit: float = 0.0  # share of its episodes played start to end by a uniformly drawn sub-policy


@dataclass
class SlotResult:
    slot: int
    master: MasterState
    returns: Tensor  # [E] episode returns
    steps: int  # env steps the iteration took
    choices: Tensor  # [K] how often the master chose each sub-policy
    segments: Segments | None  # joint iterations only: the steps for the shared sub-policies


@dataclass
class SlotBatch:
    """What an observer returns for its share of a round."""

    version: int
    results: list[SlotResult]


def run_slots(
    env: TaskVectorEnv,
    subpolicies: SubPolicies,
    jobs: Sequence[SlotJob],
    spec: MLSHSpec,
    policy_spec: PolicySpec,
    horizon: int,
) -> list[SlotResult]:
    """One iteration of every job's task, all sampled in one vector env (``spec.episodes`` sub-envs each);
    each master takes its PPO update here, and joint iterations hand back their sub-policy segments."""
    space = env.single_observation_space
    masters = [
        restore_master(space, len(subpolicies), policy_spec, spec.master_lr, j.master_seed, j.master) for j in jobs
    ]
    seed = int(np.random.SeedSequence([j.seed for j in jobs]).generate_state(1)[0])
    rolls = sample_hierarchy(
        env,
        subpolicies,
        [m for m, _ in masters],
        [j.task for j in jobs],
        horizon,
        spec.macro_len,
        spec.epsilon,
        seed,
        [j.commit for j in jobs],
    )
    results = []
    for job, (master, optimizer), roll in zip(jobs, masters, rolls):
        learn(
            spec,
            master,
            optimizer,
            master_samples(roll, spec.macro_len, spec.gamma, spec.gae_lambda),
            spec.master_minibatch,
            torch.Generator().manual_seed(job.seed),
        )
        joint = job.phase >= spec.warmup
        within = subpolicies if spec.sub_advantages == "slice" else None
        segments = subpolicy_segments(roll, spec.macro_len, spec.gamma, spec.gae_lambda, within) if joint else None
        chosen = roll.choices[roll.mask[:: spec.macro_len] > 0]
        results.append(
            SlotResult(
                job.slot,
                master_state(master, optimizer),
                roll.episode_returns(),
                int(roll.mask.sum()),
                torch.bincount(chosen, minlength=len(subpolicies)),
                segments,
            )
        )
    return results


class SubPolicyLearner:
    """The shared sub-policies' optimisers: PPO on the segments pooled from every joint iteration of a round,
    each sub-policy on the steps it took. With ``mlsh.shared_body`` every sub-policy's update steps the shared
    layers in turn, each with its own optimiser's moments, as if each were alone."""

    def __init__(self, subpolicies: SubPolicies, spec: MLSHSpec, seed: int):
        self.subpolicies, self.spec = subpolicies, spec
        self.optimizers = [adam(sub.parameters(), spec.sub_lr) for sub in subpolicies]
        self.generator = torch.Generator().manual_seed(seed)

    def counts(self, segments: Sequence[Segments]) -> list[int]:
        """How many samples each sub-policy would learn from."""
        return [sum(int((s.owner == k).sum()) for s in segments) for k in range(len(self.subpolicies))]

    def update(self, segments: Sequence[Segments]) -> list[int]:
        """Returns how many samples each sub-policy learned from."""
        if not segments:
            return [0] * len(self.subpolicies)
        pooled = Segments.pooled(segments)
        parts = split_by_subpolicy(pooled.samples, pooled.owner, len(self.subpolicies))
        for sub, optimizer, samples in zip(self.subpolicies, self.optimizers, parts):
            if len(samples):
                learn(self.spec, sub, optimizer, samples, sub_minibatch(self.spec, len(samples)), self.generator)
        return [len(p) for p in parts]

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": [o.state_dict() for o in self.optimizers], "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for optimizer, saved in zip(self.optimizers, state["optimizers"]):
            optimizer.load_state_dict(saved)
        self.generator.set_state(state["generator"])
