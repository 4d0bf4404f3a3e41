import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
SMALL = ["--set", "maml.meta_batch_size=4", "--set", "maml.fast_batch_size=5"]
IN_PROCESS = ["--observers", "0"]  # the same agent loop, sampling on a thread instead of over RPC


def launch(*args, check=True):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "launch.py"), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_train_then_meta_test_writes_outputs(tmp_path):
    run = tmp_path / "run"
    scheduled = ["--set", "meta_test.every=2", "--set", "meta_test.num_tasks=2", "--set", "meta_test.num_steps=1"]
    out = launch(
        "train",
        "--spec",
        ROOT / "specs/navigation-2d.yaml",
        "--iterations",
        2,
        "--run-dir",
        run,
        *SMALL,
        *scheduled,
        *IN_PROCESS,
    )
    assert "done: 2 iterations" in out.stdout and "meta-test: 0 step(s)" in out.stdout
    assert f"view them: .venv/bin/tensorboard --logdir {run / 'tensorboard'}" in out.stdout
    scheduled_result = json.loads((run / "meta_test/iter_00002.json").read_text())
    assert scheduled_result["tasks"] == 2 and scheduled_result["steps"] == [0, 1]
    records = metrics(run)
    assert [r["iteration"] for r in records] == [1, 2]
    for key in (
        "returns/pre",
        "returns/post",
        "loss/surrogate_before",
        "kl/after",
        "cg/residual",
        "line_search/steps",
        "step/norm",
        "time/sampling",
        "time/trpo",
        "time/gradient",
        "time/cg",
        "time/line_search",
        "env_steps_per_s",
    ):
        assert key in records[0]
    assert (run / "spec.yaml").is_file() and (run / "checkpoints/latest.pt").is_file()
    test = launch(
        "test", "--run", run, "--tasks", 3, "--steps", 2, "--seed", 4, "--out", tmp_path / "r.json", *IN_PROCESS
    )
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["steps"] == [0, 1, 2] and result["tasks"] == 3 and result["seed"] == 4
    assert len(result["mean"]) == len(result["se"]) == 3
    assert (tmp_path / "r.csv").read_text().startswith("steps,mean,se")
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    assert "after 1 step(s)" in test.stdout
    scored = ["--set", "meta_test.eval_episodes=1", "--set", "meta_test.scored_actions=mean"]
    test = launch("test", "--run", run, "--tasks", 2, "--steps", 1, "--out", tmp_path / "m.json", *scored, *IN_PROCESS)
    result = json.loads((tmp_path / "m.json").read_text())
    assert result["scored_episodes"] == 1 and result["scored_actions"] == "mean", result
    assert result["tested"] == {  # the result file says what produced it
        "checkpoint": str(run / "checkpoints/latest.pt"),
        "iteration": 2,
        "overrides": ["meta_test.eval_episodes=1", "meta_test.scored_actions=mean", "sampler.observers=0"],
    }, result["tested"]
    assert "tested with --set meta_test.eval_episodes=1 --set meta_test.scored_actions=mean" in test.stdout
    for bad in ("policy.hidden_sizes=[8]", "mlsh.num_subpolicies=3", "mlsh..num_subpolicies=3", "mlsh={macro_len: 5}"):
        proc = launch("test", "--run", run, "--set", bad, *IN_PROCESS, check=False)
        assert proc.returncode == 2 and f"test --set {bad}: a test may change the meta_test" in proc.stderr


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    spec = ROOT / "specs/navigation-2d.yaml"
    small = [*SMALL, "--set", "checkpoint.every=1", *IN_PROCESS]
    keep = ["--set", "checkpoint.keep_every=2"]
    launch("train", "--spec", spec, "--iterations", 3, "--run-dir", tmp_path / "full", *small, *keep)
    launch("train", "--spec", spec, "--iterations", 2, "--run-dir", tmp_path / "part", *small)
    at_two = torch.load(tmp_path / "part/checkpoints/latest.pt", weights_only=True)
    launch("train", "--resume", tmp_path / "part", "--iterations", 3)
    kept = sorted(p.name for p in (tmp_path / "full/checkpoints").iterdir())
    assert kept == ["iter-0002.pt", "latest.pt"], kept
    state = torch.load(tmp_path / "full/checkpoints/iter-0002.pt", weights_only=True)
    assert state["iteration"] == 2 and state["spec"]["checkpoint"]["keep_every"] == 2
    assert all(torch.equal(state["policy"][k], v) for k, v in at_two["policy"].items()), "kept != iteration 2"
    full, part = metrics(tmp_path / "full"), metrics(tmp_path / "part")
    assert len(part) == 3
    for a, b in zip(full, part):
        for key in ("returns/pre", "returns/post", "loss/surrogate_after", "kl/after", "step/norm"):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-9), key


