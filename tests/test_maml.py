import numpy as np
import pytest
import torch
from torch.distributions import kl_divergence

from dh_maml.episodes import EpisodeBatch, concat_tasks, masked_mean
from dh_maml.in_process import InProcess
from dh_maml.maml.inner import TaskGroup, adapt, broadcast, inner_loss, step_sizes
from dh_maml.maml.learner import MAMLTRPO
from dh_maml.maml.reference import AutogradBlock
from dh_maml.maml.task_terms import FlatBatch, Head, adapt_block, head_distribution
from dh_maml.policies import CategoricalMLPPolicy, GaussianMLPPolicy
from dh_maml.spec import MAMLSpec, TRPOSpec, load_spec
from dh_maml.trpo import flat

EXACT = TRPOSpec(curvature_fraction=1.0)  # curvature on every episode: the exact Hessian of the KL


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
    learner = MAMLTRPO(policy, MAMLSpec(fast_lr=0.5, num_steps=num_steps, first_order=first_order), EXACT)
    return policy, result, learner


def flat_params(policy):
    return torch.cat([p.detach().reshape(-1) for p in policy.parameters()])


def mean_gradient(obj):
    return sum(flat(b.gradient()) for b in obj.blocks) / len(obj.losses)


def alone(group, i):
    """Task ``i`` of ``group`` as a group of its own."""
    return TaskGroup([group.task_ids[i]], [b.task(i) for b in group.train], group.valid.task(i))


def meta_gradient_and_fd(num_steps, first_order, directions=4):
    policy, group, learner = setup(num_steps, first_order)
    obj = learner.objective(group)
    g = mean_gradient(obj)

    def post_adaptation_loss(vector):
        values = learner.layout.split(vector)
        return sum(b.score(values)[0] for b in obj.blocks) / len(obj.losses)

    theta = flat_params(policy)
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


def autograd_surrogate_and_kl(policy, params, group, i, lrs, first_order):
    """The task's surrogate and KL as one autograd graph through the adaptation: the reference."""
    adapted, _ = adapt(
        policy, params, [b.task(i) for b in group.train], lrs, create_graph=not first_order, per_task=False
    )
    valid = group.valid.task(i)
    outputs = policy.outputs(adapted, valid.observations)
    pi, old = policy.distribution(outputs), policy.distribution(tuple(o.detach() for o in outputs))
    ratio = torch.exp(pi.log_prob(valid.actions) - old.log_prob(valid.actions))
    loss = -masked_mean(ratio * valid.advantages, valid.mask)[0]
    return loss, masked_mean(torch.distributions.kl_divergence(pi, old), valid.mask)[0]


def categorical_setup(num_steps, first_order):
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    policy = CategoricalMLPPolicy(3, 4, (8, 8), nonlinearity="relu").double()

    def batch():
        b = synthetic_batch(gen, obs_dim=3)
        b.actions = torch.randint(0, 4, b.mask.shape, generator=gen)
        return b

    group = TaskGroup([0, 1], [batch() for _ in range(num_steps)], batch())
    return (
        policy,
        group,
        MAMLTRPO(policy, MAMLSpec(fast_lr=0.5, num_steps=num_steps, first_order=first_order), EXACT),
    )


