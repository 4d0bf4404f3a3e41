"""MLSH pieces: the PPO loss against hand-computed values, macro steps, routing to sub-policies, master reset."""

import dataclasses
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import ROOT

from dh_maml.mlsh.policies import ActorCritic, SubPolicies, choose
from dh_maml.mlsh.ppo import Samples, ppo_loss, ppo_update
from dh_maml.mlsh.sampling import sample_hierarchy
from dh_maml.mlsh.updates import (
    Segments,
    SlotJob,
    SubPolicyLearner,
    advantages_and_returns,
    macro_steps,
    master_samples,
    owners,
    restore_master,
    run_slots,
    split_by_subpolicy,
    subpolicy_segments,
)
from dh_maml.spec import MLSHSpec, PolicySpec

OBS = gym.spaces.Box(-1.0, 1.0, shape=(3,))
SPEC = PolicySpec(hidden_sizes=[8], nonlinearity="tanh")


def test_ppo_loss_matches_hand_computed_values():
    ratios = torch.tensor([1.5, 0.5, 1.1, 0.5], dtype=torch.float64)
    log_probs = ratios.log().requires_grad_()
    adv = torch.tensor([2.0, -1.0, 1.0, 1.0], dtype=torch.float64)
    loss = ppo_loss(
        log_probs,
        torch.zeros(4, dtype=torch.float64),
        adv,
        torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64),
        torch.ones(4, dtype=torch.float64),
        clip=0.2,
    )
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
        old, values, _ = agent.evaluate(obs, actions)
    advantages = (actions == 2).float() * 2 - 1  # action 2 is good, the others bad
    samples = Samples(obs, actions, old, advantages, values + advantages)
    optimizer = torch.optim.Adam(agent.parameters(), lr=1e-2)
    ppo_update(agent, optimizer, samples, clip=0.2, epochs=4, minibatch=64, generator=gen)
    with torch.no_grad():
        new, _, _ = agent.evaluate(obs, actions)
    assert (new - old)[actions == 2].mean() > 0.05 > 0 > (new - old)[actions != 2].mean()
    with pytest.raises(ValueError, match="needs samples"):
        ppo_update(agent, optimizer, samples.take(torch.tensor([], dtype=torch.long)), 0.2, 1, 8, gen)


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


def test_a_new_task_gets_a_fresh_master_and_optimiser_state():
    first, optimizer = restore_master(OBS, 2, SPEC, lr=1e-2, seed=1, state=None)
    initial = [p.detach().clone() for p in first.parameters()]
    log_probs, values, _ = first.evaluate(torch.rand(8, 3), torch.zeros(8, dtype=torch.long))
    (log_probs.sum() + values.sum()).backward()
    optimizer.step()
    assert len(optimizer.state) > 0  # Adam moments exist for the trained master
    again, fresh = restore_master(OBS, 2, SPEC, lr=1e-2, seed=1, state=None)
    assert len(fresh.state) == 0
    assert {id(p) for g in fresh.param_groups for p in g["params"]} == {id(p) for p in again.parameters()}
    for a, b in zip(initial, again.parameters()):
        torch.testing.assert_close(a, b)  # the same seed draws the same initial master
    other, _ = restore_master(OBS, 2, SPEC, lr=1e-2, seed=2, state=None)
    assert not all(torch.equal(a, b) for a, b in zip(initial, other.parameters()))


def test_master_state_carries_weights_and_adam_moments_exactly():
    from dh_maml.mlsh.updates import master_state

    obs, actions = torch.rand(16, 3), torch.randint(2, (16,))

    def train_step(master, optimizer):
        log_probs, values, _ = master.evaluate(obs, actions)
        optimizer.zero_grad()
        (log_probs.sum() + values.pow(2).sum()).backward()
        optimizer.step()

    master, optimizer = restore_master(OBS, 2, SPEC, 1e-2, seed=3, state=None)
    train_step(master, optimizer)
    moved, moved_opt = restore_master(OBS, 2, SPEC, 1e-2, seed=99, state=master_state(master, optimizer))
    train_step(master, optimizer)
    train_step(moved, moved_opt)  # continuing elsewhere is the same as continuing here
    for a, b in zip(master.parameters(), moved.parameters()):
        torch.testing.assert_close(a, b)


