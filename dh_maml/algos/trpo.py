"""TRPO pieces: conjugate gradient, Hessian-vector products of the KL, and the KL-bounded line search."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor


def flat(tensors: Sequence[Tensor]) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def conjugate_gradient(matvec: Callable[[Tensor], Tensor], b: Tensor, iters: int,
                       tol: float = 1e-10) -> tuple[Tensor, float]:
    """Approximately solve ``A x = b`` for symmetric positive-definite A; returns x and ||b - A x||."""
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
    return x, rr.sqrt().item()


def _terms(x: Tensor | Sequence[Tensor]) -> list[Tensor]:
    return [x] if isinstance(x, Tensor) else list(x)


def gradient(loss: Tensor | Sequence[Tensor], params: Sequence[Tensor]) -> Tensor:
    """Flat gradient of a sum of terms, each term differentiated on its own graph and summed in order."""
    return sum(flat(torch.autograd.grad(t, params, retain_graph=True)) for t in _terms(loss))


def kl_hvp(kl: Tensor | Sequence[Tensor], params: Sequence[Tensor], damping: float) -> Callable[[Tensor], Tensor]:
    """v -> (d^2 KL / d params^2) v + damping v, reusing one graph of the KL gradient per term.

    With the KL given as a sum of terms (one per group of tasks, on separate
    graphs) each term's product is taken apart and summed in the given order,
    so the result does not depend on which graph was built first.
    """
    grads = [flat(torch.autograd.grad(t, params, create_graph=True)) for t in _terms(kl)]

    def hvp(v: Tensor) -> Tensor:
        hv = sum(flat(torch.autograd.grad(g.dot(v), params, retain_graph=True)) for g in grads)
        return hv + damping * v

    return hvp


@dataclass
class LineSearchResult:
    params: Tensor
    accepted: bool
    steps: int
    loss: float
    kl: float


def line_search(evaluate: Callable[[Tensor], tuple[float, float]], old_params: Tensor, full_step: Tensor,
                old_loss: float, max_kl: float, max_steps: int, ratio: float) -> LineSearchResult:
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


def trpo_step(loss: Tensor | Sequence[Tensor], kl: Tensor | Sequence[Tensor], params: Sequence[Tensor],
              evaluate: Callable[[Tensor], tuple[float, float]], trpo_spec) -> tuple[Tensor, TRPOStats]:
    """Natural-gradient step scaled to ``max_kl``; returns the new flat parameters.

    ``loss`` and ``kl`` may be sums of terms on separate graphs (see ``kl_hvp``).
    """
    grads = gradient(loss, params)
    loss = sum(t.detach() for t in _terms(loss))
    hvp = kl_hvp(kl, params, trpo_spec.cg_damping)
    direction, residual = conjugate_gradient(hvp, grads, trpo_spec.cg_iters)
    shs = 0.5 * direction.dot(hvp(direction))
    full_step = direction * torch.sqrt(trpo_spec.max_kl / shs.clamp(min=1e-12))
    old = flat([p.detach() for p in params])
    result = line_search(evaluate, old, full_step.detach(), loss.item(), trpo_spec.max_kl,
                         trpo_spec.ls_max_steps, trpo_spec.ls_backtrack_ratio)
    stats = TRPOStats(loss.item(), result.loss, result.kl, residual, result.steps, result.accepted,
                      (result.params - old).norm().item())
    return result.params, stats