@pytest.mark.parametrize("make", [setup, categorical_setup], ids=["gaussian-tanh", "categorical-relu"])
@pytest.mark.parametrize("num_steps,first_order", [(1, False), (2, False), (1, True)])
def test_gradient_and_curvature_products_equal_autograd_through_the_adaptation(float64, make, num_steps, first_order):
    """Each task alone, and the two tasks batched in one block (whose products are the sums over its tasks)."""
    policy, group, learner = make(num_steps, first_order)
    (block,) = learner.objective(group).blocks
    params = {k: v.detach().requires_grad_() for k, v in policy.params().items()}
    v = torch.linspace(-1.0, 1.0, flat_params(policy).numel())
    values = learner.layout.split(v)
    grads, hvs = [], []
    for i in range(len(group.task_ids)):
        (terms,) = learner.objective(alone(group, i)).blocks
        loss, kl = autograd_surrogate_and_kl(policy, params, group, i, learner.lrs, first_order)
        assert terms.losses.item() == pytest.approx(loss.item(), rel=1e-12)
        assert block.losses[i].item() == pytest.approx(loss.item(), rel=1e-12)
        grads.append(flat(torch.autograd.grad(loss, list(params.values()), retain_graph=True)))
        torch.testing.assert_close(flat(terms.gradient()), grads[-1])
        kl_grad = flat(torch.autograd.grad(kl, list(params.values()), create_graph=True))
        hvs.append(flat(torch.autograd.grad(kl_grad.dot(v), list(params.values()))))
        torch.testing.assert_close(flat(terms.curvature_vp(values)), hvs[-1], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(flat(block.gradient()), sum(grads))
    torch.testing.assert_close(flat(block.curvature_vp(values)), sum(hvs), rtol=1e-9, atol=1e-12)


def test_a_diagonal_heads_coefficient_products_equal_its_double_backward(float64):
    """The Gaussian head's Hessian read off two probes gives the same products as autograd, for the inner
    loss (log-likelihood weighted by advantages) and for the KL, with shared and per-task head tangents."""
    gen = torch.Generator().manual_seed(3)
    policy = GaussianMLPPolicy(2, 3, (4,), init_std=0.7).double()
    out = torch.randn(2, 5, 3, generator=gen, dtype=torch.float64)
    log_std = torch.randn(2, 3, generator=gen, dtype=torch.float64) * 0.3
    actions = torch.randn(2, 5, 3, generator=gen, dtype=torch.float64)
    weights = torch.rand(2, 5, generator=gen, dtype=torch.float64) * torch.randn(
        2, 5, generator=gen, dtype=torch.float64
    )
    old = head_distribution(policy, out + 0.1, [log_std - 0.2])
    objectives = [
        lambda d: -(weights * d.log_prob(actions)).sum(-1),
        lambda d: (weights.abs() * kl_divergence(d, old)).sum(-1),
    ]
    for objective in objectives:
        head = Head(policy, out, [log_std], objective, second_order=True)
        assert head._diagonal is not None
        for t_head in (
            torch.randn(3, generator=gen, dtype=torch.float64),
            torch.randn(2, 3, generator=gen, dtype=torch.float64),
        ):
            tangents = [torch.randn(2, 5, 3, generator=gen, dtype=torch.float64), t_head]
            for fast, slow in zip(head.hvp(tangents), head._autograd_hvp(tangents)):
                torch.testing.assert_close(fast, slow, rtol=1e-12, atol=1e-12)


def test_curvature_product_matches_finite_differences_of_the_kl_gradient(float64):
    policy, group, learner = setup(1, False)
    (terms,) = learner.objective(alone(group, 0)).blocks
    theta = flat_params(policy)
    v = torch.linspace(-1.0, 1.0, theta.numel())
    valid = group.valid.task(0)

    def adapted_outputs(vector):
        params = {k: x.clone().requires_grad_() for k, x in zip(policy.params(), learner.layout.split(vector))}
        adapted, _ = adapt(policy, params, [group.train[0].task(0)], learner.lrs, create_graph=True, per_task=False)
        return params, policy.outputs(adapted, valid.observations)

    old = policy.distribution(tuple(o.detach() for o in adapted_outputs(theta)[1]))

    def kl_grad(vector):
        params, outputs = adapted_outputs(vector)
        kl = masked_mean(torch.distributions.kl_divergence(policy.distribution(outputs), old), valid.mask)[0]
        return flat(torch.autograd.grad(kl, list(params.values())))

    eps = 1e-6
    fd = (kl_grad(theta + eps * v) - kl_grad(theta - eps * v)) / (2 * eps)
    torch.testing.assert_close(flat(terms.curvature_vp(learner.layout.split(v))), fd, rtol=1e-5, atol=1e-8)


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
        # the learner's adaptation (kept passes, no autograd graph) lands on the same parameters
        flat_batches = [FlatBatch.of(b) for b in (b1, b2)]
        adaptation = adapt_block(policy, learner.layout, learner.params(), flat_batches, [0.5, 0.25], keep=False)
        learner_side, learner_first = adaptation.params, adaptation.first_losses
        assert learner_first.item() == pytest.approx(first[i].item(), rel=1e-12)
        for k, value in zip(params, learner_side):
            torch.testing.assert_close(value[0], p2[k])
    assert step_sizes(0.5, 3, paper_protocol=True) == [0.5, 0.25, 0.25]
    assert step_sizes(0.5, 3) == [0.5, 0.5, 0.5]


def test_objective_starts_at_ratio_one_and_zero_kl(float64):
    _policy, result, learner = setup(1, False)
    obj = learner.objective(result)
    valid = result.valid
    expected = -((valid.advantages * valid.mask).sum(1) / valid.mask.sum(1)).mean(-1)
    assert obj.losses == pytest.approx(expected.tolist(), rel=1e-12)
    for b in obj.blocks:
        losses, kls = b.scores(learner.params())
        torch.testing.assert_close(losses, b.losses, rtol=1e-12, atol=0.0)
        torch.testing.assert_close(kls, torch.zeros_like(kls), rtol=0.0, atol=1e-12)


def test_group_objective_equals_the_objectives_of_its_tasks_alone(float64):
    _policy, group, learner = setup(1, False)
    together = learner.objective(group)
    singles = [learner.objective(alone(group, i)) for i in range(2)]
    for i, single in enumerate(singles):
        assert single.losses == pytest.approx([together.losses[i]], rel=1e-12)
    torch.testing.assert_close(mean_gradient(together), sum(mean_gradient(s) for s in singles) / 2)
    # and the order groups arrive in does not change the step
    split = [
        TaskGroup([1], [group.train[0].task(1)], group.valid.task(1)),
        TaskGroup([0], [group.train[0].task(0)], group.valid.task(0)),
    ]
    merged = TaskGroup(
        [0, 1], [concat_tasks([s.train[0] for s in split[::-1]])], concat_tasks([s.valid for s in split[::-1]])
    )
    assert learner.objective(merged).losses == pytest.approx(together.losses, rel=1e-12)


def test_trpo_step_lowers_the_surrogate_within_the_kl_bound(float64):
    policy, result, learner = setup(1, False)
    before = [p.detach().clone() for p in policy.parameters()]
    start = learner.objective(result)
    stats = learner.step([start])
    assert stats.trpo.accepted
    assert stats.trpo.loss_after < stats.trpo.loss_before
    assert 0 < stats.trpo.kl_after <= learner.trpo.max_kl
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, policy.parameters()))
    after = np.sum([b.score(learner.params()) for b in start.blocks], axis=0) / len(start.losses)
    assert after[0] == pytest.approx(stats.trpo.loss_after, rel=1e-9)
    assert after[1] == pytest.approx(stats.trpo.kl_after, rel=1e-9)


