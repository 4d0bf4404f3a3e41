import numpy as np
import pytest

from dh_maml.envs import FAMILIES
from dh_maml.envs.bandit import BanditOptions, BernoulliBandit
from dh_maml.envs.movement_bandits import MovementBandits, MovementBanditsTask
from dh_maml.envs.mujoco import AntDir, AntGoal, AntVel, DirectionTask, HalfCheetahDir, HalfCheetahVel
from dh_maml.envs.navigation import Navigation2D, NavigationTask
from dh_maml.envs.tabular import TabularMDP


def rollout(family, tasks, seed, steps, actions=None):
    env = family.make_vector_env(len(tasks))
    env.set_tasks(tasks)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for t in range(steps):
        a = env.action_space.sample() if actions is None else actions(t)
        step = env.step(a)
        out.append(step)
    env.close()
    return out


# Meta-World's ML10/ML45 draw multiples of their class counts; tests/test_metaworld.py covers them
@pytest.mark.parametrize("name", sorted(set(FAMILIES) - {"metaworld-ml10", "metaworld-ml45"}))
def test_seeded_determinism_of_tasks_and_rollouts(name):
    family = FAMILIES[name]()
    t1 = family.sample_tasks(3, np.random.default_rng(7))
    t2 = family.sample_tasks(3, np.random.default_rng(7))
    t3 = family.sample_tasks(3, np.random.default_rng(8))
    assert repr(t1) == repr(t2)
    if name != "minigrid":  # plain MiniGrid has a single task
        assert repr(t1) != repr(t3)
    r1 = rollout(family, t1, seed=3, steps=5)
    r2 = rollout(family, t1, seed=3, steps=5)
    for a, b in zip(r1[1:], r2[1:]):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def test_navigation_reward_clipping_termination_and_autoreset():
    fam = Navigation2D()
    tasks = fam.sample_tasks(1000, np.random.default_rng(0))
    goals = np.array([t.goal for t in tasks])
    assert goals.min() >= -0.5 and goals.max() <= 0.5 and goals.std() > 0.2
    env = fam.make_vector_env(2)
    env.set_tasks([NavigationTask((0.05, 0.0)), NavigationTask((0.3, -0.2))])
    obs, _ = env.reset(seed=0)
    assert np.array_equal(obs, np.zeros((2, 2), dtype=np.float32))
    obs, r, term, trunc, _ = env.step(np.array([[0.05, 0.0], [1.0, -1.0]], dtype=np.float32))
    np.testing.assert_allclose(obs, [[0.05, 0.0], [0.1, -0.1]], atol=1e-6)  # second action clipped to 0.1
    np.testing.assert_allclose(r, [0.0, -np.hypot(0.2, 0.1)], atol=1e-6)
    assert term.tolist() == [True, False] and not trunc.any()
    obs, r, term, trunc, _ = env.step(np.zeros((2, 2), dtype=np.float32))
    # next-step autoreset: env 0 restarts at the origin with zero reward and no flags
    np.testing.assert_allclose(obs[0], [0.0, 0.0])
    assert r[0] == 0.0 and not term[0] and not trunc[0]


def test_navigation_horizon_truncates():
    fam = Navigation2D(horizon=7)
    out = rollout(fam, [NavigationTask((0.4, 0.4))], seed=0, steps=7, actions=lambda t: np.zeros((1, 2), np.float32))
    truncs = [step[3][0] for step in out[1:]]
    assert truncs == [False] * 6 + [True]
    assert Navigation2D().horizon == 100


def test_bandit_rewards_follow_arm_probabilities():
    fam = BernoulliBandit(horizon=10, options=BanditOptions(num_arms=3))
    tasks = fam.sample_tasks(500, np.random.default_rng(0))
    probs = np.array([t.probs for t in tasks])
    assert probs.shape == (500, 3) and probs.min() >= 0 and probs.max() <= 1
    task = type(tasks[0])(probs=(0.0, 1.0, 0.25))
    env = fam.make_vector_env(4000)
    env.reset_task(task)
    env.reset(seed=1)
    for arm, p in enumerate(task.probs):
        _, r, _, _, _ = env.step(np.full(4000, arm))
        assert abs(r.mean() - p) < 0.03
    assert env.step(np.zeros(4000, dtype=int))[3].sum() == 0  # 4 pulls < horizon 10


