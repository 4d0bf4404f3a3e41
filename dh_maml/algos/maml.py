"""MAML: inner adaptation, per-group objectives, and the TRPO outer step.

Everything works on groups of tasks at once: parameters carry a leading task
axis (the meta-parameters broadcast to it), so one batched graph adapts and
scores every task of a group. The sampler side (``sample_group``) adapts
first-order, only to choose the parameters the validation episodes are sampled
with; the learner side (``MAMLTRPO.objective``) rebuilds the adaptation with the
full graph from one ``TaskGroup``, so groups can be fed in as they arrive.
"""

from __future__ import annotations

import copy
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from dh_maml.algos.trpo import TRPOStats, trpo_step
from dh_maml.baseline import LinearFeatureBaseline, advantages
from dh_maml.episodes import EpisodeBatch, masked_mean
from dh_maml.policies import Params, Policy
from dh_maml.sampling import Sampler


@dataclass
class TaskGroup:
    """What sampling a group of tasks produces: the batch of every inner step and the validation batch.

    Each batch is [tasks, T, episodes]; ``version`` is the weights version the group was sampled with.
    """

    task_ids: list[int]
    train: list[EpisodeBatch]
    valid: EpisodeBatch
    version: int = 0

    @property
    def num_steps(self) -> int:
        return sum(b.num_steps for b in (*self.train, self.valid))


def step_sizes(fast_lr: float, num_steps: int, paper_protocol: bool = False) -> list[float]:
    """Per-step inner learning rates: constant, or alpha then alpha/2 as in the MAML paper's evaluation."""
    return [fast_lr if (k == 0 or not paper_protocol) else fast_lr / 2 for k in range(num_steps)]


def broadcast(params: Params, num_tasks: int) -> Params:
    """The same parameters for every task, as a view with a leading task axis (gradients flow back)."""
    return {k: v.expand(num_tasks, *v.shape) for k, v in params.items()}


def detached(params: Params) -> Params:
    return {k: v.detach() for k, v in params.items()}


def inner_loss(policy: Policy, params: Params, batch: EpisodeBatch, per_task: bool = True) -> Tensor:
    """REINFORCE loss of each task with the batch's advantages; [tasks]."""
    outputs = policy.task_outputs(params, batch.observations, per_task)
    log_probs = policy.distribution(outputs).log_prob(batch.actions)
    return -masked_mean(log_probs * batch.advantages, batch.mask)


def adapt(policy: Policy, params: Params, batches: Sequence[EpisodeBatch], lrs: Sequence[float],
          create_graph: bool, per_task: bool = True) -> tuple[Params, Tensor]:
    """One gradient step per batch; also returns the first step's losses (detached).

    With ``per_task`` params (leading task axis) the tasks' losses are independent,
    so the gradient of their sum holds each task's own gradient in its slice;
    shared params adapt on a batch of one task. Without ``create_graph`` the
    result is first-order in ``params``.
    """
    if not per_task and batches[0].num_tasks != 1:
        raise ValueError("shared parameters adapt on one task at a time; broadcast them for several")
    first_losses = None
    for batch, lr in zip(batches, lrs):
        losses = inner_loss(policy, params, batch, per_task)
        first_losses = losses.detach() if first_losses is None else first_losses
        grads = torch.autograd.grad(losses.sum(), list(params.values()), create_graph=create_graph)
        params = {name: p - lr * g for (name, p), g in zip(params.items(), grads)}
    return params, first_losses


def with_advantages(batch: EpisodeBatch, baseline: LinearFeatureBaseline, maml_spec) -> EpisodeBatch:
    batch.advantages = advantages(batch, baseline, maml_spec.gamma, maml_spec.gae_lambda,
                                  maml_spec.normalize_advantages)
    return batch


