#!/usr/bin/env python
"""Which latent goal each of an MLSH run's sub-policies serves: every trained sub-policy runs alone (a master
with one choice) on held-out tasks of each latent, and on a run with a shared-policy baseline that policy too.
Sub-policies that specialised score high on their own latent and low on the other (MovementBandits); ones that
serve every latent alike leave a master nothing to choose between. The measurement behind the MLSH verdicts
in docs/results.md.

    python bench/subpolicy_latents.py --run runs/two-goals-ppo-s1 [--baseline-run runs/two-goals-ppo-s1-shared]
        [--tasks 8] [--episodes 20] [--seed 10000] [--reward test|training]

Mean return per episode with the evaluation reward (unshaped; ``--reward training``: the reward the run trained
on, whose shaping shows a skill still short of a sparse goal, e.g. which way each sub-policy walks on
AntBandits), ± standard error over tasks, and each policy's mean entropy over the states it visited with, for
discrete actions, the share of its most frequent action: a policy that collapsed onto one action (PPO without
an entropy bonus on MiniGrid) shows as near 0 nats and near 100 %. Last, which sub-policy earns most alone on
each latent and the mean of those bests: the most a master committing to one sub-policy per latent can earn,
beside the shared policy. Prints a table and writes JSON (``--out``, default RUN/subpolicy_latents.json).
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
from dh_maml.mlsh.sampling import HierarchyRollout, sample_hierarchy  # noqa: E402
from dh_maml.run_dir import checkpoint_path, read_run_spec  # noqa: E402
from dh_maml.spec import PolicySpec, Spec  # noqa: E402
from dh_maml.user_errors import reporting_user_errors  # noqa: E402


def load_subpolicies(
    family: TaskFamily, policy_spec: PolicySpec, run_dir: str, count: int, normalize_obs: bool = False
) -> SubPolicies:
    subpolicies = SubPolicies(
        family.observation_space, family.action_space, count, policy_spec, normalize_obs=normalize_obs
    )
    subpolicies.load_state_dict(load_checkpoint(checkpoint_path(run_dir))["subpolicies"])
    return subpolicies


def alone(subpolicies: SubPolicies, k: int, family: TaskFamily, policy_spec: PolicySpec) -> SubPolicies:
    """A hierarchy of one: sub-policy ``k`` of ``subpolicies``, for a master with one choice."""
    normalize_obs = subpolicies[k].normalizer is not None
    one = SubPolicies(family.observation_space, family.action_space, 1, policy_spec, normalize_obs=normalize_obs)
    one[0].load_state_dict(subpolicies[k].state_dict())
    return one


def rollouts(
    env: TaskVectorEnv, spec: Spec, horizon: int, policy: SubPolicies, tasks: list, seed: int
) -> list[HierarchyRollout]:
    """One rollout per task of ``policy`` alone, ``env``'s sub-envs split evenly between the tasks."""
    space = env.single_observation_space
    masters = [make_master(space, 1, spec.policy, seed + i) for i in range(len(tasks))]
    return sample_hierarchy(env, policy, masters, tasks, horizon, spec.mlsh.macro_len, 0.0, seed)


def action_spread(policy: SubPolicies, rolls: list[HierarchyRollout]) -> dict[str, float]:
    """The mean entropy of ``policy``'s action distribution over the states visited and, for discrete actions,
    the share of the most frequent action taken."""
    running = [roll.mask.bool() for roll in rolls]
    obs = torch.cat([roll.obs[m] for roll, m in zip(rolls, running)])
    actions = torch.cat([roll.actions[m] for roll, m in zip(rolls, running)])
    with torch.no_grad():
        spread = {"entropy": policy[0].evaluate(obs, actions)[2].mean().item()}
    if actions.dim() == 1:
        spread["top_action_share"] = (torch.bincount(actions.long()).max() / actions.numel()).item()
    return spread


def best_alone(table: dict[str, dict[str, list[float]]]) -> tuple[dict[str, str], float]:
    """For each latent the sub-policy that earns most alone, and the mean over latents of what it earns: the
    most a master that commits to one sub-policy per latent can earn, to hold beside the shared policy."""
    subs = {name: by_latent for name, by_latent in table.items() if name.startswith("sub-policy")}
    latents = next(iter(subs.values())).keys()
    best = {n: max(subs, key=lambda name: float(np.mean(subs[name][n]))) for n in latents}
    return best, float(np.mean([np.mean(subs[best[n]][n]) for n in latents]))


def cell(returns: list[float]) -> str:
    """Mean ± standard error over a latent's tasks; the mean alone where the latent has one task."""
    r = np.array(returns)
    return f"{r.mean():8.2f} ± {r.std(ddof=1) / np.sqrt(len(r)):5.2f}" if len(r) > 1 else f"{r.mean():8.2f}"


