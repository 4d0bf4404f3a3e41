"""A block of tasks' part of the TRPO step: adaptation, post-adaptation surrogates, meta-gradient, KL curvature.

Every task of a block runs in the same tensors, with a leading task axis, so a
product for the whole block is a handful of batched matrix products rather
than a Python loop over tasks; the tasks stay independent (each has its own
adapted parameters and data) and their contributions are summed at the end.

The meta-parameters θ adapt to θ' by inner gradient steps; the surrogate and
the KL are taken at θ'. At the start of the step the KL sits at its minimum
(the old policy is the adapted policy itself), so its Hessian in θ is exactly
Jᵀ F J, with J = dθ'/dθ and F the Hessian of the KL in θ'. Each inner step's
Jacobian is I - α H (H the inner loss's Hessian, symmetric), so J and Jᵀ are
products of symmetric factors taken in opposite orders. Every product runs on
kept primal passes (``mlp_products``); only the small distribution head uses
autograd.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Distribution, kl_divergence

from dh_maml.episodes import EpisodeBatch, episode_weights
from dh_maml.policies import Policy
from dh_maml.policies.mlp_products import Backprop, Layer, MLPPass

Values = list[Tensor]  # one tensor per policy parameter, in parameter order


@dataclass(frozen=True)
class ParamLayout:
    """Where each body layer and head parameter sits in the policy's parameter order."""

    shapes: list[torch.Size]
    layers: list[tuple[int, int]]
    head: list[int]

    @staticmethod
    def of(policy: Policy) -> ParamLayout:
        names = [name for name, _ in policy.named_parameters()]
        index = {name: i for i, name in enumerate(names)}
        return ParamLayout(
            [p.shape for p in policy.parameters()],
            [(index[w], index[b]) for w, b in policy.layer_keys()],
            [index[k] for k in policy.head_keys()],
        )

    def body_of(self, values: Sequence[Tensor]) -> list[Layer]:
        return [(values[w], values[b]) for w, b in self.layers]

    def head_of(self, values: Sequence[Tensor]) -> list[Tensor]:
        return [values[i] for i in self.head]

    def join(self, body: Sequence[Layer], head: Sequence[Tensor]) -> Values:
        out: list[Tensor] = [None] * len(self.shapes)  # type: ignore[list-item]
        for (w, b), (gw, gb) in zip(self.layers, body):
            out[w], out[b] = gw, gb
        for i, g in zip(self.head, head):
            out[i] = g
        return out

    def split(self, vector: Tensor) -> Values:
        return [part.view(shape) for part, shape in zip(vector.split([s.numel() for s in self.shapes]), self.shapes)]


@dataclass
class FlatBatch:
    """A block of tasks' batches as samples, [tasks, M, ...]: the reference weighting (mean over each episode's
    steps, then over episodes) folded into one weight per sample, zero on padding."""

    obs: Tensor  # [N, M, obs_dim]
    actions: Tensor  # [N, M, ...]
    weights: Tensor  # [N, M]
    advantages: Tensor  # [N, M]

    @staticmethod
    def of(batch: EpisodeBatch) -> FlatBatch:
        n, t, e = batch.mask.shape
        return FlatBatch(
            batch.observations.reshape(n, t * e, -1),
            batch.actions.reshape(n, t * e, *batch.actions.shape[3:]),
            episode_weights(batch.mask).reshape(n, t * e),
            batch.advantages.reshape(n, t * e),
        )


def per_task(values: Sequence[Tensor], n: int) -> list[Tensor]:
    """Shared values as views with a leading task axis of ``n``."""
    return [v.expand(n, *v.shape) for v in values]


def head_distribution(policy: Policy, out: Tensor, head: Sequence[Tensor]) -> Distribution:
    """The distribution on [tasks, M, action] outputs with per-task head parameters [tasks, ...]."""
    return policy.head_distribution(out, [h.unsqueeze(-2) for h in head])


