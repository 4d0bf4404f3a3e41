"""The learner on a CUDA GPU: skipped where CUDA is missing (CI has none); bench/gpu_check.sh runs them on a
lent GPU machine."""

import json
import subprocess
import sys

import pytest
import torch
from conftest import ROOT

from dh_maml.maml.rollouts import MAMLRollouts
from dh_maml.maml.trainer import MetaTrainer
from dh_maml.spec import load_spec

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA here")
SMALL = ["maml.meta_batch_size=4", "maml.fast_batch_size=5"]


def test_a_cuda_learner_takes_the_step_the_cpu_learner_takes():
    spec = load_spec(ROOT / "specs/navigation-2d.yaml", SMALL)
    learners = {device: MetaTrainer(spec, device) for device in ("cpu", "cuda")}
    cpu = learners["cpu"]
    rollouts = MAMLRollouts(spec)
    plan = cpu.plan(2)
    groups = [MAMLRollouts.sample(rollouts, *cpu.call_args(plan, job, cpu.cpu_weights())) for job in plan.jobs]
    stats = {}
    for device, learner in learners.items():
        learner.policy.load_state_dict(cpu.cpu_weights())
        stats[device] = learner.learner.step([learner.objective(group) for group in groups]).trpo
    assert stats["cpu"].loss_before == pytest.approx(stats["cuda"].loss_before, rel=1e-4)
    assert stats["cuda"].accepted and stats["cuda"].kl_after <= spec.trpo.max_kl
    assert stats["cuda"].loss_after == pytest.approx(stats["cpu"].loss_after, rel=1e-2, abs=1e-3)


def test_training_with_the_learner_on_cuda_and_device_maps_to_two_observers(tmp_path):
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        str(ROOT / "launch.py"),
        "train",
        "--spec",
        str(ROOT / "specs/navigation-2d.yaml"),
        "--device",
        "cuda",
        "--observers",
        "2",
        "--iterations",
        "2",
        "--run-dir",
        str(run),
    ]
    for override in SMALL:
        cmd += ["--set", override]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [1, 2] and all(r["observers/alive"] == 2 for r in records)
