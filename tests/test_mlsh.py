"""MLSH pieces: the PPO loss against hand-computed values, macro steps, routing to sub-policies, master reset."""

import math

import gymnasium as gym
import pytest
import torch

from dh_maml.algos.mlsh import (MLSHLearner, advantages_and_returns, fresh_master, macro_steps, master_samples, owners,
                                split_by_subpolicy, subpolicy_samples)
from dh_maml.algos.ppo import Samples, ppo_loss, ppo_update
from dh_maml.hierarchy_sampling import sample_hierarchy
from dh_maml.policies.hierarchy import ActorCritic, MLSHPolicy
from dh_maml.spec import PolicySpec

OBS = gym.spaces.Box(-1.0, 1.0, shape=(3,))
SPEC = PolicySpec(hidden_sizes=[8], nonlinearity="tanh")


def test_ppo_loss_matches_hand_computed_values():
    ratios = torch.tensor([1.5, 0.5, 1.1, 0.5], dtype=torch.float64)
    log_probs = ratios.log().requires_grad_()
    adv = torch.tensor([2.0, -1.0, 1.0, 1.0], dtype=torch.float64)
    loss = ppo_loss(log_probs, torch.zeros(4, dtype=torch.float64), adv,
                    torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64), torch.ones(4, dtype=torch.float64),
                    clip=0.2)
    # min(r A, clip(r) A): 2.4 (clipped), -0.8 (clipped), 1.1, 0.5 -> mean 0.8
    assert loss.policy.item() == pytest.approx(-0.8)
    assert loss.value.item() == pytest.approx((0 + 1 + 4 + 9) / 4)
    assert loss.clip_fraction == pytest.approx(0.75)
    (grad,) = torch.autograd.grad(loss.policy, log_probs)
    # clipped samples pass no gradient; the others pass -r A / M
    torch.testing.assert_close(grad, torch.tensor([0.0, 0.0, -1.1 / 4, -0.5 / 4], dtype=torch.float64))


def test_ppo_update_moves_probability_towards_positive_advantages():
    torch.manual_seed(0)
    agent = ActorCritic(OBS, gym.spaces.Discrete(3), SPEC)
    gen = torch.Generator().manual_seed(0)
    obs = torch.rand(256, 3, generator=gen)
    actions = torch.randint(3, (256,), generator=gen)
    with torch.no_grad():
        old, values = agent.evaluate(obs, actions)
    advantages = (actions == 2).float() * 2 - 1  # action 2 is good, the others bad
    samples = Samples(obs, actions, old, advantages, values + advantages)
    optimizer = torch.optim.Adam(agent.parameters(), lr=1e-2)
    ppo_update(agent.evaluate, optimizer, samples, clip=0.2, epochs=4, minibatch=64, generator=gen)
    with torch.no_grad():
        new, _ = agent.evaluate(obs, actions)
    assert (new - old)[actions == 2].mean() > 0.05 > 0 > (new - old)[actions != 2].mean()
    with pytest.raises(ValueError, match="needs samples"):
        ppo_update(agent.evaluate, optimizer, samples.take(torch.tensor([], dtype=torch.long)), 0.2, 1, 8, gen)


def test_macro_steps_sum_rewards_per_slice_and_mask_ended_episodes():
    rewards = torch.tensor([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0], [4.0, 1.0], [5.0, 1.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 0.0], [1.0, 0.0]])  # episode 1 ends after 3
    obs = torch.arange(10.0).reshape(5, 2, 1)
    choices = torch.tensor([[0, 1], [1, 1], [0, 0]])
    macro = macro_steps(obs, choices, rewards, mask, macro_len=2)
    torch.testing.assert_close(macro.rewards, torch.tensor([[3.0, 2.0], [7.0, 1.0], [5.0, 0.0]]))
    torch.testing.assert_close(macro.mask, torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 0.0]]))
    torch.testing.assert_close(macro.obs, obs[[0, 2, 4]])
    with pytest.raises(ValueError, match="macro_len"):
        macro_steps(obs, choices, rewards, mask, macro_len=0)


def test_advantages_and_returns_by_hand():
    rewards, values, mask = torch.tensor([[1.0], [1.0]]), torch.tensor([[0.5], [0.25]]), torch.ones(2, 1)
    adv, ret = advantages_and_returns(rewards, values, mask, gamma=0.5, lam=1.0)
    # delta_1 = 1 - 0.25 = 0.75; delta_0 = 1 + 0.5 * 0.25 - 0.5 = 0.625; adv_0 = 0.625 + 0.5 * 0.75
    torch.testing.assert_close(adv, torch.tensor([[1.0], [0.75]]))
    torch.testing.assert_close(ret, torch.tensor([[1.5], [1.0]]))


def test_each_step_goes_to_the_subpolicy_that_took_it():
    choices = torch.tensor([[0, 1], [1, 1], [0, 0]])
    owner = owners(choices, macro_len=2, steps=5)
    torch.testing.assert_close(owner, torch.tensor([[0, 1], [0, 1], [1, 1], [1, 1], [0, 0]]))
    flat = Samples(torch.arange(10.0)[:, None], torch.arange(10), torch.zeros(10), torch.zeros(10), torch.zeros(10))
    parts = split_by_subpolicy(flat, owner.reshape(-1), num_subpolicies=2)
    assert parts[0].actions.tolist() == [0, 2, 8, 9] and parts[1].actions.tolist() == [1, 3, 4, 5, 6, 7]


