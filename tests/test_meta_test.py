"""The meta-test's held-out tasks and its per-kind report for families with finitely many kinds of task."""

import asyncio
import json
from collections import Counter

import numpy as np
import pytest

from dh_maml.algorithms import EvaluationSettings
from dh_maml.envs import make_family
from dh_maml.envs.mujoco import AntDir, DirectionTask, HalfCheetahDir, HalfCheetahVel
from dh_maml.in_process import InProcess
from dh_maml.maml.meta_test import held_out_tasks, meta_test, summarize
from dh_maml.seeding import Stream, stream_rng
from dh_maml.spec import load_spec


@pytest.mark.parametrize("family", [HalfCheetahDir(), AntDir()])
@pytest.mark.parametrize("n", [1, 7, 40])
def test_balanced_held_out_tasks_hold_each_direction_equally_often_in_a_seeded_order(family, n):
    tasks = held_out_tasks(family, n, seed=3, balanced=True)
    counts = Counter(t.direction for t in tasks)
    assert len(tasks) == n and set(counts) <= {1.0, -1.0}
    assert max(counts.values()) - min(counts.get(1.0, 0), counts.get(-1.0, 0)) <= 1
    assert tasks == held_out_tasks(family, n, seed=3, balanced=True)
    if n == 40:
        assert tasks != held_out_tasks(family, n, seed=4, balanced=True)  # the order is shuffled per seed
        assert tasks[:20] != [DirectionTask(1.0), DirectionTask(-1.0)] * 10


def test_unbalanced_or_continuous_held_out_tasks_are_the_familys_own_draw():
    for family, balanced in ((HalfCheetahDir(), False), (HalfCheetahVel(), True)):
        drawn = family.held_out_tasks(40, stream_rng(3, Stream.META_TEST_TASKS))
        assert held_out_tasks(family, 40, seed=3, balanced=balanced) == drawn
    assert HalfCheetahVel().task_kinds() is None


def test_returns_per_kind_are_each_kinds_own_mean_and_standard_error():
    rng = np.random.default_rng(0)
    per_task = rng.normal(size=(9, 3))
    latents = ["forward", "backward", "forward", "forward", "backward", "backward", "forward", "backward", "forward"]
    result = summarize(per_task, seed=1, latents=latents, returns_by_latent=True, balanced=True)
    labels = np.array(latents)
    for label, n in (("forward", 5), ("backward", 4)):
        rows = per_task[labels == label]
        kind = result.returns_by_latent[label]
        assert kind.tasks == n
        np.testing.assert_allclose(kind.mean, rows.mean(axis=0))
        np.testing.assert_allclose(kind.se, rows.std(axis=0, ddof=1) / np.sqrt(n))
    np.testing.assert_allclose(result.mean, per_task.mean(axis=0))  # the headline still averages every task
    assert summarize(per_task, seed=1, latents=latents).returns_by_latent is None


def test_paired_changes_difference_each_task_before_averaging():
    # tasks far apart, each step adding about 1 to every task: unpaired errors would hide the gain
    rng = np.random.default_rng(0)
    base = rng.normal(scale=100.0, size=(30, 1))
    per_task = base + np.array([0.0, 1.0, 1.5, 1.5]) + rng.normal(scale=0.1, size=(30, 4))
    result = summarize(per_task, seed=1)
    assert [(c.start, c.end) for c in result.paired] == [(0, 1), (1, 2), (2, 3), (1, 3)]
    first, _, _, one_to_last = result.paired
    diff = per_task[:, 1] - per_task[:, 0]
    assert first.mean == pytest.approx(diff.mean()) and first.se == pytest.approx(diff.std(ddof=1) / np.sqrt(30))
    assert first.mean / first.se > 20 and result.se[1] > 10  # paired: tight; per step: the tasks' spread
    assert one_to_last.mean == pytest.approx((per_task[:, 3] - per_task[:, 1]).mean())
    assert any(line.startswith("paired change per task: 0→1 +") for line in result.report())
    assert summarize(per_task[:, :2], seed=1).paired == [result.paired[0]]
    assert summarize(per_task[:, :3], seed=1).paired == result.paired[:2]  # 1→2 once, not twice


