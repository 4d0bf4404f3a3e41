"""Meta-World families: the batched env equals Meta-World's own environments step for step; tasks follow
the benchmark's train/test split; bad options are clear errors."""

import warnings

import numpy as np
import pytest
from metaworld.env_dict import ALL_V3_ENVIRONMENTS
from metaworld.policies import ENV_POLICY_MAP

from dh_maml.config import SpecError
from dh_maml.envs.metaworld import MetaWorldML1
from dh_maml.envs.metaworld.benchmark import goal_sets
from dh_maml.envs.metaworld.kernels import KERNELS, Readings, matrix_to_quat
from dh_maml.envs.metaworld.tasks import MetaWorldTask
from dh_maml.envs.metaworld.vector_env import MetaWorldVectorEnv, make_metaworld_env
from dh_maml.spec import load_spec


def random_tasks(name: str, n: int, seed: int = 0) -> list[MetaWorldTask]:
    """Goals drawn as Meta-World's benchmarks draw them (its resets with the goal unfrozen, under a seeded
    global ``np.random``; some classes' resets loop forever on a goal their rejection sampling would
    refuse), without building a whole benchmark."""
    env = ALL_V3_ENVIRONMENTS[name]()
    env._freeze_rand_vec = False
    env._set_task_called = True
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        goals = []
        for i in range(n):
            env.reset()
            goals.append(MetaWorldTask(name, "train", i, tuple(env._last_rand_vec)))
    finally:
        np.random.set_state(state)
    return goals


def expert_actions(name: str, env: MetaWorldVectorEnv, reference: MetaWorldVectorEnv, obs: np.ndarray, rng):
    """Meta-World's scripted policy (shown the hidden goal) on even sub-envs, so episodes succeed; noise
    on odd ones."""
    policy = ENV_POLICY_MAP[name]()
    actions = rng.uniform(-1, 1, size=(env.num_envs, 4))
    for i in range(0, env.num_envs, 2):
        seen = obs[i].copy()
        seen[-3:] = reference._envs[i]._target_pos
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its constants are clipped, as Meta-World warns
            actions[i] = np.clip(policy.get_action(seen) + rng.normal(0, 0.1, 4), -1, 1)
    return actions.astype(np.float32)


# classes whose scripted policy takes longer than 90 steps to succeed
HORIZONS = {
    "handle-pull-v3": 150,
    "pick-out-of-hole-v3": 150,
    "box-close-v3": 150,
    "stick-pull-v3": 150,
    "peg-unplug-side-v3": 150,
    "disassemble-v3": 150,
    "bin-picking-v3": 150,
}


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_fast_env_equals_metaworlds_own_environments_step_for_step(name):
    """Two tasks of the class on four sub-envs, 10 steps past a horizon of 90 (or the class's in
    ``HORIZONS``): episodes succeed, get truncated and restart; observations, rewards, success flags and
    both end flags agree with the reference path (Meta-World's own environment per sub-env). Rewards
    agree to float32 precision: where the gripper closes, Meta-World's arithmetic mixes the float32
    action with Python floats and runs in float32 (NumPy's promotion rules), and the sampler stores
    rewards as float32 anyway."""
    tasks = random_tasks(name, 2)
    horizon = HORIZONS.get(name, 90)
    fast, reference = MetaWorldVectorEnv(4, horizon), MetaWorldVectorEnv(4, horizon, fast=False)
    for env in (fast, reference):
        env.set_tasks([tasks[0], tasks[0], tasks[1], tasks[1]])
    obs, info = fast.reset(seed=0)
    obs_ref, info_ref = reference.reset(seed=0)
    np.testing.assert_array_equal(obs, obs_ref)
    rng = np.random.default_rng(1)
    successes = truncations = 0
    for _ in range(horizon + 10):
        actions = expert_actions(name, fast, reference, obs, rng)
        obs, rewards, terminated, truncated, info = fast.step(actions)
        obs_ref, rewards_ref, terminated_ref, truncated_ref, info_ref = reference.step(actions)
        np.testing.assert_allclose(obs, obs_ref, rtol=0, atol=1e-12)
        np.testing.assert_allclose(rewards, rewards_ref, rtol=1e-6, atol=1e-9)
        np.testing.assert_array_equal(info["success"], info_ref["success"])
        np.testing.assert_array_equal(terminated, terminated_ref)
        np.testing.assert_array_equal(truncated, truncated_ref)
        successes += int(info["success"].sum())
        truncations += int(truncated.sum())
    assert successes > 0 and truncations == 4
    fast.close()
    reference.close()


