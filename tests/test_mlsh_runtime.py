"""MLSH on the runtime: an agent and observer processes train it, resume it and run its adaptation test."""

import json
import os
import signal

import numpy as np
import pytest
from conftest import ROOT, metrics, wait_for_iterations

from dh_maml.mlsh.adaptation import mutual_information_bits

SPEC = ROOT / "specs/mlsh-movement-bandits.yaml"
SMALL = [
    "--set",
    "mlsh.slots=4",
    "--set",
    "mlsh.warmup=1",
    "--set",
    "mlsh.joint=1",
    "--set",
    "mlsh.episodes=4",
    "--set",
    "mlsh.epochs=2",
    "--set",
    "policy.hidden_sizes=[16]",
    "--set",
    "checkpoint.every=1",
]


def test_distributed_mlsh_trains_logs_and_resumes_exactly(tmp_path, launcher):
    full, part = tmp_path / "full", tmp_path / "part"
    code, out, err = launcher(
        "train", "--spec", SPEC, "--iterations", 4, "--run-dir", full, "--observers", 2, *SMALL
    ).wait()
    assert code == 0, out + err
    assert "with 2 observer(s)" in out and "done: 4 iterations" in out and "adapted" in out
    records = metrics(full)
    assert [r["iteration"] for r in records] == [1, 2, 3, 4]
    for r in records:
        for key in (
            "returns/mean",
            "returns/std",
            "env_steps",
            "env_steps_per_s",
            "time/iteration",
            "time/sampling",
            "time/learner_wait",
            "time/update",
            "observers/alive",
            "metrics/dropped",
        ):
            assert key in r, key
        assert r["env_steps"] == 4 * 4 * 50 and r["observers/alive"] == 2
        # 4 slots staggered over a period of 2: two slots are in their joint iteration every round
        assert r["mlsh/samples_sub0"] + r["mlsh/samples_sub1"] == 2 * 4 * 50
    code, out, err = launcher(
        "train", "--spec", SPEC, "--iterations", 2, "--run-dir", part, "--observers", 2, *SMALL
    ).wait()
    assert code == 0, out + err
    code, out, err = launcher("train", "--resume", part, "--iterations", 4).wait()
    assert code == 0, out + err
    # the checkpoint holds every slot's task, phase and master: resumed rounds are the uninterrupted ones
    assert [r["iteration"] for r in metrics(part)] == [1, 2, 3, 4]
    for a, b in zip(records, metrics(part)):
        for key in ("returns/mean", "returns/first", "returns/last", "mlsh/samples_sub0"):
            assert a.get(key) == pytest.approx(b.get(key), rel=1e-6), key


def test_overlapped_updates_are_the_same_in_every_runtime_and_resume_exactly(tmp_path, launcher):
    """With mlsh.overlap_update a round acts with the sub-policies from before the previous round's update,
    whether that update ran beside the sampling (the agent's learner thread) or before it (in-process), and a
    resumed run takes the pending update from its checkpoint."""
    from dh_maml.in_process import InProcess
    from dh_maml.spec import load_spec

    overlap = [*SMALL, "--set", "mlsh.overlap_update=true"]
    runs = {name: tmp_path / name for name in ("local", "full", "part")}
    for name, observers, iterations in (("local", 0, 4), ("full", 2, 4), ("part", 2, 2)):
        code, out, err = launcher(
            "train",
            "--spec",
            SPEC,
            "--iterations",
            iterations,
            "--run-dir",
            runs[name],
            "--observers",
            observers,
            *overlap,
        ).wait()
        assert code == 0, out + err
    code, out, err = launcher("train", "--resume", runs["part"], "--iterations", 4).wait()
    assert code == 0, out + err
    full, resumed = metrics(runs["full"]), metrics(runs["part"])
    assert [r["iteration"] for r in resumed] == [1, 2, 3, 4]
    for a, b in zip(full, resumed):
        for key in ("returns/mean", "returns/first", "returns/last", "mlsh/samples_sub0"):
            assert a.get(key) == pytest.approx(b.get(key), rel=1e-6), key
    assert all("time/overlapped_update" in r for r in full[1:])
    # sampling in the agent's process overlaps too (the learner thread); in-process runs it all in turn
    trainer = InProcess(load_spec(SPEC, [v for v in overlap if v != "--set"]))
    in_process = [trainer.iterate()["returns/mean"] for _ in range(4)]
    trainer.close()
    assert [r["returns/mean"] for r in metrics(runs["local"])] == pytest.approx(in_process, rel=1e-6)
    plain = InProcess(load_spec(SPEC, [v for v in SMALL if v != "--set"]))
    sequential = [plain.iterate()["returns/mean"] for _ in range(4)]
    plain.close()
    assert sequential[0] == in_process[0]  # the same sub-policies act in round 1
    assert sequential[1:] != in_process[1:]  # later rounds act one update behind