@pytest.mark.parametrize("balanced", [True, False])
def test_a_direction_familys_meta_test_reports_each_direction(tmp_path, balanced):
    spec = load_spec(
        None,
        [
            "env.family=halfcheetah-dir",
            "env.horizon=5",
            "maml.meta_batch_size=2",
            "maml.fast_batch_size=2",
            "policy.hidden_sizes=[8]",
            f"meta_test.balanced={str(balanced).lower()}",
        ],
    )
    run = InProcess(spec)

    async def gather(entry, jobs, call_args):
        return [entry(run.rollouts, *call_args(job)) for job in jobs]

    result = asyncio.run(meta_test(gather, run.trainer, EvaluationSettings(tasks=6, steps=1, seed=5)))
    run.close()
    counts = {label: kind.tasks for label, kind in result.returns_by_latent.items()}
    expected = Counter(
        "forward" if t.direction > 0 else "backward" for t in held_out_tasks(HalfCheetahDir(), 6, 5, balanced)
    )
    assert counts == dict(expected) and result.balanced is balanced
    if balanced:
        assert counts == {"forward": 3, "backward": 3}
    per_task = np.array(result.per_task)
    weighted = sum(kind.tasks * np.array(kind.mean) for kind in result.returns_by_latent.values()) / 6
    np.testing.assert_allclose(weighted, per_task.mean(axis=0), rtol=1e-6, atol=1e-9)
    report = "\n".join(result.report())
    assert all(f"{label} ({n} tasks), after steps 0:" in report for label, n in counts.items())
    assert ("balanced over task kinds" in report) is balanced
    files = result.write(tmp_path / "meta_test.json", "cheetah-dir")
    saved = json.loads(files[0].read_text())
    assert saved["returns_by_latent"]["forward"]["tasks"] == counts["forward"] and saved["balanced"] is balanced


def _small_run(family: str, meta_batch: int) -> InProcess:
    overrides = ["env.horizon=5", f"maml.meta_batch_size={meta_batch}", "maml.fast_batch_size=2"]
    return InProcess(load_spec(None, [f"env.family={family}", *overrides, "policy.hidden_sizes=[8]"]))


def test_a_direction_familys_training_record_holds_each_directions_returns():
    run = _small_run("halfcheetah-dir", 6)
    tasks = run.trainer.plan(1).tasks  # the same draw the first iteration of a fresh run makes
    run.close()
    run = _small_run("halfcheetah-dir", 6)
    record = run.iterate()
    run.close()
    forward = sum(t.direction > 0 for t in tasks)
    assert 0 < forward < 6, "seed 1's first meta-batch is expected to hold both directions"
    for phase in ("pre", "post"):
        mixed = forward * record[f"returns/{phase}/forward"] + (6 - forward) * record[f"returns/{phase}/backward"]
        assert mixed / 6 == pytest.approx(record[f"returns/{phase}"], rel=1e-5)
    run = _small_run("halfcheetah-vel", 2)
    assert not any(key.startswith(("returns/pre/", "returns/post/")) for key in run.iterate())
    run.close()


@pytest.mark.parametrize("direction, value", [("forward", 1.0), ("backward", -1.0)])
def test_a_one_direction_control_run_trains_and_holds_out_that_direction_only(direction, value):
    spec = load_spec(None, ["env.family=ant-dir", f"env.options.direction={direction}"])
    family = make_family(spec.env)
    assert family.task_kinds() == [DirectionTask(value)]
    assert family.sample_tasks(9, np.random.default_rng(0)) == [DirectionTask(value)] * 9
    assert held_out_tasks(family, 6, seed=2, balanced=True) == [DirectionTask(value)] * 6
    both = AntDir()
    assert len(set(both.sample_tasks(40, np.random.default_rng(0)))) == 2 and len(both.task_kinds()) == 2


def test_a_direction_that_is_not_one_says_which_are():
    from dh_maml.config import SpecError

    with pytest.raises(SpecError, match=r"env\.options\.direction: expected one of forward, backward, got 'up'"):
        load_spec(None, ["env.family=halfcheetah-dir", "env.options.direction=up"])
