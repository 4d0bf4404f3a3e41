"""Observer processes on this host: start them, notice when one dies too early, and leave none behind."""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable

from dh_maml.agents.agent import Agent, Trainer
from dh_maml.agents.handles import LocalObserver, RemoteObserver
from dh_maml.runtime import WorldConfig, join, leave, remove_store_dir


def start_observers(world: WorldConfig, ranks: range) -> list[mp.Process]:
    """One spawned process per rank (spawn, not fork: a forked torch runtime is not safe); each exits as
    soon as it finds this process gone."""
    from dh_maml.observers.service import serve

    ctx = mp.get_context("spawn")
    procs = []
    for rank in ranks:
        cfg = dataclasses.replace(world, rank=rank)
        proc = ctx.Process(target=serve, args=(cfg, os.getpid()), name=cfg.name, daemon=False)
        proc.start()
        procs.append(proc)
    return procs


class Interrupted(BaseException):
    """SIGINT or SIGTERM while the world assembles (later, the training loop handles them itself)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class StartupWatch:
    """Until ``ready()``, an observer that exits makes the whole launch fail fast instead of waiting for
    the rendezvous to time out; a signal to this process stops the launch instead (an observer that a
    terminal's Ctrl-C also reached is no failure)."""

    def __init__(self, procs: list[mp.Process], on_failure: Callable[[str], None]):
        self._procs = procs
        self._ready = threading.Event()
        self.interrupted = threading.Event()
        self._on_failure = on_failure
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._interrupt)
        threading.Thread(target=self._watch, name="startup-watch", daemon=True).start()

    def _interrupt(self, signum: int, frame: object) -> None:
        if not self.interrupted.is_set():
            self.interrupted.set()
            raise Interrupted(signum)

    def ready(self) -> None:
        self._ready.set()

    def _watch(self) -> None:
        while not self._ready.wait(0.5):
            if self.interrupted.is_set():
                return
            for proc in self._procs:
                if proc.exitcode is not None and not self.interrupted.is_set():
                    self._on_failure(
                        f"{proc.name} exited with code {proc.exitcode} before the world was up "
                        "(its error is printed above)"
                    )
                    return


def stop_processes(procs: list[mp.Process], timeout_s: float = 15.0) -> None:
    """Wait for observers to leave on their own, then terminate, then kill."""
    deadline = time.monotonic() + timeout_s
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
    for proc in procs:
        if proc.is_alive():
            print(f"warning: {proc.name} did not exit; terminating it", file=sys.stderr)
            proc.terminate()
            proc.join(3.0)
        if proc.is_alive():
            proc.kill()
            proc.join(3.0)


def _join_interruptibly(world: WorldConfig) -> None:
    """``init_rpc`` on a helper thread, so Ctrl-C is served while the world assembles."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            join(world)
        except BaseException as exc:
            failure.append(exc)

    joiner = threading.Thread(target=run, name="join-world", daemon=True)
    joiner.start()
    while joiner.is_alive():
        joiner.join(0.2)
    if failure:
        raise failure[0]


def run_agent(
    trainer: Trainer, world: WorldConfig | None, local_ranks: range, body: Callable[[Agent], Awaitable[int]]
) -> int:
    """Start this host's observers, join the world as the agent, run ``body(agent)``, and leave no process.

    ``world`` None means no RPC: one rollout thread in this process. Returns ``body``'s exit code.
    """
    if world is None:
        return asyncio.run(body(Agent(trainer, [LocalObserver()])))
    procs: list[mp.Process] = []

    def fail(message: str) -> None:
        print(f"error: {message}; nothing was trained, no checkpoint was touched", file=sys.stderr, flush=True)
        for proc in procs:
            proc.kill()
        remove_store_dir(world)
        os._exit(1)

    watch = StartupWatch(procs, fail)
    try:
        procs.extend(start_observers(world, local_ranks))
        try:
            _join_interruptibly(world)
        except RuntimeError as exc:  # TensorPipe's or Gloo's own words, first line only
            where = "on this host" if world.store_dir else f"at {world.master_addr}:{world.master_port}"
            fail(
                f"the RPC world did not assemble {where} ({str(exc).strip().splitlines()[0][:300]}); check that "
                "every host runs the same --nnodes and --observers, that --master-addr is reachable over each "
                "host's --interface"
            )
        watch.ready()
        timeout_s = trainer.spec.sampler.timeout_s
        agent = Agent(trainer, [RemoteObserver(name, timeout_s) for name in world.observers])
        code = asyncio.run(body(agent))
        leave(agent.world_intact)
        return code
    except Interrupted as stop:
        print(
            f"\nstopped by {signal.Signals(stop.signum).name} before training started; no checkpoint was touched",
            file=sys.stderr,
        )
        for proc in procs:
            proc.kill()
        return 128 + stop.signum
    finally:
        stop_processes(procs)
        remove_store_dir(world)
