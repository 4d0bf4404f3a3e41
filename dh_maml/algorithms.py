"""The algorithm registry: ``experiment.algorithm`` names a bundle, and the bundle is all the processes know.

An ``Algorithm`` says how to build its learner, its observer-side rollout
service and its evaluation, what the console shows and what the plots draw.
``launch.py``, the agent, the observers and the plots look the bundle up here and
never ask which algorithm runs, so a new algorithm is a package and one line
in ``REGISTRY``.

Bundles are imported by name, only when used: a spec can be validated without
importing any algorithm, and an algorithm cannot import the registry in a
cycle. ``DH_MAML_ALGORITHMS`` (``name=module:attribute``, comma-separated) adds
algorithms from outside the package; spawned observers inherit it.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dh_maml.config import SpecError

REGISTRY: dict[str, str] = {
    "maml-trpo": "dh_maml.maml:ALGORITHM",
    "mlsh": "dh_maml.mlsh:ALGORITHM",
}
PLUGINS_VARIABLE = "DH_MAML_ALGORITHMS"


class Holders(Protocol):
    """The observers that returned an iteration's results, each still holding what it computed them from,
    for an update that asks them for more. ``call`` runs ``entry(rollouts, *args_of(job))`` on every job's
    holder side by side and blocks until all answered (updates run on the learner thread, never the event
    loop); a job whose holder failed (now or earlier) comes back once with None, its holder dropped, and is
    neither asked nor returned again."""

    def call(self, entry: Callable[..., Any], args_of: Callable[[Any], tuple]) -> list[tuple[Any, Any]]: ...


class Trainer(Protocol):
    """The learner the agent drives, the same loop for every algorithm: plan an iteration's jobs, send them
    with the weights to ``entry`` on the observers, consume each result as it arrives, update (``holders``:
    None where nobody holds anything, as in ``in_process``).

    A trainer may also have ``deferred()``: work its last ``update`` left (a callable, or None), which the
    agent runs on the learner thread while the next iteration samples, before that iteration's ``update``
    (MLSH's sub-policy update with ``mlsh.overlap_update``); ``cpu_weights`` and ``state_dict`` must not
    depend on whether it ran yet."""

    spec: Any
    family: Any
    iteration: int
    entry: Callable[..., Any]  # the observer-side service's method that runs one job

    def plan(self, num_shards: int) -> Any: ...
    def cpu_weights(self) -> dict[str, Any]: ...
    def call_args(self, plan: Any, job: Any, weights: dict[str, Any]) -> tuple: ...
    def split(self, job: Any, parts: int) -> list: ...
    def consume(self, plan: Any, job: Any, result: Any) -> None: ...
    def update(self, plan: Any, holders: Holders | None = None) -> Any: ...
    def record(self, plan: Any, stats: Any, wall: float, **times: float) -> dict[str, Any]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Rollouts(Protocol):
    """An observer's algorithm side, built from the run's spec; its methods are the jobs' entry points."""

    def close(self) -> None: ...


class Evaluation(Protocol):
    """An evaluation's result: files, console lines and a one-line note for a scheduled one."""

    def write(self, out: Path, title: str, tested: dict[str, Any] | None = None) -> list[Path]: ...
    def report(self) -> list[str]: ...
    def note(self) -> str: ...


# gather(entry, jobs, call_args): every job on the observers, results in job order
Gather = Callable[[Callable[..., Any], Sequence[Any], Callable[[Any], tuple]], Awaitable[list]]


@dataclass(frozen=True)
class EvaluationSettings:
    """What the command line asks of an evaluation; None takes the spec's value."""

    tasks: int | None = None
    steps: int | None = None
    seed: int | None = None
    paper_protocol: bool | None = None
    baselines: Any = None  # what ``Algorithm.load_baselines`` read from the baselines' runs, compared with


@dataclass(frozen=True)
class PlotKeys:
    """What ``launch.py plot`` draws from ``metrics.jsonl``: curves (key, label, key of its spread or None),
    the parts of an iteration's time (key, label), success-rate curves (key, label), drawn where the
    task family reports success, and curves per kind of task (key prefix, label): every logged key
    ``prefix + kind``, drawn where the family has kinds (the direction families' forward and backward)."""

    curves: tuple[tuple[str, str, str | None], ...]
    ylabel: str
    time_parts: tuple[tuple[str, str], ...]
    success: tuple[tuple[str, str], ...] = ()
    per_kind: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Algorithm:
    name: str
    trainer: Callable[[Any, str], Trainer]  # (spec, device) -> the learner
    rollouts: Callable[[Any], Rollouts]  # spec -> an observer's service
    evaluate: Callable[[Gather, Trainer, EvaluationSettings], Awaitable[Evaluation]]
    evaluation_name: str  # file stem of `launch.py test`'s output, folder of scheduled evaluations
    headline: tuple[tuple[str, str], ...]  # (label, metric key) pairs the progress line shows
    plots: PlotKeys
    # baselines a spec can be turned into (``launch.py train --baseline NAME``), which the evaluation then
    # compares with when given such runs (``launch.py test --baseline-run RUN``, repeatable)
    baselines: dict[str, Callable[[Any], Any]] = field(default_factory=dict)
    # (run directories, tested spec) -> what the evaluation compares with; read before the world starts, so a
    # run that does not fit fails at once
    load_baselines: Callable[[list[Path], Any], Any] | None = None


def names() -> list[str]:
    return sorted({**REGISTRY, **_plugins()})


def get_algorithm(name: str) -> Algorithm:
    """The bundle of ``experiment.algorithm``; the spec has already checked that ``name`` is registered."""
    target = {**REGISTRY, **_plugins()}.get(name)
    if target is None:
        raise SpecError([f"experiment.algorithm: no algorithm named {name!r} (registered: {', '.join(names())})"])
    module, attribute = target.split(":")
    return getattr(importlib.import_module(module), attribute)


def _plugins() -> dict[str, str]:
    entries = [e.strip() for e in os.environ.get(PLUGINS_VARIABLE, "").split(",") if e.strip()]
    out = {}
    for entry in entries:
        name, sep, target = entry.partition("=")
        if not sep or ":" not in target:
            raise SpecError([f"{PLUGINS_VARIABLE}: expected name=module:attribute entries, got {entry!r}"])
        out[name.strip()] = target.strip()
    return out


def split_evenly(ids: Sequence[int], parts: int) -> list[list[int]]:
    """Contiguous, nearly equal, non-empty parts (fewer than ``parts`` when there are fewer ids)."""
    return [list(map(int, s)) for s in np.array_split(np.asarray(ids, dtype=int), min(parts, len(ids)))]
