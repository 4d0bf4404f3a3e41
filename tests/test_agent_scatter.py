"""The agent's scatter loop with in-process stand-ins for observers: results, timings and failover."""

import asyncio
import concurrent.futures
import threading
from types import SimpleNamespace

import pytest
import torch

from dh_maml.agents.agent import Agent, NoObserversLeft
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


class OneAtATime:
    """An observer as the real one is: calls run one after another on its rollout thread, and a call fails
    once ``timeout_s`` has passed since it was sent, queueing included (as an RPC's timeout counts)."""

    def __init__(self, name: str, job_s: float, timeout_s: float, fail_after: int | None = None):
        self.name, self.job_s, self.timeout_s, self.fail_after = name, job_s, timeout_s, fail_after
        self.lock, self.out, self.most_out, self.done = None, 0, 0, 0

    def run(self, entry, *args) -> asyncio.Future:
        self.lock = self.lock or asyncio.Lock()
        self.out += 1
        self.most_out = max(self.most_out, self.out)

        async def answer():
            async with self.lock:
                await asyncio.sleep(self.job_s)
                if self.fail_after is not None and self.done >= self.fail_after:
                    raise ConnectionError(f"{self.name} is gone")
                self.done += 1
                return Timed([2 * x for x in args[0]], self.job_s)

        async def timed():
            try:
                return await asyncio.wait_for(answer(), self.timeout_s)
            except asyncio.TimeoutError:
                raise RuntimeError("RPC ran for more than set timeout") from None
            finally:
                self.out -= 1

        return asyncio.ensure_future(timed())


def test_many_jobs_per_observer_do_not_time_out_while_they_wait_their_turn():
    """An evaluation sends far more jobs than observers; sent all at once, the last ones time out queueing
    (seen: an AntBandits meta-test whose jobs per observer summed past the 600 s timeout, every observer
    dropped)."""
    observers = [OneAtATime("a", 0.02, timeout_s=0.15), OneAtATime("b", 0.02, timeout_s=0.15)]
    jobs = [[i] for i in range(24)]  # 12 each: 0.24 s queued behind one another against a 0.15 s timeout
    _, got, agent = scatter(observers, jobs)
    assert sorted(got) == [([i], [2 * i]) for i in range(24)]
    assert [o.name for o in agent.live] == ["a", "b"]
    assert [o.done for o in observers] == [12, 12]  # job i on observer i mod n, as before
    assert max(o.most_out for o in observers) == 2


def test_a_lost_observers_waiting_jobs_go_to_the_survivors():
    observers = [OneAtATime("a", 0.01, timeout_s=1.0), OneAtATime("gone", 0.01, timeout_s=1.0, fail_after=1)]
    jobs = [[i] for i in range(10)]
    _, got, agent = scatter(observers, jobs)
    assert [o.name for o in agent.live] == ["a"]
    assert sorted(x for _, result in got for x in result) == [2 * i for i in range(10)]
    assert [o.done for o in observers] == [9, 1]


def test_when_every_observer_times_out_the_error_names_the_setting_to_raise():
    with pytest.raises(NoObserversLeft, match=r"--set sampler\.timeout_s=SECONDS"):
        scatter([OneAtATime("slow", 0.2, timeout_s=0.05)], [[1]])


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
