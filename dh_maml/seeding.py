"""Named random streams derived from one seed, so each purpose draws independently.

Held-out meta-test tasks come from their own stream and so never coincide with training tasks,
even when the training seed and the meta-test seed are equal.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Stream(IntEnum):
    TRAIN_TASKS = 0
    TRAIN_SAMPLING = 1
    META_TEST_TASKS = 2


def stream_rng(seed: int, stream: Stream) -> np.random.Generator:
    return np.random.default_rng([seed, int(stream)])
