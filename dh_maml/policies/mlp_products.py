"""Exact gradients and curvature products through an MLP from one kept primal pass (Pearlmutter's R-operator).

Why not autograd: each TRPO step multiplies the same per-task curvature by a
dozen vectors. Double backward through autograd graphs repeats generic
elementwise nodes and gradient accumulations for every product and needs the
whole second-order graph built first; here the primal pass (inputs, slopes
and curvatures of the activations, cotangents) is computed once per task and
every product is a few matrix products on it, about twice as fast on a CPU.
The same pass and backward give MLSH's PPO minibatch gradients (``mlsh/ppo_grads``),
where autograd's per-step overhead outweighs the arithmetic of small batches.

Shapes: a batch is flattened to [..., M, features], the leading axes (tasks)
running independent passes side by side; a layer is (weight [..., out, in],
bias [..., out]), per task or shared, and every layer but the last is followed
by the activation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor

from dh_maml.policies.mlp import CategoricalMLPPolicy, GaussianMLPPolicy, Policy, activate, affine

Layer = tuple[Tensor, Tensor]

FAST_ACTIVATIONS = ("tanh", "relu")


def fast_path_unsupported(policy: Policy) -> str | None:
    """Why the kept-pass products cannot take ``policy`` apart, or None when they can: they know the MLP
    body with tanh or relu and the heads of the package's own Gaussian and categorical policies, nothing
    a subclass may have changed."""
    if type(policy) not in (GaussianMLPPolicy, CategoricalMLPPolicy):
        return f"{type(policy).__name__} is not one of the package's MLP policies"
    if policy.activation not in FAST_ACTIVATIONS:
        return f"activation {policy.activation!r} (the fast path has {', '.join(FAST_ACTIVATIONS)})"
    return None


def _slope_and_curvature(z: Tensor, h: Tensor, activation: str, curvature: bool) -> tuple[Tensor, Tensor | None]:
    """f'(z) and, with ``curvature``, f''(z) of the activation, from its input z and output h (None when f''
    vanishes or is not asked for)."""
    if activation == "tanh":
        slope = 1.0 - h * h
        return slope, -2.0 * h * slope if curvature else None
    if activation == "relu":
        return (z > 0).to(z.dtype), None
    raise ValueError(f"unsupported activation {activation!r}: expected 'tanh' or 'relu'")


def _rows(x: Tensor) -> Tensor:
    """All leading axes as one: a shared weight then multiplies every task's rows in one product."""
    return x.reshape(-1, x.shape[-1])


