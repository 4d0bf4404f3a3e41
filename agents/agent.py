"""The asyncio agent: spreads work over the live observers and feeds what comes back to the learner.

The event loop only moves data. What a trainer does with each arriving result
(for MAML, a group's second-order graph) and its update (the TRPO step) run on
one learner thread (``run_in_executor``), so RPC completions, signals and the
metrics hand-off are served while the learner computes, and results are taken
in while other observers are still sampling.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import json
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from dh_maml.algorithms import Trainer
from dh_maml.runtime import Timed, compute_thread

CALLS_IN_FLIGHT = 2  # per observer


class NoObserversLeft(RuntimeError):
    pass


class StaleResult(RuntimeError):
    pass


@dataclass
class ScatterTimes:
    """Where a scatter's time went, seen from the agent."""

    waited_s: float = 0.0  # the loop waiting for the next result (the learner idle)
    compute_s: dict[str, float] = field(default_factory=dict)  # each observer's computing, summed over its jobs
    transfer_s: float = 0.0  # the slowest job's round trip less its computing: transfer and queueing

    def add(self, observer: str, compute_s: float, round_trip_s: float) -> None:
        self.compute_s[observer] = self.compute_s.get(observer, 0.0) + compute_s
        self.transfer_s = max(self.transfer_s, round_trip_s - compute_s)


class ObserverHandle(Protocol):
    """An observer as the agent sees it (``handles``): every call returns an asyncio future at once."""

    name: str

    def configure(self, spec_dict: dict) -> asyncio.Future: ...
    def run(self, entry: Callable[..., Any], *args: Any) -> asyncio.Future: ...
    def stop(self, graceful: bool, timeout_s: float) -> asyncio.Future: ...


class HolderSet:
    """``algorithms.Holders`` for one iteration: who returned which job. Calls come from the learner thread
    and run on the event loop, so the loop keeps serving while observers compute.

    ``close()`` ends the set: a call waiting on it returns no more and later calls fail at once, so a run
    stopped during the update never leaves the learner thread waiting on a loop that has gone (the
    interpreter would wait on that thread for ever at exit).
    """

    def __init__(self, agent: Agent, loop: asyncio.AbstractEventLoop):
        self.agent, self.loop = agent, loop
        self.held: list[tuple[ObserverHandle, Any]] = []
        self.compute_s = 0.0  # the slowest holder's computing in each call, summed over the calls
        self._pending: set[concurrent.futures.Future] = set()
        self._closed = False
        self._lock = threading.Lock()

    def call(self, entry: Callable[..., Any], args_of: Callable[[Any], tuple]) -> list[tuple[Any, Any]]:
        with self._lock:
            if self._closed:
                raise concurrent.futures.CancelledError("the update was stopped")
            future = asyncio.run_coroutine_threadsafe(self._call(entry, args_of), self.loop)
            self._pending.add(future)
        try:
            return future.result()
        finally:
            with self._lock:
                self._pending.discard(future)

    async def _call(self, entry: Callable[..., Any], args_of: Callable[[Any], tuple]) -> list[tuple[Any, Any]]:
        asked = [(o, job) for o, job in self.held if o in self.agent.live]
        replies = await asyncio.gather(*(o.run(entry, *args_of(job)) for o, job in asked), return_exceptions=True)
        out = [(job, None) for o, job in self.held if o not in self.agent.live]
        slowest = 0.0
        for (observer, job), reply in zip(asked, replies):
            if isinstance(reply, BaseException):
                self.agent.drop(observer, reply)
                out.append((job, None))
            else:
                out.append((job, reply.result))
                slowest = max(slowest, reply.compute_s)
        self.compute_s += slowest
        self.held = [(o, job) for o, job in self.held if o in self.agent.live]
        return out

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pending = list(self._pending)
        for future in pending:
            future.cancel()


def _hint(error: BaseException) -> str:
    """What to do about an observer's last error, where the agent knows."""
    if "timeout" in str(error):
        return "; one call may run for sampler.timeout_s seconds: raise it with --set sampler.timeout_s=SECONDS"
    return ""


