#!/usr/bin/env python
"""DH-MAML command line: train, evaluate, plot and check specs (run it with the project's .venv/bin/python).

launch.py train --spec specs/navigation-2d.yaml
launch.py test --run runs/navigation-2d/<stamp>
launch.py plot runs/navigation-2d/<stamp>
launch.py check-spec specs/*.yaml
launch.py show-spec specs/navigation-2d.yaml --set trpo.max_kl=0.02
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from dh_maml.user_errors import EXIT_BAD_INPUT, UsageError, reporting_user_errors

if TYPE_CHECKING:
    from dh_maml.agents.agent import Agent
    from dh_maml.algorithms import Algorithm, Trainer
    from dh_maml.runtime import Network
    from dh_maml.spec import NetworkSpec, Spec

MAX_OBSERVERS = 256  # per host; the spec's sampler.observers has the same bound
# what test --set may change: how a test adapts, scores and samples; never what was trained (networks, tasks)
TEST_SETTABLE = ("meta_test", "sampler", "maml", "mlsh")
TEST_FIXED = ("mlsh.num_subpolicies",)


def cmd_check_spec(args: argparse.Namespace) -> int:
    from dh_maml.spec import SpecError, load_spec

    failed = 0
    for path in args.specs:
        try:
            load_spec(path, args.set)
            print(f"ok    {path}")
        except (SpecError, FileNotFoundError) as exc:
            failed += 1
            print(f"error {exc}", file=sys.stderr)
    return EXIT_BAD_INPUT if failed else 0


def cmd_show_spec(args: argparse.Namespace) -> int:
    import yaml

    from dh_maml.spec import load_spec

    print(yaml.safe_dump(load_spec(args.spec, args.set).to_dict(), sort_keys=False), end="")
    return 0


def _check_device(device: str) -> None:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError(
            f"--device cuda: CUDA is not available here (torch {torch.__version__}, "
            f"built for CUDA: {torch.version.cuda or 'no'}); use --device cpu or run on a GPU machine"
        )


def _resolve_run(args: argparse.Namespace) -> tuple[Spec, Path, dict | None, Path | None]:
    """(spec, run directory, checkpoint state or None, its path or None) for train, from --spec or --resume."""
    from dh_maml.checkpoint import load_checkpoint
    from dh_maml.run_dir import checkpoint_path, new_run_dir, read_run_spec
    from dh_maml.spec import load_spec, with_overrides

    overrides = list(args.set)
    if args.interface is not None:
        overrides.append(f"network.interface={args.interface}")
    if args.transports is not None:
        overrides.append(f"network.transports=[{args.transports}]")
    if args.iterations is not None:
        overrides.append(f"experiment.iterations={args.iterations}")
    if args.device is not None:
        overrides.append(f"experiment.device={args.device}")
    if args.observers is not None:
        overrides.append(f"sampler.observers={args.observers}")
    if args.seed is not None:
        overrides.append(f"experiment.seed={args.seed}")
    if args.wandb:
        overrides.append("metrics.wandb.enabled=true")
    if args.resume:
        if args.spec is not None or args.run_dir is not None or args.baseline is not None:
            raise UsageError(
                "--resume RUN_DIR continues a run with its own spec and directory; drop --spec, --run-dir and "
                "--baseline"
            )
        run_dir = Path(args.resume)
        saved = checkpoint_path(run_dir)
        spec = with_overrides(read_run_spec(run_dir), overrides)
        return spec, run_dir, load_checkpoint(saved), saved
    if args.spec is None:
        raise UsageError("--spec SPEC is required unless --resume RUN_DIR is given")
    spec = load_spec(args.spec, overrides)
    if args.baseline is not None:
        from dh_maml.algorithms import get_algorithm

        algorithm = get_algorithm(spec.experiment.algorithm)
        if args.baseline not in algorithm.baselines:
            offered = ", ".join(sorted(algorithm.baselines)) or "none"
            raise UsageError(f"--baseline {args.baseline}: {algorithm.name} offers {offered}")
        spec = algorithm.baselines[args.baseline](spec)
    return spec, Path(args.run_dir) if args.run_dir else new_run_dir(spec), None, None


def _network(net: NetworkSpec, trusted: bool, multi_host: bool) -> Network:
    """The spec's ``network`` section, checked for this host."""
    from dh_maml.runtime import Network

    return Network.checked(net.interface, net.transports, net.channels, multi_host, trusted)