def _add_product(acc: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """acc + a b, in place into the fresh ``acc``; a shared 2-D ``b`` multiplies every task's rows at once."""
    if b.dim() == 2 and a.dim() == acc.dim():
        acc.view(-1, acc.shape[-1]).addmm_(_rows(a), b)  # a view (never a copy), so the sum lands in acc
        return acc
    if a.dim() == b.dim() == acc.dim() == 3:
        return acc.baddbmm_(a, b)
    return acc.add_(a @ b)


def _weight_grad(dz: Tensor, x: Tensor) -> Tensor:
    """dzᵀ x, the weight gradient [..., out, in] summed over the rows. MKL runs the product several times
    slower when its last axis is narrow (docs/results.md), so a layer with fewer inputs than outputs
    computes (xᵀ dz)ᵀ."""
    return (x.mT @ dz).mT if x.shape[-1] < dz.shape[-1] else dz.mT @ x


@dataclass
class Backprop:
    """Cotangents of one backward pass, needed again by second-order products."""

    dz: list[Tensor]  # of each layer's pre-activation
    curved: list[Tensor | None]  # f''(z) times the cotangent of each layer's input (None: data, or f'' = 0)


@dataclass
class Tangent:
    """Directional derivatives of one pass along a parameter direction."""

    z: list[Tensor]  # of each layer's pre-activation; the last is the output's
    h: list[Tensor | None]  # of each layer's input (None for the data)

    @property
    def out(self) -> Tensor:
        return self.z[-1]


@dataclass
class MLPPass:
    """The primal values of an MLP on a batch: everything its products need."""

    weights: list[Tensor]
    inputs: list[Tensor]  # input of each layer
    slopes: list[Tensor]  # f'(z) of each hidden layer
    curvatures: list[Tensor | None]  # f''(z) of each hidden layer
    out: Tensor
    order: int  # the derivatives the pass keeps what they need for (see run)

    @staticmethod
    def run(layers: Sequence[Layer], x: Tensor, activation: str, order: int = 2) -> MLPPass:
        """The pass on ``x``, keeping what derivatives of ``order`` need: 0 the output alone, 1 also the
        slopes (gradients, tangents, products without the network's own curvature), 2 also the curvatures
        (second-order backward). The activation's derivatives cost about a third of a pass."""
        inputs: list[Tensor] = [x]
        slopes: list[Tensor] = []
        curvatures: list[Tensor | None] = []
        h = x
        for k, (w, b) in enumerate(layers):
            z = affine(h, w, b)
            if k == len(layers) - 1:
                return MLPPass([w for w, _ in layers], inputs, slopes, curvatures, z, order)
            h = activate(z, activation)
            inputs.append(h)
            if order > 0:
                slope, curvature = _slope_and_curvature(z, h, activation, order > 1)
                slopes.append(slope)
                curvatures.append(curvature)
        raise ValueError("an MLP needs at least one layer")

    def backward(self, d_out: Tensor, second_order: bool = False) -> tuple[list[Layer], Backprop]:
        """Gradients of every layer for the output cotangent ``d_out`` [M, out]; ``second_order`` also keeps
        what ``tangent_backward`` needs from this pass."""
        if self.order < (2 if second_order else 1):
            raise ValueError(f"a pass run with order={self.order} cannot take a backward with {second_order=}")
        n = len(self.weights)
        grads: list[Layer] = [None] * n  # type: ignore[list-item]
        dz_all: list[Tensor] = [None] * n  # type: ignore[list-item]
        curved: list[Tensor | None] = [None] * n
        dz = d_out
        for k in range(n - 1, -1, -1):
            dz_all[k] = dz
            grads[k] = (_weight_grad(dz, self.inputs[k]), dz.sum(-2))
            if k > 0:
                dh = dz @ self.weights[k]
                curvature = self.curvatures[k - 1]
                curved[k] = curvature * dh if second_order and curvature is not None else None
                dz = dh.mul_(self.slopes[k - 1])  # dh is fresh and not needed again
        return grads, Backprop(dz_all, curved)

    def tangent(self, direction: Sequence[Layer]) -> Tangent:
        """Forward-mode derivative of every layer along the parameter ``direction``."""
        zs: list[Tensor] = []
        hs: list[Tensor | None] = [None]
        for k, (w, (vw, vb)) in enumerate(zip(self.weights, direction)):
            rz = affine(self.inputs[k], vw, vb)
            if hs[k] is not None:
                rz = _add_product(rz, hs[k], w.mT)
            zs.append(rz)
            if k < len(self.weights) - 1:
                hs.append(self.slopes[k] * rz)
        return Tangent(zs, hs)

    def tangent_backward(
        self, direction: Sequence[Layer], tangent: Tangent, d_out_tangent: Tensor, backprop: Backprop | None
    ) -> list[Layer]:
        """Derivative of ``backward``'s gradients along ``direction``, given the derivative of its output
        cotangent. ``backprop`` is the primal backward pass; None when its cotangents are zero (a KL at its
        minimum), which drops the terms through the network's own second derivatives."""
        n = len(self.weights)
        out: list[Layer] = [None] * n  # type: ignore[list-item]
        rdz = d_out_tangent
        for k in range(n - 1, -1, -1):
            rgw = _weight_grad(rdz, self.inputs[k])
            if backprop is not None and tangent.h[k] is not None:
                rgw = _add_product(rgw, backprop.dz[k].mT, tangent.h[k])
            out[k] = (rgw, rdz.sum(-2))
            if k > 0:
                rdh = rdz @ self.weights[k]
                if backprop is not None:
                    rdh = _add_product(rdh, backprop.dz[k], direction[k][0])
                rdz = rdh.mul_(self.slopes[k - 1])  # rdh is fresh and not needed again
                if backprop is not None and backprop.curved[k] is not None:
                    rdz = rdz.addcmul_(backprop.curved[k], tangent.z[k - 1])
        return out