def test_master_exploration_and_routing_of_actions():
    subs = SubPolicies(OBS, gym.spaces.Discrete(5), 2, SPEC)
    master = ActorCritic(OBS, gym.spaces.Discrete(2), SPEC)
    with torch.no_grad():  # sub-policy 0 always takes action 0, sub-policy 1 action 4
        for k, action in ((0, 0), (1, 4)):
            last = subs[k].actor.logits[-1]
            last.weight.zero_()
            last.bias.copy_(torch.full((5,), -30.0).index_fill(0, torch.tensor(action), 30.0))
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    obs = torch.rand(6, 3, generator=gen)
    acted = subs.act(obs, torch.tensor([0, 1, 0, 1, 1, 0]))
    assert acted.actions.tolist() == [0, 4, 0, 4, 4, 0]
    assert torch.allclose(acted.log_probs, torch.zeros(6), atol=1e-6)
    many = torch.rand(4000, 3, generator=gen)
    with torch.no_grad():
        master.actor.logits[-1].bias.copy_(torch.tensor([30.0, -30.0]))  # the master always picks 0
    assert choose(master, many, epsilon=0.0).actions.sum() == 0
    explored = choose(master, many, epsilon=0.5)
    assert abs(explored.actions.float().mean().item() - 0.25) < 0.03  # half random, half of those pick 1
    picked_one = explored.actions == 1
    assert (explored.log_probs[picked_one] < math.log(1e-6)).all()  # the master's own probability is kept


def movement_setup(episodes=8, **spec):
    from dh_maml.envs.movement_bandits import MovementBandits

    family = MovementBandits()
    torch.manual_seed(0)
    subs = SubPolicies(family.observation_space, family.action_space, 2, SPEC)
    return family, subs, MLSHSpec(episodes=episodes, epochs=2, **spec)


def test_hierarchy_rollout_keeps_each_choice_for_its_slice_and_each_task_its_master():
    from dh_maml.envs.movement_bandits import MovementBanditsTask

    family, subs, _spec = movement_setup()
    env = family.make_vector_env(16)
    masters = [ActorCritic(family.observation_space, gym.spaces.Discrete(2), SPEC) for _ in range(2)]
    with torch.no_grad():  # task 0's master always picks sub-policy 1, task 1's always 0
        for master, favourite in zip(masters, (1, 0)):
            master.actor.logits[-1].weight.zero_()
            master.actor.logits[-1].bias.copy_(torch.tensor([-30.0, 30.0] if favourite else [30.0, -30.0]))
    tasks = [MovementBanditsTask(0), MovementBanditsTask(1)]
    rolls = sample_hierarchy(env, subs, masters, tasks, family.horizon, macro_len=10, epsilon=0.0, seed=3)
    assert [r.choices.unique().tolist() for r in rolls] == [[1], [0]]
    roll = rolls[0]
    assert roll.obs.shape == (50, 8, 6) and roll.choices.shape == (5, 8) and roll.mask.sum() == 400
    again = sample_hierarchy(env, subs, masters, tasks, family.horizon, macro_len=10, epsilon=0.5, seed=3)
    explored = sample_hierarchy(env, subs, masters, tasks, family.horizon, macro_len=10, epsilon=0.5, seed=3)
    torch.testing.assert_close(again[0].actions, explored[0].actions)  # seeded
    owner = owners(again[0].choices, 10, 50)
    for k in range(2):  # every step's log-probability is the chosen sub-policy's own
        log_probs, values, _ = subs[k].evaluate(again[0].obs[owner == k], again[0].actions[owner == k])
        torch.testing.assert_close(log_probs, again[0].log_probs[owner == k])
        torch.testing.assert_close(values, again[0].values[owner == k])
    returns = roll.episode_returns()
    assert returns.shape == (8,) and (returns >= 0).all() and (returns <= 50).all()
    master = master_samples(roll, 10, 0.99, 0.98)
    assert len(master) == 40 and torch.equal(master.actions, roll.choices.reshape(-1))
    segments = subpolicy_segments(roll, 10, 0.99, 0.98)
    assert len(segments.samples) == 400 and torch.equal(segments.owner, torch.ones(400, dtype=torch.long))
    with pytest.raises(ValueError, match="one master per task"):
        sample_hierarchy(env, subs, masters[:1], tasks, family.horizon, 10, 0.0, seed=3)


