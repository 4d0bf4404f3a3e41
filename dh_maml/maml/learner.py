"""MAML's outer step on the learner: each arriving ``TaskGroup`` becomes blocks of task terms, then one TRPO
step on their mean.

The terms come from the hand-derived fast path (``task_terms``) or from the
plain-autograd reference (``reference``), chosen by ``maml.curvature``.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor

from dh_maml.algorithms import split_evenly
from dh_maml.maml.inner import TaskGroup, step_sizes
from dh_maml.maml.reference import AutogradBlock
from dh_maml.maml.task_terms import FlatBatch, ParamLayout, TaskBlock, Values
from dh_maml.policies import Policy
from dh_maml.policies.mlp_products import fast_path_unsupported
from dh_maml.trpo import TRPOStats, flat, trpo_step

if TYPE_CHECKING:
    from dh_maml.spec import MAMLSpec, TRPOSpec


@dataclass
class GroupObjective:
    """A group's terms for the TRPO step, in blocks of tasks, built as soon as the group arrives."""

    group: TaskGroup
    blocks: list[TaskBlock]

    @property
    def losses(self) -> list[float]:
        """Each task's surrogate, in the group's task order."""
        return torch.cat([b.losses for b in self.blocks]).tolist()


@dataclass
class MetaStepStats:
    trpo: TRPOStats
    inner_loss: float
    gradient_s: float = 0.0  # seconds for the meta-gradient, before conjugate gradient


BLOCK_TASKS = 5  # tasks per block, at most; see MAMLTRPO


class MAMLTRPO:
    """Learner side of MAML-TRPO: per-task terms in blocks, then one TRPO step on their mean.

    A block's terms come from ``task_terms.TaskBlock`` (``maml.curvature: fast``) or its autograd
    reference ``reference.AutogradBlock`` (``autograd``; also taken, with a note, for a policy the fast
    path cannot take apart).

    Each arriving group becomes blocks of at most ``BLOCK_TASKS`` tasks, a
    multiple of ``threads`` of them (batched products, see ``task_terms``). The
    products are bound by arithmetic and memory traffic, not by Python; the
    block size trades the matrix products' efficiency against the cache (blocks
    of 5 measured fastest; docs/results.md). Tasks are independent, so the TRPO
    step's work splits into ``threads`` parts of blocks that run side by side
    (matrix products release the GIL). Blocks are summed in task order, so
    results do not depend on thread timing or on the order groups arrived in.
    With ``trpo.curvature_fraction`` < 1 each block also gets the first share of
    its tasks' episodes, on which its curvature products are estimated. The step
    itself (``take_step``) only sees ``Terms``: these blocks (``LocalTerms``), or
    the same blocks held by the observers (``held_terms``).
    """

    def __init__(self, policy: Policy, maml_spec: MAMLSpec, trpo_spec: TRPOSpec, threads: int = 1):
        self.policy = policy
        self.maml = maml_spec
        self.trpo = trpo_spec
        self.lrs = step_sizes(maml_spec.fast_lr, maml_spec.num_steps)
        self.curvature = maml_spec.curvature
        unsupported = fast_path_unsupported(policy) if self.curvature == "fast" else None
        if unsupported:
            print(
                f"note: maml.curvature=fast cannot take this policy apart ({unsupported}); using "
                "maml.curvature=autograd",
                file=sys.stderr,
                flush=True,
            )
            self.curvature = "autograd"
        self.layout = ParamLayout.of(policy)
        self.threads = threads
        self._pool = (
            ThreadPoolExecutor(threads, thread_name_prefix="trpo", initializer=torch.set_num_threads, initargs=(1,))
            if threads > 1
            else None
        )

    def _map(self, fn: Callable, items: Sequence) -> list:
        return list(self._pool.map(fn, items) if self._pool else map(fn, items))

    def params(self) -> Values:
        return [p.detach() for p in self.policy.parameters()]

    def objective(self, group: TaskGroup, params: Values | None = None) -> GroupObjective:
        """Every task's terms at ``params`` (default: the policy's); second order unless ``first_order``."""
        params = self.params() if params is None else params
        n = len(group.task_ids)
        second_order = not self.maml.first_order
        fraction = self.trpo.curvature_fraction
        blocks = []
        for ids in split_evenly(range(n), self.threads * math.ceil(n / (self.threads * BLOCK_TASKS))):
            lo, hi = ids[0], ids[-1] + 1
            train, valid = [b.tasks(lo, hi) for b in group.train], group.valid.tasks(lo, hi)
            fewer = [b.first_episodes(fraction) for b in (*train, valid)]
            curvature = None if all(f is b for f, b in zip(fewer, (*train, valid))) else (fewer[:-1], fewer[-1])
            if self.curvature == "autograd":
                block = AutogradBlock(
                    group.task_ids[lo:hi], self.policy, params, train, valid, self.lrs, second_order, curvature
                )
            else:
                flat_curvature = (
                    None if curvature is None else ([FlatBatch.of(b) for b in fewer[:-1]], FlatBatch.of(fewer[-1]))
                )
                block = TaskBlock(
                    group.task_ids[lo:hi],
                    self.policy,
                    self.layout,
                    params,
                    [FlatBatch.of(b) for b in train],
                    FlatBatch.of(valid),
                    self.lrs,
                    second_order,
                    flat_curvature,
                )
            blocks.append(block)
        return GroupObjective(group, blocks)

    def terms(self, objectives: Sequence[GroupObjective]) -> LocalTerms:
        return LocalTerms([b for o in objectives for b in o.blocks], self.layout, self.threads, self._map)

    def step(self, objectives: Sequence[GroupObjective]) -> MetaStepStats:
        """TRPO on the mean over every task of every group; writes the accepted parameters into the policy."""
        return self.take_step(self.terms(objectives))

    def take_step(self, terms: Terms) -> MetaStepStats:
        """TRPO on the mean of ``terms`` over their tasks, wherever they are computed; writes the accepted
        parameters into the policy."""
        params = list(self.policy.parameters())
        t0 = time.perf_counter()
        start = terms.start()
        n = start.tasks
        gradient_s = time.perf_counter() - t0
        old = flat(self.params())

        def evaluate(vector: Tensor) -> tuple[float, float]:
            loss, kl = terms.score(vector) / n
            return float(loss), float(kl)

        new, stats = trpo_step(
            start.gradient / n, start.loss / n, lambda v: terms.product(v) / n, old, evaluate, self.trpo
        )
        torch.nn.utils.vector_to_parameters(new, params)
        return MetaStepStats(stats, start.inner_loss / n, gradient_s)


