"""The shared-policy baseline: one flat policy meta-trained on MLSH's task distribution, no hierarchy.

It is trained by MLSH's own machinery as a hierarchy of one sub-policy (the
master's choice is trivial) that every task updates in every iteration, credited
over whole episodes. Iterations, task slots and episodes stay the spec's, so it
sees the same tasks and env steps as the MLSH run it is compared with; the
adaptation test then fine-tunes it per held-out task as flat PPO trains.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from dh_maml.checkpoint import load_checkpoint
from dh_maml.config import SpecError
from dh_maml.run_dir import checkpoint_path, read_run_spec
from dh_maml.spec import Spec


def shared_policy_spec(spec: Spec) -> Spec:
    """``spec``'s shared-policy baseline, named ``<experiment>-shared``."""
    mlsh = spec.mlsh
    flat = dataclasses.replace(
        mlsh, num_subpolicies=1, warmup=0, joint=mlsh.warmup + mlsh.joint, sub_advantages="episode", joint_commit=0.0
    )
    experiment = dataclasses.replace(spec.experiment, name=f"{spec.experiment.name}-shared")
    return dataclasses.replace(spec, mlsh=flat, experiment=experiment)


def shared_policy_weights(run_dir: str | Path, spec: Spec) -> dict[str, torch.Tensor]:
    """The flat policy of ``run_dir``, a run trained with ``launch.py train --baseline shared-policy`` on the family,
    options and policy of ``spec``; a ``SpecError`` saying what differs otherwise."""
    shared = read_run_spec(run_dir)
    problems = []
    if shared.experiment.algorithm != "mlsh" or shared.mlsh.num_subpolicies != 1 or shared.mlsh.warmup != 0:
        problems.append(
            f"--baseline-run {run_dir}: expected a run trained with 'launch.py train --baseline shared-policy' "
            f"(MLSH with one sub-policy and no warm-up), got {shared.experiment.algorithm} with "
            f"{shared.mlsh.num_subpolicies} sub-policies and warm-up {shared.mlsh.warmup}"
        )
    for section in ("env", "policy"):
        if getattr(shared, section) != getattr(spec, section):
            problems.append(
                f"--baseline-run {run_dir}: its {section} section differs from the tested run's "
                f"({getattr(shared, section)} against {getattr(spec, section)})"
            )
    if problems:
        raise SpecError(problems, str(Path(run_dir) / "spec.yaml"))
    return load_checkpoint(checkpoint_path(run_dir))["subpolicies"]
