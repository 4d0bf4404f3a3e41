"""How the agent reaches an observer: over RPC, or a rollout thread in its own process.

Both return asyncio futures, so the agent's loop never blocks on either; the
rollouts' work comes back ``Timed`` from both.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from dh_maml.spec import spec_from_dict


def bridge(future: torch.futures.Future) -> asyncio.Future:
    """An asyncio future settled from a torch future's callback, on the loop's own thread."""
    loop = asyncio.get_running_loop()
    out = loop.create_future()

    def settle(done: torch.futures.Future) -> None:
        try:
            value, error = done.value(), None
        except BaseException as exc:
            value, error = None, exc
        try:
            loop.call_soon_threadsafe(_settle, out, value, error)
        except RuntimeError:  # the loop has already closed: nobody is waiting any more
            pass

    future.add_done_callback(settle)
    return out


def _settle(out: asyncio.Future, value: Any, error: BaseException | None) -> None:
    if out.cancelled():
        return
    if error is not None:
        out.set_exception(error)
    else:
        out.set_result(value)


LIFECYCLE = ("configure", "stop")  # the service's own entry points; every other call is the rollouts' work


class RemoteObserver:
    """An observer process, called through ``observers.service`` entry points."""

    def __init__(self, name: str, timeout_s: float):
        self.name = name
        self.timeout_s = timeout_s

    def call(self, method: str, *args: Any, timeout_s: float | None = None) -> asyncio.Future:
        from torch.distributed import rpc

        from observers import service

        fn, args = ((getattr(service, method), args) if method in LIFECYCLE else (service.work, (method, *args)))
        return bridge(rpc.rpc_async(self.name, fn, args=args, timeout=timeout_s or self.timeout_s))


class LocalObserver:
    """Rollouts on a thread of the agent's own process (``--observers 0``): same calls, no RPC."""

    name = "local"

    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="rollouts")
        self._rollouts = None

    def call(self, method: str, *args: Any, timeout_s: float | None = None) -> asyncio.Future:
        from observers.rollouts import identity, make_rollouts, timed

        def run() -> Any:
            if method == "configure":
                self._rollouts = make_rollouts(spec_from_dict(args[0], source="the agent"))
                return identity()
            if method == "stop":  # args: graceful, which only matters to a remote world
                if self._rollouts is not None:
                    self._rollouts.close()
                return None
            return timed(lambda: getattr(self._rollouts, method)(*args))

        return asyncio.get_running_loop().run_in_executor(self._thread, run)
