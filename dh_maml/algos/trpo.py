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
                       tol: float = 1e-10) -> tuple[Tensor, Tensor]:
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


Terms = Tensor | Sequence[Tensor | Sequence[Tensor]]
Mapper = Callable[[Callable, Sequence], list]


def _parts(x: Terms) -> list[list[Tensor]]:
    """A sum of scalar terms as parts of terms: a tensor, a list of terms, or a list of parts."""
    if isinstance(x, Tensor):
        return [[x]]
    return [[t] if isinstance(t, Tensor) else list(t) for t in x]


def _serial(fn: Callable, items: Sequence) -> list:
    return [fn(x) for x in items]


def _grad_sum(terms: Sequence[Tensor], params: Sequence[Tensor], create_graph: bool = False) -> Tensor:
    return sum(flat(torch.autograd.grad(t, params, retain_graph=True, create_graph=create_graph)) for t in terms)


def gradient(loss: Terms, params: Sequence[Tensor], map_fn: Mapper = _serial) -> Tensor:
    """Flat gradient of a sum of terms.

    Each term is differentiated on its own graph and the results are summed in
    the given order, so the result depends neither on the order the graphs were
    built in nor on which of ``map_fn``'s threads finished first.
    """
    return sum(map_fn(lambda part: _grad_sum(part, params), _parts(loss)))


def kl_hvp(kl: Terms, params: Sequence[Tensor], damping: float, map_fn: Mapper = _serial) -> Callable[[Tensor], Tensor]:
    """v -> (d^2 KL / d params^2) v + damping v, reusing one graph of each term's KL gradient.

    Terms are taken apart as in ``gradient``; parts may run on several threads.
    """
    grads = map_fn(lambda part: [flat(torch.autograd.grad(t, params, create_graph=True)) for t in part], _parts(kl))

    def hvp(v: Tensor) -> Tensor:
        return sum(map_fn(lambda gs: _grad_sum([g.dot(v) for g in gs], params), grads)) + damping * v

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


def trpo_step(loss: Terms, kl: Terms, params: Sequence[Tensor],
              evaluate: Callable[[Tensor], tuple[float, float]], trpo_spec,
              map_fn: Mapper = _serial) -> tuple[Tensor, TRPOStats]:
    """Natural-gradient step scaled to ``max_kl``; returns the new flat parameters.

    ``loss`` and ``kl`` may be sums of terms on disjoint graphs (see ``gradient``).
    """
    grads = gradient(loss, params, map_fn)
    loss = sum(t.detach() for part in _parts(loss) for t in part)
    hvp = kl_hvp(kl, params, trpo_spec.cg_damping, map_fn)
    direction, residual = conjugate_gradient(hvp, grads, trpo_spec.cg_iters)
    shs = 0.5 * direction.dot(grads - residual)  # s^T A s, with A s = b - r from the recursion
    full_step = direction * torch.sqrt(trpo_spec.max_kl / shs.clamp(min=1e-12))
    old = flat([p.detach() for p in params])
    result = line_search(evaluate, old, full_step.detach(), loss.item(), trpo_spec.max_kl,
                         trpo_spec.ls_max_steps, trpo_spec.ls_backtrack_ratio)
    stats = TRPOStats(loss.item(), result.loss, result.kl, residual.norm().item(), result.steps, result.accepted,
                      (result.params - old).norm().item())
    return result.params, stats
