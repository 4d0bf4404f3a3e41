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
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from dh_maml.algorithms import split_evenly
from dh_maml.maml.inner import TaskGroup, step_sizes
from dh_maml.maml.reference import AutogradBlock
from dh_maml.maml.task_terms import FlatBatch, ParamLayout, TaskBlock, Values, fast_path_unsupported
from dh_maml.policies import Policy
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
        blocks = []
        for ids in split_evenly(range(n), self.threads * math.ceil(n / (self.threads * BLOCK_TASKS))):
            lo, hi = ids[0], ids[-1] + 1
            train, valid = [b.tasks(lo, hi) for b in group.train], group.valid.tasks(lo, hi)
            second_order = not self.maml.first_order
            if self.curvature == "autograd":
                block = AutogradBlock(group.task_ids[lo:hi], self.policy, params, train, valid, self.lrs, second_order)
            else:
                block = TaskBlock(
                    group.task_ids[lo:hi],
                    self.policy,
                    self.layout,
                    params,
                    [FlatBatch.of(b) for b in train],
                    FlatBatch.of(valid),
                    self.lrs,
                    second_order,
                )
            blocks.append(block)
        return GroupObjective(group, blocks)

    def step(self, objectives: Sequence[GroupObjective]) -> MetaStepStats:
        """TRPO on the mean over every task of every group; writes the accepted parameters into the policy."""
        blocks = sorted((b for o in objectives for b in o.blocks), key=lambda b: b.task_ids[0])
        n = sum(len(b) for b in blocks)
        parts = [[blocks[j] for j in part] for part in split_evenly(range(len(blocks)), self.threads)]

        def mean_of(fn: Callable[[TaskBlock], Tensor]) -> Tensor:
            return sum(self._map(lambda part: sum(fn(b) for b in part), parts)) / n

        def product(v: Tensor) -> Tensor:
            values = self.layout.split(v)
            return mean_of(lambda b: flat(b.curvature_vp(values)))

        def evaluate(vector: Tensor) -> tuple[float, float]:
            candidate = self.layout.split(vector)
            sums = self._map(lambda part: np.sum([b.score(candidate) for b in part], axis=0), parts)
            loss, kl = np.sum(sums, axis=0) / n
            return float(loss), float(kl)

        params = list(self.policy.parameters())
        t0 = time.perf_counter()
        grads = mean_of(lambda b: flat(b.gradient()))
        gradient_s = time.perf_counter() - t0
        loss = float(sum(b.losses.sum().item() for b in blocks) / n)
        new, stats = trpo_step(grads, loss, product, flat(self.params()), evaluate, self.trpo)
        torch.nn.utils.vector_to_parameters(new, params)
        return MetaStepStats(stats, float(torch.cat([b.inner_losses for b in blocks]).mean()), gradient_s)
