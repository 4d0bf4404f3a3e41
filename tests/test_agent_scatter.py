"""The agent's scatter loop with in-process stand-ins for observers: results, timings and failover."""

import asyncio
import concurrent.futures
import threading
from types import SimpleNamespace

import pytest
import torch

from dh_maml.agents.agent import Agent
from dh_maml.runtime import Timed


class StandIn:
    """Answers a job after ``delay_s`` with the job doubled, claiming ``compute_s`` of computing."""

    def __init__(self, name: str, delay_s: float, compute_s: float, fail: bool = False):
        self.name, self.delay_s, self.compute_s, self.fail = name, delay_s, compute_s, fail

    def run(self, entry, *args) -> asyncio.Future:
        async def answer():
            await asyncio.sleep(self.delay_s)
            if self.fail:
                raise ConnectionError(f"{self.name} is gone")
            return Timed([2 * x for x in args[0]], self.compute_s)

        return asyncio.ensure_future(answer())


def scatter(observers, jobs):
    agent = Agent(SimpleNamespace(spec=None), observers)
    got = []

    async def consume(job, result, observer):
        got.append((job, result))

    async def main():
        return await agent.scatter(
            jobs, lambda o, job: o.run(None, job), lambda job, n: [job[i::n] for i in range(n)], consume
        )

    return asyncio.run(main()), got, agent


def test_scatter_splits_time_into_each_observers_computing_and_transfer():
    times, got, _ = scatter([StandIn("a", 0.05, 0.04), StandIn("b", 0.15, 0.05)], [[1, 2], [3]])
    assert sorted(got) == [([1, 2], [2, 4]), ([3], [6])]
    assert times.compute_s == {"a": pytest.approx(0.04), "b": pytest.approx(0.05)}
    assert 0.09 <= times.transfer_s < 0.5  # b's round trip (>= 0.15 s) less its 0.05 s of computing
    assert times.waited_s >= 0.1


def test_a_failed_observers_job_is_split_over_the_survivors():
    times, got, agent = scatter([StandIn("a", 0.01, 0.01), StandIn("gone", 0.02, 0.0, fail=True)], [[1, 2], [3, 4]])
    assert [o.name for o in agent.live] == ["a"]
    assert sorted(x for _, result in got for x in result) == [2, 4, 6, 8]
    assert set(times.compute_s) == {"a"} and times.compute_s["a"] == pytest.approx(0.02)  # its own job and the lost one


def test_the_learner_thread_rounds_as_the_agents_process_does():
    """A new thread's first parallel ops take OpenMP's default thread count, not the process's; the dot
    products of the conjugate gradient then rounded differently in the first iteration after a resume."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        agent = Agent(SimpleNamespace(spec=None), [])
        a, b = torch.randn(2, 50_000, generator=torch.Generator().manual_seed(0))
        here = a.dot(b).item()

        async def main():
            return [await agent.compute(lambda: a.dot(b).item()) for _ in range(3)]

        assert asyncio.run(main()) == [here] * 3
    finally:
        torch.set_num_threads(before)


def test_an_iteration_stopped_during_the_update_releases_the_learner_thread():
    """A signal cancels the iteration while the update waits on observers (curvature products on the
    observers): the learner's waiting call must end, and a call it makes afterwards must fail at once —
    otherwise the thread waits for ever and the process never exits (seen as a SIGTERM that hung)."""

    class Holder:
        name = "held"

        def run(self, entry, *args):
            if entry == "sample":
                return asyncio.ensure_future(asyncio.sleep(0, Timed(SimpleNamespace(version=0), 0.0)))
            return asyncio.get_running_loop().create_future()  # a product that never comes back

    waiting, outcomes = threading.Event(), []

    def update(plan, holders):
        for _ in range(2):
            waiting.set()
            try:
                holders.call("product", lambda job: (job,))
                outcomes.append("answered")
            except concurrent.futures.CancelledError:
                outcomes.append("cancelled")

    trainer = SimpleNamespace(
        spec=None,
        plan=lambda n: SimpleNamespace(jobs=[[1]], version=0),
        cpu_weights=lambda: None,
        entry="sample",
        call_args=lambda plan, job, weights: (job,),
        split=lambda job, n: [job],
        consume=lambda plan, job, result: None,
        update=update,
    )
    agent = Agent(trainer, [Holder()])

    async def main():
        iteration = asyncio.ensure_future(agent.iterate())
        while not waiting.is_set():
            await asyncio.sleep(0.01)
        iteration.cancel()
        with pytest.raises(asyncio.CancelledError):
            await iteration
        for _ in range(500):  # the loop keeps running: only the cancellation can release the thread
            if len(outcomes) == 2:
                break
            await asyncio.sleep(0.01)

    asyncio.run(main())
    assert outcomes == ["cancelled", "cancelled"]