def test_reference_path_is_metaworlds_environment_with_its_time_limit():
    """One sub-env against a bare Meta-World environment for a whole 500-step episode: same observations,
    rewards and success flags, truncated at step 500 as Meta-World's own ``truncate`` says."""
    (task,) = random_tasks("reach-v3", 1, seed=3)
    env, own = MetaWorldVectorEnv(1, 500, fast=False), make_metaworld_env(task, "v2")
    env.reset_task(task)
    obs, _ = env.reset(seed=0)
    own_obs, _ = own.reset()
    np.testing.assert_array_equal(obs[0], own_obs)
    rng = np.random.default_rng(0)
    for t in range(500):
        action = rng.uniform(-1, 1, size=(1, 4)).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        own_obs, own_reward, own_terminated, own_truncated, own_info = own.step(action[0])
        np.testing.assert_array_equal(obs[0], own_obs)
        assert reward[0] == own_reward and info["success"][0] == bool(own_info["success"])
        assert truncated[0] == own_truncated == (t == 499) and not terminated[0] and not own_terminated


def test_quaternions_equal_scipys():
    from scipy.spatial.transform import Rotation

    matrices = Rotation.random(500, random_state=0).as_matrix()
    matrices[:3] = np.eye(3)  # the identity and near-identity orientations objects rest in
    matrices[3] = Rotation.from_euler("z", 180, degrees=True).as_matrix()
    np.testing.assert_allclose(matrix_to_quat(matrices), Rotation.from_matrix(matrices).as_quat(), atol=1e-15)


@pytest.mark.parametrize("env_name", ["door-open-v3", "stick-push-v3"])
def test_one_take_over_mjdatas_buffer_reads_what_each_field_holds(env_name):
    """The fast path's single read per step (``Reads.flat_index``) against the fields read one by one."""
    import mujoco
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    env = ALL_V3_ENVIRONMENTS[env_name]()
    reads = KERNELS[env_name].ids(env.model)
    data = mujoco.MjData(env.model)
    data.qpos[:] = np.random.default_rng(0).uniform(-0.3, 0.3, env.model.nq)
    mujoco.mj_forward(env.model, data)
    span, index = reads.flat_index(data)
    plain = np.concatenate([getattr(data, field)[rows].reshape(-1) for field, rows in reads.index.items()])
    np.testing.assert_array_equal(span.take(index), plain)
    assert len(set(plain.tolist())) > len(plain) // 2  # distinct values: a shifted offset would show
    columns = reads.columns(data)
    readings = Readings.of(reads, columns, plain[None])
    for field, names in reads.names.items():
        for name, row in zip(names, reads.index[field]):
            np.testing.assert_array_equal(readings.values[field][name][0], getattr(data, field)[row])
    env.close()


def test_ml1_train_and_test_goals_come_from_metaworlds_benchmark_and_never_mix():
    import metaworld

    family = MetaWorldML1()
    sets = goal_sets("ML1", 0, "push-v3")
    own = metaworld.ML1("push-v3", seed=0)
    assert len(sets.train["push-v3"]) == len(own.train_tasks) == 50
    train = family.sample_tasks(30, np.random.default_rng(0))
    test = family.held_out_tasks(30, np.random.default_rng(0))
    assert {t.split for t in train} == {"train"} and {t.split for t in test} == {"test"}
    train_vecs = {t.rand_vec for t in train}
    assert not train_vecs & {tuple(v) for v in sets.test["push-v3"]}
    assert not {t.rand_vec for t in test} & {tuple(v) for v in sets.train["push-v3"]}
    for task in train:
        np.testing.assert_array_equal(task.rand_vec, sets.train["push-v3"][task.goal])
    assert repr(family.sample_tasks(5, np.random.default_rng(1))) == repr(
        family.sample_tasks(5, np.random.default_rng(1))
    )


