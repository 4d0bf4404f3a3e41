"""The asyncio agent: spreads work over the live observers and feeds what comes back to the learner.

The event loop only moves data. What a trainer does with each arriving result
(for MAML, a group's second-order graph) and its update (the TRPO step) run on
one learner thread (``run_in_executor``), so RPC completions, signals and the
metrics hand-off are served while the learner computes, and results are taken
in while other observers are still sampling.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Protocol, Sequence

import numpy as np

from dh_maml.meta_test import MetaTestChunk, MetaTestResult, held_out_chunks, meta_test_settings, summarize

if TYPE_CHECKING:
    from observers.rollouts import Timed


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


class Trainer(Protocol):
    """What the agent needs of a learner (``MetaTrainer``, ``MLSHTrainer``): the loop is the same for both."""

    spec: Any
    family: Any
    iteration: int
    method: str  # the observers' entry point for one job
    headline: tuple[tuple[str, str], ...]  # (label, metric) pairs the console shows

    def plan(self, num_shards: int) -> Any: ...
    def cpu_weights(self) -> dict[str, Any]: ...
    def call_args(self, plan: Any, job: Any, weights: dict[str, Any]) -> tuple: ...
    def split(self, job: Any, parts: int) -> list: ...
    def consume(self, plan: Any, job: Any, result: Any) -> None: ...
    def update(self, plan: Any) -> Any: ...
    def record(self, plan: Any, stats: Any, wall: float, **times: float) -> dict[str, Any]: ...
    def state_dict(self) -> dict[str, Any]: ...


class ObserverHandle(Protocol):
    name: str

    def call(self, method: str, *args: Any, timeout_s: float | None = None) -> asyncio.Future: ...


def split_list(items: list, parts: int) -> list[list]:
    return [items[i::parts] for i in range(min(parts, len(items)))]


class Agent:
    def __init__(self, trainer: Trainer, observers: Sequence[ObserverHandle]):
        self.trainer = trainer
        self.spec = trainer.spec
        self.live: list[ObserverHandle] = list(observers)
        self.world_intact = True  # no observer lost: everyone can shut down gracefully
        self.identities: dict[str, dict] = {}
        self._learner = ThreadPoolExecutor(1, thread_name_prefix="learner")

    async def compute(self, fn: Callable, *args: Any) -> Any:
        """Run learner work off the event loop, on the one learner thread."""
        return await asyncio.get_running_loop().run_in_executor(self._learner, fn, *args)

    async def configure(self) -> dict[str, dict]:
        """Send every observer the run's spec (so remote hosts need no copy); returns their pid and host."""
        spec_dict = self.spec.to_dict()
        replies = await asyncio.gather(*(o.call("configure", spec_dict) for o in self.live), return_exceptions=True)
        for observer, reply in zip(list(self.live), replies):
            if isinstance(reply, BaseException):
                self._drop(observer, reply)
            else:
                self.identities[observer.name] = reply
        if not self.live:
            raise NoObserversLeft("no observer could be configured")
        return self.identities

    def _drop(self, observer: ObserverHandle, error: BaseException) -> None:
        self.world_intact = False
        if observer in self.live:
            self.live.remove(observer)
            print(f"warning: dropped {observer.name} ({type(error).__name__}: {str(error).strip()[:200]}); "
                  f"{len(self.live)} observer(s) left", file=sys.stderr, flush=True)

    async def scatter(self, jobs: list, call: Callable[[ObserverHandle, Any], asyncio.Future],
                      split: Callable[[Any, int], list],
                      consume: Callable[[Any, Any], Awaitable[None]]) -> ScatterTimes:
        """Run ``jobs`` on the live observers (job i on observer i mod n) and consume results as they arrive.

        A job whose observer fails or times out is split over the survivors and
        the observer is dropped. Returns where the time went.
        """
        queue: asyncio.Queue = asyncio.Queue()
        times = ScatterTimes()

        def launch(observer: ObserverHandle, job: Any) -> None:
            future, sent = asyncio.ensure_future(call(observer, job)), time.perf_counter()
            future.add_done_callback(lambda f: queue.put_nowait((observer, job, f, time.perf_counter() - sent)))

        for i, job in enumerate(jobs):
            launch(self.live[i % len(self.live)], job)
        remaining = len(jobs)
        while remaining:
            start = time.perf_counter()
            observer, job, future, round_trip = await queue.get()
            times.waited_s += time.perf_counter() - start
            remaining -= 1
            error = future.exception()
            if error is None:
                done: Timed = future.result()
                times.add(observer.name, done.compute_s, round_trip)
                try:
                    await consume(job, done.result)
                    continue
                except StaleResult as exc:
                    error = exc
            if not isinstance(error, StaleResult):
                self._drop(observer, error)
            if not self.live:
                raise NoObserversLeft(f"no observer left (the last error: {type(error).__name__}: {error})")
            for i, part in enumerate(split(job, len(self.live))):
                launch(self.live[i % len(self.live)], part)
                remaining += 1
        return times

    async def iterate(self) -> dict[str, Any]:
        """One iteration over the live observers; returns its metrics record.

        The trainer plans the jobs and owns what they mean; this loop only sends
        them with the weights (once per observer), turns stale replies away and
        hands each result to the learner thread as it arrives.
        """
        t0 = time.perf_counter()
        trainer = self.trainer
        plan = trainer.plan(len(self.live))
        weights = trainer.cpu_weights()
        last_arrival = t0

        def call(observer: ObserverHandle, job: Any) -> asyncio.Future:
            return observer.call(trainer.method, *trainer.call_args(plan, job, weights))

        async def consume(job: Any, result: Any) -> None:
            nonlocal last_arrival
            last_arrival = time.perf_counter()
            if result.version != plan.version:
                raise StaleResult(f"result of version {result.version} during version {plan.version}")
            await self.compute(trainer.consume, plan, job, result)

        times = await self.scatter(plan.jobs, call, trainer.split, consume)
        t1 = time.perf_counter()
        stats = await self.compute(trainer.update, plan)
        t2 = time.perf_counter()
        record = trainer.record(plan, stats, wall=t2 - t0, sampling=last_arrival - t0, learner_wait=times.waited_s,
                                consume=t1 - t0 - times.waited_s, update=t2 - t1, transfer=times.transfer_s,
                                **{f"observer/{name}": s for name, s in times.compute_s.items()})
        record["observers/alive"] = len(self.live)
        return record

    async def gather(self, method: str, jobs: Sequence[Any], call_args: Callable[[Any], tuple]) -> list:
        """The observers' ``method`` on every job, results in job order; a job whose observer is lost runs
        again, whole, on another."""
        results: dict[int, Any] = {}

        def call(observer: ObserverHandle, item: tuple[int, Any]) -> asyncio.Future:
            return observer.call(method, *call_args(item[1]))

        async def consume(item: tuple[int, Any], result: Any) -> None:
            results[item[0]] = result

        await self.scatter(list(enumerate(jobs)), call, lambda item, parts: [item], consume)
        return [results[i] for i in range(len(jobs))]

    async def meta_test(self, **settings: Any) -> MetaTestResult:
        """Meta-test the current weights on held-out tasks, chunks spread over the observers."""
        tasks, steps, seed, protocol = meta_test_settings(self.spec, **settings)
        chunks = list(enumerate(held_out_chunks(self.trainer.family, tasks, seed)))
        weights = self.trainer.cpu_weights()
        rows: dict[int, np.ndarray] = {}

        def call(observer: ObserverHandle, job: list[tuple[int, MetaTestChunk]]) -> asyncio.Future:
            return observer.call("meta_test", weights, [c for _, c in job], steps, protocol)

        async def consume(job: list[tuple[int, MetaTestChunk]], result: list[np.ndarray]) -> None:
            rows.update({i: r for (i, _), r in zip(job, result)})

        await self.scatter(split_list(chunks, len(self.live)), call, split_list, consume)
        return summarize(np.concatenate([rows[i] for i in sorted(rows)]), seed)

    async def close(self, timeout_s: float = 5.0) -> None:
        """Tell every live observer to leave (a dead or slow one is not waited for beyond ``timeout_s``)
        and release the learner thread."""
        calls = [asyncio.wait_for(o.call("stop", self.world_intact, timeout_s=timeout_s), timeout_s)
                 for o in self.live]
        replies = await asyncio.gather(*calls, return_exceptions=True)
        self.world_intact = self.world_intact and not any(isinstance(r, BaseException) for r in replies)
        self._learner.shutdown(wait=False, cancel_futures=True)

    def write_world(self, path: Path) -> None:
        """Who sampled for this run (name, pid, host): for the user, and for tests that kill one."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.identities, indent=2))
