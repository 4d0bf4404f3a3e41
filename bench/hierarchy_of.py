#!/usr/bin/env python
"""An MLSH checkpoint whose sub-policies are given flat policies (per-goal oracles, say): the test of whether
a fresh master adapts when the sub-policies do serve one latent each. If it does, an MLSH run that fails to
adapt failed to make its sub-policies specialise, not to choose between them (docs/results.md, two goals).

    python bench/hierarchy_of.py --run runs/two-goals-ppo-s1 \
        --policy-run runs/two-goals-oracle-green --policy-run runs/two-goals-oracle-blue \
        --out runs/two-goals-ppo-s1/oracle-subpolicies.pt
    python launch.py test --run runs/two-goals-ppo-s1 --checkpoint runs/two-goals-ppo-s1/oracle-subpolicies.pt \
        --out runs/two-goals-ppo-s1/oracle-subpolicies/adaptation.json

Each ``--policy-run`` is a run trained with ``launch.py train --baseline shared-policy`` or ``--baseline
oracle`` on the run's family and policy; sub-policy k becomes the k-th one's policy, the rest of the
checkpoint stays the run's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.subpolicy_latents import load_subpolicies, mlsh_run_spec, run_spec  # noqa: E402
from dh_maml.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from dh_maml.envs import make_family  # noqa: E402
from dh_maml.envs.base import TaskFamily  # noqa: E402
from dh_maml.mlsh.policies import SubPolicies  # noqa: E402
from dh_maml.run_dir import checkpoint_path  # noqa: E402
from dh_maml.spec import PolicySpec  # noqa: E402
from dh_maml.user_errors import reporting_user_errors  # noqa: E402


def hierarchy_of(
    family: TaskFamily, policy_spec: PolicySpec, policy_runs: list[str], normalize_obs: bool = False
) -> SubPolicies:
    """Sub-policies whose k-th member is the flat policy of ``policy_runs[k]``."""
    count = len(policy_runs)
    hierarchy = SubPolicies(
        family.observation_space, family.action_space, count, policy_spec, normalize_obs=normalize_obs
    )
    for k, run in enumerate(policy_runs):
        flat = load_subpolicies(family, policy_spec, run, 1, normalize_obs)
        hierarchy[k].load_state_dict(flat[0].state_dict())
    return hierarchy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="an MLSH run directory")
    parser.add_argument(
        "--policy-run", action="append", required=True, help="a flat policy's run directory, once per sub-policy"
    )
    parser.add_argument("--out", required=True, help="the checkpoint file to write")
    args = parser.parse_args()
    torch.set_num_threads(1)

    spec = mlsh_run_spec(parser, args.run)
    if len(args.policy_run) != spec.mlsh.num_subpolicies:
        parser.error(
            f"--policy-run: expected {spec.mlsh.num_subpolicies} (the run's sub-policies), got {len(args.policy_run)}"
        )
    for run in args.policy_run:
        theirs = run_spec(parser, "--policy-run", run)
        if (theirs.env.family, theirs.policy) != (spec.env.family, spec.policy):
            parser.error(
                f"--policy-run {run}: expected a policy of {spec.env.family} shaped {spec.policy}, "
                f"got {theirs.env.family} shaped {theirs.policy}"
            )
        if theirs.mlsh.normalize_obs != spec.mlsh.normalize_obs:
            parser.error(
                f"--policy-run {run}: expected mlsh.normalize_obs {spec.mlsh.normalize_obs} as --run was trained, "
                f"got {theirs.mlsh.normalize_obs}"
            )
    family = make_family(spec.env)
    state = load_checkpoint(checkpoint_path(args.run))
    state["subpolicies"] = hierarchy_of(family, spec.policy, args.policy_run, spec.mlsh.normalize_obs).state_dict()
    print(f"wrote {save_checkpoint(state, args.out)}")


if __name__ == "__main__":
    sys.exit(reporting_user_errors(main))