def test_trpo_work_split_over_threads_matches_the_serial_work(float64):
    results = []
    for threads in (1, 2):
        policy, group, _ = setup(1, False)
        learner = MAMLTRPO(policy, MAMLSpec(fast_lr=0.5, num_steps=1), EXACT, threads=threads)
        stats = learner.step([learner.objective(group)])
        assert stats.trpo.accepted and stats.trpo.loss_after < stats.trpo.loss_before
        results.append(flat_params(policy))
    # two threads make two blocks of one task: the same sums, grouped differently
    torch.testing.assert_close(results[0], results[1], rtol=1e-12, atol=1e-14)


def test_in_process_navigation_post_adaptation_return_improves():
    spec = load_spec(None, ["maml.meta_batch_size=10", "maml.fast_batch_size=10", "experiment.seed=3"])
    trainer = InProcess(spec)
    records = [trainer.iterate() for _ in range(10)]
    trainer.close()
    first = records[0]["returns/post"]
    last = np.mean([r["returns/post"] for r in records[-3:]])
    assert last > first + 15, [round(r["returns/post"], 1) for r in records]
    assert all(r["kl/after"] <= spec.trpo.max_kl for r in records)
    assert last > np.mean([r["returns/pre"] for r in records[-3:]])  # adaptation helps


def reference_learner(policy, num_steps, first_order):
    spec = MAMLSpec(fast_lr=0.5, num_steps=num_steps, first_order=first_order, curvature="autograd")
    return MAMLTRPO(policy, spec, EXACT)


def relu_gaussian_setup(num_steps, first_order):
    gen = torch.Generator().manual_seed(5)
    torch.manual_seed(5)
    policy = GaussianMLPPolicy(2, 2, (6, 5), nonlinearity="relu", init_std=0.6).double()
    group = TaskGroup([3, 4, 5], [synthetic_batch(gen, n=3) for _ in range(num_steps)], synthetic_batch(gen, n=3))
    return (
        policy,
        group,
        MAMLTRPO(policy, MAMLSpec(fast_lr=0.05, num_steps=num_steps, first_order=first_order), EXACT),
    )


