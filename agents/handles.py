"""How the agent reaches an observer: over RPC, or a rollout thread in its own process.

Both return asyncio futures, so the agent's loop never blocks on either; the
rollouts' work comes back ``Timed`` from both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import torch

from dh_maml.algorithms import Rollouts, get_algorithm
from dh_maml.runtime import compute_thread, identity, timed
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


def _service() -> Any:
    """The observers' entry-point module, imported when a remote world is used (an in-process run never
    loads RPC)."""
    from dh_maml.observers import service

    return service


class RemoteObserver:
    """An observer process, reached through the entry points of ``observers.service``."""

    def __init__(self, name: str, timeout_s: float):
        self.name = name
        self.timeout_s = timeout_s

    def _rpc(self, fn: Callable[..., Any], args: tuple, timeout_s: float | None) -> asyncio.Future:
        from torch.distributed import rpc

        return bridge(rpc.rpc_async(self.name, fn, args=args, timeout=timeout_s or self.timeout_s))

    def configure(self, spec_dict: dict) -> asyncio.Future:
        return self._rpc(_service().configure, (spec_dict,), None)

    def run(self, entry: Callable[..., Any], *args: Any) -> asyncio.Future:
        return self._rpc(_service().work, (entry, *args), None)

    def stop(self, graceful: bool, timeout_s: float) -> asyncio.Future:
        return self._rpc(_service().stop, (graceful,), timeout_s)


class LocalObserver:
    """Rollouts on a thread of the agent's own process (``--observers 0``): the same calls, no RPC."""

    name = "local"

    def __init__(self) -> None:
        self._thread = compute_thread("rollouts")
        self._rollouts: Rollouts | None = None

    def _submit(self, fn: Callable[[], Any]) -> asyncio.Future:
        return asyncio.get_running_loop().run_in_executor(self._thread, fn)

    def configure(self, spec_dict: dict) -> asyncio.Future:
        def build() -> dict[str, Any]:
            spec = spec_from_dict(spec_dict, source="the agent")
            self._rollouts = get_algorithm(spec.experiment.algorithm).rollouts(spec)
            return identity()

        return self._submit(build)

    def run(self, entry: Callable[..., Any], *args: Any) -> asyncio.Future:
        return self._submit(lambda: timed(lambda: entry(self._rollouts, *args)))

    def stop(self, graceful: bool, timeout_s: float) -> asyncio.Future:
        """``graceful`` only matters to a remote world."""
        return self._submit(lambda: self._rollouts.close() if self._rollouts is not None else None)