def test_fresh_master_resets_weights_and_optimiser_state_but_not_subpolicies():
    policy = MLSHPolicy(OBS, gym.spaces.Discrete(5), 2, SPEC)
    optimizer = fresh_master(policy, lr=1e-2, seed=1)
    first = [p.detach().clone() for p in policy.master.parameters()]
    subs = [p.detach().clone() for p in policy.subpolicies.parameters()]
    log_probs, values = policy.master.evaluate(torch.rand(8, 3), torch.zeros(8, dtype=torch.long))
    (log_probs.sum() + values.sum()).backward()
    optimizer.step()
    assert len(optimizer.state) > 0  # Adam moments exist for the trained master
    optimizer = fresh_master(policy, lr=1e-2, seed=1)
    assert len(optimizer.state) == 0
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {id(p) for p in policy.master.parameters()}
    for a, b in zip(first, policy.master.parameters()):
        torch.testing.assert_close(a, b)  # the same seed draws the same initial master
    for a, b in zip(subs, policy.subpolicies.parameters()):
        torch.testing.assert_close(a, b)
    fresh_master(policy, lr=1e-2, seed=2)
    assert not all(torch.equal(a, b) for a, b in zip(first, policy.master.parameters()))


def test_master_exploration_and_routing_of_actions():
    policy = MLSHPolicy(OBS, gym.spaces.Discrete(5), 2, SPEC)
    with torch.no_grad():  # sub-policy 0 always takes action 0, sub-policy 1 action 4
        for k, action in ((0, 0), (1, 4)):
            last = policy.subpolicies[k].actor.logits[-1]
            last.weight.zero_()
            last.bias.copy_(torch.full((5,), -30.0).index_fill(0, torch.tensor(action), 30.0))
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    obs = torch.rand(6, 3, generator=gen)
    acted = policy.act(obs, torch.tensor([0, 1, 0, 1, 1, 0]))
    assert acted.actions.tolist() == [0, 4, 0, 4, 4, 0]
    assert torch.allclose(acted.log_probs, torch.zeros(6), atol=1e-6)
    many = torch.rand(4000, 3, generator=gen)
    with torch.no_grad():
        policy.master.actor.logits[-1].bias.copy_(torch.tensor([30.0, -30.0]))  # the master always picks 0
    assert policy.choose(many, epsilon=0.0).actions.sum() == 0
    explored = policy.choose(many, epsilon=0.5)
    assert abs(explored.actions.float().mean().item() - 0.25) < 0.03  # half random, half of those pick 1
    picked_one = explored.actions == 1
    assert (explored.log_probs[picked_one] < math.log(1e-6)).all()  # the master's own probability is kept


def movement_setup(warmup, joint, episodes=8):
    from dh_maml.envs.movement_bandits import MovementBandits, MovementBanditsTask
    from dh_maml.spec import MLSHSpec

    family = MovementBandits()
    torch.manual_seed(0)
    policy = MLSHPolicy(family.observation_space, family.action_space, 2, SPEC)
    spec = MLSHSpec(warmup=warmup, joint=joint, episodes=episodes, epochs=2)
    return family, family.make_vector_env(episodes), MovementBanditsTask(1), policy, spec


def test_hierarchy_rollout_keeps_each_choice_for_its_slice():
    family, env, task, policy, spec = movement_setup(0, 1)
    roll = sample_hierarchy(env, policy, task, family.horizon, macro_len=10, epsilon=0.5, seed=3)
    assert roll.obs.shape == (50, 8, 6) and roll.choices.shape == (5, 8) and roll.mask.sum() == 400
    again = sample_hierarchy(env, policy, task, family.horizon, macro_len=10, epsilon=0.5, seed=3)
    torch.testing.assert_close(roll.actions, again.actions)  # seeded
    owner = owners(roll.choices, 10, 50)
    for k in range(2):  # every step's log-probability is the chosen sub-policy's own
        log_probs, values = policy.subpolicies[k].evaluate(roll.obs[owner == k], roll.actions[owner == k])
        torch.testing.assert_close(log_probs, roll.log_probs[owner == k])
        torch.testing.assert_close(values, roll.values[owner == k])
    returns = roll.episode_returns()
    assert returns.shape == (8,) and (returns >= 0).all() and (returns <= 50).all()
    master = master_samples(roll, 10, 0.99, 0.98)
    assert len(master) == 40 and torch.equal(master.actions, roll.choices.reshape(-1))
    parts = subpolicy_samples(roll, 10, 2, 0.99, 0.98)
    assert sum(len(p) for p in parts) == 400


def test_warmup_trains_only_the_master_and_joint_iterations_train_the_subpolicies():
    family, env, task, policy, spec = movement_setup(warmup=2, joint=0)
    learner = MLSHLearner(policy, spec, seed=0)
    subs = [p.detach().clone() for p in policy.subpolicies.parameters()]
    returns = learner.train_task(env, task, family.horizon, seed=1)
    assert len(returns) == 2 and all(math.isfinite(r) for r in returns)
    assert all(torch.equal(a, b) for a, b in zip(subs, policy.subpolicies.parameters()))
    trained_master = [p.detach().clone() for p in policy.master.parameters()]
    fresh_master(policy, 1e-2, seed=1)  # the master this task started from
    assert not all(torch.equal(a, b) for a, b in zip(trained_master, policy.master.parameters()))
    learner.train_task(env, task, family.horizon, seed=1, joint=1)
    assert not all(torch.equal(a, b) for a, b in zip(subs, policy.subpolicies.parameters()))