def test_tabular_mdp_distributions_and_dynamics():
    fam = TabularMDP()
    tasks = fam.sample_tasks(200, np.random.default_rng(0))
    p = np.stack([t.transitions for t in tasks])
    means = np.stack([t.reward_means for t in tasks])
    assert p.shape == (200, 10, 5, 10)
    np.testing.assert_allclose(p.sum(-1), 1.0)
    assert abs(means.mean() - 1.0) < 0.05 and abs(means.std() - 1.0) < 0.05
    assert abs(p.mean() - 0.1) < 1e-3 and abs(p.var() - 9 / (100 * 11)) < 2e-3  # Dirichlet(1) marginals
    # deterministic transitions to state 3 with reward mean 2: check next states and reward noise
    trans = np.zeros((10, 5, 10))
    trans[..., 3] = 1.0
    task = type(tasks[0])(transitions=trans, reward_means=np.full((10, 5), 2.0))
    env = fam.make_vector_env(5000)
    env.reset_task(task)
    obs, _ = env.reset(seed=0)
    assert (obs.argmax(1) == 0).all()
    obs, r, _, _, _ = env.step(np.zeros(5000, dtype=int))
    assert (obs.argmax(1) == 3).all()
    assert abs(r.mean() - 2.0) < 0.05 and abs(r.std() - 1.0) < 0.05
    for _ in range(9):
        *_, trunc, _ = env.step(np.zeros(5000, dtype=int))
    assert trunc.all()


def _gymnasium_reference(family, n, horizon):
    """gymnasium's own vector env of the family's robot, with the reference cost weights."""
    from gymnasium.envs.mujoco.ant_v5 import AntEnv
    from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
    from gymnasium.vector import AutoresetMode, SyncVectorEnv
    from gymnasium.wrappers import TimeLimit

    frame_skip = family.options.frame_skip
    if family.name.startswith("halfcheetah"):
        make = lambda: TimeLimit(HalfCheetahEnv(frame_skip=frame_skip, ctrl_cost_weight=0.05), horizon)
    else:
        exclude_xy = family.name != "ant-goal"  # the goal task observes where the Ant is
        make = lambda: TimeLimit(
            AntEnv(
                frame_skip=frame_skip,
                ctrl_cost_weight=5e-3,
                contact_cost_weight=5e-4,
                exclude_current_positions_from_observation=exclude_xy,
            ),
            horizon,
        )
    return SyncVectorEnv([make] * n, autoreset_mode=AutoresetMode.NEXT_STEP)


def _ant_costs(i):
    return i["reward_ctrl"] + i["reward_contact"] + 0.05


