import math

import pytest
import torch

from dh_maml.trpo import conjugate_gradient, line_search


def test_conjugate_gradient_matches_direct_solve(float64):
    torch.manual_seed(0)
    m = torch.randn(12, 12)
    a = m @ m.T + 0.5 * torch.eye(12)
    b = torch.randn(12)
    x, r = conjugate_gradient(lambda v: a @ v, b, iters=30)
    torch.testing.assert_close(x, torch.linalg.solve(a, b), atol=1e-8, rtol=1e-8)
    assert r.norm() < 1e-6
    x3, r3 = conjugate_gradient(lambda v: a @ v, b, iters=3)
    torch.testing.assert_close(r3, b - a @ x3)  # the recursion's residual is the true one
    assert x3.dot(b - r3).item() == pytest.approx(x3.dot(a @ x3).item(), rel=1e-10)  # x^T A x for free
    assert r3.norm() > r.norm()


def quadratic(center, kl_scale):
    def evaluate(x):
        return float(((x - center) ** 2).sum()), float(kl_scale * (x**2).sum())

    return evaluate


def test_line_search_accepts_first_improving_step_within_kl():
    old = torch.zeros(2)
    full_step = torch.tensor([-4.0, 0.0])  # x = old - fraction * full_step moves towards +x
    res = line_search(
        quadratic(torch.tensor([1.0, 0.0]), 0.001), old, full_step, old_loss=1.0, max_kl=0.01, max_steps=10, ratio=0.5
    )
    # fraction 1 -> x=4 (loss 9, worse); 0.5 -> x=2 (loss 1, not better); 0.25 -> x=1 (loss 0)
    assert res.accepted and res.steps == 3 and res.loss == 0.0
    torch.testing.assert_close(res.params, torch.tensor([1.0, 0.0]))


def test_line_search_refuses_over_kl_worse_and_non_finite_steps():
    old = torch.zeros(2)
    step = torch.tensor([-1.0, 0.0])
    over_kl = line_search(quadratic(torch.tensor([1.0, 0.0]), 1.0), old, step, 1.0, max_kl=1e-6, max_steps=4, ratio=0.5)
    assert not over_kl.accepted and torch.equal(over_kl.params, old) and over_kl.steps == 4
    worse = line_search(quadratic(torch.tensor([-1.0, 0.0]), 0.0), old, step, 1.0, 0.01, 4, 0.5)
    assert not worse.accepted and torch.equal(worse.params, old)
    nan = line_search(lambda x: (math.nan, 0.0), old, step, 1.0, 0.01, 3, 0.5)
    assert not nan.accepted and torch.equal(nan.params, old)
