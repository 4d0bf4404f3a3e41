#!/usr/bin/env python
"""Time the learner's part of a MAML-TRPO iteration on each device: the per-task terms and the TRPO step.

    python bench/trpo_step.py --spec specs/navigation-2d.yaml --devices cpu,cuda --repeats 5

One iteration's task groups are sampled once, on the CPU, as observers would; then for each device a
learner with the same initial weights builds every group's terms and takes the TRPO step, ``--repeats``
times from the same weights (the first is reported apart: it includes warm-up, and on a GPU the kernels'
first launch). Figures are medians; the JSON (``--out``) holds every repeat. A device that is not there
(``cuda`` without CUDA) is reported as skipped, not an error.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dh_maml.maml.rollouts import MAMLRollouts  # noqa: E402
from dh_maml.maml.trainer import MetaTrainer  # noqa: E402
from dh_maml.runtime import keep_freed_memory  # noqa: E402
from dh_maml.spec import load_spec  # noqa: E402


def sample_groups(spec, trainer: MetaTrainer, shards: int) -> list:
    """One iteration's task groups, sampled on the CPU in ``shards`` groups as observers would."""
    rollouts = MAMLRollouts(spec)
    plan = trainer.plan(shards)
    weights = trainer.cpu_weights()
    groups = [MAMLRollouts.sample(rollouts, *trainer.call_args(plan, job, weights)) for job in plan.jobs]
    rollouts.close()
    return groups


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_device(spec, device: str, groups: list, weights: dict, repeats: int) -> dict:
    """Terms and TRPO step of the same iteration, ``repeats`` times from the same weights on ``device``."""
    trainer = MetaTrainer(spec, device)
    rows = []
    for _ in range(repeats):
        trainer.policy.load_state_dict(weights)
        synchronize(device)
        t0 = time.perf_counter()
        objectives = [trainer.objective(group) for group in groups]
        synchronize(device)
        t1 = time.perf_counter()
        stats = trainer.learner.step(objectives)
        synchronize(device)
        t2 = time.perf_counter()
        rows.append(
            {
                "terms_s": t1 - t0,
                "trpo_s": t2 - t1,
                "cg_s": stats.trpo.cg_s,
                "line_search_s": stats.trpo.line_search_s,
                "accepted": stats.trpo.accepted,
            }
        )
    steady = rows[1:] or rows
    return {
        "device": str(trainer.device),
        "first": rows[0],
        "median_terms_s": statistics.median(r["terms_s"] for r in steady),
        "median_trpo_s": statistics.median(r["trpo_s"] for r in steady),
        "median_cg_s": statistics.median(r["cg_s"] for r in steady),
        "repeats": rows,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="specs/navigation-2d.yaml")
    parser.add_argument("--devices", default="cpu,cuda", help="comma-separated, e.g. cpu,cuda")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shards", type=int, default=2, help="groups the meta-batch is sampled in (observers)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default="bench/results/trpo_step.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as the agent runs: its learner threads split the work by task
    keep_freed_memory()
    spec = load_spec(args.spec, args.set)
    first = MetaTrainer(spec)
    weights = first.cpu_weights()
    groups = sample_groups(spec, first, args.shards)
    results = {
        "spec": args.spec,
        "set": args.set,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "devices": {},
    }
    for device in args.devices.split(","):
        if device.startswith("cuda") and not torch.cuda.is_available():
            results["devices"][device] = {"skipped": "CUDA is not available here"}
            print(f"{args.spec} {device}: skipped (CUDA is not available here)", flush=True)
            continue
        if device.startswith("cuda"):
            results["gpu"] = torch.cuda.get_device_name()
        timing = time_device(spec, device, groups, weights, args.repeats)
        results["devices"][device] = timing
        print(
            f"{args.spec} {device}: terms {timing['median_terms_s']:.3f} s, TRPO step {timing['median_trpo_s']:.3f} s "
            f"(CG {timing['median_cg_s']:.3f} s); first repeat {timing['first']['trpo_s']:.3f} s",
            flush=True,
        )
    timed = {d: r for d, r in results["devices"].items() if "median_trpo_s" in r}
    if "cpu" in timed and len(timed) > 1:
        for device, r in timed.items():
            if device != "cpu":
                ratio = timed["cpu"]["median_trpo_s"] / r["median_trpo_s"]
                results[f"cpu/{device} TRPO step"] = ratio
                print(f"{args.spec}: TRPO step on {device} is {ratio:.1f}x faster than on the CPU", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
