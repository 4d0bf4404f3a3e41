"""The distributed runtime with a real RPC world: the launcher, an agent and observer processes on loopback."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, alive, descendants, metrics, wait_for_iterations

NAV = ROOT / "specs/navigation-2d.yaml"
SMALL = ["--set", "maml.meta_batch_size=4", "--set", "maml.fast_batch_size=5", "--observers", "2"]


def test_agent_and_two_observers_train_and_log(tmp_path, launcher):
    run = tmp_path / "run"
    code, out, err = launcher("train", "--spec", NAV, "--iterations", 3, "--run-dir", run, *SMALL).wait()
    assert code == 0, out + err
    assert "with 2 observer(s)" in out and "done: 3 iterations" in out
    world = json.loads((run / "world.json").read_text())
    assert sorted(world) == ["observer1", "observer2"] and len({w["pid"] for w in world.values()}) == 2
    records = metrics(run)
    assert [r["iteration"] for r in records] == [1, 2, 3]
    required = [
        "returns/pre",
        "returns/post",
        "returns/post_std",
        "loss/inner",
        "loss/surrogate_before",
        "loss/surrogate_after",
        "kl/after",
        "cg/residual",
        "line_search/steps",
        "line_search/accepted",
        "step/norm",
        "time/sampling",
        "time/learner_wait",
        "time/trpo",
        "time/iteration",
        "time/transfer",
        "time/observer/observer1",
        "time/observer/observer2",
        "time/gradient",
        "time/cg",
        "time/line_search",
        "env_steps_per_s",
        "observers/alive",
        "metrics/dropped",
    ]
    assert all(key in r for r in records for key in required)
    assert all(r["observers/alive"] == 2 for r in records)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    steps = [e.step for e in events.Scalars("returns/post")]
    assert steps == [1, 2, 3]
    assert [e.value for e in events.Scalars("returns/post")] == pytest.approx([r["returns/post"] for r in records])


@pytest.mark.parametrize("products", ["agent", "observers"])
def test_resume_reproduces_the_uninterrupted_distributed_run(tmp_path, launcher, products):
    small = [*SMALL, "--set", "checkpoint.every=1", "--set", f"trpo.products={products}"]
    for name, iterations in (("full", 3), ("part", 2)):
        code, out, err = launcher(
            "train", "--spec", NAV, "--iterations", iterations, "--run-dir", tmp_path / name, *small
        ).wait()
        assert code == 0, out + err
    code, out, err = launcher("train", "--resume", tmp_path / "part", "--iterations", 3).wait()
    assert code == 0, out + err
    full, part = metrics(tmp_path / "full"), metrics(tmp_path / "part")
    assert [r["iteration"] for r in part] == [1, 2, 3]
    for a, b in zip(full, part):  # bit for bit: the conjugate gradient amplifies any rounding difference
        for key in ("returns/pre", "returns/post", "loss/surrogate_after", "kl/after", "cg/residual", "step/norm"):
            assert a[key] == b[key], key


def test_a_killed_observer_is_dropped_and_the_run_completes(tmp_path, launcher):
    run = tmp_path / "run"
    iterations = 5
    launch = launcher(
        "train",
        "--spec",
        NAV,
        "--iterations",
        iterations,
        "--run-dir",
        run,
        "--observers",
        2,
        "--set",
        "maml.meta_batch_size=6",
        "--set",
        "maml.fast_batch_size=10",
    )
    wait_for_iterations(run)
    victim = json.loads((run / "world.json").read_text())["observer2"]["pid"]
    os.kill(victim, signal.SIGKILL)
    code, out, err = launch.wait()
    assert code == 0, out + err
    assert "dropped observer2" in err
    records = metrics(run)
    assert [r["iteration"] for r in records] == list(range(1, iterations + 1))
    assert records[-1]["observers/alive"] == 1
    assert all(r["returns/post"] == r["returns/post"] for r in records)


def test_ctrl_c_checkpoints_and_leaves_no_process(tmp_path, launcher):
    run = tmp_path / "run"
    launch = launcher("train", "--spec", NAV, "--iterations", 200, "--run-dir", run, *SMALL)
    wait_for_iterations(run)
    family = descendants(launch.proc.pid)
    assert len(family) >= 2  # the observers (and their helpers)
    os.killpg(launch.proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    code, out, err = launch.wait(timeout=60)
    assert code == 130, out + err
    assert "stopped by SIGINT" in err and "continue with: .venv/bin/python launch.py train --resume" in err
    import torch

    saved = torch.load(run / "checkpoints/latest.pt", weights_only=True)
    assert saved["iteration"] >= 1
    assert saved["iteration"] == max(r["iteration"] for r in metrics(run))
    time.sleep(1.0)
    assert [pid for pid in family if alive(pid)] == []


def test_sigterm_checkpoints_and_exits(tmp_path, launcher):
    run = tmp_path / "run"
    launch = launcher("train", "--spec", NAV, "--iterations", 200, "--run-dir", run, *SMALL)
    wait_for_iterations(run)
    launch.proc.send_signal(signal.SIGTERM)  # only the launcher, as a scheduler would
    code, out, err = launch.wait(timeout=60)
    assert code == 128 + signal.SIGTERM, out + err
    assert "stopped by SIGTERM" in err
    assert (run / "checkpoints/latest.pt").is_file()


def test_meta_test_fans_out_and_matches_the_in_process_result(tmp_path, launcher):
    run = tmp_path / "run"
    code, out, err = launcher("train", "--spec", NAV, "--iterations", 1, "--run-dir", run, *SMALL).wait()
    assert code == 0, out + err
    results = {}
    for observers in (0, 2):
        dest = tmp_path / f"r{observers}.json"
        code, out, err = launcher(
            "test", "--run", run, "--tasks", 25, "--steps", 1, "--observers", observers, "--out", dest
        ).wait()
        assert code == 0, out + err
        results[observers] = json.loads(dest.read_text())
    assert results[2]["tasks"] == 25
    assert results[2]["mean"] == pytest.approx(results[0]["mean"], rel=1e-5)


def test_bad_spec_exits_2_before_starting_anything(tmp_path, launcher):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sampler:\n  observerz: 2\n")
    launch = launcher("train", "--spec", bad)
    code, _out, err = launch.wait(timeout=60)
    assert code == 2 and "unknown key 'observerz' (did you mean 'observers'?)" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_torchrun_starts_the_agent_and_observers_from_its_environment(tmp_path):
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=3",
        str(ROOT / "launch.py"),
        "train",
        "--spec",
        NAV,
        "--iterations",
        2,
        "--run-dir",
        run,
        "--set",
        "maml.meta_batch_size=4",
        "--set",
        "maml.fast_batch_size=5",
    ]
    proc = subprocess.run(list(map(str, cmd)), cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "with 2 observer(s)" in proc.stdout and "done: 2 iterations" in proc.stdout
    assert sorted(json.loads((run / "world.json").read_text())) == ["observer1", "observer2"]
    assert [r["observers/alive"] for r in metrics(run)] == [2, 2]
