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
from dh_maml.trpo import flat

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA here")
SMALL = ["maml.meta_batch_size=4", "maml.fast_batch_size=5"]


def test_a_cuda_learner_computes_the_cpu_learner_s_terms_and_takes_a_trpo_step():
    """Gradient, curvature products and line-search scores agree with the CPU's; the step itself is only
    checked to be a TRPO step: ten conjugate-gradient iterations on a tiny batch amplify float32 rounding,
    so the CPU's and the GPU's steps differ in size (measured on an H200: surrogates -0.0167 and -0.0211)."""
    spec = load_spec(ROOT / "specs/navigation-2d.yaml", SMALL)
    learners = {device: MetaTrainer(spec, device) for device in ("cpu", "cuda")}
    cpu = learners["cpu"]
    rollouts = MAMLRollouts(spec)
    plan = cpu.plan(2)
    weights = cpu.cpu_weights()
    groups = [MAMLRollouts.sample(rollouts, *cpu.call_args(plan, job, weights)) for job in plan.jobs]
    v = torch.randn(flat(cpu.learner.params()).numel(), generator=torch.Generator().manual_seed(0))
    terms, figures = {}, {}
    for device, trainer in learners.items():
        trainer.policy.load_state_dict(weights)
        terms[device] = trainer.learner.terms([trainer.objective(group) for group in groups])
        params, direction = flat(trainer.learner.params()), v.to(trainer.device)
        figures[device] = {
            "gradient": terms[device].start().gradient.cpu(),
            "product": terms[device].product(direction).cpu(),
            "score": terms[device].score(params + 1e-2 * direction).cpu(),
        }
    for name in ("gradient", "product"):
        gap = ((figures["cuda"][name] - figures["cpu"][name]).norm() / figures["cpu"][name].norm()).item()
        assert gap < 1e-4, f"{name}: the GPU's differs from the CPU's by {gap:.2e} (relative)"
    assert figures["cuda"]["score"].tolist() == pytest.approx(figures["cpu"]["score"].tolist(), rel=1e-3, abs=1e-7)
    stats = learners["cuda"].learner.take_step(terms["cuda"]).trpo
    assert stats.accepted and stats.kl_after <= spec.trpo.max_kl and stats.loss_after < stats.loss_before


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