@pytest.mark.parametrize(
    "family, expected",
    [
        (HalfCheetahVel, lambda i, t: -abs(i["x_velocity"] - t.velocity) + i["reward_ctrl"]),
        (HalfCheetahDir, lambda i, t: t.direction * i["x_velocity"] + i["reward_ctrl"]),
        (AntVel, lambda i, t: -abs(i["x_velocity"] - t.velocity) + 1.0 + _ant_costs(i)),
        (AntDir, lambda i, t: t.direction * i["x_velocity"] + _ant_costs(i)),
        (
            AntGoal,
            lambda i, t: -(abs(i["x_position"] - t.goal[0]) + abs(i["y_position"] - t.goal[1])) + 4.0 + _ant_costs(i),
        ),
    ],
)
@pytest.mark.parametrize("frame_skip", [5, 2])
def test_mujoco_rollouts_equal_gymnasiums_envs_with_the_task_rewards(family, expected, frame_skip):
    """Observations, flags and autoresets step for step as gymnasium's vector env of HalfCheetah-v5 / Ant-v5
    seeded the same way, and rewards as the reference formulas on gymnasium's reward terms (REFERENCE.md);
    also at ``options.frame_skip`` 2, the MAML paper's control rate."""
    n, horizon = 4, 6
    fam = family(horizon=horizon, options=family.Options(frame_skip=frame_skip))
    tasks = fam.sample_tasks(n, np.random.default_rng(1))
    ours, ref = fam.make_vector_env(n), _gymnasium_reference(fam, n, horizon)
    ours.set_tasks(tasks)
    np.testing.assert_array_equal(ours.reset(seed=5)[0], ref.reset(seed=5)[0])
    rng = np.random.default_rng(0)
    ended = np.zeros(n, dtype=bool)
    for _ in range(2 * horizon + 1):  # two episodes and the autoreset step between them
        action = rng.normal(0.0, 1.0, (n, fam.action_space.shape[0])).astype(np.float32)
        obs, reward, terminated, truncated, _ = ours.step(action)
        r_obs, _, r_terminated, r_truncated, info = ref.step(action)
        np.testing.assert_array_equal(obs, r_obs)
        np.testing.assert_array_equal(terminated, r_terminated)
        np.testing.assert_array_equal(terminated | truncated, r_terminated | r_truncated)
        want = [0.0 if ended[i] else expected({k: v[i] for k, v in info.items()}, tasks[i]) for i in range(n)]
        np.testing.assert_allclose(reward, want, rtol=1e-12, atol=1e-12)
        ended = terminated | truncated
    assert ended.all()  # the horizon ended the second episodes
    ours.close()
    ref.close()


def test_mujoco_velocity_is_finite_difference_of_torso_x():
    env = HalfCheetahDir().make_vector_env(1)
    env.set_tasks([DirectionTask(1.0)])
    env.reset(seed=0)
    x0 = env.data[0].qpos[0]
    action = np.ones((1, 6), dtype=np.float32)
    _, reward, _, _, _ = env.step(action)
    assert env.dt == pytest.approx(0.05)
    assert reward[0] == pytest.approx((env.data[0].qpos[0] - x0) / 0.05 - 0.05 * 6)
    assert reward[0] > 0  # pushing every joint moved the body forward


def test_mujoco_task_ranges_and_horizon():
    rng = np.random.default_rng(0)
    v = np.array([t.velocity for t in HalfCheetahVel().sample_tasks(500, rng)])
    assert v.min() >= 0 and v.max() <= 2 and v.max() > 1.9
    v = np.array([t.velocity for t in AntVel().sample_tasks(500, rng)])
    assert v.min() >= 0 and v.max() <= 3 and v.max() > 2.9
    d = np.array([t.direction for t in HalfCheetahDir().sample_tasks(500, rng)])
    assert set(d) == {-1.0, 1.0} and abs(d.mean()) < 0.15
    g = np.array([t.goal for t in AntGoal().sample_tasks(500, rng)])
    assert g.min() >= -3 and g.max() <= 3 and g.std() > 1.5
    out = rollout(HalfCheetahDir(horizon=5), [DirectionTask(1.0)], seed=0, steps=5)
    assert [s[3][0] for s in out[1:]] == [False] * 4 + [True]


def test_ant_terminates_when_torso_leaves_healthy_range_and_restarts_next_step():
    env = AntDir().make_vector_env(2)
    env.set_tasks([DirectionTask(1.0)] * 2)
    first, _ = env.reset(seed=0)
    env.data[0].qpos[2] = 1.5  # torso far above the healthy range [0.2, 1.0]
    _, _, terminated, truncated, _ = env.step(np.zeros((2, 8), dtype=np.float32))
    assert terminated.tolist() == [True, False] and not truncated.any()
    obs, reward, terminated, _, _ = env.step(np.zeros((2, 8), dtype=np.float32))
    assert reward[0] == 0.0 and not terminated.any()
    assert abs(obs[0, 0] - first[0, 0]) < 0.2  # a fresh start near the initial height, not the falling torso


