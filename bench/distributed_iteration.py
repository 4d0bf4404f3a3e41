#!/usr/bin/env python
"""Time meta-iterations of the real runtime (agent + observer processes over RPC) and print their split.

    python bench/distributed_iteration.py --spec specs/navigation-2d.yaml --observers 2 --iterations 10
    python bench/distributed_iteration.py --spec specs/halfcheetah-vel.yaml --observers 1,2 --iterations 3

Runs ``launch.py train`` into a temporary run directory for each observer count and reads its metrics:
medians over the iterations after the first (which includes warm-up). Before each run it measures the
family's physics bound on one core (``bench/env_throughput.py``'s ``bound_steps_per_s``: bare
``mj_step`` on the family's model for MuJoCo, the env itself otherwise), so the bound of an iteration (its
env steps / (observers x bound steps/s per core)) comes from the same run.

The split: each observer's computing (sampling, the first-order inner steps, advantages), the slowest
job's transfer (its round trip less its computing), the learner building graphs while groups arrive,
the tail after the last arrival, and the TRPO step (meta-gradient, conjugate gradient, line search).
With ``trpo.products: observers`` the step's computing on the observers is measured too (the slowest
holder of each call, summed: ``time/holders``), and what is left of the step is the agent's own.
Several counts give the measured scaling; every run also predicts the iteration for more observers,
each on a core of its own with the agent on its own: observers' computing / m + transfer + the tail
shrinking with the last group + the TRPO step, whose holders' part shrinks as m grows (on the agent, the
step does not depend on the observers).
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

from bench.env_throughput import bound_steps_per_s, observer_envs  # noqa: E402
from dh_maml.spec import load_spec  # noqa: E402

PHASES = [
    "time/iteration",
    "time/sampling",
    "time/transfer",
    "time/learner_wait",
    "time/graphs",
    "time/trpo",
    "time/gradient",
    "time/cg",
    "time/line_search",
    "time/holders",
    "env_steps_per_s",
    "env_steps",
]
PREDICT_FOR = (8, 32, 128)


def median_of(records: list[dict], key: str) -> float:
    return statistics.median(r.get(key, 0.0) for r in records)


def summarize(records: list[dict], observers: int, raw: float) -> dict:
    """Medians of the phases over the steady iterations, per-observer computing, bound and prediction."""
    steady = records[1:] or records
    summary: dict = {"observers": observers, "first_iteration_s": records[0]["time/iteration"]}
    summary.update({f"median {key}": median_of(steady, key) for key in PHASES})
    computing = sorted(k for k in steady[0] if k.startswith("time/observer/"))
    summary.update({f"median {key}": median_of(steady, key) for key in computing})
    iteration, steps = summary["median time/iteration"], summary["median env_steps"]
    summary["bound steps/s per core"] = raw
    summary["physics bound s"] = steps / (max(observers, 1) * raw)
    summary["iteration / physics bound"] = iteration / summary["physics bound s"]
    summary["TRPO share of the iteration"] = summary["median time/trpo"] / iteration
    total_computing = sum(summary[f"median {key}"] for key in computing)
    tail = max(iteration - summary["median time/sampling"] - summary["median time/trpo"], 0.0)
    groups = max(observers, 1)
    held = summary["median time/holders"]
    summary["predicted s"] = {
        m: total_computing / m
        + summary["median time/transfer"]
        + tail * groups / m
        + summary["median time/trpo"]
        - held
        + held * groups / m
        for m in PREDICT_FOR
    }
    summary["final_pre"], summary["final_post"] = records[-1].get("returns/pre"), records[-1].get("returns/post")
    return summary


def run_training(spec_path: str, observers: int, iterations: int, overrides: list[str]) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        cmd = [
            sys.executable,
            str(ROOT / "launch.py"),
            "train",
            "--spec",
            spec_path,
            "--observers",
            str(observers),
            "--iterations",
            str(iterations),
            "--run-dir",
            str(run),
        ]
        for item in overrides:
            cmd += ["--set", item]
        subprocess.run(cmd, check=True, cwd=ROOT)
        return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def print_table(summaries: list[dict]) -> None:
    print("\n| metric | " + " | ".join(f"{s['observers']} observer(s)" for s in summaries) + " |")
    print("|---|" + "---|" * len(summaries))
    keys: list[str] = []
    for s in summaries:
        keys += [k for k in s if k not in keys and k not in ("observers", "predicted s")]
    for key in keys:
        cells = [s.get(key) for s in summaries]
        print(
            f"| {key} | "
            + " | ".join("" if c is None else f"{c:.3f}" if isinstance(c, float) else str(c) for c in cells)
            + " |"
        )
    for m in PREDICT_FOR:
        print(
            f"| predicted s with {m} observers, a core each | "
            + " | ".join(f"{s['predicted s'][m]:.3f}" for s in summaries)
            + " |"
        )
    if len(summaries) > 1:
        base = summaries[0]
        for s in summaries[1:]:
            speedup = base["median time/iteration"] / s["median time/iteration"]
            print(
                f"\n{base['observers']} -> {s['observers']} observers: iteration {speedup:.2f}x faster, "
                f"sampling {base['median time/sampling'] / s['median time/sampling']:.2f}x"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="specs/navigation-2d.yaml")
    parser.add_argument("--observers", default="2", help="an observer count, or several: 1,2")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default="bench/results/distributed_iteration.json")
    args = parser.parse_args()
    try:
        counts = [int(part) for part in args.observers.split(",")]
    except ValueError:
        raise SystemExit(
            f"--observers: expected counts separated by commas such as 1,2; got {args.observers!r}"
        ) from None
    if not counts or min(counts) < 1 or args.iterations < 2:
        raise SystemExit("--observers: counts must be >= 1; --iterations: at least 2 (the first is warm-up)")

    spec = load_spec(ROOT / args.spec, args.set)
    summaries = []
    for observers in counts:
        raw = bound_steps_per_s(spec, observer_envs(spec, observers))
        summaries.append(summarize(run_training(args.spec, observers, args.iterations, args.set), observers, raw))
    print_table(summaries)
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "spec": args.spec,
                "iterations": args.iterations,
                "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                "runs": summaries,
            },
            indent=2,
        )
    )
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
