"""The MLSH hierarchy: a categorical master over K sub-policies, each an actor with its own value head.

A master belongs to one task and is drawn afresh for every task; the
sub-policies are shared across tasks and are what meta-learning keeps. Sampling
draws from torch's global generator: callers seed it in a
``torch.random.fork_rng`` scope, as the MAML sampler does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import gymnasium as gym
import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from dh_maml.policies.mlp import make_policy, mlp_layers
from dh_maml.policies.normalizer import RunningNormalizer

if TYPE_CHECKING:
    from dh_maml.spec import PolicySpec


@dataclass
class Acted:
    """What an actor did on a batch of observations."""

    actions: Tensor
    log_probs: Tensor
    values: Tensor


class ActorCritic(nn.Module):
    """A Gaussian or categorical MLP policy (matching the action space) and a value MLP beside it; with
    ``normalize_obs`` both see the observations standardised by a ``RunningNormalizer``, which ``fold`` feeds."""

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        policy_spec: PolicySpec,
        normalize_obs: bool = False,
    ):
        super().__init__()
        obs_dim = math.prod(observation_space.shape)
        self.actor = make_policy(observation_space, action_space, policy_spec)
        self.critic = mlp_layers([obs_dim, *policy_spec.hidden_sizes, 1], policy_spec.nonlinearity)
        self.normalizer = RunningNormalizer(obs_dim) if normalize_obs else None

    def inputs(self, obs: Tensor) -> Tensor:
        """What the actor and the critic see of ``obs``."""
        return obs if self.normalizer is None else self.normalizer(obs)

    def fold(self, obs: Tensor) -> None:
        """Merge observations learned from into the normalizer's statistics (nothing without one)."""
        if self.normalizer is not None:
            self.normalizer.fold(obs)

    def value(self, obs: Tensor) -> Tensor:
        return self.critic(self.inputs(obs)).squeeze(-1)

    def distribution(self, obs: Tensor) -> Distribution:
        return self.actor.distribution(self.actor(self.inputs(obs)))

    def outputs(self, obs: Tensor) -> tuple[Distribution, Tensor]:
        """The action distributions and value predictions, the observations standardised once for both."""
        seen = self.inputs(obs)
        return self.actor.distribution(self.actor(seen)), self.critic(seen).squeeze(-1)

    def evaluate(self, obs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(log-probabilities of ``actions``, value predictions, the action distributions' entropies) under the
        current parameters."""
        dist, values = self.outputs(obs)
        return dist.log_prob(actions), values, dist.entropy()

    @torch.no_grad()
    def act(self, obs: Tensor) -> Acted:
        dist, values = self.outputs(obs)
        actions = dist.sample()
        return Acted(actions, dist.log_prob(actions), values)


def share_hidden_layers(mlp: nn.Sequential, source: nn.Sequential) -> None:
    """Point every linear layer of ``mlp`` but its output layer at ``source``'s (the same parameters, not a
    copy)."""
    linear = [i for i, m in enumerate(mlp) if isinstance(m, nn.Linear)]
    for i in linear[:-1]:
        mlp[i] = source[i]


def make_master(observation_space: gym.Space, num_subpolicies: int, policy_spec: PolicySpec, seed: int) -> ActorCritic:
    """A task's fresh master, its initial weights drawn from ``seed`` alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ActorCritic(observation_space, gym.spaces.Discrete(num_subpolicies), policy_spec)


@torch.no_grad()
def choose(master: ActorCritic, obs: Tensor, epsilon: float, forced: Tensor | None = None) -> Acted:
    """The master's choice of sub-policy for each observation; with probability ``epsilon`` a uniformly
    random one instead, and ``forced`` where it is not -1. The log-probability stays the master's, as the
    published code does for its exploration."""
    dist, values = master.outputs(obs)
    chosen = dist.sample()
    num = dist.logits.shape[-1]
    explore = torch.rand(chosen.shape) < epsilon
    actions = torch.where(explore, torch.randint(num, chosen.shape), chosen)
    if forced is not None:
        actions = torch.where(forced >= 0, forced, actions)
    return Acted(actions, dist.log_prob(actions), values)


class SubPolicies(nn.Module):
    """The K shared sub-policies: what meta-learning keeps across tasks.

    With ``shared_body`` they share their hidden layers (the actors theirs, the critics theirs) and keep their
    own output layers and action spreads, so that each learns its features from every sub-policy's steps and
    only its behaviour from its own share (on AntBandits each goal's sub-policy learns to walk from a third of
    the steps; sharing did not make it learn faster there, docs/results.md). With ``normalize_obs`` each
    standardises its observations by the statistics of the steps it learned from (``mlsh.normalize_obs``).
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        num_subpolicies: int,
        policy_spec: PolicySpec,
        shared_body: bool = False,
        normalize_obs: bool = False,
    ):
        super().__init__()
        if num_subpolicies < 1:
            raise ValueError(f"num_subpolicies: expected at least 1, got {num_subpolicies}")
        self.members = nn.ModuleList(
            ActorCritic(observation_space, action_space, policy_spec, normalize_obs) for _ in range(num_subpolicies)
        )
        if shared_body:
            first = self.members[0]
            for member in self.members[1:]:
                share_hidden_layers(member.actor.network, first.actor.network)
                share_hidden_layers(member.critic, first.critic)

    def __len__(self) -> int:
        return len(self.members)

    def unshared_in(self, state: dict[str, Tensor]) -> list[str]:
        """The keys of ``state`` that this model shares but ``state`` holds different values for: weights
        trained with separate hidden layers, which loading here would silently merge."""
        own = self.state_dict()
        first = {t.data_ptr(): key for key, t in own.items() if key.startswith("members.0.")}
        shared = {key: first[t.data_ptr()] for key, t in own.items() if first.get(t.data_ptr(), key) != key}
        return [key for key, source in shared.items() if not torch.equal(state[key], state[source])]

    def __iter__(self):
        return iter(self.members)

    def __getitem__(self, k: int) -> ActorCritic:
        return self.members[k]

    @torch.no_grad()
    def act(self, obs: Tensor, subpolicy: Tensor) -> Acted:
        """Each observation's action from the sub-policy chosen for it: every sub-policy runs once on the
        whole batch (K is small) and each row keeps its own sub-policy's output."""
        outs = [sub.act(obs) for sub in self.members]
        rows = torch.arange(obs.shape[0])
        pick = lambda xs: torch.stack(xs)[subpolicy, rows]
        return Acted(pick([o.actions for o in outs]), pick([o.log_probs for o in outs]), pick([o.values for o in outs]))