def test_retired_sub_envs_are_not_stepped_and_leave_the_others_unchanged():
    """An ended Ant episode's sub-env, once retired, costs no physics and changes no other sub-env's results."""
    envs = [AntDir().make_vector_env(3) for _ in range(2)]
    rng = np.random.default_rng(1)
    actions = rng.uniform(-1, 1, size=(6, 3, 8)).astype(np.float32)
    results = []
    for retire, env in zip((False, True), envs):
        env.set_tasks([DirectionTask(1.0), DirectionTask(-1.0), DirectionTask(1.0)])
        env.reset(seed=4)
        env.data[1].qpos[2] = 1.5  # sub-env 1 ends on the first step
        steps = []
        for t, action in enumerate(actions):
            steps.append(env.step(action))
            if retire and t == 0:
                env.retire(np.array([False, True, False]))
                frozen = env.data[1].qpos.copy()
        results.append(steps)
    assert (envs[1].data[1].qpos == frozen).all()  # neither reset nor stepped after retiring
    for (obs, rew, term, trunc, _), (obs_r, rew_r, term_r, trunc_r, _) in zip(*results):
        live = [0, 2]
        assert (obs[live] == obs_r[live]).all() and (rew[live] == rew_r[live]).all()
        assert (term[live] == term_r[live]).all() and (trunc[live] == trunc_r[live]).all()
    assert [s[1][1] for s in results[1][1:]] == [0.0] * 5 and not any(s[2][1] or s[3][1] for s in results[1][1:])
    obs, _ = envs[1].reset(seed=4)  # a reset brings every sub-env back
    envs[1].step(actions[0])
    assert (envs[1].data[1].qpos != frozen).any()


def test_mujoco_actions_of_the_wrong_shape_are_a_clear_error():
    env = HalfCheetahVel().make_vector_env(2)
    env.set_tasks(HalfCheetahVel().sample_tasks(2, np.random.default_rng(0)))
    env.reset(seed=0)
    assert env.observation_space.shape == (2, 17) and env.action_space.shape == (2, 6)
    with pytest.raises(ValueError, match=r"expected actions of shape \(2, 6\)"):
        env.step(np.zeros((2, 8), dtype=np.float32))


def test_step_before_task_is_a_clear_error():
    for family in (Navigation2D(), HalfCheetahVel()):
        env = family.make_vector_env(2)
        with pytest.raises(RuntimeError, match="set_tasks"):
            env.reset()
        with pytest.raises(ValueError, match="expected 2 tasks"):
            env.set_tasks([family.sample_tasks(1, np.random.default_rng(0))[0]])


def test_movement_bandits_geometry_reward_and_clipping():
    family = MovementBandits()
    env = family.make_vector_env(2)
    env.set_tasks([MovementBanditsTask(0), MovementBanditsTask(1)])
    obs, _ = env.reset(seed=0)
    np.testing.assert_allclose(obs[:, :2], 0.5)  # both start at (200, 200) / 400
    env._goals[:] = [[200.0, 260.0], [20.0, 20.0]]  # goal 0 is 60 above the start, goal 1 far away
    obs, reward, *_ = env.step(np.array([3, 3]))  # +y: 40 from goal 0
    np.testing.assert_allclose(obs[:, :2], [[0.5, 0.55]] * 2)
    np.testing.assert_allclose(obs[:, 2:], np.array([[200, 260, 20, 20]] * 2) / 400.0)
    assert reward.tolist() == [1.0, 0.0]  # only the task whose correct goal is goal 0 is paid
    for _ in range(12):
        obs, reward, *_ = env.step(np.array([1, 4]))  # +x, -y: both leave goal 0 and hit the plane's edges
    np.testing.assert_allclose(obs[:, :2], [[1.0, 0.55], [0.5, 0.0]])
    assert reward.tolist() == [0.0, 0.0]


def test_movement_bandits_latent_goal_is_never_observed():
    """Tasks that differ only in the paying goal give identical observations under identical actions."""
    family = MovementBandits()
    actions = lambda t: np.full(2, t % 5)
    zero = rollout(family, [MovementBanditsTask(0)] * 2, seed=5, steps=120, actions=actions)
    one = rollout(family, [MovementBanditsTask(1)] * 2, seed=5, steps=120, actions=actions)
    np.testing.assert_array_equal(zero[0], one[0])
    for a, b in zip(zero[1:], one[1:]):
        np.testing.assert_array_equal(a[0], b[0])
    assert sum(a[1].sum() for a in zero[1:]) != sum(b[1].sum() for b in one[1:])