def test_bad_input_gives_exit_2_and_a_readable_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("maml:\n  fast_lr: fast\n")
    proc = launch("train", "--spec", bad, check=False)
    assert proc.returncode == 2
    assert "maml.fast_lr: expected a number, got 'fast'" in proc.stderr and "Traceback" not in proc.stderr
    proc = launch("train", "--spec", ROOT / "specs/navigation-2d.yaml", "--set", "trpo.max_kl", check=False)
    assert proc.returncode == 2 and "expected KEY.PATH=VALUE" in proc.stderr
    proc = launch("test", "--run", tmp_path, check=False)
    assert proc.returncode == 2 and "not a run directory" in proc.stderr
    if not torch.cuda.is_available():
        proc = launch("train", "--spec", ROOT / "specs/navigation-2d.yaml", "--device", "cuda", check=False)
        assert proc.returncode == 2 and "--device cuda: CUDA is not available" in proc.stderr
    proc = launch("train", "--spec", ROOT / "specs/navigation-2d.yaml", "--nnodes", 2, check=False)
    assert proc.returncode == 2 and "--master-addr: required" in proc.stderr
    proc = launch(
        "train", "--spec", ROOT / "specs/navigation-2d.yaml", "--nnodes", 2, "--master-addr", "10.0.0.1", check=False
    )
    assert proc.returncode == 2 and "--interface lo: hosts cannot reach each other over loopback" in proc.stderr
    proc = launch("train", "--spec", ROOT / "specs/navigation-2d.yaml", "--interface", "no-such-if0", check=False)
    assert proc.returncode == 2 and "--interface no-such-if0: no such network interface" in proc.stderr
    proc = launch("train", "--spec", ROOT / "specs/navigation-2d.yaml", "--transports", "uv,tcp", check=False)
    assert proc.returncode == 2 and "network.transports[1]: expected one of uv, shm, ibv, got 'tcp'" in proc.stderr
    proc = launch("train", "--resume", tmp_path / "nothing-here", check=False)
    assert proc.returncode == 2 and "not a run directory" in proc.stderr
    proc = launch("train", "--spec", ROOT / "specs/navigation-2d.yaml", "--baseline", "shared-policy", check=False)
    assert proc.returncode == 2 and "--baseline shared-policy: maml-trpo offers none" in proc.stderr


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_every_family_runs_a_meta_iteration(spec):
    from dh_maml.envs import make_family
    from dh_maml.in_process import InProcess
    from dh_maml.spec import load_spec

    small = ["maml.meta_batch_size=2", "maml.fast_batch_size=2", "mlsh.slots=2", "mlsh.episodes=2"]
    path, spec = spec, load_spec(spec, small)
    multiple = make_family(spec.env).tasks_multiple
    if multiple > 1:  # Meta-World's ML10 and ML45: one task of every train class, short episodes
        spec = load_spec(path, [*small, f"maml.meta_batch_size={multiple}", "env.horizon=20"])
    trainer = InProcess(spec)
    record = trainer.iterate()
    trainer.close()
    assert record["env_steps"] > 0 and all(v == v for v in record.values() if isinstance(v, float))


def test_mlsh_learner_refuses_a_gpu_device_with_a_clear_message():
    import launch
    from dh_maml.spec import SpecError, load_spec

    with pytest.raises(SpecError, match="--device cuda\\): MLSH's learner runs on the CPU"):
        launch.make_trainer(load_spec(ROOT / "specs/mlsh-movement-bandits.yaml"), "cuda")


def test_show_spec_prints_the_resolved_spec():
    import yaml

    proc = launch("show-spec", ROOT / "specs/navigation-2d.yaml", "--set", "trpo.max_kl=0.02")
    shown = yaml.safe_load(proc.stdout)
    assert shown["trpo"]["max_kl"] == 0.02 and shown["maml"]["curvature"] == "fast"
    assert shown["sampler"]["rendezvous_timeout_s"] == 300.0  # defaults the YAML file leaves out
    proc = launch("show-spec", ROOT / "specs/navigation-2d.yaml", "--set", "trpo.max_kl=.nan", check=False)
    assert proc.returncode == 2 and "trpo.max_kl: expected a finite number, got nan" in proc.stderr


def test_the_console_script_is_the_same_command_line():
    script = Path(sys.executable).with_name("dh-maml")
    proc = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("dh-maml 0.") and "0." in proc.stdout
    proc = subprocess.run(
        [str(script), "check-spec", str(ROOT / "specs/navigation-2d.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr
