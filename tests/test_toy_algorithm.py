"""A third algorithm is a package and one registry line: a toy one, defined here only, runs end to end
through ``launch.py train`` with two observer processes, a scheduled evaluation and ``launch.py plot``.

The toy learns one number w towards 3: each job asks an observer for the squared error of w on some
"tasks"; the update takes a gradient step. The processes only move its data.
"""

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from conftest import ROOT

from dh_maml.algorithms import Algorithm, PlotKeys, split_evenly
from dh_maml.seeding import TrainingProgress

TARGET = 3.0


@dataclass
class Done:
    version: int
    errors: list[float]


@dataclass
class Plan:
    version: int
    jobs: list[list[int]]
    errors: dict[int, float] = field(default_factory=dict)


class ToyRollouts:
    def __init__(self, spec):
        self.spec = spec

    def errors(self, version: int, weights: dict, tasks: list[int]) -> Done:
        w = weights["w"].item()
        return Done(version, [(w + 0.01 * t - TARGET) ** 2 for t in tasks])

    def evaluate(self, weights: dict, task: int) -> float:
        return -abs(weights["w"].item() - TARGET) * task

    def close(self) -> None:
        pass


class ToyTrainer(TrainingProgress):
    entry = staticmethod(ToyRollouts.errors)

    def __init__(self, spec, device):
        super().__init__(spec)
        self.family = None
        self.w = torch.zeros(())

    def plan(self, num_shards):
        return Plan(self.iteration, [[int(t) for t in part] for part in split_evenly(range(8), num_shards)])

    def cpu_weights(self):
        return {"w": self.w.clone()}

    def call_args(self, plan, job, weights):
        return plan.version, weights, job

    def split(self, job, parts):
        return split_evenly(job, parts)

    def consume(self, plan, job, result):
        plan.errors.update(zip(job, result.errors))

    def update(self, plan, holders=None):
        self.w += 0.5 * (TARGET - self.w)
        self.iteration += 1
        return sum(plan.errors[t] for t in sorted(plan.errors))

    def record(self, plan, stats, wall, **times):
        return {
            "iteration": self.iteration,
            "returns/toy": -stats,
            "time/iteration": wall,
            **{f"time/{k}": v for k, v in times.items()},
        }

    def state_dict(self):
        return {"w": self.w.clone(), **self.progress_state()}

    def load_state_dict(self, state):
        self.w = state["w"]
        self.load_progress(state)


@dataclass
class ToyEvaluation:
    scores: list[float]

    def write(self, out: Path, title: str) -> list[Path]:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"title": title, "scores": self.scores}))
        return [out]

    def report(self) -> list[str]:
        return [f"toy scores {self.scores}"]

    def note(self) -> str:
        return f"toy evaluation: {sum(self.scores):.3f}"


async def toy_evaluation(gather, trainer, settings):
    weights = trainer.cpu_weights()
    return ToyEvaluation(await gather(ToyRollouts.evaluate, [1, 2, 3], lambda task: (weights, task)))


TOY = Algorithm(
    name="toy",
    trainer=ToyTrainer,
    rollouts=ToyRollouts,
    evaluate=toy_evaluation,
    evaluation_name="toy_eval",
    headline=(("toy", "returns/toy"),),
    plots=PlotKeys(
        curves=(("returns/toy", "toy return", None),), ylabel="toy return", time_parts=(("time/update", "update"),)
    ),
)


def test_a_toy_algorithm_runs_end_to_end_with_two_observers(tmp_path):
    env = {
        **os.environ,
        "DH_MAML_ALGORITHMS": "toy=test_toy_algorithm:TOY",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
    }
    run = tmp_path / "run"

    def launch(*args):
        return subprocess.run(
            [sys.executable, str(ROOT / "launch.py"), *map(str, args)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )

    train = launch(
        "train",
        "--spec",
        ROOT / "specs/navigation-2d.yaml",
        "--set",
        "experiment.algorithm=toy",
        "--set",
        "meta_test.every=2",
        "--iterations",
        4,
        "--observers",
        2,
        "--run-dir",
        run,
    )
    assert train.returncode == 0, train.stdout + train.stderr
    assert "with 2 observer(s)" in train.stdout and "done: 4 iterations" in train.stdout
    assert "toy evaluation: -4.500" in train.stdout  # after 2 updates w = 2.25: -0.75 * (1 + 2 + 3)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [1, 2, 3, 4] and all(r["observers/alive"] == 2 for r in records)
    # every task's error at the weights of its iteration: w = 0, 1.5, 2.25, 2.625
    for record, w in zip(records, (0.0, 1.5, 2.25, 2.625)):
        assert abs(record["returns/toy"] + sum((w + 0.01 * t - TARGET) ** 2 for t in range(8))) < 1e-9
    assert json.loads((run / "toy_eval" / "iter_00004.json").read_text())["scores"] == [-0.1875, -0.375, -0.5625]
    plot = launch("plot", run)
    assert plot.returncode == 0 and "learning_curve.png" in plot.stdout, plot.stdout + plot.stderr
    unknown = launch("check-spec", ROOT / "specs/navigation-2d.yaml", "--set", "experiment.algorithm=toyy")
    assert unknown.returncode == 2 and "unknown algorithm 'toyy' (did you mean 'toy'?)" in unknown.stderr