def test_movement_bandits_goals_are_redrawn_each_episode_and_the_horizon_is_50():
    family = MovementBandits()
    assert family.horizon == 50 and family.observation_space.shape == (6,) and family.action_space.n == 5
    steps = rollout(family, [MovementBanditsTask(1)] * 64, seed=2, steps=51, actions=lambda t: np.zeros(64, int))
    first, last = steps[0][:, 2:], steps[-1][0][:, 2:]
    assert not steps[49][3].any() and steps[49][3].shape == (64,)  # step 49: not yet truncated
    assert steps[50][3].all()  # step 50 ends every episode
    assert not np.allclose(first, last)  # autoreset drew new goals
    assert 0.0 <= first.min() and first.max() <= 1.0 and abs(first.mean() - 0.5) < 0.1
    tasks = family.sample_tasks(1000, np.random.default_rng(0))
    assert 400 < sum(t.correct for t in tasks) < 600


def test_movement_bandits_shaped_reward_subtracts_the_distance_and_evaluation_is_sparse():
    from dh_maml.envs.movement_bandits import MovementBanditsOptions

    family = MovementBandits(options=MovementBanditsOptions(shaped=True))
    env = family.make_vector_env(1)
    env.set_tasks([MovementBanditsTask(1)])
    env.reset(seed=0)
    env._goals[:] = [[[0.0, 0.0], [200.0, 240.0]]]  # the paying goal 1 is 40 above the start
    _, reward, *_ = env.step(np.array([0]))
    assert reward[0] == pytest.approx(1.0 - 40.0 / 400.0)
    assert family.for_evaluation().options.shaped is False and family.latent(MovementBanditsTask(1)) == 1


def test_two_goals_pays_only_the_tasks_colour_and_never_shows_which():
    from dh_maml.envs.minigrid import ColourTask, MiniGridTwoGoals, TwoGoalsEnv

    family = MiniGridTwoGoals()
    assert family.observation_space.shape == (147,) and family.action_space.n == 7 and family.horizon == 50
    paid = {}
    for colour in ("green", "blue"):
        env = TwoGoalsEnv(max_steps=50)
        env.reset_task(ColourTask(colour))
        env.reset(seed=4)
        goals = {
            env.grid.get(x, y).color: (x, y)
            for x in range(7)
            for y in range(7)
            if env.grid.get(x, y) is not None and env.grid.get(x, y).type == "goal"
        }
        assert sorted(goals) == ["blue", "green"]
        gx, gy = goals["green"]
        # stand on a free neighbour of the green goal, facing it (directions 0..3 point +x, +y, -x, -y)
        for direction, (dx, dy) in enumerate([(-1, 0), (0, -1), (1, 0), (0, 1)]):
            cell = (gx + dx, gy + dy)
            if env.grid.get(*cell) is None:
                env.agent_pos, env.agent_dir = cell, direction
                break
        _, reward, terminated, _, _ = env.step(env.actions.forward)
        assert terminated
        paid[colour] = reward
    assert paid["green"] > 0.9 and paid["blue"] == 0.0
    actions = lambda t: np.full(2, t % 3)
    green = rollout(family, [ColourTask("green")] * 2, seed=5, steps=60, actions=actions)
    blue = rollout(family, [ColourTask("blue")] * 2, seed=5, steps=60, actions=actions)
    np.testing.assert_array_equal(green[0], blue[0])
    for a, b in zip(green[1:], blue[1:]):
        np.testing.assert_array_equal(a[0], b[0])