def make_trainer(spec: Spec, device: str = "cpu") -> tuple[Trainer, Algorithm]:
    """The learner of the spec's ``experiment.algorithm``, and the algorithm's bundle."""
    from dh_maml.algorithms import get_algorithm

    algorithm = get_algorithm(spec.experiment.algorithm)
    return algorithm.trainer(spec, device), algorithm


def cmd_train(args: argparse.Namespace) -> int:
    import shutil

    import torch

    from dh_maml.agents.processes import run_agent, start_observers, stop_processes
    from dh_maml.agents.progress import shell_command
    from dh_maml.agents.training import LAUNCH, train
    from dh_maml.checkpoint import restore
    from dh_maml.metrics import open_sink
    from dh_maml.observers.service import serve
    from dh_maml.run_dir import claim_run_dir, truncate_metrics, write_spec
    from dh_maml.runtime import host_world, torchrun_multi_host, torchrun_world

    if args.node_rank >= args.nnodes:
        raise UsageError(f"--node-rank {args.node_rank}: must be below --nnodes {args.nnodes}")
    if args.nnodes > 1 and args.master_addr is None:
        raise UsageError("--master-addr: required with --nnodes > 1 (the address of the host with --node-rank 0)")
    spec, run_dir, state, saved = _resolve_run(args)
    device, timeout_s, observers = spec.experiment.device, spec.sampler.timeout_s, spec.sampler.observers
    rendezvous_s = spec.sampler.rendezvous_timeout_s
    network = _network(spec.network, args.trust_network, args.nnodes > 1 or torchrun_multi_host())
    torchrun = torchrun_world(network, timeout_s, device, rendezvous_s)
    if torchrun is not None and torchrun.rank != 0:
        serve(torchrun)
    if torchrun is None and args.nnodes > 1 and observers == 0:
        raise UsageError("--observers 0 (sampling in the agent's process) works on one host only")
    if args.node_rank == 0:
        _check_device(device)

    def this_hosts_world() -> tuple:
        """(world, the observer ranks this host starts); made last, as a one-host world's store folder
        is created here and removed by ``run_agent``."""
        if torchrun is not None:
            return torchrun, range(0)
        if not observers:
            return None, range(0)
        return host_world(
            observers,
            timeout_s,
            network,
            args.nnodes,
            args.node_rank,
            args.master_addr,
            args.master_port,
            device,
            rendezvous_s,
        )

    if torchrun is None and args.node_rank > 0:  # a host with observers only: the agent configures them
        procs = start_observers(*this_hosts_world())
        try:
            for proc in procs:
                proc.join()
        finally:
            stop_processes(procs)
        return max((p.exitcode or 0) for p in procs)
    if state is not None and state["iteration"] >= spec.experiment.iterations:
        done = state["iteration"]
        more = shell_command("python", LAUNCH, "train", "--resume", run_dir, "--iterations", done + max(done // 2, 1))
        print(
            f"{run_dir} is complete ({done} of {spec.experiment.iterations} iterations); nothing to do. To train it "
            f"further, give a larger total: {more}"
        )
        return 0
    torch.set_num_threads(1)  # small tensors: parallel work is split by task instead
    trainer, algorithm = make_trainer(spec, device)
    fresh = state is None and not run_dir.exists()
    claim_run_dir(run_dir, resuming=state is not None)  # held until this process ends
    try:
        if state is not None:
            restore(trainer, state, saved)
            truncate_metrics(run_dir, trainer.iteration)
            print(f"resumed {run_dir} at iteration {trainer.iteration}")
        sink = open_sink(run_dir, spec, resume_at=trainer.iteration if state is not None else None)
        write_spec(spec, run_dir)
    except BaseException:
        if fresh:  # nothing half-written: a run that could not start leaves no directory
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return run_agent(trainer, *this_hosts_world(), lambda agent: train(agent, algorithm, run_dir, sink))


def _test_overrides(overrides: list[str]) -> list[str]:
    """``test --set`` values, refused where they would change what the checkpoint was trained as."""
    from dh_maml.spec import override_key

    for text in overrides:
        parts = override_key(text)  # the path the spec will apply, however the text spells it
        if len(parts) < 2 or parts[0] not in TEST_SETTABLE or ".".join(parts[:2]) in TEST_FIXED:
            raise UsageError(
                f"test --set {text}: a test may change the {', '.join(TEST_SETTABLE)} sections (not "
                f"{', '.join(TEST_FIXED)}), one key at a time, e.g. --set mlsh.macro_len=200; the networks and "
                "tasks are the trained run's"
            )
    return list(overrides)


def cmd_test(args: argparse.Namespace) -> int:
    import torch

    from dh_maml.agents.agent import NoObserversLeft
    from dh_maml.agents.processes import run_agent
    from dh_maml.agents.training import evaluate
    from dh_maml.algorithms import EvaluationSettings
    from dh_maml.checkpoint import load_checkpoint, restore
    from dh_maml.run_dir import checkpoint_path, read_run_spec
    from dh_maml.runtime import host_world
    from dh_maml.spec import with_overrides

    run_dir = Path(args.run)
    overrides = _test_overrides(args.set)
    if args.observers is not None:
        overrides.append(f"sampler.observers={args.observers}")
    if args.eval_episodes is not None:
        overrides.append(f"meta_test.eval_episodes={args.eval_episodes}")
    if args.scored_actions is not None:
        overrides.append(f"meta_test.scored_actions={args.scored_actions}")
    if args.balanced is not None:
        overrides.append(f"meta_test.balanced={str(args.balanced).lower()}")
    spec = with_overrides(read_run_spec(run_dir), overrides)
    torch.set_num_threads(1)  # small tensors: parallel work is split by task instead
    saved = args.checkpoint or checkpoint_path(run_dir)
    state = load_checkpoint(saved)
    trainer, algorithm = make_trainer(spec)
    restore(trainer, state, saved)
    if args.baseline_run and algorithm.load_baselines is None:
        raise UsageError(f"--baseline-run: {algorithm.name} has no baselines to compare with")
    baselines = algorithm.load_baselines([Path(r) for r in args.baseline_run], spec) if args.baseline_run else None
    settings = EvaluationSettings(args.tasks, args.steps, args.seed, True if args.paper_protocol else None, baselines)

    async def body(agent: Agent) -> int:
        try:
            await agent.configure()
            result = await evaluate(agent, algorithm, settings)
        except NoObserversLeft as exc:
            print(f"error: {exc}; the test wrote nothing", file=sys.stderr)
            return 1
        finally:
            await agent.close()
        out = Path(args.out) if args.out else run_dir / f"{algorithm.evaluation_name}.json"
        tested = {"checkpoint": str(saved), "iteration": trainer.iteration, "overrides": overrides}
        paths = result.write(out, spec.experiment.name, tested)
        if args.set:
            print("tested with " + " ".join(f"--set {text}" for text in args.set))
        for line in result.report():
            print(line)
        print("wrote " + ", ".join(map(str, paths)))
        return 0

    observers = spec.sampler.observers
    # A meta-test runs on one host: loopback, whatever interface the training run used.
    network = _network(dataclasses.replace(spec.network, interface="lo"), trusted=False, multi_host=False)
    world, ranks = (
        host_world(observers, spec.sampler.timeout_s, network, rendezvous_timeout_s=spec.sampler.rendezvous_timeout_s)
        if observers
        else (None, range(0))
    )
    return run_agent(trainer, world, ranks, body)


def cmd_plot(args: argparse.Namespace) -> int:
    from dh_maml.plots import plot_run

    for path in plot_run(args.run, args.out):
        print(f"wrote {path}")
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dh-maml")
    except PackageNotFoundError:
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="DH-MAML: distributed meta-reinforcement learning.",
        epilog="Run '%(prog)s COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser(
        "train",
        help="meta-train from a spec (agent + observers)",
        description="Meta-train from a spec. On one host this starts the agent and --observers observer "
        "processes on loopback. Across hosts, run the same command on every host with --nnodes, "
        "--node-rank and --master-addr; under torchrun the role comes from RANK.",
    )
    train.add_argument("--spec", help="YAML spec, e.g. specs/navigation-2d.yaml")
    train.add_argument(
        "--observers",
        type=_count(0, MAX_OBSERVERS),
        help="observer processes on this host (default sampler.observers; 0 samples inside the agent's process)",
    )
    train.add_argument("--iterations", type=_count(1), help="iterations in all (overrides experiment.iterations)")
    train.add_argument("--seed", type=_count(0), help="training seed (overrides experiment.seed)")
    train.add_argument("--wandb", action="store_true", help="also log to wandb (metrics.wandb.enabled=true)")
    train.add_argument("--run-dir", help="where to write the run (default runs/<experiment>/<timestamp>)")
    train.add_argument("--device", choices=["cpu", "cuda"], help="device of the learner (observers stay on CPU)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its latest checkpoint")
    train.add_argument(
        "--baseline",
        metavar="NAME",
        help="train one of the algorithm's baselines on the spec instead (MLSH: shared-policy, one flat policy "
        "on the same tasks and env steps, run named <experiment>-shared; oracle, the same on tasks of one latent "
        "goal, e.g. --set env.options.goal=0); compare with test --baseline-run",
    )
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec value, e.g. --set trpo.max_kl=0.02 (repeatable)",
    )
    hosts = train.add_argument_group("several hosts")
    hosts.add_argument("--nnodes", type=_count(1), default=1, help="hosts taking part (default 1)")
    hosts.add_argument("--node-rank", type=_count(0), default=0, help="this host's index; 0 runs the agent")
    hosts.add_argument("--master-addr", help="address of the host with --node-rank 0")
    hosts.add_argument(
        "--master-port",
        type=_count(1, 65535),
        help="its rendezvous port across hosts (default 29500; one host meets in a private file store, with no port)",
    )
    hosts.add_argument(
        "--interface",
        metavar="IFNAME",
        help="network interface TensorPipe listens on, this host's name for it (TP_SOCKET_IFNAME; "
        "default network.interface of the spec, lo)",
    )
    hosts.add_argument(
        "--transports",
        metavar="LIST",
        help="TensorPipe transports in order of preference, comma-separated: uv (TCP), shm "
        "(shared memory, busy-polls), ibv (InfiniBand); default network.transports, uv",
    )
    hosts.add_argument(
        "--trust-network",
        action="store_true",
        help="allow listening beyond loopback; TensorPipe runs what its peers send, so every host "
        "on that network is trusted",
    )
    train.set_defaults(func=cmd_train)

    test = sub.add_parser(
        "test",
        help="meta-test a trained policy on held-out tasks",
        description="Meta-test a saved policy on held-out tasks, fanned out over observers. "
        "MAML: returns after 0..K inner steps; writes JSON, CSV and PNG. MLSH: a "
        "fresh master adapts over the frozen sub-policies, beside flat PPO, "
        "untrained sub-policies and (--baseline-run) a shared policy; writes JSON and PNG.",
    )
    test.add_argument("--run", required=True, metavar="RUN_DIR", help="a run directory written by train")
    test.add_argument("--checkpoint", help="checkpoint file (default RUN_DIR/checkpoints/latest.pt)")
    test.add_argument(
        "--baseline-run",
        metavar="RUN_DIR",
        action="append",
        default=[],
        help="a run trained with train --baseline, compared with: its directory (latest.pt) or one of its "
        "checkpoints, e.g. RUN_DIR/checkpoints/iter-0400.pt to compare at equal rounds; repeat for several "
        "(MLSH: the shared policy and each latent goal's oracle, fine-tuned per held-out task beside the other "
        "methods)",
    )
    test.add_argument("--tasks", type=_count(1), help="number of held-out tasks (default meta_test.num_tasks)")
    test.add_argument(
        "--steps",
        type=_count(0),
        help="MAML: inner steps to evaluate after (default meta_test.num_steps); "
        "MLSH: master-adaptation iterations (default mlsh.adaptation_iterations)",
    )
    test.add_argument("--seed", type=_count(0), help="held-out task seed (default meta_test.seed of the run's spec)")
    test.add_argument("--paper-protocol", action="store_true", help="inner lr alpha for step 1, alpha/2 after")
    test.add_argument(
        "--eval-episodes",
        type=_count(0),
        help="MAML: episodes scored per task after each step, beside the adaptation episodes "
        "(default meta_test.eval_episodes; 0 scores the adaptation episodes)",
    )
    test.add_argument(
        "--scored-actions",
        choices=("sampled", "mean"),
        help="MAML: how scored episodes act, sampled or the policy's mean as Meta-World's evaluation does "
        "(default meta_test.scored_actions; mean needs --eval-episodes > 0)",
    )
    test.add_argument(
        "--balanced",
        action=argparse.BooleanOptionalAction,
        help="MAML, families with finitely many kinds of task (the direction families): hold out equally many "
        "of each kind, or (--no-balanced) draw them as training does (default meta_test.balanced)",
    )
    test.add_argument(
        "--observers", type=_count(0, MAX_OBSERVERS), help="observer processes (default sampler.observers of the run)"
    )
    test.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override how the test adapts and samples (keys of meta_test, sampler, maml, mlsh), e.g. "
        "--set mlsh.macro_len=200 (repeatable; the run's spec.yaml is left as it is)",
    )
    test.add_argument(
        "--out",
        help="JSON output path (default RUN_DIR/meta_test.json, MLSH: RUN_DIR/adaptation.json; "
        "the other files are written beside it)",
    )
    test.set_defaults(func=cmd_test)

    plot = sub.add_parser(
        "plot",
        help="draw a run's learning curves and iteration time split (PNG)",
        description="Draw RUN_DIR/metrics.jsonl: returns before and after adaptation per "
        "iteration with the spread across tasks, and where each iteration's time "
        "went. Works while the run is still training.",
    )
    plot.add_argument("run", metavar="RUN_DIR", help="a run directory written by train")
    plot.add_argument("--out", metavar="DIR", help="where to write the PNGs (default RUN_DIR/plots)")
    plot.set_defaults(func=cmd_plot)

    check = sub.add_parser("check-spec", help="validate specs; exit 0 if all are valid, 2 otherwise")
    check.add_argument("specs", nargs="+", metavar="SPEC")
    check.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    check.set_defaults(func=cmd_check_spec)

    show = sub.add_parser("show-spec", help="print a spec with every default and --set applied (YAML)")
    show.add_argument("spec", metavar="SPEC")
    show.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    show.set_defaults(func=cmd_show_spec)

    return parser


def _count(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in [minimum, maximum]; argparse reports a bad one with exit code 2."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            upper = f" and at most {maximum}" if maximum is not None else ""
            raise argparse.ArgumentTypeError(f"expected an integer of at least {minimum}{upper}, got {value}")
        return value

    return parse


def main(argv: list[str] | None = None) -> int:
    from dh_maml.runtime import keep_freed_memory

    args = build_parser().parse_args(argv)
    keep_freed_memory()
    return reporting_user_errors(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