@pytest.mark.parametrize(
    "make", [setup, categorical_setup, relu_gaussian_setup], ids=["gaussian-tanh", "categorical-relu", "gaussian-relu"]
)
@pytest.mark.parametrize("num_steps,first_order", [(1, False), (2, False), (1, True), (2, True)])
def test_the_autograd_reference_agrees_with_the_fast_path(float64, make, num_steps, first_order):
    """maml.curvature: autograd and fast compute the same losses, gradient, curvature products and scores."""
    policy, group, fast = make(num_steps, first_order)
    reference = reference_learner(policy, num_steps, first_order)
    reference.lrs = fast.lrs
    (a,), (b,) = fast.objective(group).blocks, reference.objective(group).blocks
    assert type(b).__name__ == "AutogradBlock"
    torch.testing.assert_close(a.losses, b.losses, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(a.inner_losses, b.inner_losses, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(flat(a.gradient()), flat(b.gradient()), rtol=1e-9, atol=1e-12)
    gen = torch.Generator().manual_seed(2)
    for _ in range(2):
        values = fast.layout.split(torch.randn(flat_params(policy).numel(), generator=gen, dtype=torch.float64))
        torch.testing.assert_close(flat(a.curvature_vp(values)), flat(b.curvature_vp(values)), rtol=1e-9, atol=1e-12)
    moved = [p + 0.01 * v for p, v in zip(fast.params(), values)]
    for x, y in zip(a.scores(moved), b.scores(moved)):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-13)


def with_fraction(learner, fraction):
    learner.trpo = TRPOSpec(curvature_fraction=fraction)
    return learner


@pytest.mark.parametrize("num_steps,first_order", [(1, False), (2, False), (1, True)])
def test_the_reference_chain_on_every_episode_is_the_exact_curvature(float64, num_steps, first_order):
    """The autograd chain Jᵀ F J (one double backward per factor), fed every episode, equals the double
    backward through the whole graph: the chain that estimates the curvature on fewer episodes is right."""
    policy, group, _ = relu_gaussian_setup(num_steps, first_order)
    reference = reference_learner(policy, num_steps, first_order)
    (exact,) = reference.objective(group).blocks
    chain = AutogradBlock(
        group.task_ids,
        policy,
        reference.params(),
        group.train,
        group.valid,
        reference.lrs,
        not first_order,
        (group.train, group.valid),
    )
    gen = torch.Generator().manual_seed(4)
    for _ in range(2):
        values = reference.layout.split(torch.randn(flat_params(policy).numel(), generator=gen, dtype=torch.float64))
        torch.testing.assert_close(
            flat(chain.curvature_vp(values)), flat(exact.curvature_vp(values)), rtol=1e-9, atol=1e-12
        )


@pytest.mark.parametrize(
    "make", [setup, categorical_setup, relu_gaussian_setup], ids=["gaussian-tanh", "categorical-relu", "gaussian-relu"]
)
@pytest.mark.parametrize("num_steps,first_order", [(1, False), (2, False), (1, True)])
def test_curvature_on_fewer_episodes_agrees_between_the_paths_and_leaves_the_rest_exact(
    float64, make, num_steps, first_order
):
    """trpo.curvature_fraction: both paths estimate the same products on each task's first episodes, the
    estimate differs from the product on every episode, and losses, gradient and scores are untouched."""
    policy, group, fast = make(num_steps, first_order)
    full = fast.objective(group).blocks[0]
    reference = with_fraction(reference_learner(policy, num_steps, first_order), 0.5)
    reference.lrs = fast.lrs
    (a,), (b,) = with_fraction(fast, 0.5).objective(group).blocks, reference.objective(group).blocks
    assert group.valid.first_episodes(0.5).mask.shape[-1] == 2 and group.valid.first_episodes(1.0) is group.valid
    gen = torch.Generator().manual_seed(2)
    for _ in range(2):
        values = fast.layout.split(torch.randn(flat_params(policy).numel(), generator=gen, dtype=torch.float64))
        estimate = flat(a.curvature_vp(values))
        torch.testing.assert_close(estimate, flat(b.curvature_vp(values)), rtol=1e-9, atol=1e-12)
        assert (estimate - flat(full.curvature_vp(values))).norm() > 1e-3 * estimate.norm()
    torch.testing.assert_close(a.losses, full.losses, rtol=0, atol=0)
    torch.testing.assert_close(flat(a.gradient()), flat(full.gradient()), rtol=0, atol=0)
    moved = [p + 0.01 * v for p, v in zip(fast.params(), values)]
    for x, y in zip(a.scores(moved), full.scores(moved)):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_a_trpo_step_with_the_reference_lands_where_the_fast_path_does(float64):
    landed = []
    for curvature in ("fast", "autograd"):
        policy, group, _ = setup(1, False)  # two inner steps at this lr make conjugate gradient ill-conditioned
        learner = MAMLTRPO(policy, MAMLSpec(fast_lr=0.5, num_steps=1, curvature=curvature), EXACT, threads=2)
        stats = learner.step([learner.objective(group)])
        assert stats.trpo.accepted
        landed.append(flat_params(policy))
    # the products agree to 1e-12 (above); ten conjugate-gradient iterations on this poorly conditioned
    # synthetic problem amplify that to about 1e-5
    torch.testing.assert_close(landed[0], landed[1], rtol=1e-4, atol=1e-6)


def test_a_policy_the_fast_path_cannot_take_apart_falls_back_to_autograd(float64, capsys):
    class Custom(GaussianMLPPolicy):
        """A user's subclass: the fast path cannot know what it changed."""

    torch.manual_seed(0)
    policy = Custom(2, 2, (8,), init_std=0.8).double()
    learner = MAMLTRPO(policy, MAMLSpec(fast_lr=0.5), EXACT)
    assert learner.curvature == "autograd"
    assert "maml.curvature=fast cannot take this policy apart (Custom is not one of" in capsys.readouterr().err
    gen = torch.Generator().manual_seed(0)
    group = TaskGroup([0, 1], [synthetic_batch(gen)], synthetic_batch(gen))
    assert learner.step([learner.objective(group)]).trpo.accepted