def test_two_goals_shaping_adds_the_progress_to_the_paying_tile_and_evaluation_is_sparse():
    """And ``options.goal`` fixes the paying colour, as a per-colour oracle trains."""
    from dh_maml.envs.minigrid import ColourTask, MiniGridTwoGoals, TwoGoalsEnv, TwoGoalsOptions

    family = MiniGridTwoGoals(options=TwoGoalsOptions(shaped=True, goal="blue"))
    assert family.for_evaluation().options == TwoGoalsOptions(shaped=False, goal="blue")
    assert {t.colour for t in family.sample_tasks(20, np.random.default_rng(0))} == {"blue"}  # an oracle's tasks
    assert {t.colour for t in MiniGridTwoGoals().sample_tasks(20, np.random.default_rng(0))} == {"blue", "green"}
    sparse, shaped = TwoGoalsEnv(max_steps=50), TwoGoalsEnv(max_steps=50, shaped=True)
    rng = np.random.default_rng(0)
    progress = []
    for seed in range(6):
        for env in (sparse, shaped):
            env.reset_task(ColourTask("blue"))
            env.reset(seed=seed)
        assert sparse.goal_cells == shaped.goal_cells and sparse.agent_pos == shaped.agent_pos
        for _ in range(50):
            action = int(rng.choice([0, 1, 2], p=[0.2, 0.2, 0.6]))  # left, right, forward
            d_before = shaped._distance_to_paying_goal()
            obs_a, r_sparse, term_a, _, _ = sparse.step(action)
            obs_b, r_shaped, term_b, _, _ = shaped.step(action)
            np.testing.assert_array_equal(obs_a["image"], obs_b["image"])
            assert term_a == term_b
            step = d_before - shaped._distance_to_paying_goal()
            assert r_shaped == pytest.approx(r_sparse + step / 8)  # 8: the 5 x 5 room's largest distance
            progress.append(step)
            if term_a:
                break
    assert {-1, 1} <= set(progress)


def test_fourrooms_goal_is_the_tasks_cell_and_the_horizon_ends_episodes():
    from dh_maml.envs.minigrid import GoalCellTask, MiniGridFourRooms

    family = MiniGridFourRooms()
    cells = family.free_cells()
    assert len(cells) == 16 * 16 and all(9 not in c and 0 not in c and 18 not in c for c in cells)
    tasks = family.sample_tasks(500, np.random.default_rng(0))
    assert all(t.goal in cells for t in tasks) and len({t.goal for t in tasks}) > 150
    env = family.make_vector_env(2)
    env.set_tasks([GoalCellTask((3, 4)), GoalCellTask((15, 12))])
    env.reset(seed=1)
    grids = [e.unwrapped.grid for e in env.envs]
    assert grids[0].get(3, 4).type == "goal" and grids[1].get(15, 12).type == "goal"
    assert grids[0].get(15, 12) is None
    truncated = [env.step(np.array([0, 0]))[3] for _ in range(100)]  # turning in place never arrives
    assert not any(t.any() for t in truncated[:99]) and truncated[99].all()


@pytest.mark.parametrize("env_id", ["MiniGrid-DoorKey-5x5-v0", "MiniGrid-Empty-Random-5x5-v0", "MiniGrid-FourRooms-v0"])
def test_plain_minigrid_envs_run_under_the_task_interface(env_id):
    from dh_maml.envs.minigrid import MiniGridPlain, PlainOptions

    family = MiniGridPlain(horizon=20, options=PlainOptions(env_id))
    steps = rollout(
        family, family.sample_tasks(3, np.random.default_rng(0)), seed=0, steps=20, actions=lambda t: np.zeros(3, int)
    )
    assert steps[0].shape == (3, 147) and steps[20][3].all()  # truncated at the family's horizon


MINIGRID_ENVS = [
    ("minigrid", "MiniGrid-DoorKey-5x5-v0"),
    ("minigrid", "MiniGrid-Empty-Random-5x5-v0"),
    ("minigrid", "MiniGrid-FourRooms-v0"),
    ("minigrid-two-goals", None),
    ("minigrid-fourrooms", None),
]