def test_warmup_iterations_update_the_master_only_and_joint_ones_hand_back_segments():
    from dh_maml.envs.movement_bandits import MovementBanditsTask

    family, subs, spec = movement_setup(warmup=1, joint=1)
    env = family.make_vector_env(16)
    before = [p.detach().clone() for p in subs.parameters()]
    jobs = [SlotJob(0, MovementBanditsTask(0), 0, 11, None, 5), SlotJob(1, MovementBanditsTask(1), 1, 12, None, 6)]
    warm, joint = run_slots(env, subs, jobs, spec, SPEC, family.horizon)
    assert all(torch.equal(a, b) for a, b in zip(before, subs.parameters()))  # observers never touch them
    assert warm.segments is None and joint.segments is not None and len(joint.segments.samples) == 400
    assert warm.steps == 400 and warm.choices.sum() == 40 and warm.returns.shape == (8,)
    fresh, _ = restore_master(family.observation_space, 2, SPEC, spec.master_lr, seed=11, state=None)
    assert not all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), warm.master.weights.values()))
    learner = SubPolicyLearner(subs, spec, seed=0)
    counts = learner.update([joint.segments])
    assert sum(counts) == 400 and counts == torch.bincount(joint.segments.owner, minlength=2).tolist()
    moved = [not torch.equal(a, b) for a, b in zip(before, subs.parameters())]
    per_sub = len(moved) // 2
    assert any(moved[:per_sub]) == (counts[0] > 0) and any(moved[per_sub:]) == (counts[1] > 0)


def test_segments_pool_in_order():
    a = Segments(
        Samples(torch.zeros(2, 1), torch.zeros(2), torch.zeros(2), torch.zeros(2), torch.zeros(2)), torch.tensor([0, 1])
    )
    b = Segments(
        Samples(torch.ones(3, 1), torch.ones(3), torch.ones(3), torch.ones(3), torch.ones(3)), torch.tensor([1, 1, 0])
    )
    pooled = Segments.pooled([a, b])
    assert pooled.owner.tolist() == [0, 1, 1, 1, 0] and pooled.samples.actions.tolist() == [0, 0, 1, 1, 1]


def test_slots_start_staggered_and_draw_a_new_task_when_one_ends():
    from dh_maml.mlsh.trainer import MLSHTrainer
    from dh_maml.spec import spec_from_dict

    spec = spec_from_dict(
        {
            "experiment": {"algorithm": "mlsh"},
            "env": {"family": "movement-bandits"},
            "policy": {"hidden_sizes": [8]},
            "mlsh": {"warmup": 3, "joint": 1, "slots": 4},
        }
    )
    trainer = MLSHTrainer(spec)
    plan = trainer.plan(2)
    assert [len(jobs) for jobs in plan.jobs] == [2, 2]
    assert [j.phase for jobs in plan.jobs for j in jobs] == [0, 1, 2, 3]  # one slot joint in every round
    assert all(j.master is None for jobs in plan.jobs for j in jobs)
    assert trainer.split(plan.jobs[0], 2) == [[plan.jobs[0][0]], [plan.jobs[0][1]]]


@pytest.mark.parametrize("rounds", [None, 2])
def test_joint_iterations_commit_episodes_in_the_first_joint_commit_rounds(rounds):
    from dh_maml.mlsh.trainer import MLSHTrainer
    from dh_maml.spec import spec_from_dict

    mlsh = {"warmup": 1, "joint": 1, "slots": 2, "joint_commit": 0.3, "joint_commit_rounds": rounds}
    spec = spec_from_dict(
        {"experiment": {"algorithm": "mlsh"}, "env": {"family": "movement-bandits"}, "policy": {"hidden_sizes": [8]}}
        | {"mlsh": mlsh}
    )
    trainer = MLSHTrainer(spec)
    commits = []
    for trainer.iteration in range(4):
        commits.append([(j.phase, j.commit) for j in trainer.plan(1).jobs[0]])
    late = 0.3 if rounds is None else 0.0  # the warm-up slot (phase 0) never commits
    assert commits == [[(0, 0.0), (1, 0.3)]] * 2 + [[(0, 0.0), (1, late)]] * 2


def test_a_jobs_committed_episodes_are_played_by_one_subpolicy_each():
    from dh_maml.envs.movement_bandits import MovementBanditsTask

    family, subs, spec = movement_setup(warmup=0, joint=1, epsilon=0.0)
    env = family.make_vector_env(8)
    owner = {}
    for commit in (0.0, 1.0):
        (joint,) = run_slots(env, subs, [SlotJob(0, MovementBanditsTask(0), 0, 11, None, 5, commit)], spec, SPEC, 50)
        owner[commit] = joint.segments.owner.reshape(50, 8)
    assert (owner[1.0] == owner[1.0][0]).all() and not (owner[0.0] == owner[0.0][0]).all()


