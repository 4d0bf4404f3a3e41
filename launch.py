#!/usr/bin/env python
"""DH-MAML command line: train, meta-test and validate specs.

    python launch.py train --spec specs/navigation-2d.yaml
    python launch.py test --run runs/navigation-2d/<stamp>
    python launch.py check-spec specs/*.yaml
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

EXIT_BAD_INPUT = 2


def _format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def cmd_check_spec(args: argparse.Namespace) -> int:
    from dh_maml.spec import SpecError, load_spec

    failed = 0
    for path in args.specs:
        try:
            load_spec(path, args.set)
            print(f"ok    {path}")
        except SpecError as exc:
            failed += 1
            print(f"error {exc}", file=sys.stderr)
    return EXIT_BAD_INPUT if failed else 0


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from dh_maml.checkpoint import load_checkpoint, save_checkpoint
    from dh_maml.meta_test import write_meta_test
    from dh_maml.run_dir import append_jsonl, checkpoint_path, new_run_dir, read_run_spec, write_spec
    from dh_maml.spec import load_spec, with_overrides
    from dh_maml.trainer import LocalTrainer

    overrides = list(args.set)
    if args.iterations is not None:
        overrides.append(f"experiment.iterations={args.iterations}")
    if args.resume:
        run_dir = Path(args.resume)
        spec = with_overrides(read_run_spec(run_dir), overrides)
    else:
        if args.spec is None:
            raise SystemExit("launch.py train: --spec SPEC is required unless --resume RUN_DIR is given")
        spec = load_spec(args.spec, overrides)
        run_dir = Path(args.run_dir) if args.run_dir else new_run_dir(spec)
    if spec.experiment.device != "cpu":
        print(f"error: experiment.device: the in-process loop runs on 'cpu' only, got "
              f"'{spec.experiment.device}' (the CUDA learner comes with the distributed runtime)", file=sys.stderr)
        return EXIT_BAD_INPUT
    torch.set_num_threads(spec.sampler.torch_threads)
    write_spec(spec, run_dir)
    trainer = LocalTrainer(spec)
    ckpt = checkpoint_path(run_dir)
    if args.resume:
        trainer.load_state_dict(load_checkpoint(ckpt))
        print(f"resumed {run_dir} at iteration {trainer.iteration}")
    metrics_path = run_dir / "metrics.jsonl"
    total = spec.experiment.iterations
    print(f"training {spec.experiment.name} ({spec.env.family}) for {total} iterations -> {run_dir}")
    started, first = time.perf_counter(), trainer.iteration
    try:
        while trainer.iteration < total:
            record = trainer.iterate()
            append_jsonl(metrics_path, record)
            done = trainer.iteration - first
            eta = (time.perf_counter() - started) / done * (total - trainer.iteration)
            print(f"[{trainer.iteration:>4}/{total}] pre {record['returns/pre']:8.2f}  post {record['returns/post']:8.2f}"
                  f"  {record['time/iteration']:5.2f} s/it  ETA {_format_duration(eta)}", flush=True)
            if trainer.iteration % spec.checkpoint.every == 0:
                save_checkpoint(trainer.state_dict(), ckpt)
            if spec.meta_test.every and trainer.iteration % spec.meta_test.every == 0:
                result = trainer.meta_test()
                write_meta_test(result, run_dir / "meta_test" / f"iter_{trainer.iteration:05d}.json",
                                title=f"{spec.experiment.name} @ {trainer.iteration}")
                print("       meta-test: " + "  ".join(f"{k} step(s) {m:.2f}"
                                                      for k, m in zip(result.steps, result.mean)), flush=True)
    except KeyboardInterrupt:
        save_checkpoint(trainer.state_dict(), ckpt)
        print(f"\ninterrupted: saved iteration {trainer.iteration} to {ckpt}; "
              f"continue with: python launch.py train --resume {run_dir}", file=sys.stderr)
        return 130
    except BaseException:
        save_checkpoint(trainer.state_dict(), ckpt)
        print(f"training failed at iteration {trainer.iteration + 1}; saved iteration {trainer.iteration} "
              f"to {ckpt}", file=sys.stderr)
        raise
    finally:
        trainer.close()
    save_checkpoint(trainer.state_dict(), ckpt)
    print(f"done: checkpoint {ckpt}, metrics {metrics_path}")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    import torch

    from dh_maml.checkpoint import load_checkpoint
    from dh_maml.meta_test import meta_test_policy, write_meta_test
    from dh_maml.run_dir import checkpoint_path, read_run_spec

    run_dir = Path(args.run)
    spec = read_run_spec(run_dir)
    torch.set_num_threads(spec.sampler.torch_threads)
    state = load_checkpoint(args.checkpoint or checkpoint_path(run_dir))
    result = meta_test_policy(spec, state["policy"], tasks=args.tasks, steps=args.steps, seed=args.seed,
                              paper_protocol=True if args.paper_protocol else None)
    out = Path(args.out) if args.out else run_dir / "meta_test.json"
    paths = write_meta_test(result, out, title=spec.experiment.name)
    for k, m, s in zip(result.steps, result.mean, result.se):
        print(f"after {k} step(s): {m:9.2f} ± {s:.2f}")
    print("wrote " + ", ".join(map(str, paths)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="launch.py", description="DH-MAML: meta-reinforcement learning.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="meta-train from a spec")
    train.add_argument("--spec", help="YAML spec, e.g. specs/navigation-2d.yaml")
    train.add_argument("--iterations", type=int, help="meta-iterations (overrides experiment.iterations)")
    train.add_argument("--run-dir", help="where to write the run (default runs/<experiment>/<timestamp>)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its latest checkpoint")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a spec value, e.g. --set trpo.max_kl=0.02 (repeatable)")
    train.set_defaults(func=cmd_train)

    test = sub.add_parser("test", help="meta-test a trained policy on held-out tasks")
    test.add_argument("--run", required=True, metavar="RUN_DIR", help="a run directory written by train")
    test.add_argument("--checkpoint", help="checkpoint file (default RUN_DIR/checkpoints/latest.pt)")
    test.add_argument("--tasks", type=int, help="number of held-out tasks (default meta_test.num_tasks)")
    test.add_argument("--steps", type=int, help="inner steps to evaluate after (default meta_test.num_steps)")
    test.add_argument("--seed", type=int, help="held-out task seed (default meta_test.seed of the run's spec)")
    test.add_argument("--paper-protocol", action="store_true", help="inner lr alpha for step 1, alpha/2 after")
    test.add_argument("--out", help="JSON output path (CSV and PNG are written beside it)")
    test.set_defaults(func=cmd_test)

    check = sub.add_parser("check-spec", help="validate specs; exit 0 if all are valid, 2 otherwise")
    check.add_argument("specs", nargs="+", metavar="SPEC")
    check.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    check.set_defaults(func=cmd_check_spec)
    return parser


def _positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise SystemExit(f"launch.py: {name} must be a positive integer, got {value}")


def main(argv: list[str] | None = None) -> int:
    from dh_maml.spec import SpecError

    args = build_parser().parse_args(argv)
    for flag in ("iterations", "tasks"):
        _positive(f"--{flag}", getattr(args, flag, None))
    if getattr(args, "steps", None) is not None and args.steps < 0:
        raise SystemExit(f"launch.py: --steps must be >= 0, got {args.steps}")
    try:
        return args.func(args)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