def adaptation_batches(sampler: Sampler, params: Params, tasks: Sequence, maml_spec, lrs: Sequence[float],
                       seed: int, baseline: LinearFeatureBaseline) -> list[EpisodeBatch]:
    """Sample before each first-order inner step and after the last: ``len(lrs) + 1`` batches with advantages."""
    rng = np.random.default_rng(seed)
    policy, eps, n = sampler.policy, maml_spec.fast_batch_size, len(tasks)
    current, per_task = detached(params), False
    batches = []
    for k in range(len(lrs) + 1):
        batch = sampler.sample(current, list(tasks), eps, int(rng.integers(2**31)), per_task_params=per_task)
        batches.append(with_advantages(batch, baseline, maml_spec))
        if k < len(lrs):
            start = current if per_task else broadcast(current, n)
            start = {name: v.detach().requires_grad_() for name, v in start.items()}
            with torch.enable_grad():
                current = detached(adapt(policy, start, [batch], [lrs[k]], create_graph=False)[0])
            per_task = True
    return batches


def sample_group(sampler: Sampler, params: Params, tasks: Sequence, task_ids: Sequence[int], maml_spec,
                 baseline: LinearFeatureBaseline, seed: int, version: int = 0) -> TaskGroup:
    """The sampler side of one iteration for ``tasks``: every inner step's batch and the validation batch."""
    batches = adaptation_batches(sampler, params, tasks, maml_spec,
                                 step_sizes(maml_spec.fast_lr, maml_spec.num_steps), seed, baseline)
    return TaskGroup(list(task_ids), batches[:-1], batches[-1], version)


@dataclass
class TaskData:
    """One task's batches, trimmed to its own episodes: sliced once, scored at every line-search step."""

    task_id: int
    train: list[EpisodeBatch]
    valid: EpisodeBatch

    @staticmethod
    def of(group: TaskGroup, i: int) -> "TaskData":
        return TaskData(group.task_ids[i], [b.task(i) for b in group.train], group.valid.task(i))


@dataclass
class TaskObjective:
    """One task's post-adaptation surrogate loss and KL: scalars on the task's own graph."""

    data: TaskData = field(repr=False)
    loss: Tensor
    kl: Tensor
    inner_loss: float
    old_outputs: tuple[Tensor, ...] = field(repr=False)

    @property
    def task_id(self) -> int:
        return self.data.task_id


@dataclass
class GroupObjective:
    group: TaskGroup
    tasks: list[TaskObjective]

    @property
    def losses(self) -> Tensor:
        return torch.stack([t.loss for t in self.tasks])

    @property
    def kls(self) -> Tensor:
        return torch.stack([t.kl for t in self.tasks])

    @property
    def old_outputs(self) -> list[tuple[Tensor, ...]]:
        return [t.old_outputs for t in self.tasks]


@dataclass
class MetaStepStats:
    trpo: TRPOStats
    inner_loss: float


def split_evenly(ids: Sequence[int], parts: int) -> list[list[int]]:
    """Contiguous, nearly equal, non-empty parts (fewer than ``parts`` when there are fewer ids)."""
    return [list(map(int, s)) for s in np.array_split(np.asarray(ids, dtype=int), min(parts, len(ids)))]


