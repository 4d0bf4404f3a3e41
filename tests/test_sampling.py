import numpy as np
import torch

from dh_maml.envs.navigation import Navigation2D, NavigationTask
from dh_maml.policies import GaussianMLPPolicy
from dh_maml.sampling import Sampler


def constant_policy(action, std=1e-6):
    """A policy whose actions are ``action`` (up to std) whatever the observation."""
    pol = GaussianMLPPolicy(2, 2, (4,), init_std=std, min_std=std)
    with torch.no_grad():
        for p in pol.parameters():
            p.zero_()
        pol.mean[-1].bias.copy_(torch.tensor(action))
        pol.log_std.fill_(np.log(std))
    return pol


def test_episodes_end_at_termination_and_autoreset_steps_are_masked():
    fam = Navigation2D(horizon=20)
    pol = constant_policy([0.05, 0.0])
    sampler = Sampler(fam, pol)
    tasks = [NavigationTask((0.1, 0.0)), NavigationTask((0.4, 0.4))]
    batch = sampler.sample(pol.params(), tasks, episodes_per_task=3, seed=0)
    # goal (0.1, 0) is reached on the second step; the other goal is never reached
    assert batch.observations.shape == (2, 20, 3, 2)
    assert batch.lengths.tolist() == [[2, 2, 2], [20, 20, 20]]
    assert batch.num_steps == 3 * 2 + 3 * 20
    assert (batch.rewards[0, 2:] == 0).all() and (batch.mask[0, 2:] == 0).all()
    np.testing.assert_allclose(batch.rewards[0, :2, 0].numpy(), [-0.05, 0.0], atol=1e-5)
    assert batch.observations.dtype == torch.float32 and batch.rewards.dtype == torch.float32
    sampler.close()


def test_per_task_parameters_act_for_their_own_task():
    fam = Navigation2D(horizon=5)
    pol = constant_policy([0.0, 0.0])
    sampler = Sampler(fam, pol)
    params = {k: torch.stack([v, v]) for k, v in pol.params().items()}
    params["mean.2.bias"] = torch.tensor([[0.01, 0.0], [0.0, -0.02]])
    tasks = [NavigationTask((0.5, 0.5)), NavigationTask((0.5, 0.5))]
    batch = sampler.sample(params, tasks, episodes_per_task=2, seed=0, per_task_params=True)
    np.testing.assert_allclose(batch.actions[0].numpy(), np.broadcast_to([0.01, 0.0], (5, 2, 2)), atol=1e-4)
    np.testing.assert_allclose(batch.actions[1].numpy(), np.broadcast_to([0.0, -0.02], (5, 2, 2)), atol=1e-4)
    sampler.close()


def test_sampling_is_seeded_and_leaves_global_rng_alone():
    fam = Navigation2D()
    torch.manual_seed(0)
    pol = GaussianMLPPolicy(2, 2, (8,))
    sampler = Sampler(fam, pol)
    tasks = fam.sample_tasks(2, np.random.default_rng(0))
    state = torch.get_rng_state()
    a = sampler.sample(pol.params(), tasks, 3, seed=5)
    b = sampler.sample(pol.params(), tasks, 3, seed=5)
    c = sampler.sample(pol.params(), tasks, 3, seed=6)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.actions, b.actions) and not torch.equal(a.actions, c.actions)
    sampler.close()


def test_mode_acts_with_the_policys_mean_action():
    """Scored episodes under Meta-World's protocol act with the mean: no noise, whatever the seed."""
    fam = Navigation2D(horizon=6)
    torch.manual_seed(0)
    pol = GaussianMLPPolicy(2, 2, (8,), init_std=0.5)
    sampler = Sampler(fam, pol)
    tasks = fam.sample_tasks(2, np.random.default_rng(0))
    a = sampler.sample(pol.params(), tasks, 3, seed=5, mode=True)
    b = sampler.sample(pol.params(), tasks, 3, seed=6, mode=True)
    assert torch.equal(a.actions, b.actions)
    with torch.no_grad():
        mean = pol.dist(pol.params(), a.observations).mean
    live = a.mask.bool()
    torch.testing.assert_close(a.actions[live], mean[live])
    sampled = sampler.sample(pol.params(), tasks, 3, seed=5)
    assert not torch.equal(sampled.actions, a.actions)
    sampler.close()


def test_retiring_ended_sub_envs_leaves_the_batch_unchanged(monkeypatch):
    """The sampler retires sub-envs whose episode ended (Ant: most end early); the episodes it returns are
    the ones it returns when every sub-env keeps stepping."""
    from dh_maml.envs.base import ArrayVectorEnv
    from dh_maml.envs.mujoco import AntDir, DirectionTask

    fam = AntDir(horizon=30)
    pol = GaussianMLPPolicy(fam.observation_space.shape[0], 8, (8,), init_std=1.0)
    tasks = [DirectionTask(1.0), DirectionTask(-1.0)]
    batches = [Sampler(fam, pol).sample(pol.params(), tasks, episodes_per_task=4, seed=3)]
    monkeypatch.setattr(ArrayVectorEnv, "retire", lambda self, mask: None)
    batches.append(Sampler(fam, pol).sample(pol.params(), tasks, episodes_per_task=4, seed=3))
    retired, stepped = batches
    assert (retired.lengths < 30).any()  # some episodes did end early, so something was retired
    for name in ("observations", "actions", "rewards", "mask"):
        assert torch.equal(getattr(retired, name), getattr(stepped, name)), name