class Head:
    """Per-task scalar objectives of the distribution head on a block, differentiated in the body's output and
    the head parameters. The head acts on [N, M, action] outputs, not hidden units, so autograd is cheap here.

    With a ``diagonal_head`` policy (each action dimension's log-density depends on one output and one head
    entry) the Hessian is three arrays of coefficients, read off two autograd products when the head is
    built; every later product is then a few elementwise operations instead of a double backward (which
    took 10 % of a navigation curvature product)."""

    def __init__(
        self,
        policy: Policy,
        out: Tensor,
        head: Sequence[Tensor],
        objective: Callable[[Distribution], Tensor],
        second_order: bool,
    ):
        self.leaves = [out.detach().requires_grad_(), *(h.detach().requires_grad_() for h in head)]
        with torch.enable_grad():
            values = objective(head_distribution(policy, self.leaves[0], self.leaves[1:]))
            self.grads = torch.autograd.grad(
                values.sum(), self.leaves, create_graph=second_order, materialize_grads=True
            )
        self.values = values.detach()  # [N]: tasks are independent, so the sum's gradient is each task's own
        self.gradient = [g.detach() for g in self.grads]  # for primal use: no graph may leak into the passes
        self._diagonal: tuple[Tensor, Tensor, Tensor] | None = None
        if second_order and policy.diagonal_head and len(self.leaves) == 2:
            out_out, _ = self._autograd_hvp([torch.ones_like(self.leaves[0]), torch.zeros_like(self.leaves[1])])
            out_head, head_head = self._autograd_hvp(
                [torch.zeros_like(self.leaves[0]), torch.ones_like(self.leaves[1])]
            )
            self._diagonal = (out_out, out_head, head_head)  # [N, M, D], [N, M, D], [N, D]

    def hvp(self, tangents: Sequence[Tensor]) -> list[Tensor]:
        """Second derivatives of the objectives times the (output, head) tangents."""
        if self._diagonal is None:
            return self._autograd_hvp(tangents)
        out_out, out_head, head_head = self._diagonal
        t_out, t_head = tangents[0], tangents[1].expand_as(head_head)
        r_out = torch.addcmul(out_out * t_out, out_head, t_head.unsqueeze(-2))
        return [r_out, torch.addcmul((out_head * t_out).sum(-2), head_head, t_head)]

    def _autograd_hvp(self, tangents: Sequence[Tensor]) -> list[Tensor]:
        pairs = [(g, t.expand_as(g)) for g, t in zip(self.grads, tangents) if g.requires_grad]
        if not pairs:
            return [torch.zeros_like(leaf) for leaf in self.leaves]
        return list(
            torch.autograd.grad(
                [g for g, _ in pairs], self.leaves, [t for _, t in pairs], retain_graph=True, materialize_grads=True
            )
        )


def hessian_vp(layout: ParamLayout, pass_: MLPPass, head: Head, backprop: Backprop | None, v: Values) -> Values:
    """The Hessian of ``head``'s objectives through ``pass_`` in the parameters, times ``v`` (shared or per
    task); per task. ``backprop`` is the pass's primal backward, or None where the objectives' gradient in the
    body's output is zero."""
    body = layout.body_of(v)
    tangent = pass_.tangent(body)
    r_out, *r_head = head.hvp([tangent.out, *layout.head_of(v)])
    return layout.join(pass_.tangent_backward(body, tangent, r_out, backprop), r_head)


def _log_likelihood(actions: Tensor, weights: Tensor) -> Callable[[Distribution], Tensor]:
    return lambda dist: -(weights * dist.log_prob(actions)).sum(-1)


@dataclass
class InnerStep:
    """One inner gradient step of a block, with its primal pass kept for Hessian products."""

    lr: float
    layout: ParamLayout
    pass_: MLPPass
    head: Head
    backprop: Backprop

    def jacobian_vp(self, v: Values) -> Values:
        """(I - lr H) v per task, H the inner loss's Hessian at this step's parameters (symmetric)."""
        hv = hessian_vp(self.layout, self.pass_, self.head, self.backprop, v)
        return [x - self.lr * hx for x, hx in zip(v, hv)]