@pytest.mark.parametrize("name, env_id", MINIGRID_ENVS)
def test_minigrid_fast_view_equals_minigrids_own_at_every_step(name, env_id):
    """``egocentric_view`` against ``MiniGridEnv.gen_obs`` over random episodes that turn, walk, pick up, drop
    and open (the door of DoorKey is opened and its key carried and dropped, so occlusion by a closed door, the
    view through an open one, the carried object and cells changed under the kept grid encoding are all
    compared)."""
    from minigrid.minigrid_env import MiniGridEnv

    from dh_maml.envs.minigrid import PlainOptions
    from dh_maml.envs.minigrid_view import FastView

    family = FAMILIES[name]() if env_id is None else FAMILIES[name](options=PlainOptions(env_id))
    env = family.make_env()
    base = env.unwrapped
    assert type(base).gen_obs is FastView.gen_obs
    rng = np.random.default_rng(0)
    tasks = family.sample_tasks(10, rng)
    carried = opened = dropped = 0
    for episode in range(10):
        env.get_wrapper_attr("reset_task")(tasks[episode])
        env.reset(seed=episode)
        for _ in range(family.horizon):
            np.testing.assert_array_equal(base.gen_obs()["image"], MiniGridEnv.gen_obs(base)["image"])
            carried += base.carrying is not None
            opened += any(getattr(c, "is_open", False) for c in base.grid.grid if c is not None and c.type == "door")
            # forward, turns, pick up, drop, toggle: MiniGrid's actions 2, 0, 1, 3, 4, 5
            action = int(rng.choice([2, 0, 1, 3, 4, 5], p=[0.4, 0.12, 0.12, 0.13, 0.05, 0.18]))
            dropped += action == 4 and base.carrying is not None
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                break
    if env_id == "MiniGrid-DoorKey-5x5-v0":
        assert carried > 0 and opened > 0 and dropped > 0


def place_torso(env, i, xy, z=None):
    """Put sub-env ``i``'s torso at ``xy`` (and height ``z``), at rest."""
    import mujoco

    data = env.data[i]
    data.qpos[:2] = xy
    if z is not None:
        data.qpos[2] = z
    data.qvel[:] = 0.0
    mujoco.mj_forward(env.model, data)
    env._read(i)


def test_ant_bandits_pays_only_near_the_latent_goal_and_never_shows_which():
    from dh_maml.envs.ant_bandits import AntBandits, AntBanditsTask

    family = AntBandits()
    assert family.horizon == 200 and family.observation_space.shape == (29,) and family.action_space.shape == (8,)
    actions = lambda t: np.random.default_rng(t).uniform(-1, 1, size=(2, 8)).astype(np.float32)
    top = rollout(family, [AntBanditsTask(0)] * 2, seed=4, steps=30, actions=actions)
    right = rollout(family, [AntBanditsTask(1)] * 2, seed=4, steps=30, actions=actions)
    np.testing.assert_array_equal(top[0], right[0])
    for a, b in zip(top[1:], right[1:]):
        np.testing.assert_array_equal(a[0], b[0])
    env = family.make_vector_env(4)
    env.set_tasks([AntBanditsTask(0), AntBanditsTask(1), AntBanditsTask(0), AntBanditsTask(1)])
    env.reset(seed=0)
    for i, xy in enumerate([(0.0, 5.0), (0.0, 5.0), (5.0, 0.3), (5.0, 0.3)]):
        place_torso(env, i, xy)
    obs, reward, *_ = env.step(np.zeros((4, 8), dtype=np.float32))
    np.testing.assert_allclose(obs[:, :2], [(0.0, 5.0), (0.0, 5.0), (5.0, 0.3), (5.0, 0.3)], atol=0.05)
    assert reward.tolist() == [1.0, 0.0, 0.0, 1.0]  # only the paying goal's neighbourhood pays
    assert [family.latent(t) for t in (AntBanditsTask(0), AntBanditsTask(1))] == ["top", "right"]