def scoring_family(spec: Spec, reward: str) -> TaskFamily:
    """The family the policies are scored on: the run's evaluation family (``test``), or its training one."""
    family = make_family(spec.env)
    return family if reward == "training" else family.for_evaluation()


def run_spec(parser: argparse.ArgumentParser, flag: str, run: str) -> Spec:
    """The spec of run directory ``run``, given as ``flag``; no run or a damaged spec is one ``parser.error``
    line naming it, not a traceback."""
    try:
        return read_run_spec(run)
    except (FileNotFoundError, ValueError) as error:
        parser.error(f"{flag}: {error}")


def mlsh_run_spec(parser: argparse.ArgumentParser, run: str) -> Spec:
    """The spec of the MLSH run ``run``; anything else (no run, a damaged spec, another algorithm) is one
    ``parser.error`` line naming it."""
    spec = run_spec(parser, "--run", run)
    if spec.experiment.algorithm != "mlsh":
        parser.error(f"--run {run}: expected an MLSH run, got algorithm {spec.experiment.algorithm!r}")
    return spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="an MLSH run directory")
    parser.add_argument("--baseline-run", help="its shared-policy baseline's run directory")
    parser.add_argument("--tasks", type=int, default=8, help="held-out tasks (default 8)")
    parser.add_argument("--episodes", type=int, default=20, help="episodes per task (default 20)")
    parser.add_argument("--seed", type=int, default=10000, help="held-out tasks' seed (default 10000)")
    parser.add_argument(
        "--reward",
        choices=("test", "training"),
        default="test",
        help="score with the evaluation reward (default) or the training one (shaped where the spec shapes it)",
    )
    parser.add_argument("--out", help="JSON path (default RUN/subpolicy_latents.json)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    spec = mlsh_run_spec(parser, args.run)
    family = scoring_family(spec, args.reward)
    normalize_obs = spec.mlsh.normalize_obs
    trained = load_subpolicies(family, spec.policy, args.run, spec.mlsh.num_subpolicies, normalize_obs)
    policies = {f"sub-policy {k}": alone(trained, k, family, spec.policy) for k in range(len(trained))}
    if args.baseline_run:
        policies["shared policy"] = load_subpolicies(family, spec.policy, args.baseline_run, 1, normalize_obs)
    tasks, _ = held_out(family, args.tasks, args.seed)
    latents = [str(family.latent(t)) for t in tasks]

    names = sorted(set(latents))
    table: dict[str, dict[str, list[float]]] = {}
    spreads: dict[str, dict[str, float]] = {}
    env = family.make_vector_env(args.episodes * len(tasks))
    for name, policy in policies.items():
        rolls = rollouts(env, spec, family.horizon, policy, tasks, args.seed)
        by_latent: dict[str, list[float]] = defaultdict(list)
        for latent, roll in zip(latents, rolls):
            by_latent[latent].append(roll.episode_returns().mean().item())
        table[name] = dict(by_latent)
        spreads[name] = action_spread(policy, rolls)
    env.close()

    shape = f"{args.tasks} held-out tasks x {args.episodes} episodes"
    print(f"{args.run}: mean return per episode ({args.reward} reward), alone, {shape}")
    print(f"{'':>15} " + " ".join(f"{'latent ' + n:>18}" for n in names) + "      mean   entropy  top action")
    means = {name: float(np.mean([r for rs in by_latent.values() for r in rs])) for name, by_latent in table.items()}
    for name, by_latent in table.items():
        cells = [cell(by_latent[n]) for n in names]
        spread = spreads[name]
        top = f"{100 * spread['top_action_share']:9.0f} %" if "top_action_share" in spread else ""
        print(
            f"{name:>15} "
            + " ".join(f"{c:>18}" for c in cells)
            + f"  {means[name]:8.2f}  {spread['entropy']:8.2f}{top}"
        )
    best, best_mean = best_alone(table)
    counts = {name: list(best.values()).count(name) for name in dict.fromkeys(best.values())}
    beside = f" (shared policy {means['shared policy']:.2f})" if "shared policy" in means else ""
    choices = ", ".join(f"{name} on {c} of {len(best)}" for name, c in counts.items())
    print(f"best sub-policy alone per latent: {choices}; their mean {best_mean:.2f}{beside}")
    out = Path(args.out) if args.out else Path(args.run) / "subpolicy_latents.json"
    out.write_text(
        json.dumps(
            {
                "tasks": args.tasks,
                "episodes": args.episodes,
                "seed": args.seed,
                "reward": args.reward,
                "returns": table,
                "actions": spreads,
                "best_alone": best,
                "best_alone_mean": best_mean,
            }
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(reporting_user_errors(main))