def body_and_head_grads(
    layout: ParamLayout, pass_: MLPPass, head: Head, second_order: bool = False
) -> tuple[Values, Backprop]:
    body, backprop = pass_.backward(head.gradient[0], second_order)
    return layout.join(body, head.gradient[1:]), backprop


def kept_step(
    policy: Policy, layout: ParamLayout, params: Values, batch: FlatBatch, lr: float, keep: bool
) -> tuple[InnerStep, Values]:
    """One inner step's primal pass at ``params`` on ``batch`` and its gradient; ``keep`` makes the pass ready
    for Hessian products (second order)."""
    pass_ = MLPPass.run(layout.body_of(params), batch.obs, policy.activation, order=2 if keep else 1)
    head = Head(
        policy,
        pass_.out,
        layout.head_of(params),
        _log_likelihood(batch.actions, batch.weights * batch.advantages),
        second_order=keep,
    )
    grads, backprop = body_and_head_grads(layout, pass_, head, second_order=keep)
    return InnerStep(lr, layout, pass_, head, backprop), grads


@dataclass
class Adaptation:
    """A block's inner steps: the per-task adapted parameters, the kept steps (second order), the first
    step's losses [N], and the kept steps on the curvature's episodes (the Jacobian of the curvature
    products when they are estimated on fewer episodes)."""

    params: Values
    steps: list[InnerStep]
    first_losses: Tensor
    curvature_steps: list[InnerStep]


def adapt_block(
    policy: Policy,
    layout: ParamLayout,
    params: Values,
    batches: Sequence[FlatBatch],
    lrs: Sequence[float],
    keep: bool,
    curvature_batches: Sequence[FlatBatch] = (),
) -> Adaptation:
    """Inner SGD steps of every task of a block from the shared ``params``; with ``keep`` each step's pass is
    kept for Jacobian products, and with ``curvature_batches`` also its pass on those batches at the same
    parameters."""
    steps, curvature_steps, first_losses = [], [], None
    # the body stays shared until the first step (one matrix product for the block); the head's parameters
    # get their task axis at once, so the head's gradients are per task
    params = layout.join(layout.body_of(params), per_task(layout.head_of(params), batches[0].weights.shape[0]))
    for k, (batch, lr) in enumerate(zip(batches, lrs)):
        step, grads = kept_step(policy, layout, params, batch, lr, keep)
        first_losses = step.head.values if first_losses is None else first_losses
        if keep:
            steps.append(step)
            if curvature_batches:
                curvature_steps.append(kept_step(policy, layout, params, curvature_batches[k], lr, keep)[0])
        params = [p - lr * g for p, g in zip(params, grads)]
    return Adaptation(params, steps, first_losses, curvature_steps)


def jacobian_vp(steps: Sequence[InnerStep], v: Values) -> Values:
    """J v, J the adaptation's Jacobian through the kept ``steps`` (the identity without any)."""
    for step in steps:
        v = step.jacobian_vp(v)
    return v


def jacobian_tvp(steps: Sequence[InnerStep], v: Values) -> Values:
    """Jᵀ v: each step's factor is symmetric, so the same products in the opposite order."""
    for step in reversed(steps):
        v = step.jacobian_vp(v)
    return v


@dataclass
class Curvature:
    """Σ Jᵀ F J's pieces for a block: the inner steps' kept passes (J) and the KL's head on the validation
    pass at the adapted parameters (F), on all of the episodes or on the first few of each task's."""

    steps: list[InnerStep]
    layout: ParamLayout
    valid_pass: MLPPass
    kl: Head

    def fisher_vp(self, u: Values) -> Values:
        """The KL's Hessian in the adapted parameters times ``u``; its gradient is zero here, so only the
        head's curvature enters, through the body's Jacobian."""
        return hessian_vp(self.layout, self.valid_pass, self.kl, None, u)

    def vp(self, v: Values) -> Values:
        """Σ Jᵀ F J v over the block's tasks."""
        return [g.sum(0) for g in jacobian_tvp(self.steps, self.fisher_vp(jacobian_vp(self.steps, v)))]


def _kl_to(batch: FlatBatch, old: Distribution) -> Callable[[Distribution], Tensor]:
    return lambda dist: (batch.weights * kl_divergence(dist, old)).sum(-1)


