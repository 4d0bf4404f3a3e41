"""The MAML-TRPO objective of a block of tasks in plain autograd: the readable reference of ``task_terms``
(``maml.curvature: autograd``), and the path for any policy the fast path does not take apart.

For each task i, with meta-parameters θ and the task's inner batches D_i^k:

    θ'_i   = θ - Σ_k α_k ∇ L_inner(θ'_i^(k-1); D_i^k)       (one step per batch; θ'_i^(0) = θ)
    L_i(θ) = -E_valid[ π_θ'_i(a|s) / π_old(a|s) · A ]         (the surrogate after adaptation)
    KL_i(θ) = E_valid[ KL(π_θ'_i(·|s) ‖ π_old(·|s)) ]

where E weights each episode's steps equally, then each episode (the reference weighting), and π_old is
the adapted policy at the start of the step. The TRPO step needs Σ_i ∇L_i, products with Σ_i ∇²KL_i and
both values at candidate θ. Second order differentiates through the inner steps; first order treats
dθ'_i/dθ as the identity. Autograd builds each product by double backward through the whole graph:
simple, general and about half as fast as the kept passes of ``task_terms``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.distributions import kl_divergence

from dh_maml.episodes import EpisodeBatch, masked_mean
from dh_maml.maml.inner import adapt, broadcast
from dh_maml.policies import Params, Policy

if TYPE_CHECKING:
    from torch.distributions import Distribution

Values = list[Tensor]  # one tensor per policy parameter, in parameter order


class AutogradBlock:
    """The same surface as ``task_terms.TaskBlock``: losses, inner losses, gradient, curvature products and
    scores of a block of tasks."""

    def __init__(
        self,
        task_ids: Sequence[int],
        policy: Policy,
        params: Values,
        train: Sequence[EpisodeBatch],
        valid: EpisodeBatch,
        lrs: Sequence[float],
        second_order: bool,
    ):
        self.task_ids, self.policy = list(task_ids), policy
        self.names = [name for name, _ in policy.named_parameters()]
        self.train, self.valid, self.lrs, self.second_order = list(train), valid, list(lrs), second_order
        self.params = [p.detach().requires_grad_() for p in params]
        with torch.enable_grad():
            adapted, self.inner_losses = self._adapt(self.params, keep_graph=True)
            outputs = policy.task_outputs(adapted, valid.observations, per_task=True)
            self.old = policy.distribution(tuple(o.detach() for o in outputs))
            losses, kls = self._objectives(policy.distribution(outputs))
            self.losses = losses.detach()
            self._gradient = torch.autograd.grad(losses.sum(), self.params, retain_graph=True)
            self._kl_gradient = torch.autograd.grad(kls.sum(), self.params, create_graph=True)

    def __len__(self) -> int:
        return len(self.task_ids)

    def _adapt(self, params: Values, keep_graph: bool) -> tuple[Params, Tensor]:
        """Every task's adapted parameters (a leading task axis) and its first inner loss."""
        start = broadcast(dict(zip(self.names, params)), len(self.task_ids))
        if self.second_order and keep_graph:
            return adapt(self.policy, start, self.train, self.lrs, create_graph=True)
        frozen = {k: v.detach().requires_grad_() for k, v in start.items()}
        adapted, first = adapt(self.policy, frozen, self.train, self.lrs, create_graph=False)
        return {k: start[k] + (adapted[k] - frozen[k]).detach() for k in start}, first  # dθ'/dθ = I

    def _objectives(self, dist: Distribution) -> tuple[Tensor, Tensor]:
        valid = self.valid
        ratio = torch.exp(dist.log_prob(valid.actions) - self.old.log_prob(valid.actions))
        return -masked_mean(ratio * valid.advantages, valid.mask), masked_mean(
            kl_divergence(dist, self.old), valid.mask
        )

    def gradient(self) -> Values:
        """Σ_i ∇L_i."""
        return list(self._gradient)

    def curvature_vp(self, v: Values) -> Values:
        """Σ_i ∇²KL_i v, by differentiating ∇KL · v once more."""
        with torch.enable_grad():
            dot = sum((g * x).sum() for g, x in zip(self._kl_gradient, v))
            return list(torch.autograd.grad(dot, self.params, retain_graph=True))

    def scores(self, params: Values) -> tuple[Tensor, Tensor]:
        """Each task's surrogate and KL after adapting from ``params``; [N] each."""
        with torch.enable_grad():
            leaves = [p.detach().requires_grad_() for p in params]
            adapted, _ = self._adapt(leaves, keep_graph=False)
        with torch.no_grad():
            outputs = self.policy.task_outputs(
                {k: v.detach() for k, v in adapted.items()}, self.valid.observations, per_task=True
            )
            return self._objectives(self.policy.distribution(outputs))

    def score(self, params: Values) -> tuple[float, float]:
        losses, kls = self.scores(params)
        return losses.sum().item(), kls.sum().item()
