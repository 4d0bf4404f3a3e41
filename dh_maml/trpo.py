"""TRPO pieces: conjugate gradient, the KL-bounded line search, and the natural-gradient step joining them."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from dh_maml.spec import TRPOSpec


def flat(tensors: Sequence[Tensor]) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor], b: Tensor, iters: int, tol: float = 1e-10
) -> tuple[Tensor, Tensor]:
    """Approximately solve ``A x = b`` for symmetric positive-definite A; returns x and the residual b - A x.

    The residual is kept by the recursion, so ``A x = b - r`` comes without another product.
    """
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = r.dot(r)
    for _ in range(iters):
        if rr.item() < tol:
            break
        ap = matvec(p)
        alpha = rr / p.dot(ap)
        x += alpha * p
        r -= alpha * ap
        rr_new = r.dot(r)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x, r


@dataclass
class LineSearchResult:
    params: Tensor
    accepted: bool
    steps: int
    loss: float
    kl: float


def line_search(
    evaluate: Callable[[Tensor], tuple[float, float]],
    old_params: Tensor,
    full_step: Tensor,
    old_loss: float,
    max_kl: float,
    max_steps: int,
    ratio: float,
) -> LineSearchResult:
    """Backtrack from the full step; accept the first finite step that lowers the loss within the KL bound.

    When no step qualifies, the old parameters are kept.
    """
    fraction = 1.0
    for k in range(max_steps):
        candidate = old_params - fraction * full_step
        loss, kl = evaluate(candidate)
        if math.isfinite(loss) and math.isfinite(kl) and loss < old_loss and kl <= max_kl:
            return LineSearchResult(candidate, True, k + 1, loss, kl)
        fraction *= ratio
    return LineSearchResult(old_params, False, max_steps, old_loss, 0.0)


@dataclass
class TRPOStats:
    loss_before: float
    loss_after: float
    kl_after: float
    cg_residual: float
    ls_steps: int
    accepted: bool
    step_norm: float
    cg_s: float = 0.0  # seconds in conjugate gradient (its curvature products)
    line_search_s: float = 0.0


def trpo_step(
    grads: Tensor,
    loss: float,
    product: Callable[[Tensor], Tensor],
    old: Tensor,
    evaluate: Callable[[Tensor], tuple[float, float]],
    trpo_spec: TRPOSpec,
) -> tuple[Tensor, TRPOStats]:
    """Natural-gradient step scaled to ``max_kl`` from the flat parameters ``old``; returns the new ones.

    ``grads`` is the surrogate's gradient, ``product`` multiplies by the KL's
    Hessian (damping is added here) and ``evaluate`` scores candidate parameters.
    """
    damping = trpo_spec.cg_damping
    t0 = time.perf_counter()
    direction, residual = conjugate_gradient(lambda v: product(v) + damping * v, grads, trpo_spec.cg_iters)
    shs = 0.5 * direction.dot(grads - residual)  # s^T A s, with A s = b - r from the recursion
    full_step = direction * torch.sqrt(trpo_spec.max_kl / shs.clamp(min=1e-12))
    t1 = time.perf_counter()
    result = line_search(
        evaluate, old, full_step, loss, trpo_spec.max_kl, trpo_spec.ls_max_steps, trpo_spec.ls_backtrack_ratio
    )
    stats = TRPOStats(
        loss,
        result.loss,
        result.kl,
        residual.norm().item(),
        result.steps,
        result.accepted,
        (result.params - old).norm().item(),
        cg_s=t1 - t0,
        line_search_s=time.perf_counter() - t1,
    )
    return result.params, stats
