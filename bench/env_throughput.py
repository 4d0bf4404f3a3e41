#!/usr/bin/env python
"""Raw environment throughput of each task family: vectorised, random actions, no policy, one core; and,
for the MuJoCo families, the bare physics beside it.

    python bench/env_throughput.py                       # every spec in specs/
    python bench/env_throughput.py --spec specs/halfcheetah-vel.yaml --envs 400 --seconds 5

The number of sub-envs defaults to what one of two observers steps together in a meta-iteration of the
spec (meta batch / 2 tasks x fast batch episodes). The physics bound of a MuJoCo family is bare
``mujoco.mj_step(model, data, nstep=frame_skip)`` over that many ``MjData`` of the family's own model,
measured in the same run: no observation, reward, reset or Python of ours. The two are timed in
alternating slices and the ratio is the median of the slices' ratios, so that other load on the machine
reaches both alike. For the other families the env itself is the bound. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dh_maml.envs import make_family  # noqa: E402
from dh_maml.spec import Spec, load_spec  # noqa: E402


def observer_envs(spec: Spec, observers: int = 2) -> int:
    """Sub-envs one observer steps together: its share of the meta-batch times the episodes per task."""
    return max(1, spec.maml.meta_batch_size // observers) * spec.maml.fast_batch_size


def observer_tasks(spec: Spec, num_envs: int, seed: int = 0) -> list:
    """The tasks of those sub-envs: the first observer's share of a meta-batch (contiguous, as the agent
    shards it), each repeated for its episodes, cycled to ``num_envs``."""
    family = make_family(spec.env)
    tasks = family.sample_tasks(spec.maml.meta_batch_size, np.random.default_rng(seed))
    share = tasks[: max(1, len(tasks) // 2)]
    per_task = max(1, num_envs // len(share))
    return [share[(i // per_task) % len(share)] for i in range(num_envs)]


class EnvStepper:
    """The spec's vector env over one observer's tasks, stepped with random actions drawn ahead of time;
    episodes end and reset inside the timing, as they do in sampling."""

    def __init__(self, spec: Spec, num_envs: int, seed: int = 0):
        self.num_envs = num_envs
        self.env = make_family(spec.env).make_vector_env(num_envs)
        self.env.set_tasks(observer_tasks(spec, num_envs, seed))
        self.env.reset(seed=seed)
        self.env.action_space.seed(seed)
        self.actions = [self.env.action_space.sample() for _ in range(64)]
        for action in self.actions[:10]:  # warm-up
            self.env.step(action)

    def run(self, seconds: float) -> float:
        """Env steps per second over about ``seconds``."""
        steps, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            for action in self.actions:
                self.env.step(action)
            steps += len(self.actions)
        return steps * self.num_envs / elapsed

    def close(self) -> None:
        self.env.close()


class BarePhysicsStepper:
    """Bare ``mj_step`` on the same tasks' models and frame skip: random controls drawn ahead of time and
    changed every step as the env's are (constant controls press the joints against their limits, which
    steps slower); every ``horizon`` steps the data restarts, untimed, as episodes restart."""

    def __init__(self, spec: Spec, num_envs: int, seed: int = 0):
        import mujoco

        self.step = mujoco.mj_step
        self.family = make_family(spec.env)
        self.num_envs = num_envs
        self.env = self.family.make_vector_env(num_envs)
        self.env.set_tasks(observer_tasks(spec, num_envs, seed))
        self.env.reset(seed=seed)
        self.physics = self.env.physics()
        low, high = self.physics[0][0].actuator_ctrlrange.T
        self.controls = np.random.default_rng(seed).uniform(low, high, size=(64, num_envs, len(low)))
        self.t = 0

    def run(self, seconds: float) -> float:
        """Physics steps per second (one per sub-env and env step) over about ``seconds`` of stepping."""
        steps, elapsed, frame_skip = 0, 0.0, self.env.frame_skip
        while elapsed < seconds:
            if self.t % self.family.horizon == 0:
                self.env.restart_physics()
            start = time.perf_counter()
            for _ in range(8):
                for (model, data), ctrl in zip(self.physics, self.controls[self.t % len(self.controls)]):
                    data.ctrl[:] = ctrl  # new random controls every step, as the env gets them
                    self.step(model, data, frame_skip)
                self.t += 1
                steps += 1
                if self.t % self.family.horizon == 0:
                    break
            elapsed += time.perf_counter() - start
        return steps * self.num_envs / elapsed

    def close(self) -> None:
        self.env.close()


def has_physics(spec: Spec) -> bool:
    env = make_family(spec.env).make_vector_env(1)
    try:
        return hasattr(env, "physics")
    finally:
        env.close()


def raw_steps_per_s(spec: Spec, num_envs: int, seconds: float = 3.0, seed: int = 0) -> float:
    """Env steps per second of the spec's family on this core."""
    stepper = EnvStepper(spec, num_envs, seed)
    try:
        return stepper.run(seconds)
    finally:
        stepper.close()