@pytest.mark.parametrize(
    "weights", [{}, {"value_coef": 0.5, "entropy_coef": 0.3, "max_grad_norm": 0.05}], ids=["plain", "weighted"]
)
def test_a2c_update_is_one_advantage_actor_critic_step_on_the_whole_batch(weights):
    from dh_maml.mlsh.ppo import normalized
    from dh_maml.mlsh.updates import learn

    spec = MLSHSpec(update="a2c", **weights)
    torch.manual_seed(0)
    agent = ActorCritic(OBS, gym.spaces.Discrete(3), SPEC)
    obs, actions = torch.rand(40, 3), torch.randint(3, (40,))
    with torch.no_grad():
        old, _, _ = agent.evaluate(obs, actions)
    advantages, returns = torch.randn(40), torch.randn(40)
    log_probs, values, _ = agent.evaluate(obs, actions)
    probs = torch.softmax(agent.actor(obs)[0], -1)
    entropy = -(probs * probs.log()).sum(-1).mean()
    loss = (
        -(normalized(advantages) * log_probs).mean()
        + spec.value_coef * (values - returns).pow(2).mean()
        - spec.entropy_coef * entropy
    )
    grads = torch.autograd.grad(loss, list(agent.parameters()))
    norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
    if spec.max_grad_norm:
        assert norm > spec.max_grad_norm  # the clipping bites
        grads = [g * spec.max_grad_norm / (norm + 1e-6) for g in grads]
    expected = [p.detach() - 0.1 * g for p, g in zip(agent.parameters(), grads)]
    learn(
        spec,
        agent,
        torch.optim.SGD(agent.parameters(), lr=0.1),
        Samples(obs, actions, old, advantages, returns),
        minibatch=8,
        generator=torch.Generator().manual_seed(0),
    )
    for p, e in zip(agent.parameters(), expected):
        torch.testing.assert_close(p.detach(), e)


def test_slice_advantages_credit_a_subpolicy_only_within_its_slice():
    from dh_maml.mlsh.sampling import HierarchyRollout
    from dh_maml.mlsh.updates import slice_advantages

    torch.manual_seed(0)
    subs = SubPolicies(gym.spaces.Box(-1.0, 1.0, (2,)), gym.spaces.Discrete(2), 2, PolicySpec(hidden_sizes=[4]))
    obs, rewards, values = torch.rand(5, 2, 2), torch.rand(5, 2), torch.rand(5, 2)
    mask = torch.ones(5, 2)
    mask[4, 1] = 0.0  # episode 1 ends after 4 steps, halfway into its last slice
    choices = torch.tensor([[0, 1], [1, 1], [0, 0]])
    roll = HierarchyRollout(
        obs,
        torch.zeros(5, 2, dtype=torch.long),
        torch.zeros(5, 2),
        values,
        rewards,
        mask,
        choices,
        torch.zeros(3, 2),
        torch.zeros(3, 2),
    )
    adv, ret = slice_advantages(roll, subs, macro_len=2, gamma=0.9, lam=0.8)
    with torch.no_grad():  # slice 0 of episode 0 ends on sub-policy 0's own value of the next slice's first state
        bootstrap = subs[0].critic(obs[2, 0]).item()
    d1 = rewards[1, 0] + 0.9 * bootstrap - values[1, 0]
    d0 = rewards[0, 0] + 0.9 * values[1, 0] - values[0, 0]
    torch.testing.assert_close(adv[1, 0], d1)
    torch.testing.assert_close(adv[0, 0], d0 + 0.9 * 0.8 * d1)
    torch.testing.assert_close(ret[0, 0], adv[0, 0] + values[0, 0])
    # episode 1's second slice is followed by steps of an ended episode: nothing to bootstrap from
    torch.testing.assert_close(adv[3, 1], rewards[3, 1] - values[3, 1])
    assert adv[4, 1] == 0.0 and ret[4, 1] == 0.0
    # the published convention runs GAE across slices instead
    episode_adv, _ = advantages_and_returns(rewards, values, mask, 0.9, 0.8)
    assert not torch.allclose(episode_adv[1, 0], adv[1, 0])


