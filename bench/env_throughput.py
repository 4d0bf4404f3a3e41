#!/usr/bin/env python
"""Raw environment throughput of each task family: vectorised, random actions, no policy, one core; and,
for the MuJoCo families, the bare physics beside it.

    python bench/env_throughput.py                       # every spec in specs/
    python bench/env_throughput.py --spec specs/halfcheetah-vel.yaml --envs 400 --seconds 5

The number of sub-envs defaults to what one of two observers steps together in a meta-iteration of the
spec (meta batch / 2 tasks x fast batch episodes). The physics bound of a MuJoCo family is bare
``mujoco.mj_step(model, data, nstep=frame_skip)`` over that many ``MjData`` of the family's own model,
measured in the same run: no observation, reward, reset or Python of ours. For the other families the
env itself is the bound. Prints a table and writes JSON next to it.
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


def raw_steps_per_s(spec: Spec, num_envs: int, seconds: float = 3.0, seed: int = 0) -> float:
    """Env steps per second of the spec's family on this core, random actions drawn ahead of time."""
    family = make_family(spec.env)
    env = family.make_vector_env(num_envs)
    try:
        env.set_tasks(observer_tasks(spec, num_envs, seed))
        env.reset(seed=seed)
        env.action_space.seed(seed)
        actions = [env.action_space.sample() for _ in range(64)]
        for i in range(10):  # warm-up
            env.step(actions[i])
        steps, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            for action in actions:
                env.step(action)
            steps += len(actions)
        return steps * num_envs / elapsed
    finally:
        env.close()


def bare_physics_steps_per_s(spec: Spec, num_envs: int, seconds: float = 3.0, seed: int = 0) -> float | None:
    """Env steps per second of bare ``mj_step`` on the family's model and frame skip, one core, random
    controls drawn ahead of time and changed every step as the env's are (constant controls press the
    joints against their limits, which steps slower); None for a family without MuJoCo physics. Every
    ``horizon`` steps the data is reset, untimed, as episodes restart."""
    import mujoco

    family = make_family(spec.env)
    env = family.make_vector_env(num_envs)
    try:
        if not hasattr(env, "physics"):
            return None
        rng = np.random.default_rng(seed)
        env.set_tasks(observer_tasks(spec, num_envs, seed))
        env.reset(seed=seed)
        physics = env.physics()
        low, high = physics[0][0].actuator_ctrlrange.T
        controls = rng.uniform(low, high, size=(64, num_envs, len(low)))
        steps, elapsed = 0, 0.0
        while elapsed < seconds:
            env.restart_physics()
            start = time.perf_counter()
            for t in range(family.horizon):
                for (model, data), ctrl in zip(physics, controls[t % len(controls)]):
                    data.ctrl[:] = ctrl  # new random controls every step, as the env gets them
                    mujoco.mj_step(model, data, nstep=env.frame_skip)
            elapsed += time.perf_counter() - start
            steps += family.horizon
        return steps * num_envs / elapsed
    finally:
        env.close()


def bound_steps_per_s(spec: Spec, num_envs: int, seconds: float = 3.0) -> float:
    """The physics bound an observer's sampling can approach: bare MuJoCo where there is MuJoCo, else the
    env's own raw throughput."""
    bare = bare_physics_steps_per_s(spec, num_envs, seconds)
    return bare if bare is not None else raw_steps_per_s(spec, num_envs, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", action="append", help="spec(s) to measure (default: every spec in specs/)")
    parser.add_argument("--envs", type=int, help="sub-envs (default: one observer's share of the meta-batch)")
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per family")
    parser.add_argument("--out", default="bench/results/env_throughput.json")
    args = parser.parse_args()

    torch.set_num_threads(1)
    specs = args.spec or sorted(str(p.relative_to(ROOT)) for p in (ROOT / "specs").glob("*.yaml"))
    rows = []
    for path in specs:
        spec = load_spec(ROOT / path)
        envs = args.envs or observer_envs(spec)
        rate = raw_steps_per_s(spec, envs, args.seconds)
        bare = bare_physics_steps_per_s(spec, envs, args.seconds)
        rows.append(
            {
                "spec": path,
                "family": spec.env.family,
                "envs": envs,
                "steps_per_s": rate,
                "us_per_env_step": 1e6 / rate,
                "bare_physics_steps_per_s": bare,
                "env time / bare physics time": None if bare is None else bare / rate,
            }
        )
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
