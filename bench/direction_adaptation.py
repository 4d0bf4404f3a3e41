#!/usr/bin/env python
"""How each direction of a direction family (halfcheetah-dir, ant-dir) adapts under a trained meta-policy:
the measurements behind docs/halfcheetah-dir.md.

    python bench/direction_adaptation.py --run runs/halfcheetah-dir/<stamp> [--tasks 40] [--lrs 0.05,0.1,0.2]
    python bench/direction_adaptation.py --spec specs/halfcheetah-dir.yaml     # the spec's initial policy

On equally many forward and backward held-out tasks, per direction: before and after one inner step, the
return, the robot's mean velocity along x (per episode; HalfCheetah, whose reward is d v - 0.05 |a|^2) and
the control cost; the inner step itself (the norm of the task's gradient, the KL between the policies before
and after the step on the states it adapted on, and the steps split into what both directions share, what
tells them apart and what is left per task); the linear baseline's fit (explained variance of the
discounted returns) and the spread of the raw advantages that normalisation divides out; and the one-step
return at each inner step size of ``--lrs``. Every step size adapts on the same pre-step episodes. Prints a
table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dh_maml.baseline import LinearFeatureBaseline  # noqa: E402
from dh_maml.checkpoint import load_checkpoint  # noqa: E402
from dh_maml.envs import make_family  # noqa: E402
from dh_maml.envs.mujoco import HalfCheetahVectorEnv  # noqa: E402
from dh_maml.episodes import EpisodeBatch, discounted_returns, gae  # noqa: E402
from dh_maml.maml.inner import adaptation_steps  # noqa: E402
from dh_maml.maml.meta_test import held_out_tasks  # noqa: E402
from dh_maml.policies import make_policy  # noqa: E402
from dh_maml.run_dir import checkpoint_path, read_run_spec  # noqa: E402
from dh_maml.sampling import Sampler  # noqa: E402
from dh_maml.spec import load_spec  # noqa: E402
from dh_maml.user_errors import reporting_user_errors  # noqa: E402


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> float:
    return values[mask.bool()].double().mean().item()


def velocities(batch: EpisodeBatch, directions: np.ndarray, ctrl_cost_weight: float) -> torch.Tensor:
    """[N, E] mean x-velocity of each episode, from reward = d v - w |a|^2."""
    ctrl = ctrl_cost_weight * batch.actions.double().pow(2).sum(-1)
    v = (batch.rewards.double() + ctrl) / torch.as_tensor(directions).view(-1, 1, 1)
    return (v * batch.mask).sum(1) / batch.mask.sum(1).clamp(min=1)


def baseline_fit(batch: EpisodeBatch, gamma: float, lam: float, reg: float) -> tuple[np.ndarray, np.ndarray]:
    """Per task: explained variance of the discounted returns by the linear baseline, and the raw advantages'
    standard deviation (what normalisation divides each task's advantages by)."""
    returns = discounted_returns(batch.rewards, batch.mask, gamma)
    values = LinearFeatureBaseline(reg).fit_predict(batch.observations, batch.mask, returns)
    raw = gae(batch.rewards, values, batch.mask, gamma, lam)
    explained, spread = [], []
    for i in range(batch.num_tasks):
        m = batch.mask[i].bool()
        r, v = returns[i][m].double(), values[i][m].double()
        explained.append(1.0 - (r - v).var().item() / max(r.var().item(), 1e-12))
        spread.append(raw[i][m].double().std().item())
    return np.array(explained), np.array(spread)


def inner_steps(before: dict, after: dict, lr: float) -> torch.Tensor:
    """[tasks, parameters]: each task's inner step (theta'_i - theta) / lr, flattened."""
    tasks = len(next(iter(after.values())))
    return torch.stack([torch.cat([((after[k][i] - before[k]) / lr).flatten() for k in before]) for i in range(tasks)])


def step_size_and_kl(policy, before: dict, after: dict, batch: EpisodeBatch, lr: float) -> tuple[np.ndarray, ...]:
    """Per task: |theta' - theta| / lr (the inner gradient's norm) and mean KL(pi_theta || pi_theta') over the
    pre-step states."""
    kls = []
    for i in range(batch.num_tasks):
        task_after = {k: v[i] for k, v in after.items()}
        obs = batch.observations[i][batch.mask[i].bool()]
        with torch.no_grad():
            kl = torch.distributions.kl_divergence(policy.dist(before, obs), policy.dist(task_after, obs))
        kls.append(kl.mean().item())
    return inner_steps(before, after, lr).norm(dim=1).numpy(), np.array(kls)


def step_split(before: dict, after: dict, directions: np.ndarray, lr: float) -> dict[str, float]:
    """The inner steps (theta'_i - theta) / lr split into the part both directions share (half the sum of the
    two directions' mean steps), the part that tells them apart (half the difference) and what is left per
    task (root mean square about its direction's mean step). A step can steer only with its direction
    part; what is left per task is the noise of adapting on one task's episodes (the two means carry that
    noise divided by the square root of the tasks per direction)."""
    steps = inner_steps(before, after, lr).double()
    forward, backward = steps[directions > 0], steps[directions < 0]
    mean_f, mean_b = forward.mean(0), backward.mean(0)
    rest = torch.cat([forward - mean_f, backward - mean_b])
    return {
        "shared by both directions": ((mean_f + mean_b) / 2).norm().item(),
        "telling the directions apart": ((mean_f - mean_b) / 2).norm().item(),
        "left per task (rms)": rest.pow(2).sum(1).mean().sqrt().item(),
    }


def summary(values: np.ndarray) -> dict[str, float]:
    n = len(values)
    return {"mean": float(values.mean()), "se": float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="a run directory of a direction family: its spec and trained policy")
    parser.add_argument("--spec", help="a spec of a direction family: its initial policy (instead of --run)")
    parser.add_argument("--checkpoint", help="checkpoint file (default RUN_DIR/checkpoints/latest.pt)")
    parser.add_argument("--tasks", type=int, default=40, help="held-out tasks, half each way (default 40)")
    parser.add_argument("--seed", type=int, default=None, help="held-out task seed (default meta_test.seed)")
    parser.add_argument(
        "--lrs", default=None, help="inner step sizes to compare, comma-separated (default: the spec's)"
    )
    parser.add_argument("--out", default=str(ROOT / "bench/results/direction_adaptation.json"))
    args = parser.parse_args()
    if (args.spec is None) == (args.run is None):
        parser.error("give one of --run RUN_DIR or --spec SPEC")
    torch.set_num_threads(1)
    spec = read_run_spec(args.run) if args.run else load_spec(args.spec)
    family = make_family(spec.env)
    if family.task_kinds() is None:
        flag = "--run" if args.run else "--spec"
        parser.error(f"{flag}: {spec.env.family} is not a direction family (expected halfcheetah-dir or ant-dir)")
    maml = spec.maml
    lrs = [float(x) for x in args.lrs.split(",")] if args.lrs else [maml.fast_lr]
    seed = spec.meta_test.seed if args.seed is None else args.seed
    torch.manual_seed(spec.experiment.seed)  # the initial policy training would start from
    policy = make_policy(family.observation_space, family.action_space, spec.policy)
    if args.run:
        policy.load_state_dict(load_checkpoint(args.checkpoint or checkpoint_path(args.run))["policy"])
    sampler = Sampler(family, policy)
    tasks = held_out_tasks(family, args.tasks, seed, balanced=True)
    labels = np.array([str(family.latent(t)) for t in tasks])
    directions = np.array([t.direction for t in tasks])
    env_cls = getattr(family, "env_cls", None)
    cheetah = isinstance(env_cls, type) and issubclass(env_cls, HalfCheetahVectorEnv)
    baseline = LinearFeatureBaseline(maml.baseline_reg)
    params = {k: v.detach() for k, v in policy.params().items()}

    per_task: dict[str, np.ndarray] = {}
    split: dict[str, float] = {}  # measured at the spec's inner step size, when --lrs includes it
    for lr in lrs:
        (pre, _, _), (post, adapted, _) = list(adaptation_steps(sampler, params, tasks, maml, [lr], seed, baseline))
        per_task["return before"] = pre.task_returns().numpy()
        per_task[f"return after (lr {lr:g})"] = post.task_returns().numpy()
        if lr == maml.fast_lr:
            if cheetah:
                w = env_cls.ctrl_cost_weight
                v_pre, v_post = velocities(pre, directions, w), velocities(post, directions, w)
                per_task["velocity before"] = v_pre.mean(1).numpy()
                per_task["velocity spread before (std over episodes)"] = v_pre.std(1).numpy()
                per_task["velocity after"] = v_post.mean(1).numpy()
                per_task["velocity spread after"] = v_post.std(1).numpy()
                for name, batch in (("before", pre), ("after", post)):
                    ctrl = w * batch.actions.double().pow(2).sum(-1)
                    per_task[f"control cost per step {name}"] = np.array(
                        [masked_mean(ctrl[i], batch.mask[i]) for i in range(len(tasks))]
                    )
            norms, kls = step_size_and_kl(policy, params, adapted, pre, lr)
            per_task["inner gradient norm"], per_task["KL(before || after)"] = norms, kls
            split = step_split(params, adapted, directions, lr)
            explained, spread = baseline_fit(pre, maml.gamma, maml.gae_lambda, maml.baseline_reg)
            per_task["baseline explained variance"], per_task["raw advantage std"] = explained, spread

    kinds = list(dict.fromkeys(labels))
    result = {
        "run": str(args.run or args.spec),
        "tasks": args.tasks,
        "seed": seed,
        "lrs": lrs,
        "by_direction": {
            kind: {name: summary(values[labels == kind]) for name, values in per_task.items()} for kind in kinds
        },
        "inner step split (norms)": split,
        "per_task": {name: values.tolist() for name, values in per_task.items()},
        "directions": labels.tolist(),
    }
    print(
        f"{spec.env.family}, {args.run or args.spec}: {args.tasks} held-out tasks (seed {seed}), mean ± s.e. over tasks"
    )
    print(f"{'':>44}" + "".join(f"{kind + f' ({(labels == kind).sum()})':>22}" for kind in kinds))
    for name in per_task:
        row = "".join(
            f"{result['by_direction'][k][name]['mean']:>13.3f} ± {result['by_direction'][k][name]['se']:<6.3f}"
            for k in kinds
        )
        print(f"{name:>44}{row}")
    if split:
        parts = ", ".join(f"{k} {v:.3f}" for k, v in split.items())
        print(f"inner steps at lr {maml.fast_lr:g}, split (norms): {parts}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(reporting_user_errors(main))