def test_committed_episodes_keep_one_uniformly_drawn_subpolicy_from_start_to_end():
    from dh_maml.envs.movement_bandits import MovementBanditsTask

    family, subs, _spec = movement_setup()
    env = family.make_vector_env(400)
    masters = [ActorCritic(family.observation_space, gym.spaces.Discrete(2), SPEC) for _ in range(2)]
    with torch.no_grad():  # both masters always pick sub-policy 0 when left to choose
        for master in masters:
            master.actor.logits[-1].weight.zero_()
            master.actor.logits[-1].bias.copy_(torch.tensor([30.0, -30.0]))
    tasks = [MovementBanditsTask(0), MovementBanditsTask(1)]
    committed, free = sample_hierarchy(env, subs, masters, tasks, family.horizon, 10, 0.0, seed=1, commit=[1.0, 0.0])
    assert (committed.choices == committed.choices[0]).all()  # one sub-policy per episode, start to end
    assert abs(committed.choices[0].float().mean().item() - 0.5) < 0.1  # drawn uniformly
    assert (committed.master_log_probs[:, committed.choices[0] == 1] < -20).all()  # the master's own log-prob
    assert (free.choices == 0).all()


def test_a_trained_flat_policy_goes_on_at_its_training_lr_and_flat_ppo_at_flat_lr(monkeypatch):
    import dh_maml.mlsh.adaptation as adaptation

    family, subs, spec = movement_setup(episodes=4)
    used = {}
    monkeypatch.setattr(adaptation, "flat_ppo", lambda *args: used.setdefault(len(used), args[-2]))
    for method, start in (("flat-ppo", None), ("shared-policy", {}), ("oracle", {})):
        job = adaptation.AdaptationJob(method, [family.sample_tasks(1, np.random.default_rng(0))[0]], [1], start)
        adaptation.run_adaptation(family.make_vector_env, family, subs, job, spec, SPEC, 2, flat_lr=0.123)
    assert spec.sub_lr != 0.123 and used == {0: 0.123, 1: spec.sub_lr, 2: spec.sub_lr}


def test_the_shared_policy_is_fine_tuned_from_its_weights_and_flat_ppo_from_scratch():
    from dh_maml.envs.movement_bandits import MovementBanditsTask
    from dh_maml.mlsh.adaptation import flat_ppo, seeded_subpolicies

    family, _subs, spec = movement_setup(episodes=4)
    env = family.make_vector_env(4)
    space, actions = family.observation_space, family.action_space
    run = lambda start: flat_ppo(env, [MovementBanditsTask(1)], [5], spec, SPEC, 20, 2, 1e-3, start).returns
    scratch = run(None)
    same = seeded_subpolicies(space, actions, 1, SPEC, spec, 5).state_dict()  # what flat PPO starts from for seed 5
    np.testing.assert_array_equal(run(same), scratch)
    other = seeded_subpolicies(space, actions, 1, SPEC, spec, 6).state_dict()
    assert not np.array_equal(run(other), scratch)


def test_shared_policy_spec_keeps_the_budget_and_drops_the_hierarchy(tmp_path):
    from dh_maml.mlsh.shared import load_baselines, shared_policy_spec
    from dh_maml.run_dir import write_spec
    from dh_maml.spec import SpecError, load_spec

    spec = load_spec(ROOT / "specs/mlsh-movement-bandits.yaml")
    shared = shared_policy_spec(spec)
    assert (shared.mlsh.num_subpolicies, shared.mlsh.warmup, shared.mlsh.joint) == (1, 0, 10)
    assert (shared.mlsh.sub_advantages, shared.mlsh.joint_commit) == ("episode", 0.0)
    same = ("slots", "episodes", "macro_len", "sub_lr", "epochs", "gamma")
    assert [getattr(shared.mlsh, k) for k in same] == [getattr(spec.mlsh, k) for k in same]
    assert shared.experiment.name == "mlsh-movement-bandits-shared" and shared.env == spec.env
    write_spec(spec, tmp_path)  # an MLSH run, not a shared-policy one
    with pytest.raises(SpecError, match="expected a run trained with 'launch\\.py train --baseline shared-policy'"):
        load_baselines([tmp_path], spec)
    write_spec(shared, tmp_path)
    other = load_spec(ROOT / "specs/mlsh-movement-bandits.yaml", ["policy.hidden_sizes=[8]"])
    with pytest.raises(SpecError, match="its policy section differs"):
        load_baselines([tmp_path], other)
    normalizing = load_spec(ROOT / "specs/mlsh-movement-bandits.yaml", ["mlsh.normalize_obs=true"])
    with pytest.raises(SpecError, match=r"trained with mlsh\.normalize_obs False, the tested run with True"):
        load_baselines([tmp_path], normalizing)


