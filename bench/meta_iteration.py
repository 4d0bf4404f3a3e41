#!/usr/bin/env python
"""Meta-train a spec in-process and print seconds per meta-iteration, env steps/s and returns.

    python bench/meta_iteration.py --spec specs/navigation-2d.yaml --iterations 10

Figures are medians over the iterations (the first is reported apart: it includes warm-up).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dh_maml.in_process import InProcess
from dh_maml.runtime import keep_freed_memory
from dh_maml.spec import load_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="specs/navigation-2d.yaml")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default="bench/results/meta_iteration.json")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as launch.py does
    spec = load_spec(args.spec, args.set)
    trainer = InProcess(spec)
    records = []
    for _ in range(args.iterations):
        records.append(trainer.iterate())
        r = records[-1]
        print(
            f"iter {r['iteration']:>3}: {r['time/iteration']:6.2f} s (sampling {r['time/sampling']:.2f}, "
            f"trpo {r['time/trpo']:.2f})  pre {r['returns/pre']:8.2f}  post {r['returns/post']:8.2f}",
            flush=True,
        )
    trainer.close()
    steady = records[1:] or records
    med = lambda key: statistics.median(r[key] for r in steady)
    summary = {
        "spec": args.spec,
        "iterations": args.iterations,
        "threads": args.threads,
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s)",
        "first_iteration_s": records[0]["time/iteration"],
        "median_iteration_s": med("time/iteration"),
        "median_sampling_s": med("time/sampling"),
        "median_trpo_s": med("time/trpo"),
        "median_env_steps_per_s": med("env_steps_per_s"),
        "env_steps_per_iteration": med("env_steps"),
        "final_pre": records[-1]["returns/pre"],
        "final_post": records[-1]["returns/post"],
    }
    print("\n| metric | value |\n|---|---|")
    for key, value in summary.items():
        print(f"| {key} | {value:.3f} |" if isinstance(value, float) else f"| {key} | {value} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "records": records}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