def _timed(fn: Callable[[], Any]) -> float:
    """Run ``fn``; its wall time in seconds."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class Agent:
    def __init__(self, trainer: Trainer, observers: Sequence[ObserverHandle]):
        self.trainer = trainer
        self.spec = trainer.spec
        self.live: list[ObserverHandle] = list(observers)
        self.world_intact = True  # no observer lost: everyone can shut down gracefully
        self.identities: dict[str, dict] = {}
        self._learner = compute_thread("learner")

    async def compute(self, fn: Callable, *args: Any) -> Any:
        """Run learner work off the event loop, on the one learner thread."""
        return await asyncio.get_running_loop().run_in_executor(self._learner, fn, *args)

    async def configure(self) -> dict[str, dict]:
        """Send every observer the run's spec (so remote hosts need no copy); returns their pid and host."""
        spec_dict = self.spec.to_dict()
        replies = await asyncio.gather(*(o.configure(spec_dict) for o in self.live), return_exceptions=True)
        for observer, reply in zip(list(self.live), replies):
            if isinstance(reply, BaseException):
                self.drop(observer, reply)
            else:
                self.identities[observer.name] = reply
        if not self.live:
            raise NoObserversLeft("no observer could be configured")
        return self.identities

    def drop(self, observer: ObserverHandle, error: BaseException) -> None:
        self.world_intact = False
        if observer in self.live:
            self.live.remove(observer)
            print(
                f"warning: dropped {observer.name} ({type(error).__name__}: {str(error).strip()[:200]}); "
                f"{len(self.live)} observer(s) left",
                file=sys.stderr,
                flush=True,
            )

    async def scatter(
        self,
        jobs: list,
        call: Callable[[ObserverHandle, Any], asyncio.Future],
        split: Callable[[Any, int], list],
        consume: Callable[[Any, Any, ObserverHandle], Awaitable[None]],
    ) -> ScatterTimes:
        """Run ``jobs`` on the live observers (job i on observer i mod n) and consume results as they arrive
        (``consume(job, result, observer)``).

        An observer runs its calls one after another and a call's timeout
        counts from when it is sent, so each observer has at most
        ``CALLS_IN_FLIGHT`` calls out (one computing, one waiting so it never
        idles over a round trip) and the rest of its jobs wait here: otherwise
        the last of many long jobs (an evaluation's) would time out while it
        only queued. A job whose observer fails or times out is split over the
        survivors, its waiting jobs dealt to them, and the observer is dropped.
        Returns where the time went.
        """
        queue: asyncio.Queue = asyncio.Queue()
        times = ScatterTimes()
        waiting: dict[str, collections.deque] = {o.name: collections.deque() for o in self.live}
        out: collections.Counter = collections.Counter()

        def launch(observer: ObserverHandle, job: Any) -> None:
            out[observer.name] += 1
            future, sent = asyncio.ensure_future(call(observer, job)), time.perf_counter()
            future.add_done_callback(lambda f: queue.put_nowait((observer, job, f, time.perf_counter() - sent)))

        def deal(assigned: list) -> None:
            for i, job in enumerate(assigned):
                waiting[self.live[i % len(self.live)].name].append(job)
            for observer in self.live:
                while waiting[observer.name] and out[observer.name] < CALLS_IN_FLIGHT:
                    launch(observer, waiting[observer.name].popleft())

        deal(jobs)
        remaining = len(jobs)
        while remaining:
            start = time.perf_counter()
            observer, job, future, round_trip = await queue.get()
            times.waited_s += time.perf_counter() - start
            remaining -= 1
            out[observer.name] -= 1
            error = future.exception()
            if error is None:
                done: Timed = future.result()
                times.add(observer.name, done.compute_s, round_trip)
                try:
                    await consume(job, done.result, observer)
                    deal([])
                    continue
                except StaleResult as exc:
                    error = exc
            if not isinstance(error, StaleResult):
                self.drop(observer, error)
            if not self.live:
                last = f"{type(error).__name__}: {error}"
                raise NoObserversLeft(f"no observer left (the last error: {last}){_hint(error)}")
            orphans = [] if observer in self.live else list(waiting.pop(observer.name, ()))
            parts = split(job, len(self.live))
            remaining += len(parts)
            deal(parts + orphans)
        return times

    async def iterate(self) -> dict[str, Any]:
        """One iteration over the live observers; returns its metrics record.

        The trainer plans the jobs and owns what they mean; this loop only sends
        them with the weights (once per observer), turns stale replies away and
        hands each result to the learner thread as it arrives.
        """
        t0 = time.perf_counter()
        trainer = self.trainer
        left = trainer.deferred() if hasattr(trainer, "deferred") else None
        # the previous round's deferred update runs on the learner thread while the observers sample
        overlapped = None if left is None else asyncio.ensure_future(self.compute(_timed, left))
        plan = trainer.plan(len(self.live))
        weights = trainer.cpu_weights()
        last_arrival = t0
        holders = HolderSet(self, asyncio.get_running_loop())

        def call(observer: ObserverHandle, job: Any) -> asyncio.Future:
            return observer.run(trainer.entry, *trainer.call_args(plan, job, weights))

        async def consume(job: Any, result: Any, observer: ObserverHandle) -> None:
            nonlocal last_arrival
            last_arrival = time.perf_counter()
            if result.version != plan.version:
                raise StaleResult(f"result of version {result.version} during version {plan.version}")
            await self.compute(trainer.consume, plan, job, result)
            holders.held.append((observer, job))

        times = await self.scatter(plan.jobs, call, trainer.split, consume)
        overlapped_s = await overlapped if overlapped is not None else None
        t1 = time.perf_counter()
        try:
            stats = await self.compute(trainer.update, plan, holders)
        finally:  # stopped during the update (a signal): it waits on observers no more
            holders.close()
        t2 = time.perf_counter()
        record = trainer.record(
            plan,
            stats,
            wall=t2 - t0,
            sampling=last_arrival - t0,
            learner_wait=times.waited_s,
            consume=t1 - t0 - times.waited_s,
            update=t2 - t1,
            transfer=times.transfer_s,
            **{f"observer/{name}": s for name, s in times.compute_s.items()},
        )
        if holders.compute_s:
            record["time/holders"] = holders.compute_s
        if overlapped_s is not None:
            record["time/overlapped_update"] = overlapped_s
        record["observers/alive"] = len(self.live)
        return record

    async def gather(self, entry: Callable[..., Any], jobs: Sequence[Any], call_args: Callable[[Any], tuple]) -> list:
        """``entry`` on every job, results in job order; a job whose observer is lost runs again, whole, on
        another. Evaluations run through this (``dh_maml.algorithms.Gather``)."""
        results: dict[int, Any] = {}

        def call(observer: ObserverHandle, item: tuple[int, Any]) -> asyncio.Future:
            return observer.run(entry, *call_args(item[1]))

        async def consume(item: tuple[int, Any], result: Any, observer: ObserverHandle) -> None:
            results[item[0]] = result

        await self.scatter(list(enumerate(jobs)), call, lambda item, parts: [item], consume)
        return [results[i] for i in range(len(jobs))]

    async def close(self, timeout_s: float = 5.0) -> None:
        """Tell every live observer to leave (a dead or slow one is not waited for beyond ``timeout_s``)
        and release the learner thread."""
        calls = [asyncio.wait_for(o.stop(self.world_intact, timeout_s), timeout_s) for o in self.live]
        replies = await asyncio.gather(*calls, return_exceptions=True)
        self.world_intact = self.world_intact and not any(isinstance(r, BaseException) for r in replies)
        self._learner.shutdown(wait=False, cancel_futures=True)

    def write_world(self, path: Path) -> None:
        """Who sampled for this run (name, pid, host): for the user, and for tests that kill one."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.identities, indent=2))