def _baseline_run(path, spec):
    from dh_maml.checkpoint import save_checkpoint
    from dh_maml.run_dir import checkpoint_path, write_spec

    write_spec(spec, path)
    weights = {"w": torch.full((2,), float(len(str(path))))}  # tells the runs apart
    save_checkpoint({"iteration": 1, "subpolicies": weights}, checkpoint_path(path))
    return weights


def test_an_oracle_is_the_shared_policy_on_one_latent_goal_and_is_told_apart_from_it(tmp_path):
    from dh_maml.checkpoint import save_checkpoint
    from dh_maml.mlsh.shared import load_baselines, oracle_spec, shared_policy_spec
    from dh_maml.spec import SpecError, load_spec

    spec = load_spec(ROOT / "specs/mlsh-movement-bandits.yaml")
    with pytest.raises(SpecError, match="--baseline oracle: every task of movement-bandits must have the same latent"):
        oracle_spec(spec)
    oracle = oracle_spec(load_spec(ROOT / "specs/mlsh-movement-bandits.yaml", ["env.options.goal=1"]))
    assert oracle.experiment.name == "mlsh-movement-bandits-oracle-1"
    assert oracle.mlsh == shared_policy_spec(spec).mlsh and oracle.env.options["goal"] == 1
    runs = {name: tmp_path / name for name in ("shared", "oracle-one", "oracle-two")}
    shared = _baseline_run(runs["shared"], shared_policy_spec(spec))
    one = _baseline_run(runs["oracle-one"], oracle)
    baselines = load_baselines([runs["oracle-one"], runs["shared"]], spec)
    assert baselines.shared is not None and torch.equal(baselines.shared["w"], shared["w"])
    assert list(baselines.oracles) == ["1"] and torch.equal(baselines.oracles["1"]["w"], one["w"])
    kept = runs["oracle-one"] / "checkpoints" / "iter-0001.pt"
    save_checkpoint({"iteration": 1, "subpolicies": {"w": torch.zeros(2)}}, kept)
    assert torch.equal(load_baselines([kept], spec).oracles["1"]["w"], torch.zeros(2))  # that checkpoint, not latest
    with pytest.raises(FileNotFoundError, match="outside a run's checkpoints/ folder"):
        load_baselines([runs["oracle-one"] / "spec.yaml"], spec)
    _baseline_run(runs["oracle-two"], oracle)
    with pytest.raises(SpecError, match="a second oracle of latent goal 1"):
        load_baselines([runs["oracle-one"], runs["oracle-two"]], spec)
    unshaped = load_spec(ROOT / "specs/mlsh-movement-bandits.yaml", ["env.options.goal=0", "env.options.shaped=false"])
    _baseline_run(runs["oracle-two"], oracle_spec(unshaped))
    with pytest.raises(SpecError, match="its env section differs"):  # only the goal may differ
        load_baselines([runs["oracle-two"]], spec)
    ant = ROOT / "specs/mlsh-ant-bandits.yaml"
    top = _baseline_run(
        tmp_path / "ant-top", oracle_spec(load_spec(ant, ["env.options.frame_skip=5", "env.options.goal=0"]))
    )
    gymnasium_rate = load_spec(ant, ["env.options.frame_skip=5"])
    unspelled = dataclasses.replace(gymnasium_rate.env, options={"shaped": True})  # the family's default rate: 5
    tested = dataclasses.replace(gymnasium_rate, env=unspelled)
    assert torch.equal(load_baselines([tmp_path / "ant-top"], tested).oracles["top"]["w"], top["w"])
    with pytest.raises(SpecError, match="its env section differs"):  # 0.05 s per action against the spec's 0.02 s
        load_baselines([tmp_path / "ant-top"], load_spec(ant))


