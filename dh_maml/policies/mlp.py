"""Gaussian and categorical MLP policies.

Distributions skip argument validation: their parameters come from the
network by construction, and the checks cost more than the learner's small
per-task heads.

``outputs`` and ``outputs_per_task`` run the network with explicit parameters
(per task: a leading task axis on every parameter), so adapted parameters need
no module copies, and return plain tensors (distribution parameters), never a
Distribution; ``distribution`` turns those into a ``torch.distributions``
object. ``forward`` is the same network as a module (``functional_call`` works
on it too).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import gymnasium as gym
import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent, Normal

if TYPE_CHECKING:
    from dh_maml.spec import PolicySpec

Params = dict[str, Tensor]

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def affine(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """x wᵀ + b over any leading axes, in one fused product: a shared weight [out, in] multiplies every
    row at once, per-task weights [tasks, out, in] act on x [tasks, M, in] as a batched product."""
    if w.dim() == 2:
        return torch.addmm(b, x.reshape(-1, x.shape[-1]), w.t()).view(*x.shape[:-1], w.shape[0])
    return torch.baddbmm(b.unsqueeze(-2), x, w.mT)


def activate(z: Tensor, activation: str) -> Tensor:
    return torch.tanh(z) if activation == "tanh" else torch.relu(z)


def mlp_layers(sizes: Sequence[int], nonlinearity: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        linear = nn.Linear(n_in, n_out)
        nn.init.xavier_uniform_(linear.weight)
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if i < len(sizes) - 2:
            layers.append(_ACTIVATIONS[nonlinearity]())
    return nn.Sequential(*layers)


class Policy(nn.Module):
    """Common surface of the policies: explicit-parameter calls, single or per task."""

    def params(self) -> Params:
        return {name: p for name, p in self.named_parameters()}

    @property
    def network(self) -> nn.Sequential:
        """The MLP as a module (the mean's layers or the logits'): what a caller that works on the layers
        themselves (hand-written gradients, shared layers) takes apart."""
        (layers,) = (m for m in self.children() if isinstance(m, nn.Sequential))
        return layers

    def outputs(self, params: Params, obs: Tensor) -> tuple[Tensor, ...]:
        return self.head_outputs(self._body(params, obs, per_task=False), params, per_task=False)

    def outputs_per_task(self, params: Params, obs: Tensor) -> tuple[Tensor, ...]:
        """``params`` stacked on a leading task dim; ``obs`` is [tasks, ..., obs_dim]."""
        return self.head_outputs(self._body(params, obs, per_task=True), params, per_task=True)

    def _body(self, params: Params, obs: Tensor, per_task: bool) -> Tensor:
        """The body with explicit parameters, as plain (batched) matrix products: ``functional_call`` and
        ``vmap`` cost more than the network itself at a sampling step (half of a navigation group's
        sampling time went to them)."""
        keys = self._body_keys
        h = obs.reshape(obs.shape[0], -1, obs.shape[-1]) if per_task else obs
        for k, (weight, bias) in enumerate(keys):
            h = affine(h, params[weight], params[bias])
            if k < len(keys) - 1:
                h = activate(h, self.activation)
        return h.reshape(*obs.shape[:-1], h.shape[-1])

    def head_outputs(self, body_out: Tensor, params: Params, per_task: bool) -> tuple[Tensor, ...]:
        """``forward``'s outputs given the body's output (head parameters from ``params``)."""
        raise NotImplementedError

    def task_outputs(self, params: Params, obs: Tensor, per_task: bool) -> tuple[Tensor, ...]:
        """Outputs on [tasks, ..., obs_dim]: ``per_task`` params carry a leading task axis, otherwise
        one set of parameters serves every task."""
        return self.outputs_per_task(params, obs) if per_task else self.outputs(params, obs)

    def distribution(self, outputs: tuple[Tensor, ...]) -> Distribution:
        raise NotImplementedError

    def dist(self, params: Params, obs: Tensor) -> Distribution:
        return self.distribution(self.outputs(params, obs))

    # The learner takes a policy apart as an MLP body plus a small head (see mlp_products.py).
    activation: str
    # Whether each action dimension's log-density depends on one body output and one entry of each head
    # parameter only, so the head's Hessian is diagonal in them (see maml/task_terms.Head).
    diagonal_head = False

    @functools.cached_property
    def _body_keys(self) -> list[tuple[str, str]]:
        """``layer_keys``, found once: the body's forward runs at every sampling step."""
        return self.layer_keys()

    def layer_keys(self) -> list[tuple[str, str]]:
        """(weight, bias) parameter names of the body's linear layers, input first."""
        return [(f"{name}.weight", f"{name}.bias") for name, m in self.named_modules() if isinstance(m, nn.Linear)]

    def head_keys(self) -> list[str]:
        """Parameters outside the body's layers, in parameter order."""
        in_layers = {k for pair in self.layer_keys() for k in pair}
        return [name for name, _ in self.named_parameters() if name not in in_layers]

    def head_distribution(self, out: Tensor, head: Sequence[Tensor]) -> Distribution:
        """The distribution given the body's output and the head parameters (``head_keys`` order)."""
        raise NotImplementedError


