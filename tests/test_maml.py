import numpy as np
import pytest
import torch

from dh_maml.algos.maml import MAMLTRPO, TaskGroup, adapt, broadcast, inner_loss, step_sizes
from dh_maml.episodes import EpisodeBatch, concat_tasks
from dh_maml.policies import GaussianMLPPolicy
from dh_maml.spec import MAMLSpec, TRPOSpec, load_spec
from dh_maml.trainer import LocalTrainer


def synthetic_batch(gen, n=2, t_steps=6, b=4, obs_dim=2, act_dim=2):
    mask = torch.ones(n, t_steps, b)
    mask[:, 4:, 1] = 0.0
    return EpisodeBatch(
        observations=torch.randn(n, t_steps, b, obs_dim, generator=gen),
        actions=torch.randn(n, t_steps, b, act_dim, generator=gen),
        rewards=torch.randn(n, t_steps, b, generator=gen),
        mask=mask,
        advantages=torch.randn(n, t_steps, b, generator=gen) * mask,
    )


def setup(num_steps, first_order):
    """A group of two tasks with different data, so any mixing of tasks in the batched graph shows."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(2, 2, (8,), init_std=0.8).double()
    result = TaskGroup([0, 1], [synthetic_batch(gen) for _ in range(num_steps)], synthetic_batch(gen))
    learner = MAMLTRPO(policy, MAMLSpec(fast_lr=0.5, num_steps=num_steps, first_order=first_order), TRPOSpec())
    return policy, result, learner


def meta_gradient_and_fd(num_steps, first_order, directions=4):
    policy, result, learner = setup(num_steps, first_order)
    obj = learner.objective(result)
    params = policy.params()
    grads = torch.autograd.grad(obj.losses.mean(), list(params.values()))
    g = torch.cat([x.reshape(-1) for x in grads])

    def post_adaptation_loss(vector):
        p, offset = {}, 0
        for k, v in params.items():
            p[k] = vector[offset:offset + v.numel()].view_as(v).detach().requires_grad_()
            offset += v.numel()
        return learner.objective(result, p, obj.old_outputs, create_graph=False).losses.mean().item()

    theta = torch.cat([v.detach().reshape(-1) for v in params.values()])
    gen = torch.Generator().manual_seed(1)
    analytic, numeric = [], []
    for _ in range(directions):
        u = torch.randn(theta.shape, generator=gen, dtype=theta.dtype)
        eps = 1e-6
        numeric.append((post_adaptation_loss(theta + eps * u) - post_adaptation_loss(theta - eps * u)) / (2 * eps))
        analytic.append(g.dot(u).item())
    return np.array(analytic), np.array(numeric)


@pytest.mark.parametrize("num_steps", [1, 2])
def test_second_order_meta_gradient_matches_finite_differences(float64, num_steps):
    analytic, numeric = meta_gradient_and_fd(num_steps, first_order=False)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)


def test_first_order_meta_gradient_differs_from_the_true_gradient(float64):
    analytic, numeric = meta_gradient_and_fd(1, first_order=True)
    assert np.abs(analytic - numeric).max() > 1e-2 * np.abs(numeric).max()


def test_adapt_is_one_sgd_step_per_batch_for_each_task_alone(float64):
    policy, result, learner = setup(2, False)
    params = policy.params()
    got, first = adapt(policy, broadcast(params, 2), result.train, [0.5, 0.25], create_graph=False)
    for i in range(2):
        b1, b2 = result.train[0].task(i), result.train[1].task(i)
        loss1 = inner_loss(policy, broadcast(params, 1), b1)
        assert first[i].item() == pytest.approx(loss1.item())
        g1 = torch.autograd.grad(loss1.sum(), list(params.values()))
        p1 = {k: v - 0.5 * g for (k, v), g in zip(params.items(), g1)}
        g2 = torch.autograd.grad(inner_loss(policy, broadcast(p1, 1), b2).sum(), list(p1.values()))
        p2 = {k: v - 0.25 * g for (k, v), g in zip(p1.items(), g2)}
        for k in params:
            torch.testing.assert_close(got[k][i], p2[k])
    assert step_sizes(0.5, 3, paper_protocol=True) == [0.5, 0.25, 0.25]
    assert step_sizes(0.5, 3) == [0.5, 0.5, 0.5]


def test_objective_starts_at_ratio_one_and_zero_kl(float64):
    policy, result, learner = setup(1, False)
    obj = learner.objective(result)
    valid = result.valid
    expected = -((valid.advantages * valid.mask).sum(1) / valid.mask.sum(1)).mean(-1)
    torch.testing.assert_close(obj.losses, expected)
    assert obj.kls.abs().max().item() == pytest.approx(0.0, abs=1e-12)


def test_group_objective_equals_the_objectives_of_its_tasks_alone(float64):
    policy, group, learner = setup(1, False)
    together = learner.objective(group)
    params = policy.params()
    g_together = torch.autograd.grad(together.losses.sum(), list(params.values()))
    g_alone = [torch.zeros_like(p) for p in params.values()]
    for i in range(2):
        alone = learner.objective(TaskGroup([i], [group.train[0].task(i)], group.valid.task(i)))
        assert alone.losses.item() == pytest.approx(together.losses[i].item())
        for acc, g in zip(g_alone, torch.autograd.grad(alone.losses.sum(), list(params.values()))):
            acc += g
    for a, b in zip(g_together, g_alone):
        torch.testing.assert_close(a, b)
    # and the order groups arrive in does not change the step
    split = [TaskGroup([1], [group.train[0].task(1)], group.valid.task(1)),
             TaskGroup([0], [group.train[0].task(0)], group.valid.task(0))]
    merged = TaskGroup([0, 1], [concat_tasks([s.train[0] for s in split[::-1]])],
                       concat_tasks([s.valid for s in split[::-1]]))
    assert learner.objective(merged).losses.tolist() == pytest.approx(together.losses.tolist())


def test_trpo_step_lowers_the_surrogate_within_the_kl_bound(float64):
    policy, result, learner = setup(1, False)
    before = [p.detach().clone() for p in policy.parameters()]
    start = learner.objective(result)
    stats = learner.step([start])
    assert stats.trpo.accepted
    assert stats.trpo.loss_after < stats.trpo.loss_before
    assert 0 < stats.trpo.kl_after <= learner.trpo.max_kl
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, policy.parameters()))
    new = {k: v.detach().requires_grad_() for k, v in policy.params().items()}
    after = learner.objective(result, new, start.old_outputs, create_graph=False)
    assert after.losses.mean().item() == pytest.approx(stats.trpo.loss_after, rel=1e-9)


def test_trpo_work_split_over_threads_matches_the_serial_work(float64):
    from dh_maml.algos.trpo import gradient, kl_hvp

    results = []
    for threads in (1, 2):
        policy, group, _ = setup(1, False)
        params = list(policy.parameters())
        v = torch.linspace(-1.0, 1.0, sum(p.numel() for p in params))
        learner = MAMLTRPO(policy, MAMLSpec(fast_lr=0.5, num_steps=1), TRPOSpec(), threads=threads)
        tasks = learner.objective(group).tasks
        parts = [tasks] if threads == 1 else [[t] for t in tasks]
        losses = [[t.loss / 2 for t in part] for part in parts]
        kls = [[t.kl / 2 for t in part] for part in parts]
        results.append((gradient(losses, params, learner._map), kl_hvp(kls, params, 1e-5, learner._map)(v)))
        stats = learner.step([learner.objective(group)])  # the threaded line search runs too
        assert stats.trpo.accepted and stats.trpo.loss_after < stats.trpo.loss_before
    for serial, parallel in zip(*results):
        torch.testing.assert_close(parallel, serial, rtol=1e-12, atol=1e-14)


def test_in_process_navigation_post_adaptation_return_improves():
    spec = load_spec(None, ["maml.meta_batch_size=10", "maml.fast_batch_size=10", "experiment.seed=3"])
    trainer = LocalTrainer(spec)
    records = [trainer.iterate() for _ in range(10)]
    trainer.close()
    first = records[0]["returns/post"]
    last = np.mean([r["returns/post"] for r in records[-3:]])
    assert last > first + 15, [round(r["returns/post"], 1) for r in records]
    assert all(r["kl/after"] <= spec.trpo.max_kl for r in records)
    assert last > np.mean([r["returns/pre"] for r in records[-3:]])  # adaptation helps
