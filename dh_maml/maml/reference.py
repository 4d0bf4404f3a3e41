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

With the curvature estimated on fewer episodes (``trpo.curvature_fraction``) there is no single graph
whose Hessian is the estimate, so the product is the chain itself: ∇²KL_i = J_iᵀ F_i J_i at the start of
the step, J_i = Π_k (I - α_k H_i^k), each inner loss's Hessian H_i^k taken on the fewer episodes at the
k-th inner step's parameters (those of the whole batches) and the KL's Hessian F_i on the fewer
validation episodes at θ'_i; every factor is a double backward of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.distributions import kl_divergence

from dh_maml.episodes import EpisodeBatch, masked_mean
from dh_maml.maml.inner import adapt, broadcast, inner_loss
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
        curvature: tuple[Sequence[EpisodeBatch], EpisodeBatch] | None = None,
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
            self._chain = None if curvature is None else self._curvature_chain(*curvature)

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

    def _curvature_chain(
        self, train: Sequence[EpisodeBatch], valid: EpisodeBatch
    ) -> tuple[list[tuple[Values, Values]], tuple[Values, Values]]:
        """Per inner step (second order only) and for the KL: the leaves at that point of the adaptation on
        the whole batches and the gradient on ``train`` / ``valid`` there, kept for double backward."""
        point = broadcast(dict(zip(self.names, self.params)), len(self.task_ids))
        steps = []
        for full, fewer, lr in zip(self.train, train, self.lrs):
            leaves = {k: v.detach().requires_grad_() for k, v in point.items()}
            if self.second_order:
                grads = torch.autograd.grad(
                    inner_loss(self.policy, leaves, fewer).sum(), list(leaves.values()), create_graph=True
                )
                steps.append((list(leaves.values()), list(grads)))
            point = adapt(self.policy, leaves, [full], [lr], create_graph=False)[0]
        leaves = {k: v.detach().requires_grad_() for k, v in point.items()}
        outputs = self.policy.task_outputs(leaves, valid.observations, per_task=True)
        dist, old = self.policy.distribution(outputs), self.policy.distribution(tuple(o.detach() for o in outputs))
        kl = masked_mean(kl_divergence(dist, old), valid.mask).sum()
        return steps, (list(leaves.values()), list(torch.autograd.grad(kl, list(leaves.values()), create_graph=True)))

    @staticmethod
    def _hvp(leaves: Values, grads: Values, v: Values) -> Values:
        dot = sum((g * x).sum() for g, x in zip(grads, v))
        return list(torch.autograd.grad(dot, leaves, retain_graph=True))

    def curvature_vp(self, v: Values) -> Values:
        """Σ_i ∇²KL_i v: differentiating ∇KL · v once more, or along the chain Jᵀ F J (fewer episodes)."""
        with torch.enable_grad():
            if self._chain is None:
                return self._hvp(self.params, self._kl_gradient, v)
            steps, fisher = self._chain
            v = [x.expand(len(self.task_ids), *x.shape) for x in v]
            for (leaves, grads), lr in zip(steps, self.lrs):
                v = [x - lr * h for x, h in zip(v, self._hvp(leaves, grads, v))]
            u = self._hvp(*fisher, v)
            for (leaves, grads), lr in reversed(list(zip(steps, self.lrs))):
                u = [x - lr * h for x, h in zip(u, self._hvp(leaves, grads, u))]
            return [x.sum(0) for x in u]

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