@pytest.mark.parametrize("family_name", ["movement-bandits", "ant-bandits"])
def test_a_two_goal_familys_goal_option_fixes_every_tasks_paying_goal(family_name):
    from dh_maml.envs import make_family
    from dh_maml.spec import EnvSpec, SpecError

    free = make_family(EnvSpec(family_name))
    assert {free.latent(t) for t in free.sample_tasks(32, np.random.default_rng(0))} == {
        free.latent(free.Task(0)),
        free.latent(free.Task(1)),
    }
    for goal in (0, 1):
        fixed = make_family(EnvSpec(family_name, options={"goal": goal}))
        assert fixed.sample_tasks(32, np.random.default_rng(0)) == [fixed.Task(goal)] * 32
        assert fixed.held_out_tasks(4, np.random.default_rng(1)) == [fixed.Task(goal)] * 4
    with pytest.raises(SpecError, match=r"env\.options\.goal: expected a value <= 1, got 2"):
        make_family(EnvSpec(family_name, options={"goal": 2}))


@pytest.mark.parametrize(("upright_progress", "upright_bonus"), [(False, 0.0), (True, 0.0), (True, 1.5)])
def test_ant_bandits_upright_options_decide_what_an_ant_on_its_back_earns(upright_progress, upright_bonus):
    import mujoco

    from dh_maml.envs.ant_bandits import GOALS, AntBandits, AntBanditsOptions, AntBanditsTask

    options = AntBanditsOptions(
        shaped=True, frame_skip=2, upright_progress=upright_progress, upright_bonus=upright_bonus
    )
    env = AntBandits(horizon=5, options=options).make_vector_env(2)
    env.set_tasks([AntBanditsTask(0), AntBanditsTask(0)])
    env.reset(seed=3)
    for i, quaternion in enumerate(([0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0])):  # on its back, upright
        place_torso(env, i, (0.0, 0.0), z=0.4)
        data = env.data[i]
        data.qpos[3:7] = quaternion
        data.qvel[1] = 2.0  # towards the top goal, which pays
        mujoco.mj_forward(env.model, data)
        env._read(i)
    assert env._torso_up().round(6).tolist() == [-1.0, 1.0]
    before = env._qpos[:, :2].copy()
    action = np.zeros((2, 8), dtype=np.float32)
    _, reward, _, _, _ = env.step(action)
    after = env._qpos[:, :2]
    progress = np.linalg.norm(before - GOALS[0], axis=1) - np.linalg.norm(after - GOALS[0], axis=1)
    assert (progress > 0.01).all()
    contact = 5e-4 * np.square(np.clip(env._contact, -1, 1)).reshape(2, -1).sum(axis=1)
    paid = progress * np.array([not upright_progress, True]) / 0.02 + np.array([0.0, upright_bonus])
    np.testing.assert_allclose(reward, paid - (contact - 0.05), rtol=1e-10)


@pytest.mark.parametrize("frame_skip", [5, 2])
def test_ant_bandits_episodes_end_only_at_the_horizon_and_the_shaped_reward_is_progress_less_costs(frame_skip):
    from dh_maml.envs.ant_bandits import GOALS, AntBandits, AntBanditsOptions, AntBanditsTask

    family = AntBandits(horizon=3, options=AntBanditsOptions(shaped=True, frame_skip=frame_skip))
    assert family.for_evaluation().options.shaped is False
    env = family.make_vector_env(2)
    env.set_tasks([AntBanditsTask(0), AntBanditsTask(1)])
    env.reset(seed=1)
    place_torso(env, 0, (0.0, 0.0), z=0.05)  # fallen: an Ant-v5 episode would end here, this one does not
    before = env._qpos[:, :2].copy()
    action = np.full((2, 8), 0.5, dtype=np.float32)
    _, reward, terminated, truncated, _ = env.step(action)
    after = env._qpos[:, :2]
    progress = np.linalg.norm(before - GOALS, axis=1) - np.linalg.norm(after - GOALS, axis=1)
    contact = 5e-4 * np.square(np.clip(env._contact, -1, 1)).reshape(2, -1).sum(axis=1)
    costs = 5e-3 * np.square(action).sum(axis=1) + contact - 0.05
    np.testing.assert_allclose(reward, progress / (0.01 * frame_skip) - costs, rtol=1e-10)
    assert not terminated.any() and not truncated.any()
    for _ in range(2):
        _, _, terminated, truncated, _ = env.step(action)
    assert not terminated.any() and truncated.all()
