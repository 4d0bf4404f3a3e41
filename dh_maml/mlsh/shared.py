"""The flat baselines: one policy meta-trained on MLSH's task distribution, no hierarchy.

``shared-policy`` is trained by MLSH's own machinery as a hierarchy of one
sub-policy (the master's choice is trivial) that every task updates in every
iteration, credited over whole episodes. Iterations, task slots and episodes
stay the spec's, so it sees the same tasks and env steps as the MLSH run it is
compared with; the adaptation test then fine-tunes it per held-out task as flat
PPO trains. ``oracle`` is the same, trained where every task has one latent
goal (a family option such as ``env.options.goal``): the return a flat policy
reaches when it knows which goal pays, which MLSH's is measured against.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dh_maml.checkpoint import load_checkpoint
from dh_maml.config import SpecError
from dh_maml.envs import make_family
from dh_maml.run_dir import read_run_spec, run_and_checkpoint
from dh_maml.spec import EnvSpec, Spec

Weights = dict[str, torch.Tensor]


@dataclass
class Baselines:
    """What the adaptation test compares MLSH with, besides its own controls."""

    shared: Weights | None = None  # the shared policy's weights
    oracles: dict[str, Weights] = field(default_factory=dict)  # latent goal -> that goal's oracle's weights


def shared_policy_spec(spec: Spec) -> Spec:
    """``spec``'s shared-policy baseline, named ``<experiment>-shared``."""
    mlsh = spec.mlsh
    flat = dataclasses.replace(
        mlsh, num_subpolicies=1, warmup=0, joint=mlsh.warmup + mlsh.joint, sub_advantages="episode", joint_commit=0.0
    )
    experiment = dataclasses.replace(spec.experiment, name=f"{spec.experiment.name}-shared")
    return dataclasses.replace(spec, mlsh=flat, experiment=experiment)


def fixed_latent(spec: Spec) -> str | None:
    """The one latent goal every task of ``spec``'s family has, or None where tasks differ in it."""
    family = make_family(spec.env)
    latents = {str(family.latent(t)) for t in family.sample_tasks(64, np.random.default_rng(0))}
    return latents.pop() if len(latents) == 1 else None


def oracle_spec(spec: Spec) -> Spec:
    """``spec``'s per-goal oracle, named ``<experiment>-oracle-<latent>``: the shared-policy baseline on a family
    whose tasks all have one latent goal."""
    latent = fixed_latent(spec)
    if latent is None:
        raise SpecError(
            [
                f"--baseline oracle: every task of {spec.env.family} must have the same latent goal, so fix it "
                "with the family's option (e.g. --set env.options.goal=0)"
            ]
        )
    shared = shared_policy_spec(spec)
    experiment = dataclasses.replace(shared.experiment, name=f"{spec.experiment.name}-oracle-{latent}")
    return dataclasses.replace(shared, experiment=experiment)


def _without_goal(env_options: dict) -> dict:
    return {k: v for k, v in env_options.items() if k != "goal"}


def _behaviour(env: EnvSpec) -> tuple:
    """What an env section does, its options' defaults filled in: a run that spells a default out (say
    ``frame_skip: 5``) was trained on the same tasks as one that leaves it to the family."""
    family = make_family(env)
    return env.family, family.horizon, family.options


def load_baselines(run_dirs: list[Path], spec: Spec) -> Baselines:
    """The flat policies of ``run_dirs`` (each a run directory or one of its checkpoint files), runs trained with
    ``launch.py train --baseline shared-policy`` or ``--baseline oracle`` on the family, options (but for the
    oracle's fixed goal) and policy of ``spec``; a ``SpecError`` saying what differs otherwise."""
    baselines, problems = Baselines(), []
    tested_fixed = fixed_latent(spec) is not None
    tested_env = _behaviour(spec.env)
    sources = [(run_dir, *run_and_checkpoint(run_dir)) for run_dir in run_dirs]
    for run_dir, directory, checkpoint in sources:
        run = read_run_spec(directory)
        if run.experiment.algorithm != "mlsh" or run.mlsh.num_subpolicies != 1 or run.mlsh.warmup != 0:
            problems.append(
                f"--baseline-run {run_dir}: expected a run trained with 'launch.py train --baseline shared-policy' "
                f"or '--baseline oracle' (MLSH with one sub-policy and no warm-up), got {run.experiment.algorithm} "
                f"with {run.mlsh.num_subpolicies} sub-policies and warm-up {run.mlsh.warmup}"
            )
            continue
        latent = None if tested_fixed else fixed_latent(run)
        env = dataclasses.replace(run.env, options=_without_goal(run.env.options)) if latent else run.env
        differ = [("env", env)] if _behaviour(env) != tested_env else []
        differ += [("policy", run.policy)] if run.policy != spec.policy else []
        for section, theirs in differ:
            problems.append(
                f"--baseline-run {run_dir}: its {section} section differs from the tested run's "
                f"({theirs} against {getattr(spec, section)})"
            )
        normalized = run.mlsh.normalize_obs == spec.mlsh.normalize_obs
        if not normalized:
            problems.append(
                f"--baseline-run {run_dir}: trained with mlsh.normalize_obs {run.mlsh.normalize_obs}, the tested "
                f"run with {spec.mlsh.normalize_obs}; train the baseline as the tested run"
            )
        if differ or not normalized:
            continue
        weights = load_checkpoint(checkpoint)["subpolicies"]
        if latent is None and baselines.shared is None:
            baselines.shared = weights
        elif latent is not None and latent not in baselines.oracles:
            baselines.oracles[latent] = weights
        else:
            what = "shared policy" if latent is None else f"oracle of latent goal {latent}"
            problems.append(f"--baseline-run {run_dir}: a second {what}; give each baseline once")
    if problems:
        raise SpecError(problems, ", ".join(str(directory / "spec.yaml") for _, directory, _ in sources))
    return baselines
