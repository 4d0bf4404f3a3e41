#!/usr/bin/env python
"""Time meta-iterations of the real runtime (agent + observer processes over RPC) and print their split.

    python bench/distributed_iteration.py --spec specs/navigation-2d.yaml --observers 2 --iterations 10

Runs ``launch.py train`` into a temporary run directory and reads its metrics:
medians over the iterations after the first (which includes warm-up). Before
training it measures the family's raw env throughput on one core (as
``bench/env_throughput.py`` does), so the physics bound of an iteration (its env
steps / (observers x raw steps/s per core)) comes from the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.env_throughput import observer_envs, raw_steps_per_s  # noqa: E402
from dh_maml.spec import load_spec  # noqa: E402
PHASES = ["time/iteration", "time/sampling", "time/learner_wait", "time/graphs", "time/trpo", "env_steps_per_s",
          "env_steps"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="specs/navigation-2d.yaml")
    parser.add_argument("--observers", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default="bench/results/distributed_iteration.json")
    args = parser.parse_args()

    spec = load_spec(ROOT / args.spec, args.set)
    raw = raw_steps_per_s(spec, observer_envs(spec, max(args.observers, 1)))
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        cmd = [sys.executable, str(ROOT / "launch.py"), "train", "--spec", args.spec, "--observers",
               str(args.observers), "--iterations", str(args.iterations), "--run-dir", str(run)]
        for item in args.set:
            cmd += ["--set", item]
        subprocess.run(cmd, check=True, cwd=ROOT)
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steady = records[1:] or records
    summary = {
        "spec": args.spec, "observers": args.observers, "iterations": args.iterations,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "first_iteration_s": records[0]["time/iteration"],
        **{f"median {key}": statistics.median(r[key] for r in steady) for key in PHASES},
        "final_pre": records[-1]["returns/pre"], "final_post": records[-1]["returns/post"],
    }
    iteration, steps = summary["median time/iteration"], summary["median env_steps"]
    summary["raw env steps/s per core"] = raw
    summary["physics bound s"] = steps / (max(args.observers, 1) * raw)
    summary["iteration / physics bound"] = iteration / summary["physics bound s"]
    summary["TRPO share of the iteration"] = summary["median time/trpo"] / iteration
    print("\n| metric | value |\n|---|---|")
    for key, value in summary.items():
        print(f"| {key} | {value:.3f} |" if isinstance(value, float) else f"| {key} | {value} |")
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