def test_vector_env_reports_success_and_restarts_an_ended_episode():
    (task,) = random_tasks("reach-v3", 1)
    env = MetaWorldVectorEnv(2, 3)
    env.reset_task(task)
    first, info = env.reset(seed=0)
    assert info["success"].dtype == bool and not info["success"].any()
    for _ in range(3):
        _, _, _, truncated, _ = env.step(np.zeros((2, 4), dtype=np.float32))
    assert truncated.all()
    obs, rewards, _, truncated, info = env.step(np.zeros((2, 4), dtype=np.float32))
    np.testing.assert_array_equal(obs, first)  # next-step autoreset to the task's deterministic start
    assert (rewards == 0).all() and not truncated.any() and not info["success"].any()


def test_bad_metaworld_options_are_clear_errors():
    with pytest.raises(
        SpecError, match=r"env.options.env_name: unknown Meta-World class 'psuh-v3' \(did you mean 'push-v3'"
    ):
        load_spec(None, ["env.family=metaworld-ml1", "env.options.env_name=psuh-v3"])
    with pytest.raises(SpecError, match=r"env.options.reward_version: expected one of v2, v1, got 'v3'"):
        load_spec(None, ["env.family=metaworld-ml10", "env.options.reward_version=v3"])
    with pytest.raises(SpecError, match=r"env.horizon: expected a value <= 500"):
        load_spec(None, ["env.family=metaworld-ml10", "env.horizon=501"])


def test_a_meta_batch_must_cover_the_train_classes_equally():
    from dh_maml.maml.trainer import MetaTrainer

    spec = load_spec(None, ["env.family=metaworld-ml45", "maml.meta_batch_size=20"])
    with pytest.raises(
        SpecError,
        match=r"maml.meta_batch_size: metaworld-ml45 .* its 45 train classes; expected a multiple of 45, got 20",
    ):
        MetaTrainer(spec)


def test_training_reports_success_and_the_meta_test_scores_adapted_policies_per_class(tmp_path):
    """One ML1 iteration logs success rates; the meta-test on held-out goals adapts on fast_batch_size episodes,
    scores eval_episodes more per step, and writes success per class (JSON, PNG)."""
    import asyncio
    import json

    from dh_maml.algorithms import EvaluationSettings
    from dh_maml.in_process import InProcess
    from dh_maml.maml.meta_test import meta_test

    spec = load_spec(
        None,
        [
            "env.family=metaworld-ml1",
            "env.options.env_name=reach-v3",
            "env.horizon=20",
            "maml.meta_batch_size=2",
            "maml.fast_batch_size=2",
            "policy.hidden_sizes=[16]",
            "meta_test.eval_episodes=3",
            "meta_test.scored_actions=mean",
        ],
    )
    run = InProcess(spec)
    record = run.iterate()
    assert 0.0 <= record["success/pre"] <= 1.0 and 0.0 <= record["success/post"] <= 1.0

    async def gather(entry, jobs, call_args):
        return [entry(run.rollouts, *call_args(job)) for job in jobs]

    result = asyncio.run(meta_test(gather, run.trainer, EvaluationSettings(tasks=3, steps=1)))
    run.close()
    assert result.tasks == 3 and result.scored_episodes == 3 and len(result.success) == 2
    assert result.scored_actions == "mean"
    assert list(result.success_by_latent) == ["reach-v3"]
    per_task = np.array(result.per_task_success)
    assert per_task.shape == (3, 2) and np.all((per_task * 3) % 1 == 0)  # rates over 3 scored episodes
    files = result.write(tmp_path / "meta_test.json", "reach")
    assert [f.name for f in files] == ["meta_test.json", "meta_test.csv", "meta_test.png", "meta_test_success.png"]
    assert json.loads(files[0].read_text())["success_by_latent"]["reach-v3"] == result.success_by_latent["reach-v3"]
    assert any("success after 1 step(s)" in line for line in result.report())
    assert "3 scored episode(s) per task and step (mean actions)" in result.report()[-1]
