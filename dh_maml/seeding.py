"""Named random streams derived from one seed, so each purpose draws independently.

Held-out meta-test tasks come from their own stream and so never coincide with training tasks,
even when the training seed and the meta-test seed are equal.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

import numpy as np
import torch


class Stream(IntEnum):
    TRAIN_TASKS = 0
    TRAIN_SAMPLING = 1
    META_TEST_TASKS = 2


def stream_rng(seed: int, stream: Stream) -> np.random.Generator:
    return np.random.default_rng([seed, int(stream)])


class TrainingProgress:
    """What every learner keeps besides its weights: the iteration, its training streams and torch's
    generator, in the plain form a checkpoint holds."""

    def __init__(self, spec: Any):
        self.spec = spec
        torch.manual_seed(spec.experiment.seed)
        self.task_rng = stream_rng(spec.experiment.seed, Stream.TRAIN_TASKS)
        self.sample_rng = stream_rng(spec.experiment.seed, Stream.TRAIN_SAMPLING)
        self.iteration = 0

    def progress_state(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "task_rng": self.task_rng.bit_generator.state,
            "sample_rng": self.sample_rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "spec": self.spec.to_dict(),
        }

    def load_progress(self, state: dict[str, Any]) -> None:
        self.iteration = int(state["iteration"])
        self.task_rng.bit_generator.state = state["task_rng"]
        self.sample_rng.bit_generator.state = state["sample_rng"]
        torch.set_rng_state(state["torch_rng"])
