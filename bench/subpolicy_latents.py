#!/usr/bin/env python
"""Which latent goal each of an MLSH run's sub-policies serves: every trained sub-policy runs alone (a master
with one choice) on held-out tasks of each latent, and on a run with a shared-policy baseline that policy too.
Sub-policies that specialised score high on their own latent and low on the other (MovementBandits); ones that
serve every latent alike leave a master nothing to choose between. The measurement behind the MLSH verdicts
in docs/results.md.

    python bench/subpolicy_latents.py --run runs/two-goals-ppo-s1 [--baseline-run runs/two-goals-ppo-s1-shared]
        [--tasks 8] [--episodes 20] [--seed 10000]

Mean return per episode with the evaluation reward (unshaped), ± standard error over tasks. Prints a table
and writes JSON (``--out``, default RUN/subpolicy_latents.json).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dh_maml.checkpoint import load_checkpoint  # noqa: E402
from dh_maml.envs import make_family  # noqa: E402
from dh_maml.envs.base import TaskFamily, TaskVectorEnv  # noqa: E402
from dh_maml.mlsh.adaptation import held_out  # noqa: E402
from dh_maml.mlsh.policies import SubPolicies, make_master  # noqa: E402
from dh_maml.mlsh.sampling import sample_hierarchy  # noqa: E402
from dh_maml.run_dir import checkpoint_path, read_run_spec  # noqa: E402
from dh_maml.spec import PolicySpec, Spec  # noqa: E402


def load_subpolicies(family: TaskFamily, policy_spec: PolicySpec, run_dir: str, count: int) -> SubPolicies:
    subpolicies = SubPolicies(family.observation_space, family.action_space, count, policy_spec)
    subpolicies.load_state_dict(load_checkpoint(checkpoint_path(run_dir))["subpolicies"])
    return subpolicies


def alone(subpolicies: SubPolicies, k: int, family: TaskFamily, policy_spec: PolicySpec) -> SubPolicies:
    """A hierarchy of one: sub-policy ``k`` of ``subpolicies``, for a master with one choice."""
    one = SubPolicies(family.observation_space, family.action_space, 1, policy_spec)
    one[0].load_state_dict(subpolicies[k].state_dict())
    return one


def returns_per_task(
    env: TaskVectorEnv, spec: Spec, horizon: int, policy: SubPolicies, tasks: list, seed: int
) -> np.ndarray:
    """Mean episode return per task, ``env``'s sub-envs split evenly between the tasks."""
    space = env.single_observation_space
    masters = [make_master(space, 1, spec.policy, seed + i) for i in range(len(tasks))]
    rolls = sample_hierarchy(env, policy, masters, tasks, horizon, spec.mlsh.macro_len, 0.0, seed)
    return np.array([roll.episode_returns().mean().item() for roll in rolls])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="an MLSH run directory")
    parser.add_argument("--baseline-run", help="its shared-policy baseline's run directory")
    parser.add_argument("--tasks", type=int, default=8, help="held-out tasks (default 8)")
    parser.add_argument("--episodes", type=int, default=20, help="episodes per task (default 20)")
    parser.add_argument("--seed", type=int, default=10000, help="held-out tasks' seed (default 10000)")
    parser.add_argument("--out", help="JSON path (default RUN/subpolicy_latents.json)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    spec = read_run_spec(args.run)
    if spec.experiment.algorithm != "mlsh":
        parser.error(f"--run {args.run}: expected an MLSH run, got algorithm {spec.experiment.algorithm!r}")
    family = make_family(spec.env).for_evaluation()
    tasks, _ = held_out(family, args.tasks, args.seed)
    latents = [str(family.latent(t)) for t in tasks]
    trained = load_subpolicies(family, spec.policy, args.run, spec.mlsh.num_subpolicies)
    policies = {f"sub-policy {k}": alone(trained, k, family, spec.policy) for k in range(len(trained))}
    if args.baseline_run:
        policies["shared policy"] = load_subpolicies(family, spec.policy, args.baseline_run, 1)

    names = sorted(set(latents))
    table: dict[str, dict[str, list[float]]] = {}
    env = family.make_vector_env(args.episodes * len(tasks))
    for name, policy in policies.items():
        returns = returns_per_task(env, spec, family.horizon, policy, tasks, args.seed)
        by_latent: dict[str, list[float]] = defaultdict(list)
        for latent, r in zip(latents, returns):
            by_latent[latent].append(float(r))
        table[name] = dict(by_latent)
    env.close()

    print(f"{args.run}: mean return per episode, alone, {args.tasks} held-out tasks x {args.episodes} episodes")
    print(f"{'':>15} " + " ".join(f"{'latent ' + n:>18}" for n in names))
    for name, by_latent in table.items():
        cells = []
        for n in names:
            r = np.array(by_latent[n])
            se = r.std(ddof=1) / np.sqrt(len(r)) if len(r) > 1 else float("nan")
            cells.append(f"{r.mean():8.2f} ± {se:5.2f}  ")
        print(f"{name:>15} " + " ".join(f"{c:>18}" for c in cells))
    out = Path(args.out) if args.out else Path(args.run) / "subpolicy_latents.json"
    out.write_text(json.dumps({"tasks": args.tasks, "episodes": args.episodes, "seed": args.seed, "returns": table}))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