def test_a_killed_observer_is_dropped_and_its_slots_run_on_the_other(tmp_path, launcher):
    run = tmp_path / "run"
    launch = launcher(
        "train",
        "--spec",
        SPEC,
        "--iterations",
        6,
        "--run-dir",
        run,
        "--observers",
        2,
        *SMALL,
        "--set",
        "mlsh.episodes=20",
    )
    wait_for_iterations(run)
    os.kill(json.loads((run / "world.json").read_text())["observer2"]["pid"], signal.SIGKILL)
    code, out, err = launch.wait()
    assert code == 0, out + err
    assert "dropped observer2" in err
    records = metrics(run)
    assert [r["iteration"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[-1]["observers/alive"] == 1
    assert all(r["env_steps"] == 4 * 20 * 50 for r in records)  # every slot ran every round


def test_adaptation_test_compares_every_method_whoever_runs_it(tmp_path, launcher):
    run, shared, oracle = tmp_path / "run", tmp_path / "shared", tmp_path / "oracle"
    scheduled = [
        "--set",
        "meta_test.every=2",
        "--set",
        "meta_test.num_tasks=2",
        "--set",
        "mlsh.adaptation_iterations=2",
    ]
    code, out, err = launcher(
        "train", "--spec", SPEC, "--iterations", 2, "--run-dir", run, "--observers", 2, *SMALL, *scheduled
    ).wait()
    assert code == 0, out + err
    assert "adaptation test, iterations 2-2: mlsh" in out  # scheduled during training, on the observers
    scheduled_report = json.loads((run / "adaptation" / "iter_00002.json").read_text())
    assert np.shape(scheduled_report["curves"]["mlsh"]) == (2, 2)
    code, out, err = launcher("plot", run).wait()
    assert code == 0 and "learning_curve.png" in out, out + err
    code, out, err = launcher(
        "train",
        "--spec",
        SPEC,
        "--baseline",
        "shared-policy",
        "--iterations",
        2,
        "--run-dir",
        shared,
        "--observers",
        0,
        *SMALL,
    ).wait()
    assert code == 0 and "training mlsh-movement-bandits-shared" in out, out + err
    code, out, err = launcher(
        "train", "--spec", SPEC, "--baseline", "oracle", "--set", "env.options.goal=1", "--iterations", 1,
        "--run-dir", oracle, "--observers", 0, *SMALL,
    ).wait()  # fmt: skip
    assert code == 0 and "training mlsh-movement-bandits-oracle-1" in out, out + err
    reports = {}
    for observers in (0, 2):
        dest = tmp_path / f"a{observers}.json"
        code, out, err = launcher(
            "test",
            "--run",
            run,
            "--tasks",
            4,
            "--steps",
            2,
            "--observers",
            observers,
            "--out",
            dest,
            "--baseline-run",
            shared,
            "--baseline-run",
            oracle,
        ).wait()
        assert code == 0, out + err
        assert "flat-ppo" in out and "untrained-subpolicies" in out and "bits" in out
        assert "shared-policy" in out and "the shared policy's on" in out and "oracle of latent 1" in out
        reports[observers] = json.loads(dest.read_text())
    report = reports[2]
    assert sorted(report["curves"]) == ["flat-ppo", "mlsh", "shared-policy", "untrained-subpolicies"]
    assert all(np.shape(c) == (4, 2) for c in report["curves"].values())
    assert report["window"] == [2] and set(report["latents"]) <= {"0", "1"}
    assert 0 <= report["mlsh_beats_flat"] <= 4 and 0.0 <= report["mutual_information_bits"] <= 1.0
    assert 0 <= report["mlsh_beats_shared"] <= 4 and report["curves"]["shared-policy"] != report["curves"]["flat-ppo"]
    ones = [i for i, latent in enumerate(report["latents"]) if latent == "1"]
    assert np.shape(report["oracle_curves"].get("1", [])) == (len(ones), 2) and set(report["of_oracle"]) <= {"1"}
    assert reports[0]["curves"] == reports[2]["curves"] and reports[0]["oracle_curves"] == report["oracle_curves"]
    assert report["tested"]["overrides"] == ["sampler.observers=2"] and report["tested"]["iteration"] >= 1
    assert (tmp_path / "a2.png").stat().st_size > 0
    code, out, err = launcher("test", "--run", run, "--tasks", 2, "--steps", 1, "--baseline-run", run).wait()
    assert code == 2 and "expected a run trained with 'launch.py train --baseline shared-policy'" in err, out + err
    code, out, err = launcher("train", "--spec", SPEC, "--baseline", "flat", "--run-dir", tmp_path / "x").wait()
    assert code == 2 and "--baseline flat: mlsh offers oracle, shared-policy" in err, out + err
    code, out, err = launcher("train", "--spec", SPEC, "--baseline", "oracle", "--run-dir", tmp_path / "x").wait()
    assert code == 2 and "--baseline oracle: every task of movement-bandits must have the same latent" in err


def test_mutual_information_of_choices_and_latent_goals():
    perfect = np.array([[10, 0], [0, 10], [10, 0]])  # the choice names the latent goal
    assert mutual_information_bits(["a", "b", "a"], perfect) == pytest.approx(0.918, abs=1e-3)  # H(2/3, 1/3)
    blind = np.array([[5, 5], [5, 5]])
    assert mutual_information_bits(["a", "b"], blind) == pytest.approx(0.0)
    # p(a,0) = .4, p(a,1) = .1, p(b,0) = .1, p(b,1) = .4
    partial = np.array([[4, 1], [1, 4]])
    expected = 2 * 0.4 * np.log2(0.4 / 0.25) + 2 * 0.1 * np.log2(0.1 / 0.25)
    assert mutual_information_bits(["a", "b"], partial) == pytest.approx(expected)
