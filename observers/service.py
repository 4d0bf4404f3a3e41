"""An observer process: joins the RPC world and answers the agent's calls until told to stop.

Three remote entry points, ``configure``, ``work`` and ``stop``; ``work`` runs a
method of the algorithm's rollout service (the agent names it by the function
itself, e.g. ``MAMLRollouts.sample``, never by a string). Entry points are
``async_execution`` functions: they queue the work on the one rollout thread and
return a future at once, so no RPC thread ever blocks on a rollout and calls run
in the order they were queued. Nothing here knows which algorithm runs.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from torch.distributed import rpc

from dh_maml.algorithms import Rollouts, get_algorithm
from dh_maml.runtime import (
    Timed,
    WorldConfig,
    die_with_parent,
    identity,
    interface_address,
    join,
    keep_freed_memory,
    leave,
    timed,
)
from dh_maml.spec import spec_from_dict


class _Service:
    def __init__(self, idle_exit_s: float):
        self.rollouts: Rollouts | None = None
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="rollouts")
        self.stopped = threading.Event()
        self.graceful = False
        self.idle_exit_s = idle_exit_s
        self.last_heard = time.monotonic()
        self.result_device: str | None = None  # the agent's GPU when it set a CUDA device map to us
        self.address: str | None = None  # where this observer listens, for the run's world.json

    def submit(self, fn: Callable[[], Any]) -> torch.futures.Future:
        self.last_heard = time.monotonic()
        future: torch.futures.Future = torch.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:  # the agent sees the error instead of waiting for a timeout
                future.set_exception(exc)

        self.worker.submit(run)
        return future

    def ready(self) -> Rollouts:
        if self.rollouts is None:
            raise RuntimeError("observer not configured: the agent must call configure() first")
        return self.rollouts


_service = _Service(idle_exit_s=1800.0)


@rpc.functions.async_execution
def configure(spec_dict: dict) -> torch.futures.Future:
    """Build envs and the policy copy for the run's spec; returns this observer's pid, host and address."""

    def build() -> dict[str, Any]:
        spec = spec_from_dict(spec_dict, source="the agent")
        torch.set_num_threads(spec.sampler.torch_threads)
        if _service.rollouts is not None:
            _service.rollouts.close()
        _service.rollouts = get_algorithm(spec.experiment.algorithm).rollouts(spec)
        _service.idle_exit_s = spec.sampler.idle_exit_s
        return {**identity(), "address": _service.address}

    return _service.submit(build)


@rpc.functions.async_execution
def work(entry: Callable[..., Any], *args: Any) -> torch.futures.Future:
    """``entry(rollouts, *args)`` on the rollout thread, its result ``Timed``; ``entry`` is a method of the
    configured rollout service's class. A result that can move (a MAML ``TaskGroup``) goes back on the
    agent's GPU when the agent mapped this observer: the host-to-device copy then happens here, not on the
    learner's thread."""

    def run() -> Timed:
        done = timed(lambda: entry(_service.ready(), *args))
        if _service.result_device and hasattr(done.result, "to"):
            done.result = done.result.to(_service.result_device)
        return done

    return _service.submit(run)


def stop(graceful: bool) -> int:
    """The agent is done: acknowledge, then leave the world (``graceful`` when every rank is still alive)."""
    _service.graceful = graceful
    _service.stopped.set()
    return os.getpid()


def serve(cfg: WorldConfig, parent: int | None = None) -> None:
    """Process main of an observer; never returns (exits hard so no thread can keep it alive). ``parent``:
    the pid of the launcher that spawned it, which it must not outlive."""
    die_with_parent(parent)
    keep_freed_memory()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the agent decides
    torch.set_num_threads(1)
    _service.result_device = cfg.result_device
    _service.address = interface_address(cfg.network.interface)
    code = 0
    try:
        join(cfg)
        while not _service.stopped.wait(1.0):
            if time.monotonic() - _service.last_heard > _service.idle_exit_s:
                print(
                    f"{cfg.name}: nothing from the agent for {_service.idle_exit_s:.0f} s; exiting",
                    file=sys.stderr,
                    flush=True,
                )
                code = 1
                break
        time.sleep(0.2)  # let the reply to stop() leave first
        leave(_service.graceful)
    except Exception as exc:
        print(f"{cfg.name}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
