"""Observer processes on this host: start them, notice when one dies too early, and leave none behind."""

from __future__ import annotations

import multiprocessing as mp
import socket
import sys
import threading
import time

from observers.world import WorldConfig


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def start_observers(world: WorldConfig, ranks: range) -> list[mp.Process]:
    """One spawned process per rank (spawn, not fork: a forked torch runtime is not safe)."""
    from observers.service import serve

    ctx = mp.get_context("spawn")
    procs = []
    for rank in ranks:
        cfg = WorldConfig(rank, world.world_size, world.master_addr, world.master_port, world.rpc_timeout_s,
                          world.init_method)
        proc = ctx.Process(target=serve, args=(cfg,), name=cfg.name, daemon=False)
        proc.start()
        procs.append(proc)
    return procs


class StartupWatch:
    """Until ``ready()``, an observer that exits makes the whole launch fail fast instead of waiting for
    the rendezvous to time out."""

    def __init__(self, procs: list[mp.Process], on_failure):
        self._procs = procs
        self._ready = threading.Event()
        self._on_failure = on_failure
        threading.Thread(target=self._watch, name="startup-watch", daemon=True).start()

    def ready(self) -> None:
        self._ready.set()

    def _watch(self) -> None:
        while not self._ready.wait(0.5):
            for proc in self._procs:
                if proc.exitcode is not None:
                    self._on_failure(f"{proc.name} exited with code {proc.exitcode} before the world was up "
                                     "(its error is printed above)")
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
