import gymnasium as gym
import numpy as np
import pytest
import torch

from dh_maml.policies import CategoricalMLPPolicy, GaussianMLPPolicy, make_policy
from dh_maml.spec import PolicySpec


def test_functional_call_matches_module_and_uses_given_params():
    torch.manual_seed(0)
    pol = GaussianMLPPolicy(3, 2, (8, 8), init_std=0.5)
    obs = torch.randn(5, 3)
    mean, std = pol(obs)
    m2, _s2 = pol.outputs(pol.params(), obs)
    torch.testing.assert_close(mean, m2)
    torch.testing.assert_close(std, torch.full_like(std, 0.5))
    shifted = {k: v + 1.0 if k.endswith("bias") and k.startswith("mean.4") else v for k, v in pol.params().items()}
    torch.testing.assert_close(pol.outputs(shifted, obs)[0], mean + 1.0)


def test_per_task_outputs_equal_a_loop_over_tasks():
    torch.manual_seed(0)
    for pol in (GaussianMLPPolicy(3, 2, (8,)), CategoricalMLPPolicy(3, 4, (8,))):
        per_task = [{k: v + 0.1 * i for k, v in pol.params().items()} for i in range(3)]
        stacked = {k: torch.stack([p[k] for p in per_task]) for k in per_task[0]}
        obs = torch.randn(3, 5, 3)
        batched = pol.outputs_per_task(stacked, obs)
        for i in range(3):
            for a, b in zip(batched, pol.outputs(per_task[i], obs[i])):
                torch.testing.assert_close(a[i], b)


def test_log_prob_and_min_std():
    pol = GaussianMLPPolicy(1, 2, (4,), init_std=1e-9, min_std=1e-3)
    _, std = pol(torch.zeros(1, 1))
    torch.testing.assert_close(std, torch.full((1, 2), 1e-3))
    d = pol.dist(pol.params(), torch.zeros(4, 1))
    assert d.log_prob(torch.zeros(4, 2)).shape == (4,)  # summed over action dims
    cat = CategoricalMLPPolicy(2, 3, (4,))
    assert cat.dist(cat.params(), torch.zeros(6, 2)).sample().shape == (6,)


def test_make_policy_matches_action_space():
    box = gym.spaces.Box(-1, 1, (3,), np.float32)
    assert isinstance(make_policy(box, gym.spaces.Box(-1, 1, (2,)), PolicySpec()), GaussianMLPPolicy)
    assert isinstance(make_policy(box, gym.spaces.Discrete(4), PolicySpec()), CategoricalMLPPolicy)


@pytest.mark.parametrize(
    "space", [gym.spaces.Box(-1.0, 1.0, shape=(2,)), gym.spaces.Discrete(3)], ids=["box", "discrete"]
)
def test_init_output_scale_shrinks_the_first_outputs_and_nothing_else(space):
    obs_space, obs = gym.spaces.Box(-1.0, 1.0, shape=(3,)), torch.randn(5, 3)
    policies = []
    for scale in (1.0, 0.01):
        torch.manual_seed(0)
        policies.append(make_policy(obs_space, space, PolicySpec(hidden_sizes=[8], init_output_scale=scale)))
    plain, scaled = policies
    torch.testing.assert_close(scaled(obs)[0], 0.01 * plain(obs)[0])  # zero biases: the outputs scale alike
    names = [name for name, _ in plain.named_parameters()]
    last = plain.layer_keys()[-1][0]
    for name in names:
        a, b = plain.get_parameter(name), scaled.get_parameter(name)
        torch.testing.assert_close(b, 0.01 * a if name == last else a)