@dataclass
class Sums:
    """Terms summed over some tasks at the start of the TRPO step: their count, surrogate gradient (flat),
    surrogate and first inner loss. Sums add up, so holders of different tasks report their own."""

    tasks: int
    gradient: Tensor
    loss: float
    inner_loss: float

    def __add__(self, other: Sums) -> Sums:
        return Sums(
            self.tasks + other.tasks,
            self.gradient + other.gradient,
            self.loss + other.loss,
            self.inner_loss + other.inner_loss,
        )

    def to(self, device: torch.device | str) -> Sums:
        return Sums(self.tasks, self.gradient.to(device), self.loss, self.inner_loss)


class Terms(Protocol):
    """Every task's terms as the TRPO step sees them, summed over the tasks in task order: here on the
    learner (``LocalTerms``), or on the observers that sampled them (``held_terms``)."""

    def start(self) -> Sums: ...
    def product(self, v: Tensor) -> Tensor: ...  # Σ over tasks of the KL's Hessian times the flat v
    def score(self, vector: Tensor) -> Tensor: ...  # [Σ surrogate, Σ KL] after adapting from the flat vector


class LocalTerms:
    """Blocks of task terms computed in this process, in ``threads`` parts that run side by side (matrix
    products release the GIL); blocks are summed in task order, so the results do not depend on thread
    timing or on the order their groups arrived in."""

    def __init__(self, blocks: Sequence[TaskBlock], layout: ParamLayout, threads: int, map_: Callable):
        self.blocks = sorted(blocks, key=lambda b: b.task_ids[0])
        self.layout = layout
        self.parts = [[self.blocks[j] for j in part] for part in split_evenly(range(len(self.blocks)), threads)]
        self._map = map_

    def _sum(self, fn: Callable[[TaskBlock], Any]) -> Any:
        return sum(self._map(lambda part: sum(fn(b) for b in part), self.parts))

    def start(self) -> Sums:
        return Sums(
            sum(len(b) for b in self.blocks),
            self._sum(lambda b: flat(b.gradient())),
            float(sum(b.losses.sum().item() for b in self.blocks)),
            float(sum(b.inner_losses.sum().item() for b in self.blocks)),
        )

    def product(self, v: Tensor) -> Tensor:
        values = self.layout.split(v)
        return self._sum(lambda b: flat(b.curvature_vp(values)))

    def score(self, vector: Tensor) -> Tensor:
        candidate = self.layout.split(vector)
        return self._sum(lambda b: torch.tensor(b.score(candidate), dtype=torch.float64))
