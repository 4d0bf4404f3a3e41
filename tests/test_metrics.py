import json
import threading
import time

import pytest

from dh_maml.metrics import JsonlBackend, MetricsSink, open_sink
from dh_maml.spec import load_spec


class Stuck:
    """A backend that blocks until released, like a stalled disk or network."""

    def __init__(self):
        self.release = threading.Event()
        self.steps = []

    def write(self, record, step):
        self.release.wait(10)
        self.steps.append(step)

    def close(self):
        pass


def test_a_stalled_backend_never_blocks_training_and_drops_are_counted(tmp_path):
    stuck = Stuck()
    sink = MetricsSink([stuck, JsonlBackend(tmp_path / "m.jsonl")], queue_size=2)
    start = time.perf_counter()
    accepted = [sink.log({"iteration": i, "x": float(i)}) for i in range(1, 11)]
    assert time.perf_counter() - start < 5.0  # far below the 10 s the backend is stuck for: nothing waited
    assert sink.dropped == accepted.count(False) >= 7
    stuck.release.set()
    while not sink.log({"iteration": 11}):  # the queue drains once the backend moves again
        time.sleep(0.01)
    sink.close()
    lines = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in lines] == stuck.steps
    assert lines[-1]["iteration"] == 11 and lines[-1]["metrics/dropped"] == sink.dropped  # the count travels on


def test_a_failing_backend_does_not_stop_the_others(tmp_path, capsys):
    class Broken:
        def write(self, record, step):
            raise OSError("disk full")

        def close(self):
            pass

    sink = MetricsSink([Broken(), JsonlBackend(tmp_path / "m.jsonl")])
    for i in (1, 2):
        sink.log({"iteration": i})
    sink.close()
    assert len((tmp_path / "m.jsonl").read_text().splitlines()) == 2
    assert sink.failures == ["Broken: disk full"]
    assert capsys.readouterr().err.count("disk full") == 1


def test_every_backend_uses_the_iteration_as_step(tmp_path):
    wandb = pytest.importorskip("wandb")
    spec = load_spec(None, ["metrics.wandb.enabled=true", "metrics.wandb.mode=offline"])
    sink = open_sink(tmp_path, spec)
    for i in (3, 4):
        sink.log({"iteration": i, "returns/post": -float(i)})
    sink.close()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [3, 4] and records[0]["metrics/dropped"] == 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("returns/post")] == [(3, -3.0), (4, -4.0)]
    offline = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(offline) == 1 and wandb.__version__