class GaussianMLPPolicy(Policy):
    """Diagonal Gaussian with a state-independent log-std, floored at ``min_std``."""

    diagonal_head = True

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_sizes: Sequence[int] = (64, 64),
        nonlinearity: str = "tanh",
        init_std: float = 1.0,
        min_std: float = 1e-6,
    ):
        super().__init__()
        self.mean = mlp_layers([obs_dim, *hidden_sizes, act_dim], nonlinearity)
        self.activation = nonlinearity
        self.log_std = nn.Parameter(torch.full((act_dim,), math.log(init_std)))
        self.min_log_std = math.log(min_std)

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        mean = self.mean(obs)
        std = self.log_std.clamp(min=self.min_log_std).exp().expand_as(mean)
        return mean, std

    def head_outputs(self, body_out: Tensor, params: Params, per_task: bool) -> tuple[Tensor, Tensor]:
        log_std = params["log_std"]
        if per_task:  # [tasks, act] against [tasks, ..., act]
            log_std = log_std.view(log_std.shape[0], *(1,) * (body_out.dim() - 2), log_std.shape[-1])
        return body_out, log_std.clamp(min=self.min_log_std).exp().expand_as(body_out)

    def distribution(self, outputs: tuple[Tensor, ...]) -> Distribution:
        mean, std = outputs
        return Independent(Normal(mean, std, validate_args=False), 1, validate_args=False)

    def head_distribution(self, out: Tensor, head: Sequence[Tensor]) -> Distribution:
        (log_std,) = head
        std = log_std.clamp(min=self.min_log_std).exp().expand_as(out)
        return Independent(Normal(out, std, validate_args=False), 1, validate_args=False)


class CategoricalMLPPolicy(Policy):
    def __init__(
        self, obs_dim: int, num_actions: int, hidden_sizes: Sequence[int] = (32, 32), nonlinearity: str = "relu"
    ):
        super().__init__()
        self.logits = mlp_layers([obs_dim, *hidden_sizes, num_actions], nonlinearity)
        self.activation = nonlinearity

    def forward(self, obs: Tensor) -> tuple[Tensor]:
        return (self.logits(obs),)

    def head_outputs(self, body_out: Tensor, params: Params, per_task: bool) -> tuple[Tensor]:
        return (body_out,)

    def distribution(self, outputs: tuple[Tensor, ...]) -> Distribution:
        return Categorical(logits=outputs[0], validate_args=False)

    def head_distribution(self, out: Tensor, head: Sequence[Tensor]) -> Distribution:
        return Categorical(logits=out, validate_args=False)


def make_policy(observation_space: gym.Space, action_space: gym.Space, policy_spec: PolicySpec) -> Policy:
    """The policy matching a family's spaces: Gaussian for Box actions, categorical for Discrete; the output
    layer's initial weights scaled by ``policy_spec.init_output_scale``."""
    obs_dim = int(math.prod(observation_space.shape))
    if isinstance(action_space, gym.spaces.Discrete):
        policy: Policy = CategoricalMLPPolicy(
            obs_dim, int(action_space.n), policy_spec.hidden_sizes, policy_spec.nonlinearity
        )
    elif isinstance(action_space, gym.spaces.Box):
        policy = GaussianMLPPolicy(
            obs_dim,
            int(math.prod(action_space.shape)),
            policy_spec.hidden_sizes,
            policy_spec.nonlinearity,
            policy_spec.init_std,
            policy_spec.min_std,
        )
    else:
        raise TypeError(f"unsupported action space {action_space}: expected Box or Discrete")
    if policy_spec.init_output_scale != 1.0:
        weight, _ = policy.layer_keys()[-1]
        with torch.no_grad():
            policy.get_parameter(weight).mul_(policy_spec.init_output_scale)
    return policy
