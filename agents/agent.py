"""The asyncio agent: spreads work over the live observers and feeds what comes back to the learner.

The event loop only moves data. Building each group's graph and the TRPO step
run on one learner thread (``run_in_executor``), so RPC completions, signals and
the metrics hand-off are served while the learner computes. A group's
second-order graph is built as soon as it arrives, while other observers are
still sampling.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Protocol, Sequence

import numpy as np

from dh_maml.algos.maml import split_evenly
from dh_maml.meta_test import MetaTestChunk, MetaTestResult, held_out_chunks, meta_test_settings, summarize
from dh_maml.trainer import MetaTrainer, iteration_record


class NoObserversLeft(RuntimeError):
    pass


class StaleResult(RuntimeError):
    pass


class ObserverHandle(Protocol):
    name: str

    def call(self, method: str, *args: Any, timeout_s: float | None = None) -> asyncio.Future: ...


@dataclass
class Shard:
    """Tasks of one iteration sent to one observer, with the seed they are sampled with."""

    ids: list[int]
    seed: int


def split_shard(shard: Shard, parts: int) -> list[Shard]:
    """A failed shard cut for the survivors; seeds derived from the original so reruns are reproducible."""
    pieces = split_evenly(shard.ids, parts)
    return [Shard(ids, int(np.random.SeedSequence([shard.seed, i]).generate_state(1)[0]))
            for i, ids in enumerate(pieces)]


def split_list(items: list, parts: int) -> list[list]:
    return [items[i::parts] for i in range(min(parts, len(items)))]


class Agent:
    def __init__(self, trainer: MetaTrainer, observers: Sequence[ObserverHandle]):
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
                      split: Callable[[Any, int], list], consume: Callable[[Any, Any], Awaitable[None]]) -> float:
        """Run ``jobs`` on the live observers (job i on observer i mod n) and consume results as they arrive.

        A job whose observer fails or times out is split over the survivors and
        the observer is dropped. Returns the time spent waiting for results.
        """
        queue: asyncio.Queue = asyncio.Queue()

        def launch(observer: ObserverHandle, job: Any) -> None:
            future = asyncio.ensure_future(call(observer, job))
            future.add_done_callback(lambda f: queue.put_nowait((observer, job, f)))

        for i, job in enumerate(jobs):
            launch(self.live[i % len(self.live)], job)
        remaining, waited = len(jobs), 0.0
        while remaining:
            start = time.perf_counter()
            observer, job, future = await queue.get()
            waited += time.perf_counter() - start
            remaining -= 1
            error = future.exception()
            if error is None:
                try:
                    await consume(job, future.result())
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
        return waited

    async def iterate(self) -> dict[str, Any]:
        """One meta-iteration over the live observers; returns its metrics record."""
        t0 = time.perf_counter()
        trainer = self.trainer
        plan = trainer.plan(len(self.live))
        weights = trainer.cpu_weights()
        objectives, groups, last_arrival = [], [], t0

        def call(observer: ObserverHandle, shard: Shard) -> asyncio.Future:
            return observer.call("sample", plan.version, weights, [plan.tasks[i] for i in shard.ids], shard.ids,
                                 shard.seed)

        async def consume(shard: Shard, group) -> None:
            nonlocal last_arrival
            last_arrival = time.perf_counter()
            if group.version != plan.version:
                raise StaleResult(f"result of version {group.version} during version {plan.version}")
            objectives.append(await self.compute(trainer.objective, group))
            groups.append(group)

        shards = [Shard(ids, seed) for ids, seed in zip(plan.shards, plan.seeds)]
        waited = await self.scatter(shards, call, split_shard, consume)
        t1 = time.perf_counter()
        stats = await self.compute(trainer.update, objectives)
        t2 = time.perf_counter()
        record = iteration_record(trainer.iteration, groups, stats, wall=t2 - t0, sampling=last_arrival - t0,
                                  learner_wait=waited, graphs=t1 - t0 - waited, trpo=t2 - t1)
        record["observers/alive"] = len(self.live)
        return record

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
