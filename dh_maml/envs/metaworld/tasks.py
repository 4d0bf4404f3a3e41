"""A Meta-World task: one class and one of its goals."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetaWorldTask:
    env_name: str  # Meta-World's class name, e.g. "push-v3"
    split: str  # "train" or "test": which of the benchmark's goal sets the goal comes from
    goal: int  # index of the goal in its class's set
    rand_vec: tuple[
        float, ...
    ]  # Meta-World's goal vector (object and target positions), carried so observers need no benchmark
