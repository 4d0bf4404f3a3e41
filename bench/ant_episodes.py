#!/usr/bin/env python
"""What an Ant family's episodes are made of under a policy: their lengths, why they end, and the reward's
terms per step (task term, control cost, contact cost, survival bonus), how much each varies between
episodes, and how far the torso walks (on ant-goal and ant-bandits: towards its goal or not). The measurements
of docs/ant.md. An MLSH run's policy is one of its sub-policies (``--subpolicy``; an oracle's or a shared
policy's only one is 0).

    python bench/ant_episodes.py --spec specs/ant-dir.yaml                     # the spec's initial policy
    python bench/ant_episodes.py --spec specs/ant-dir.yaml --set policy.init_output_scale=0.01
    python bench/ant_episodes.py --run runs/ant-dir/<stamp>                    # a trained (meta-)policy
    python bench/ant_episodes.py --spec specs/ant-dir.yaml --actions zero      # or: mean, noise:0.5
    python bench/ant_episodes.py --run runs/<mlsh-oracle> --checkpoint runs/<mlsh-oracle>/checkpoints/iter-0200.pt

``--actions``: ``policy`` samples the policy (the default), ``mean`` takes its mean, ``zero`` sends no torque,
``noise:S`` sends Gaussian torques of standard deviation S whatever the observation. Prints a table and
writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.distributions import Distribution

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dh_maml.checkpoint import load_checkpoint  # noqa: E402
from dh_maml.envs import make_family  # noqa: E402
from dh_maml.envs.ant_bandits import RADIUS, AntBanditsVectorEnv  # noqa: E402
from dh_maml.envs.base import TaskFamily  # noqa: E402
from dh_maml.envs.mujoco import AntGoalEnv, AntVectorEnv  # noqa: E402
from dh_maml.mlsh.policies import SubPolicies  # noqa: E402
from dh_maml.policies import make_policy  # noqa: E402
from dh_maml.run_dir import checkpoint_path, read_run_spec  # noqa: E402
from dh_maml.spec import Spec, load_spec, with_overrides  # noqa: E402
from dh_maml.user_errors import UsageError, reporting_user_errors  # noqa: E402

DistributionOf = Callable[[torch.Tensor], Distribution]  # a policy: observations -> its action distribution


def actions_of(
    how: str, policy: DistributionOf | None, obs: np.ndarray, rng: np.random.Generator, act_dim: int
) -> np.ndarray:
    if how == "zero":
        return np.zeros((len(obs), act_dim), dtype=np.float32)
    if how.startswith("noise:"):
        return (float(how.split(":", 1)[1]) * rng.standard_normal((len(obs), act_dim))).astype(np.float32)
    with torch.no_grad():
        dist = policy(torch.as_tensor(obs, dtype=torch.float32))
        return (dist.mean if how == "mean" else dist.sample()).numpy()


def probe(env: AntVectorEnv, policy: DistributionOf | None, how: str, seed: int) -> dict:
    """One episode in every sub-env, up to the horizon; the terms as the env computes them."""
    n, act_dim = env.num_envs, env.action_space.shape[1]
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    obs, _ = env.reset(seed=seed)
    alive, length = np.ones(n, bool), np.zeros(n, int)
    ended = {"torso above the healthy range": 0, "torso below it": 0, "not finite": 0, "horizon": 0}
    terms = {k: np.zeros(n) for k in ("task term", "control cost", "contact cost", "survival bonus", "reward")}
    high_z = env.healthy_z[1]
    # sparse AntBandits pays only near the goal: the Ant's own terms are measured but not in its reward
    own_terms = 0.0 if isinstance(env, AntBanditsVectorEnv) and not env.shaped else 1.0
    start = env._qpos[:, :2].copy()
    end = start.copy()
    turned_at = np.full(n, -1)  # the step the torso first faced down; -1: it never did
    at_goal = np.zeros(n)  # ant-bandits: steps ending within RADIUS of the paying goal, what the sparse test pays
    for t in range(env.horizon):
        actions = actions_of(how, policy, obs, rng, act_dim)
        obs, reward, terminated, truncated, _ = env.step(actions)
        ctrl = env.ctrl_cost_weight * np.square(actions).sum(1)
        contact = env.contact_cost_weight * np.square(env._clipped_contact()).reshape(n, -1).sum(1)
        for key, value in (
            ("reward", reward),
            ("control cost", ctrl),
            ("contact cost", contact),
            ("survival bonus", np.full(n, env.survive_reward)),
            ("task term", reward + own_terms * (ctrl + contact - env.survive_reward)),
        ):
            terms[key] += np.where(alive, value, 0.0)
        length += alive
        end[alive] = env._qpos[alive, :2]
        turned_at[alive & (turned_at < 0) & (env._torso_up() < 0.0)] = t + 1
        if isinstance(env, AntBanditsVectorEnv):
            at_goal += alive & (np.linalg.norm(env._qpos[:, :2] - env._goal, axis=1) < RADIUS)
        for i in np.flatnonzero(alive & terminated):
            z = env._qpos[i, 2]
            above = "torso above the healthy range" if z > high_z else "torso below it"
            ended["not finite" if not np.isfinite(z) else above] += 1
        ended["horizon"] += int((alive & truncated & ~terminated).sum())
        alive &= ~(terminated | truncated)
        if not alive.any():
            break
    turned = turned_at > 0
    walked = {"distance from the start": np.linalg.norm(end - start, axis=1)}
    if isinstance(env, AntGoalEnv):  # did the Ant close on its goal, or only stand near the start?
        walked["L1 to the goal at the start"] = np.abs(start - env._goal).sum(1)
        walked["L1 to the goal at the end"] = np.abs(end - env._goal).sum(1)
    if isinstance(env, AntBanditsVectorEnv):  # did it walk to the paying goal (5 away), or elsewhere?
        walked["distance to the paying goal at the start"] = np.linalg.norm(start - env._goal, axis=1)
        walked["distance to the paying goal at the end"] = np.linalg.norm(end - env._goal, axis=1)
        for name, which in (("", np.ones(n, bool)), (", never turned over", ~turned), (", turned over", turned)):
            if which.any():
                walked[f"steps at the paying goal{name}"] = at_goal[which]
    return {
        "episodes": n,
        "length_mean": float(length.mean()),
        "length_median": float(np.median(length)),
        "ended": ended,
        "per_episode": {k: float(v.mean()) for k, v in terms.items()},
        # how much each term varies between episodes: what a policy gradient on these episodes can tell apart
        "per_episode_std": {k: float(v.std()) for k, v in terms.items()},
        "per_step": {k: float((v / np.maximum(length, 1)).mean()) for k, v in terms.items()},
        "torso_xy": {k: float(v.mean()) for k, v in walked.items()},
        # an Ant on its back can still crawl (nothing ends an ant-bandits episode), slowly and off its heading
        "turned_over": float(turned.mean()),
        "turned_over_step_median": float(np.median(turned_at[turned])) if turned.any() else None,
    }


def trained_policy(spec: Spec, family: TaskFamily, checkpoint: dict, subpolicy: int) -> DistributionOf:
    """The policy a checkpoint holds: a MAML run's policy, or an MLSH run's sub-policy ``subpolicy`` (its actor
    on its normalised observations where the run normalises them, without the value head beside it), loaded
    into the model the run's spec builds."""
    if "subpolicies" not in checkpoint:
        return initial_policy(spec, family, checkpoint["policy"])
    count = spec.mlsh.num_subpolicies
    if not 0 <= subpolicy < count:
        raise UsageError(f"--subpolicy {subpolicy}: expected 0 to {count - 1}, the run's sub-policies")
    mlsh = spec.mlsh
    subpolicies = SubPolicies(
        family.observation_space, family.action_space, count, spec.policy, mlsh.shared_body, mlsh.normalize_obs
    )
    subpolicies.load_state_dict(checkpoint["subpolicies"])
    return subpolicies[subpolicy].distribution