def bare_physics_steps_per_s(spec: Spec, num_envs: int, seconds: float = 3.0, seed: int = 0) -> float | None:
    """Env steps per second of bare ``mj_step`` on the family's models, one core; None for a family
    without MuJoCo physics."""
    if not has_physics(spec):
        return None
    stepper = BarePhysicsStepper(spec, num_envs, seed)
    try:
        return stepper.run(seconds)
    finally:
        stepper.close()


def bound_steps_per_s(spec: Spec, num_envs: int, seconds: float = 3.0) -> float:
    """The physics bound an observer's sampling can approach: bare MuJoCo where there is MuJoCo, else the
    env's own raw throughput."""
    bare = bare_physics_steps_per_s(spec, num_envs, seconds)
    return bare if bare is not None else raw_steps_per_s(spec, num_envs, seconds)


def env_and_bound(spec: Spec, num_envs: int, seconds: float = 3.0, rounds: int = 6) -> dict[str, float | None]:
    """The env's rate and the bare-physics rate, measured in alternating slices of ``seconds / rounds``
    each so that load changes on the machine reach both alike: medians of each and of the per-round ratio."""
    env = EnvStepper(spec, num_envs)
    bare = BarePhysicsStepper(spec, num_envs) if has_physics(spec) else None
    try:
        rates, bounds = [], []
        for _ in range(rounds):
            rates.append(env.run(seconds / rounds))
            if bare is not None:
                bounds.append(bare.run(seconds / rounds))
    finally:
        env.close()
        if bare is not None:
            bare.close()
    rate = float(np.median(rates))
    if bare is None:
        return {"steps_per_s": rate, "bare_physics_steps_per_s": None, "env time / bare physics time": None}
    ratio = float(np.median([b / r for b, r in zip(bounds, rates)]))
    return {
        "steps_per_s": rate,
        "bare_physics_steps_per_s": float(np.median(bounds)),
        "env time / bare physics time": ratio,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", action="append", help="spec(s) to measure (default: every spec in specs/)")
    parser.add_argument("--envs", type=int, help="sub-envs (default: one observer's share of the meta-batch)")
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per family and kind")
    parser.add_argument("--rounds", type=int, default=6, help="alternating env / bare-physics slices")
    parser.add_argument("--out", default="bench/results/env_throughput.json")
    args = parser.parse_args()

    torch.set_num_threads(1)
    specs = args.spec or sorted(str(p.relative_to(ROOT)) for p in (ROOT / "specs").glob("*.yaml"))
    rows = []
    for path in specs:
        spec = load_spec(ROOT / path)
        envs = args.envs or observer_envs(spec)
        figures = env_and_bound(spec, envs, args.seconds, args.rounds)
        us = 1e6 / figures["steps_per_s"]
        rows.append({"spec": path, "family": spec.env.family, "envs": envs, **figures, "us_per_env_step": us})
    print(f"\nraw env throughput, one core ({platform.machine()}, {os.cpu_count()} cores), random actions\n")
    print("| spec | family | sub-envs | env steps/s | µs per env step | bare mj_step steps/s | env time ÷ bare |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        bare = "" if r["bare_physics_steps_per_s"] is None else f"{r['bare_physics_steps_per_s']:,.0f}"
        ratio = "" if r["env time / bare physics time"] is None else f"{r['env time / bare physics time']:.2f}"
        print(
            f"| {r['spec']} | {r['family']} | {r['envs']} | {r['steps_per_s']:,.0f} | {r['us_per_env_step']:.2f} "
            f"| {bare} | {ratio} |"
        )
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": f"{platform.machine()}, {os.cpu_count()} cores", "rows": rows}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
