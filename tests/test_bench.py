"""The benchmarks' measuring pieces run (the figures themselves are printed by bench/, never asserted)."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.env_throughput import bare_physics_steps_per_s, observer_envs, raw_steps_per_s  # noqa: E402
from dh_maml.spec import load_spec  # noqa: E402


@pytest.mark.parametrize("name", ["navigation-2d", "bandit-k5-n10", "halfcheetah-vel"])
def test_raw_throughput_steps_the_family(name):
    spec = load_spec(ROOT / f"specs/{name}.yaml")
    assert raw_steps_per_s(spec, num_envs=4, seconds=0.05) > 0


def test_the_physics_bound_is_bare_mujoco_where_there_is_mujoco():
    cheetah = load_spec(ROOT / "specs/halfcheetah-vel.yaml")
    assert bare_physics_steps_per_s(cheetah, num_envs=4, seconds=0.05) > 0
    assert bare_physics_steps_per_s(load_spec(ROOT / "specs/navigation-2d.yaml"), num_envs=4, seconds=0.05) is None


def test_observer_envs_is_one_observers_share_of_the_meta_batch():
    spec = load_spec(ROOT / "specs/halfcheetah-vel.yaml")
    assert observer_envs(spec, 2) == 20 * 20 and observer_envs(spec, 1) == 40 * 20


def test_the_iteration_split_gives_the_physics_bound_and_the_prediction_for_more_observers():
    from bench.distributed_iteration import summarize

    record = {
        "time/iteration": 10.0,
        "time/sampling": 7.0,
        "time/transfer": 0.5,
        "time/learner_wait": 5.0,
        "time/graphs": 2.0,
        "time/trpo": 2.0,
        "time/gradient": 0.2,
        "time/cg": 1.5,
        "time/line_search": 0.3,
        "env_steps_per_s": 1000.0,
        "env_steps": 10000,
        "time/observer/observer1": 6.0,
        "time/observer/observer2": 6.0,
    }
    summary = summarize([{**record, "time/iteration": 30.0}, record, record], observers=2, raw=1000.0)
    assert summary["first_iteration_s"] == 30.0 and summary["median time/iteration"] == 10.0
    assert summary["physics bound s"] == 5.0 and summary["iteration / physics bound"] == 2.0
    assert summary["TRPO share of the iteration"] == 0.2
    # 12 s of observers' computing over 8 cores, 0.5 s transfer, a tail of 1 s from 2 groups at 2/8, 2 s TRPO
    assert summary["predicted s"][8] == pytest.approx(1.5 + 0.5 + 0.25 + 2.0)
    # with the step's products on the observers: 1.6 s of the step on 2 holders shrinks to 2/8 of it
    held = summarize([{**r, "time/holders": 1.6} for r in (record, record)], observers=2, raw=1000.0)
    assert held["predicted s"][8] == pytest.approx(1.5 + 0.5 + 0.25 + 0.4 + 0.4)


def test_the_gpu_check_runs_its_cpu_path_and_writes_its_figures(tmp_path):
    """bench/gpu_check.sh on a machine without CUDA: the CUDA tests skip, the CPU is timed, GPU skipped."""
    import json
    import os
    import subprocess

    env = {
        **os.environ,
        "OUT": str(tmp_path),
        "GPU_CHECK_VENV": str(Path(sys.executable).parents[1]),
        "GPU_CHECK_QUICK": "1",
    }
    proc = subprocess.run(
        ["bash", str(ROOT / "bench/gpu_check.sh")], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    figures = json.loads((tmp_path / "gpu_check.json").read_text())
    assert figures["failed"] == []
    assert sorted(figures["trpo_step"]) == ["halfcheetah-vel", "navigation-2d"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["gpu_check.json", "gpu_check.log"]
    [run] = figures["iteration"]["halfcheetah-vel-products-observers"]["runs"]
    assert run["observers"] == 1 and run["median time/iteration"] > 0
    for family in figures["trpo_step"].values():
        assert family["devices"]["cpu"]["median_trpo_s"] > 0
        if not family.get("gpu"):
            assert family["devices"]["cuda"] == {"skipped": "CUDA is not available here"}


def test_the_ant_probe_splits_the_reward_into_its_terms_and_says_why_episodes_end():
    import numpy as np

    from bench.ant_episodes import probe
    from dh_maml.envs import make_family
    from dh_maml.envs.mujoco import DirectionTask
    from dh_maml.spec import EnvSpec

    family = make_family(EnvSpec("ant-dir", horizon=30))
    env = family.make_vector_env(4)
    env.set_tasks([DirectionTask(1.0), DirectionTask(-1.0)] * 2)
    still = probe(env, None, "zero", seed=0)
    assert still["ended"] == {"torso above the healthy range": 0, "torso below it": 0, "not finite": 0, "horizon": 4}
    assert still["length_mean"] == 30 and still["per_episode"]["control cost"] == 0.0
    terms = still["per_episode"]
    parts = terms["task term"] - terms["control cost"] - terms["contact cost"] + terms["survival bonus"]
    assert terms["survival bonus"] == pytest.approx(30 * 0.05) and terms["reward"] == pytest.approx(parts)
    shaken = probe(env, None, "noise:3.0", seed=0)  # clipped full torques: the Ant hops out of its range
    assert shaken["length_mean"] < 30 and shaken["ended"]["torso above the healthy range"] > 0
    assert sum(shaken["ended"].values()) == 4 and shaken["per_episode"]["control cost"] > 0
    assert np.isfinite(shaken["per_step"]["reward"])


def test_the_ant_probe_measures_how_far_the_torso_walks_and_towards_which_goal():
    import numpy as np

    from bench.ant_episodes import probe
    from dh_maml.envs import make_family
    from dh_maml.envs.ant_bandits import AntBanditsTask
    from dh_maml.envs.mujoco import DirectionTask, GoalTask
    from dh_maml.spec import EnvSpec

    env = make_family(EnvSpec("ant-goal", horizon=1)).make_vector_env(2)
    env.set_tasks([GoalTask((2.0, -1.0)), GoalTask((-3.0, 0.5))])
    still = probe(env, None, "zero", seed=0)
    walked = still["torso_xy"]
    assert 0 < walked["distance from the start"] < 0.1  # no torque, one step: the torso barely settles
    env.reset(seed=0)  # the probe's own reset: the torso's start, with the reset noise
    start = np.abs(env._qpos[:, :2] - np.array([[2.0, -1.0], [-3.0, 0.5]])).sum(1).mean()
    assert walked["L1 to the goal at the start"] == pytest.approx(start)
    assert abs(start - (3.0 + 3.5) / 2) > 1e-4  # not the model's initial x, y: the reset's
    # the goal term is 4 - L1 after each step: after the one step, 4 - L1 at the end
    assert still["per_step"]["task term"] == pytest.approx(4.0 - walked["L1 to the goal at the end"], abs=1e-6)
    directions = make_family(EnvSpec("ant-dir", horizon=5)).make_vector_env(2)
    directions.set_tasks([DirectionTask(1.0), DirectionTask(-1.0)])
    assert list(probe(directions, None, "zero", seed=0)["torso_xy"]) == ["distance from the start"]
    bandits = make_family(EnvSpec("ant-bandits", horizon=1)).make_vector_env(2)
    bandits.set_tasks([AntBanditsTask(0), AntBanditsTask(1)])  # the top goal (0, 5) pays, then the right (5, 0)
    sparse = probe(bandits, None, "zero", seed=0)
    walked = sparse["torso_xy"]
    # unshaped, the reward is the goal term alone (0: neither goal within 1 after a step), though the costs exist
    assert sparse["per_episode"]["task term"] == sparse["per_episode"]["reward"] == 0.0
    assert sparse["per_episode"]["survival bonus"] > 0
    bandits.reset(seed=0)
    start = bandits._qpos[:, :2]
    expected = (np.linalg.norm(start - [0.0, 5.0], axis=1)[0] + np.linalg.norm(start - [5.0, 0.0], axis=1)[1]) / 2
    assert walked["distance to the paying goal at the start"] == pytest.approx(expected)
    assert walked["distance to the paying goal at the end"] == pytest.approx(expected, abs=0.1)
    assert sparse["turned_over"] == 0.0 and sparse["turned_over_step_median"] is None
    assert walked["steps at the paying goal"] == walked["steps at the paying goal, never turned over"] == 0.0
    assert "steps at the paying goal, turned over" not in walked
    # nothing ends an ant-bandits episode: flailing turns the Ant over, and the probe says when
    flailing = make_family(EnvSpec("ant-bandits", horizon=300)).make_vector_env(4)
    flailing.set_tasks([AntBanditsTask(0), AntBanditsTask(1)] * 2)
    turned = probe(flailing, None, "noise:1.0", seed=0)
    assert turned["turned_over"] == 1.0 and 1 <= turned["turned_over_step_median"] < 300
    assert "steps at the paying goal, turned over" in turned["torso_xy"]
    assert "steps at the paying goal, never turned over" not in turned["torso_xy"]


def test_the_ant_probe_takes_a_maml_policy_or_the_named_mlsh_subpolicy():
    import torch

    from bench.ant_episodes import trained_policy
    from dh_maml.envs import make_family
    from dh_maml.mlsh.policies import SubPolicies
    from dh_maml.policies import make_policy
    from dh_maml.user_errors import UsageError

    mlsh = load_spec(ROOT / "specs/mlsh-ant-bandits.yaml", ["mlsh.normalize_obs=false"])
    family = make_family(mlsh.env)
    trained = SubPolicies(family.observation_space, family.action_space, 2, mlsh.policy)
    checkpoint = {"subpolicies": trained.state_dict()}
    obs = torch.randn(3, family.observation_space.shape[0])

    def same(a, b) -> bool:  # the same Gaussian: mean and spread
        return all(torch.equal(x, y) for x, y in zip(a(obs), b(obs), strict=True))

    def gaussian(policy):
        return lambda obs: (policy(obs).mean, policy(obs).stddev)

    for k in range(2):  # the named sub-policy's actor, not another's
        assert same(gaussian(trained_policy(mlsh, family, checkpoint, k)), trained[k].actor)
    assert not same(trained[0].actor, trained[1].actor)
    with pytest.raises(UsageError, match="--subpolicy 2: expected 0 to 1"):
        trained_policy(mlsh, family, checkpoint, 2)
    normalizing = load_spec(ROOT / "specs/mlsh-ant-bandits.yaml", ["mlsh.normalize_obs=true"])
    trained = SubPolicies(family.observation_space, family.action_space, 2, mlsh.policy, normalize_obs=True)
    trained[1].fold(5.0 * torch.randn(50, family.observation_space.shape[0]) + 3.0)
    probed = gaussian(trained_policy(normalizing, family, {"subpolicies": trained.state_dict()}, 1))
    assert same(probed, lambda obs: trained[1].actor(trained[1].normalizer(obs)))  # what the run's sampler sees
    assert not same(probed, trained[1].actor)
    maml = load_spec(ROOT / "specs/ant-dir.yaml")
    family = make_family(maml.env)
    policy = make_policy(family.observation_space, family.action_space, maml.policy)
    obs = torch.randn(3, family.observation_space.shape[0])
    assert same(gaussian(trained_policy(maml, family, {"policy": policy.state_dict()}, 0)), policy)


def test_the_direction_study_reads_each_episodes_velocity_off_its_rewards():
    import numpy as np
    import torch

    from bench.direction_adaptation import velocities
    from dh_maml.envs import make_family
    from dh_maml.envs.mujoco import DirectionTask
    from dh_maml.episodes import EpisodeBatch
    from dh_maml.spec import EnvSpec

    horizon = 10
    env = make_family(EnvSpec("halfcheetah-dir", horizon=horizon)).make_vector_env(2)
    env.set_tasks([DirectionTask(1.0), DirectionTask(-1.0)])
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    actions, rewards, speeds = [], [], []
    for _ in range(horizon):
        action = rng.uniform(-1.5, 1.5, size=(2, 6)).astype(np.float32)
        x = env._main_body_x().copy()
        _, reward, *_ = env.step(action)
        actions.append(action)
        rewards.append(reward)
        speeds.append((env._main_body_x() - x) / env.dt)
    as_batch = lambda a: torch.as_tensor(np.stack(a, axis=1)).float().unsqueeze(2)  # [N, T, E=1, ...]
    batch = EpisodeBatch(
        torch.zeros(2, horizon, 1, 17), as_batch(actions), as_batch(rewards), torch.ones(2, horizon, 1)
    )
    measured = velocities(batch, np.array([1.0, -1.0]), env.ctrl_cost_weight)[:, 0].numpy()
    np.testing.assert_allclose(measured, np.mean(speeds, axis=0), rtol=1e-4, atol=1e-4)
    assert abs(measured).min() > 1e-3  # a non-trivial check: the cheetah moved


def test_inner_step_split_separates_the_shared_the_directional_and_the_per_task_parts():
    import numpy as np
    import torch

    from bench.direction_adaptation import step_split

    shared, apart = torch.tensor([3.0, 0.0, 0.0]), torch.tensor([0.0, 4.0, 0.0])
    noise = torch.tensor([0.0, 0.0, 1.0])
    directions = np.array([1.0, 1.0, -1.0, -1.0])
    steps = [shared + d * apart + sign * noise for d, sign in zip(directions, (1, -1, 1, -1))]
    before = {"w": torch.zeros(3)}
    lr = 0.5
    after = {"w": torch.stack([lr * step for step in steps])}
    split = step_split(before, after, directions, lr)
    assert split == pytest.approx(
        {"shared by both directions": 3.0, "telling the directions apart": 4.0, "left per task (rms)": 1.0}
    )


def test_the_direction_study_runs_on_a_specs_initial_policy_and_refuses_other_families(tmp_path):
    import json
    import subprocess

    script = [sys.executable, str(ROOT / "bench/direction_adaptation.py")]
    out = tmp_path / "study.json"
    spec = ROOT / "specs/halfcheetah-dir.yaml"
    done = subprocess.run([*script, "--spec", spec, "--tasks", "2", "--out", out], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["directions"] in (["forward", "backward"], ["backward", "forward"])
    for kind in ("forward", "backward"):
        assert {"return before", "return after (lr 0.1)", "velocity before", "KL(before || after)"} <= set(
            result["by_direction"][kind]
        )
    wrong = subprocess.run([*script, "--spec", ROOT / "specs/halfcheetah-vel.yaml"], capture_output=True, text=True)
    assert wrong.returncode == 2 and "--spec: halfcheetah-vel is not a direction family" in wrong.stderr
    both = subprocess.run([*script, "--spec", spec, "--run", tmp_path], capture_output=True, text=True)
    assert both.returncode == 2 and "give one of --run RUN_DIR or --spec SPEC" in both.stderr


def test_each_sub_policy_runs_alone_with_its_own_weights():
    import torch

    from bench.subpolicy_latents import alone
    from dh_maml.envs import make_family
    from dh_maml.mlsh.policies import SubPolicies
    from dh_maml.spec import EnvSpec, PolicySpec

    family = make_family(EnvSpec(family="movement-bandits"))
    trained = SubPolicies(family.observation_space, family.action_space, 3, PolicySpec(hidden_sizes=(8,)))
    obs = torch.randn(5, family.observation_space.shape[0])
    for k in range(3):
        one = alone(trained, k, family, PolicySpec(hidden_sizes=(8,)))
        assert len(one) == 1
        torch.testing.assert_close(one[0].critic(obs), trained[k].critic(obs))
        for theirs, ours in zip(trained[k].parameters(), one[0].parameters()):
            torch.testing.assert_close(ours, theirs)


def test_best_alone_picks_each_latents_best_sub_policy_and_leaves_the_shared_policy_out():
    from bench.subpolicy_latents import best_alone, cell

    table = {
        "sub-policy 0": {"a": [0.9, 0.7], "b": [0.1, 0.1]},
        "sub-policy 1": {"a": [0.2, 0.2], "b": [0.5, 0.3]},
        "shared policy": {"a": [1.0, 1.0], "b": [1.0, 1.0]},
    }
    best, mean = best_alone(table)
    assert best == {"a": "sub-policy 0", "b": "sub-policy 1"}
    assert abs(mean - (0.8 + 0.4) / 2) < 1e-12
    assert cell([0.5]).strip() == "0.50"
    assert cell([0.2, 0.4]).strip() == "0.30 ±  0.10"


def test_sub_policies_are_scored_on_the_test_reward_unless_the_training_one_is_asked_for():
    import numpy as np

    from bench.subpolicy_latents import scoring_family

    spec = load_spec(ROOT / "specs/mlsh-ant-bandits.yaml")
    assert spec.env.options["shaped"]
    test, training = scoring_family(spec, "test"), scoring_family(spec, "training")
    task = training.sample_tasks(1, np.random.default_rng(0))[0]
    rewards = {}
    for name, family in (("test", test), ("training", training)):
        env = family.make_vector_env(2)
        env.set_tasks([task, task])
        env.reset(seed=0)
        _, reward, *_ = env.step(np.zeros(env.action_space.shape))
        rewards[name] = reward
        env.close()
    assert np.all(rewards["test"] == 0.0)  # the Ant starts 5 from either goal: the sparse reward pays nothing
    assert np.all(rewards["training"] != 0.0)  # the shaping (survival less costs, progress) does


def test_a_hierarchy_of_flat_policies_has_each_as_its_sub_policy(tmp_path):
    import torch

    from bench.hierarchy_of import hierarchy_of
    from dh_maml.checkpoint import save_checkpoint
    from dh_maml.envs import make_family
    from dh_maml.mlsh.policies import SubPolicies
    from dh_maml.run_dir import checkpoint_path
    from dh_maml.spec import EnvSpec, PolicySpec

    family = make_family(EnvSpec(family="movement-bandits"))
    policy = PolicySpec(hidden_sizes=(8,))
    flats = []
    for name in ("green", "blue"):
        torch.manual_seed(len(flats))
        flat = SubPolicies(family.observation_space, family.action_space, 1, policy)
        save_checkpoint({"subpolicies": flat.state_dict(), "iteration": 1}, checkpoint_path(tmp_path / name))
        flats.append(flat)
    hierarchy = hierarchy_of(family, policy, [str(tmp_path / "green"), str(tmp_path / "blue")])
    obs = torch.randn(5, family.observation_space.shape[0])
    assert len(hierarchy) == 2
    for k, flat in enumerate(flats):
        torch.testing.assert_close(hierarchy[k].critic(obs), flat[0].critic(obs))
        for theirs, ours in zip(flat[0].parameters(), hierarchy[k].parameters()):
            torch.testing.assert_close(ours, theirs)
    assert not torch.equal(hierarchy[0].critic(obs), hierarchy[1].critic(obs))


def test_action_spread_tells_a_collapsed_policy_from_a_spread_one():
    import numpy as np
    import torch

    from bench.subpolicy_latents import action_spread, rollouts
    from dh_maml.envs import make_family
    from dh_maml.mlsh.policies import SubPolicies
    from dh_maml.spec import EnvSpec, PolicySpec, Spec

    family = make_family(EnvSpec(family="movement-bandits"))
    spec = Spec()
    tasks = family.sample_tasks(2, np.random.default_rng(0))
    env = family.make_vector_env(4)
    spread = SubPolicies(family.observation_space, family.action_space, 1, PolicySpec(hidden_sizes=(8,)))
    collapsed = SubPolicies(family.observation_space, family.action_space, 1, PolicySpec(hidden_sizes=(8,)))
    with torch.no_grad():  # uniform logits: ln 5 nats; one action's logit 30 above the rest: none
        for policy, bias in ((spread, [0.0] * 5), (collapsed, [0.0, 0.0, 30.0, 0.0, 0.0])):
            last = policy[0].actor.logits[-1]
            last.weight.zero_()
            last.bias.copy_(torch.tensor(bias))
    flat = action_spread(spread, rollouts(env, spec, family.horizon, spread, tasks, seed=0))
    one = action_spread(collapsed, rollouts(env, spec, family.horizon, collapsed, tasks, seed=0))
    assert flat["entropy"] > 1.5 and flat["top_action_share"] < 0.4  # 5 actions: at most ln 5 = 1.61 nats
    assert one["entropy"] < 1e-6 and one["top_action_share"] == 1.0


def test_a_hierarchy_refuses_a_policy_of_another_family(tmp_path):
    import subprocess

    from dh_maml.checkpoint import save_checkpoint
    from dh_maml.run_dir import checkpoint_path, write_spec

    run, other = tmp_path / "run", tmp_path / "other"
    write_spec(load_spec(ROOT / "specs/mlsh-minigrid-two-goals.yaml"), run)
    save_checkpoint({"subpolicies": {}, "iteration": 1}, checkpoint_path(run))
    write_spec(load_spec(ROOT / "specs/mlsh-movement-bandits.yaml"), other)
    script = [sys.executable, str(ROOT / "bench/hierarchy_of.py"), "--run", str(run), "--out", str(tmp_path / "h.pt")]
    wrong = subprocess.run(
        [*script, "--policy-run", str(other), "--policy-run", str(other)], capture_output=True, text=True
    )
    assert wrong.returncode == 2 and "expected a policy of minigrid-two-goals" in wrong.stderr
    count = subprocess.run([*script, "--policy-run", str(other)], capture_output=True, text=True)
    assert count.returncode == 2 and "--policy-run: expected 2 (the run's sub-policies), got 1" in count.stderr
    missing = subprocess.run(
        [*script, "--policy-run", str(tmp_path / "nowhere"), "--policy-run", str(other)], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "is not a run directory" in missing.stderr and "Traceback" not in missing.stderr


@pytest.mark.parametrize(
    ("script", "spec", "more"),
    [
        ("subpolicy_latents.py", "mlsh-minigrid-two-goals.yaml", []),
        (
            "hierarchy_of.py",
            "mlsh-minigrid-two-goals.yaml",
            ["--policy-run", "RUN", "--policy-run", "RUN", "--out", "h.pt"],
        ),
        ("ant_episodes.py", "mlsh-ant-bandits.yaml", ["--episodes", "2"]),
        ("direction_adaptation.py", "halfcheetah-dir.yaml", ["--tasks", "2"]),
    ],
)
def test_a_bench_names_a_missing_run_or_checkpoint_in_one_line(tmp_path, script, spec, more):
    import subprocess

    from dh_maml.run_dir import write_spec

    run = tmp_path / "run"
    more = [str(run) if a == "RUN" else str(tmp_path / a) if a.endswith(".pt") else a for a in more]
    command = [sys.executable, str(ROOT / "bench" / script), *more, "--run"]
    missing = subprocess.run([*command, str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert missing.returncode == 2 and "is not a run directory (no spec.yaml in it)" in missing.stderr
    write_spec(load_spec(ROOT / "specs" / spec), run)
    untrained = subprocess.run([*command, str(run)], capture_output=True, text=True)
    assert untrained.returncode == 2 and "latest.pt' does not exist" in untrained.stderr
    assert "Traceback" not in missing.stderr + untrained.stderr