class MAMLTRPO:
    """Learner side of MAML-TRPO: per-task objectives, then one TRPO step on their mean.

    Every task has its own graph, so the TRPO step's work splits into
    ``threads`` parts on disjoint graphs that run side by side (autograd
    releases the GIL); parts are fixed by task order, so results do not depend
    on thread timing or on the order groups arrived in.
    """

    def __init__(self, policy: Policy, maml_spec, trpo_spec, threads: int = 1):
        self.policy = policy
        self.maml = maml_spec
        self.trpo = trpo_spec
        self.lrs = step_sizes(maml_spec.fast_lr, maml_spec.num_steps)
        self.threads = threads
        self._pool = (ThreadPoolExecutor(threads, thread_name_prefix="trpo", initializer=torch.set_num_threads,
                                         initargs=(1,)) if threads > 1 else None)
        self._local = threading.local()

    def _module(self) -> Policy:
        """This thread's copy of the policy module. ``functional_call`` swaps a module's parameters while it
        runs, so threads calling it at once need their own copy; parameters are always passed explicitly."""
        if not hasattr(self._local, "policy"):
            self._local.policy = copy.deepcopy(self.policy)
        return self._local.policy

    def _map(self, fn: Callable, items: Sequence) -> list:
        return list(self._pool.map(fn, items) if self._pool else map(fn, items))

    def task_objective(self, data: TaskData, params: Params, old_outputs: tuple[Tensor, ...] | None,
                       create_graph: bool) -> TaskObjective:
        """Adapt on one task's train batches and score its validation batch (ratio surrogate).

        On a CPU one task's tensors stay in cache, which makes this faster than
        one graph batched over tasks. With no ``old_outputs`` the adapted policy
        itself is the old policy (KL 0, ratio 1, but with gradients), which is
        how the TRPO step starts.
        """
        policy = self._module()
        adapted, first = adapt(policy, params, data.train, self.lrs, create_graph, per_task=False)
        valid = data.valid
        outputs = policy.outputs(adapted, valid.observations)
        old = tuple(o.detach() for o in outputs) if old_outputs is None else old_outputs
        pi, old_pi = policy.distribution(outputs), policy.distribution(old)
        ratio = torch.exp(pi.log_prob(valid.actions) - old_pi.log_prob(valid.actions))
        loss = -masked_mean(ratio * valid.advantages, valid.mask)[0]
        kl = masked_mean(torch.distributions.kl_divergence(pi, old_pi), valid.mask)[0]
        return TaskObjective(data, loss, kl, first.item(), old)

    def objective(self, group: TaskGroup, params: Params | None = None,
                  old_outputs: list[tuple[Tensor, ...]] | None = None,
                  create_graph: bool | None = None) -> GroupObjective:
        """Every task's objective, with the second-order graph unless ``first_order``; build it on arrival."""
        params = self.policy.params() if params is None else params
        create_graph = (not self.maml.first_order) if create_graph is None else create_graph
        return GroupObjective(group, [
            self.task_objective(TaskData.of(group, i), params, None if old_outputs is None else old_outputs[i],
                                create_graph)
            for i in range(len(group.task_ids))])

    def _unflatten(self, vector: Tensor) -> Params:
        out, offset = {}, 0
        for name, p in self.policy.named_parameters():
            out[name] = vector[offset:offset + p.numel()].view_as(p)
            offset += p.numel()
        return out

    def step(self, objectives: Sequence[GroupObjective]) -> MetaStepStats:
        """TRPO on the mean over every task of every group; writes the accepted parameters into the policy."""
        tasks = sorted((t for o in objectives for t in o.tasks), key=lambda t: t.task_id)
        n = len(tasks)
        parts = [[tasks[j] for j in part] for part in split_evenly(range(n), self.threads)]
        losses = [[t.loss / n for t in part] for part in parts]  # the mean: one term per task
        kls = [[t.kl / n for t in part] for part in parts]

        def evaluate(vector: Tensor) -> tuple[float, float]:
            candidate = {k: v.detach().requires_grad_() for k, v in self._unflatten(vector).items()}

            def score(part: list) -> tuple[float, float]:
                with torch.enable_grad():
                    scored = [self.task_objective(t.data, candidate, t.old_outputs, False) for t in part]
                return sum(s.loss.item() for s in scored), sum(s.kl.item() for s in scored)

            sums = self._map(score, parts)
            return sum(s[0] for s in sums) / n, sum(s[1] for s in sums) / n

        params = list(self.policy.parameters())
        new, stats = trpo_step(losses, kls, params, evaluate, self.trpo, self._map)
        torch.nn.utils.vector_to_parameters(new, params)
        return MetaStepStats(stats, float(np.mean([t.inner_loss for t in tasks])))