def initial_policy(spec: Spec, family: TaskFamily, weights: dict | None = None) -> DistributionOf:
    """The spec's policy, with ``weights`` where given."""
    policy = make_policy(family.observation_space, family.action_space, spec.policy)
    if weights is not None:
        policy.load_state_dict(weights)
    return lambda obs: policy.dist(policy.params(), obs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", help="an Ant spec (its initial policy), unless --run is given")
    parser.add_argument("--run", help="a run directory: its spec and latest checkpoint's policy")
    parser.add_argument("--checkpoint", help="with --run: this checkpoint instead of the latest")
    parser.add_argument("--subpolicy", type=int, default=0, help="an MLSH run: which sub-policy acts (default 0)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="spec overrides")
    parser.add_argument("--actions", default="policy", help="policy, mean, zero or noise:S (default policy)")
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "bench/results/ant_episodes.json"))
    args = parser.parse_args()
    if (args.spec is None) == (args.run is None):
        parser.error("give one of --spec SPEC or --run RUN_DIR")
    if args.checkpoint and not args.run:
        parser.error("--checkpoint: needs --run RUN_DIR (its spec)")
    if args.actions not in ("policy", "mean", "zero") and not args.actions.startswith("noise:"):
        parser.error(f"--actions: expected policy, mean, zero or noise:S, got {args.actions!r}")
    torch.set_num_threads(1)
    spec = with_overrides(read_run_spec(args.run), args.set) if args.run else load_spec(args.spec, args.set)
    family = make_family(spec.env)
    env = family.make_vector_env(args.episodes)
    if not isinstance(env, AntVectorEnv):
        parser.error(f"{spec.env.family} is not an Ant family")
    torch.manual_seed(spec.experiment.seed)
    if args.run:
        checkpoint = load_checkpoint(args.checkpoint or checkpoint_path(args.run))
        policy = trained_policy(spec, family, checkpoint, args.subpolicy)
    else:
        policy = initial_policy(spec, family)
    env.set_tasks(family.sample_tasks(args.episodes, np.random.default_rng(args.seed)))
    result = {"family": spec.env.family, "actions": args.actions, **probe(env, policy, args.actions, args.seed)}
    print(f"{spec.env.family}, actions {args.actions}: {args.episodes} episodes of at most {family.horizon} steps")
    print(f"  length: mean {result['length_mean']:.1f}, median {result['length_median']:.1f}")
    print("  ended by: " + ", ".join(f"{k} {v}" for k, v in result["ended"].items() if v))
    for key in result["per_step"]:
        print(
            f"  {key:>15}: {result['per_step'][key]:+8.4f} per step, {result['per_episode'][key]:+9.3f} per episode"
            f" (std over episodes {result['per_episode_std'][key]:.3f})"
        )
    for key, value in result["torso_xy"].items():
        print(f"  torso {key}: {value:.3f} (mean over episodes)")
    if result["turned_over_step_median"] is not None:
        print(
            f"  turned over (torso facing down) in {result['turned_over']:.0%} of episodes,"
            f" first at step {result['turned_over_step_median']:.0f} (median of those)"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(reporting_user_errors(main))