def test_the_report_measures_mlsh_against_each_latents_oracle():
    from dh_maml.mlsh.adaptation import Curves, summarize_curves

    returns = np.array([[0.0, 4.0], [0.0, 2.0], [0.0, 6.0]])  # window: iteration 2
    curves = {m: Curves(returns, np.ones((3, 2, 2))) for m in ("mlsh", "flat-ppo")}
    report = summarize_curves(["0", "1", "0"], [1, 2, 3], curves, {"0": np.array([[1.0, 8.0], [1.0, 12.0]])})
    assert report.of_oracle == {"0": pytest.approx(5.0 / 10.0)}
    assert report.oracle_curves == {"0": [[1.0, 8.0], [1.0, 12.0]]}
    assert any("50.0 % on latent 0" in line for line in report.report())
    zero = summarize_curves(["0", "1", "0"], [1, 2, 3], curves, {"1": np.zeros((1, 2))})
    assert zero.of_oracle == {"1": None} and any("n/a on latent 1" in line for line in zero.report())


def test_fused_adam_steps_like_the_per_tensor_loop():
    from dh_maml.mlsh.ppo import adam

    torch.manual_seed(0)
    nets = [ActorCritic(OBS, gym.spaces.Discrete(3), SPEC) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    start = [p.detach().clone() for p in nets[0].parameters()]
    optimizers = [adam(nets[0].parameters(), 1e-2), torch.optim.Adam(nets[1].parameters(), lr=1e-2, foreach=False)]
    obs, actions = torch.rand(32, 3), torch.randint(3, (32,))
    for _ in range(5):
        for net, optimizer in zip(nets, optimizers):
            log_probs, values, _ = net.evaluate(obs, actions)
            optimizer.zero_grad()
            (values.pow(2).mean() - log_probs.mean()).backward()
            optimizer.step()
    for a, b, s in zip(nets[0].parameters(), nets[1].parameters(), start):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
        assert (a - s).abs().max() > 1e-4  # every tensor stepped


def test_an_overlapped_update_leaves_the_checkpoint_state_alone_until_the_next_round():
    from dh_maml.in_process import InProcess
    from dh_maml.spec import load_spec

    small = ["mlsh.slots=2", "mlsh.warmup=0", "mlsh.episodes=2", "mlsh.epochs=1", "mlsh.overlap_update=true"]
    runner = InProcess(load_spec(ROOT / "specs/mlsh-movement-bandits.yaml", small))
    runner.iterate()
    trainer = runner.trainer
    before = trainer.state_dict()
    assert len(before["pending"]) == 2  # both slots are joint: their segments wait for the deferred update
    update = trainer.deferred()
    assert update is not None and trainer.deferred() is None  # handed out once
    update()  # the sub-policies moved ...
    assert not all(torch.equal(a, b) for a, b in zip(trainer._live_weights().values(), before["subpolicies"].values()))
    after = trainer.state_dict()  # ... but the state stays the one from before the update, with its segments
    for a, b in zip(before["subpolicies"].values(), after["subpolicies"].values()):
        assert torch.equal(a, b)
    assert [torch.equal(a["owner"], b["owner"]) for a, b in zip(before["pending"], after["pending"])] == [True, True]
    runner.close()


def test_retiring_ended_minigrid_episodes_skips_their_steps_and_leaves_the_rollout_unchanged(monkeypatch):
    """Sub-envs whose episode ended are retired (MiniGrid's Python step is then skipped); the rollout is the
    one every sub-env stepping to the end gives."""
    from dh_maml.envs.base import SyncTaskVectorEnv
    from dh_maml.envs.minigrid import MiniGridPlain, MiniGridTask, PlainOptions

    family = MiniGridPlain(horizon=60, options=PlainOptions(env_id="MiniGrid-Empty-5x5-v0"))
    torch.manual_seed(0)
    subs = SubPolicies(family.observation_space, family.action_space, 2, SPEC)
    masters = [ActorCritic(family.observation_space, gym.spaces.Discrete(2), SPEC) for _ in range(2)]
    tasks = [MiniGridTask(), MiniGridTask()]

    def run() -> tuple[list, list[int]]:
        env = family.make_vector_env(16)
        rolls = sample_hierarchy(env, subs, masters, tasks, family.horizon, macro_len=3, epsilon=0.1, seed=2)
        return rolls, [sub_env.unwrapped.step_count for sub_env in env.envs]

    retired, retired_counts = run()
    monkeypatch.setattr(SyncTaskVectorEnv, "retire", lambda self, mask: None)
    stepped, stepped_counts = run()
    lengths = torch.cat([roll.mask.sum(0) for roll in retired]).long().tolist()
    assert min(lengths) < max(lengths)  # some episodes ended early, so something was retired
    assert retired_counts == lengths  # a retired sub-env stopped at its episode's end: neither reset nor stepped
    assert stepped_counts != lengths
    for a, b in zip(retired, stepped):
        for name in ("obs", "actions", "log_probs", "values", "rewards", "mask", "choices", "master_log_probs"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_shared_body_subpolicies_share_their_hidden_layers_and_keep_their_own_outputs():
    actions = gym.spaces.Box(-1.0, 1.0, shape=(2,))
    two_layers = PolicySpec(hidden_sizes=[8, 8], nonlinearity="tanh")
    torch.manual_seed(0)
    subs = SubPolicies(OBS, actions, 3, two_layers, shared_body=True)
    first = subs[0]
    for member in list(subs)[1:]:
        for mine, theirs in ((member.actor.network, first.actor.network), (member.critic, first.critic)):
            assert mine[0] is theirs[0] and mine[2] is theirs[2]  # the hidden layers: the same modules
            assert mine[4] is not theirs[4]  # the output layer: its own
        assert member.actor.log_std is not first.actor.log_std
    hidden = 2 * ((3 * 8 + 8) + (8 * 8 + 8))  # actor and critic, once for all three
    own = (8 * 2 + 2) + 2 + (8 + 1)  # each member's output layers and action spread
    assert sum(p.numel() for p in subs.parameters()) == hidden + 3 * own
    # a fresh model of the same shape takes the weights and stays shared
    torch.manual_seed(1)
    copy = SubPolicies(OBS, actions, 3, two_layers, shared_body=True)
    copy.load_state_dict(subs.state_dict())
    obs = torch.rand(5, 3)
    for a, b in zip(subs, copy):
        torch.testing.assert_close(a.actor(obs), b.actor(obs))
    assert copy[2].actor.network[0] is copy[0].actor.network[0]


@pytest.mark.parametrize("shared_body", [False, True])
def test_a_subpolicys_update_moves_the_others_only_through_a_shared_body(shared_body):
    actions = gym.spaces.Box(-1.0, 1.0, shape=(2,))
    torch.manual_seed(0)
    subs = SubPolicies(OBS, actions, 2, SPEC, shared_body=shared_body)
    before = {k: v.clone() for k, v in subs.state_dict().items()}
    obs = torch.rand(40, 3)
    with torch.no_grad():
        acted = subs.act(obs, torch.zeros(40, dtype=torch.long))
    samples = Samples(obs, acted.actions, acted.log_probs, torch.randn(40), torch.randn(40))
    learner = SubPolicyLearner(subs, MLSHSpec(epochs=2, sub_minibatches=2, shared_body=shared_body), seed=0)
    assert learner.update([Segments(samples, torch.zeros(40, dtype=torch.long))]) == [40, 0]  # sub-policy 0's steps
    after = subs.state_dict()
    moved = {k for k in after if not torch.equal(after[k], before[k])}
    assert any(k.startswith("members.0.") for k in moved)
    second = {k for k in moved if k.startswith("members.1.")}
    hidden = {f"members.1.{net}.{i}.{p}" for net in ("actor.mean", "critic") for i in (0,) for p in ("weight", "bias")}
    assert second == (hidden if shared_body else set())  # its output layers and spread never move
    assert (subs[1].actor.network[0] is subs[0].actor.network[0]) == shared_body


def test_resuming_separate_hidden_layers_as_a_shared_body_is_refused_by_name():
    from dh_maml.config import SpecError
    from dh_maml.mlsh.trainer import MLSHTrainer
    from dh_maml.spec import load_spec

    spec = ROOT / "specs/mlsh-movement-bandits.yaml"
    separate = MLSHTrainer(load_spec(spec, ["mlsh.shared_body=false"])).state_dict()
    shared = MLSHTrainer(load_spec(spec, ["mlsh.shared_body=true"]))
    with pytest.raises(SpecError, match=r"mlsh\.shared_body=true: the checkpoint's sub-policies have hidden layers"):
        shared.load_state_dict(separate)
    shared.load_state_dict(MLSHTrainer(load_spec(spec, ["mlsh.shared_body=true", "experiment.seed=7"])).state_dict())
    MLSHTrainer(load_spec(spec, [])).load_state_dict(shared.state_dict())  # a shared body can go on as separate ones