class TaskBlock:
    """A block of tasks' surrogates at the start of the TRPO step, with their summed meta-gradient and
    curvature products.

    ``second_order`` keeps the inner steps' passes, so J is the true adaptation
    Jacobian; first-order MAML treats J as the identity. ``curvature``, when
    given, holds fewer episodes of each batch (train batches, then validation):
    the curvature products are then estimated on them, with J's inner-step
    Hessians and F taken at the same parameters as on the whole batches, while
    the gradient and the scores still use every episode (the TRPO paper's
    subsampled Fisher-vector products).
    """

    def __init__(
        self,
        task_ids: Sequence[int],
        policy: Policy,
        layout: ParamLayout,
        params: Values,
        train: Sequence[FlatBatch],
        valid: FlatBatch,
        lrs: Sequence[float],
        second_order: bool,
        curvature: tuple[Sequence[FlatBatch], FlatBatch] | None = None,
    ):
        self.task_ids, self.policy, self.layout = list(task_ids), policy, layout
        self.train, self.valid, self.lrs = list(train), valid, list(lrs)
        curvature_train, curvature_valid = curvature if curvature is not None else ((), valid)
        adaptation = adapt_block(policy, layout, params, self.train, self.lrs, second_order, curvature_train)
        adapted, self.steps, self.inner_losses = adaptation.params, adaptation.steps, adaptation.first_losses
        heads = layout.head_of(adapted)
        pass_ = MLPPass.run(layout.body_of(adapted), valid.obs, policy.activation, order=1)
        self.old = head_distribution(policy, pass_.out.detach(), [h.detach() for h in heads])
        self.old_log_prob = self.old.log_prob(valid.actions)
        surrogate = Head(policy, pass_.out, heads, self._surrogate, second_order=False)
        self.losses = surrogate.values
        self._adapted_grad, _ = body_and_head_grads(layout, pass_, surrogate)
        if curvature is None:
            kl = Head(policy, pass_.out, heads, _kl_to(valid, self.old), second_order=True)
            self.curvature = Curvature(self.steps, layout, pass_, kl)
        else:
            sub = MLPPass.run(layout.body_of(adapted), curvature_valid.obs, policy.activation, order=1)
            old = head_distribution(policy, sub.out.detach(), [h.detach() for h in heads])
            kl = Head(policy, sub.out, heads, _kl_to(curvature_valid, old), second_order=True)
            self.curvature = Curvature(adaptation.curvature_steps, layout, sub, kl)

    def __len__(self) -> int:
        return len(self.task_ids)

    def _surrogate(self, dist: Distribution) -> Tensor:
        ratio = torch.exp(dist.log_prob(self.valid.actions) - self.old_log_prob)
        return -(self.valid.weights * ratio * self.valid.advantages).sum(-1)

    def gradient(self) -> Values:
        """The sum over the block's tasks of each surrogate's gradient in the meta-parameters: Σ Jᵀ ∇L(θ')
        with the exact J of the whole batches."""
        return [g.sum(0) for g in jacobian_tvp(self.steps, self._adapted_grad)]

    def curvature_vp(self, v: Values) -> Values:
        """The sum over the block's tasks of each KL's Hessian in the meta-parameters times ``v``: Σ Jᵀ F J v."""
        return self.curvature.vp(v)

    def scores(self, params: Values) -> tuple[Tensor, Tensor]:
        """Each task's surrogate and KL to its old adapted policy after adapting from ``params``; [N] each."""
        adapted = adapt_block(self.policy, self.layout, params, self.train, self.lrs, keep=False).params
        out = MLPPass.run(self.layout.body_of(adapted), self.valid.obs, self.policy.activation, order=0).out
        dist = head_distribution(self.policy, out, self.layout.head_of(adapted))
        return self._surrogate(dist), _kl_to(self.valid, self.old)(dist)

    def score(self, params: Values) -> tuple[float, float]:
        """The block's summed surrogate and KL after adapting from ``params`` (values only)."""
        losses, kls = self.scores(params)
        return losses.sum().item(), kls.sum().item()
