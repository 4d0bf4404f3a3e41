"""The training loop of the agent: iterations, metrics, checkpoints, scheduled meta-tests, and every way out.

Whatever ends the run — success, Ctrl-C, SIGTERM, the last observer lost, a
bug — the state after the last completed iteration is checkpointed and the
console says where it is and how to continue.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from dh_maml.agents.agent import Agent, NoObserversLeft
from dh_maml.agents.progress import Progress, shell_command
from dh_maml.algorithms import Algorithm, Evaluation, EvaluationSettings
from dh_maml.checkpoint import save_checkpoint
from dh_maml.metrics import MetricsSink
from dh_maml.run_dir import checkpoint_path, kept_checkpoint_path

LAUNCH = Path(__file__).resolve().parents[1] / "launch.py"


async def evaluate(agent: Agent, algorithm: Algorithm, settings: EvaluationSettings | None = None) -> Evaluation:
    """The algorithm's evaluation of the current weights, its jobs spread over the observers."""
    return await algorithm.evaluate(agent.gather, agent.trainer, settings or EvaluationSettings())


async def train(agent: Agent, algorithm: Algorithm, run_dir: Path, sink: MetricsSink) -> int:
    """Train to ``experiment.iterations``, evaluating every ``meta_test.every`` iterations; returns the
    process exit code."""
    spec, trainer = agent.spec, agent.trainer
    ckpt = checkpoint_path(run_dir)
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        if not received:
            received.append(signum)
            main.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    snapshot = trainer.state_dict()
    saved = [snapshot["iteration"]] if ckpt.is_file() else []  # the iteration the checkpoint on disk holds
    resume = shell_command("python", LAUNCH, "train", "--resume", run_dir)

    def save(state: dict) -> None:
        save_checkpoint(state, ckpt)
        saved[:] = [state["iteration"]]

    def save_now(reason: str) -> None:
        """The last state, saved; when even that fails (a full disk), say what the disk still holds."""
        try:
            save(snapshot)
        except OSError as exc:
            held = f"{ckpt} still holds iteration {saved[0]}" if saved else "no checkpoint was ever written"
            tail = f"; continue from it with: {resume}" if saved else ""
            print(
                f"{reason}: could not save iteration {snapshot['iteration']} ({exc.strerror or exc}); {held}{tail}",
                file=sys.stderr,
                flush=True,
            )
            return
        print(
            f"{reason}: saved iteration {snapshot['iteration']} to {ckpt}; continue with: {resume}",
            file=sys.stderr,
            flush=True,
        )

    try:
        await agent.configure()
        agent.write_world(run_dir / "world.json")
        total = spec.experiment.iterations
        progress = Progress(total, trainer.iteration, algorithm.headline)
        where = "sampling in this process" if agent.live[0].name == "local" else f"{len(agent.live)} observer(s)"
        print(
            f"training {spec.experiment.name} ({spec.env.family}) with {where}, "
            f"iterations {trainer.iteration + 1}..{total} -> {run_dir}",
            flush=True,
        )
        while trainer.iteration < total:
            record = await agent.iterate()
            snapshot = trainer.state_dict()
            sink.log(record)
            progress.update(record)
            if trainer.iteration % spec.checkpoint.every == 0:
                await loop.run_in_executor(None, save, snapshot)
            keep = spec.checkpoint.keep_every
            if keep and trainer.iteration % keep == 0:
                kept = kept_checkpoint_path(run_dir, trainer.iteration)
                await loop.run_in_executor(None, save_checkpoint, snapshot, kept)
            if spec.meta_test.every and trainer.iteration % spec.meta_test.every == 0:
                result = await evaluate(agent, algorithm)
                out = run_dir / algorithm.evaluation_name / f"iter_{trainer.iteration:05d}.json"
                await loop.run_in_executor(None, result.write, out, f"{spec.experiment.name} @ {trainer.iteration}")
                progress.note(result.note())
        save(snapshot)
        print(
            f"done: {trainer.iteration} iterations; checkpoint {ckpt}\n"
            f"metrics: {run_dir / 'metrics.jsonl'}\n"
            f"view them: {shell_command('tensorboard', '--logdir', run_dir / 'tensorboard')}",
            flush=True,
        )
        return 0
    except asyncio.CancelledError:
        if not received:
            raise
        if hasattr(main, "uncancel"):  # Python >= 3.11: this task goes on to shut down cleanly
            main.uncancel()
        save_now(f"\nstopped by {signal.Signals(received[0]).name}")
        return 128 + received[0]
    except NoObserversLeft as exc:
        print(f"error: {exc}", file=sys.stderr)
        save_now("training cannot go on")
        return 1
    except OSError as exc:  # the run's files: a full disk, a folder removed or made read-only under it
        print(f"error: the run could not write {exc.filename or 'its files'} ({exc.strerror or exc})", file=sys.stderr)
        save_now("training stopped")
        return 1
    except BaseException:
        save_now(f"training failed during iteration {snapshot['iteration'] + 1}")
        raise
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await agent.close()
        sink.close()
