"""MAML's inner step on the sampler's side: sample, adapt, sample again.

``sample_group`` adapts a group of tasks at once, first order, with parameters
that carry a leading task axis: it only chooses the parameters the validation
episodes are sampled with. The learner (``learner.MAMLTRPO``) builds the exact
second-order terms from the ``TaskGroup`` it returns.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from dh_maml.baseline import LinearFeatureBaseline, advantages
from dh_maml.episodes import EpisodeBatch, masked_mean
from dh_maml.policies import Params, Policy
from dh_maml.sampling import Sampler

if TYPE_CHECKING:
    from dh_maml.spec import MAMLSpec


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

    def to(self, device: torch.device | str) -> TaskGroup:
        """Tensor.to semantics: no copy where the tensors already are on ``device``."""
        return TaskGroup(self.task_ids, [b.to(device) for b in self.train], self.valid.to(device), self.version)


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


def adapt(
    policy: Policy,
    params: Params,
    batches: Sequence[EpisodeBatch],
    lrs: Sequence[float],
    create_graph: bool,
    per_task: bool = True,
) -> tuple[Params, Tensor]:
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


def with_advantages(batch: EpisodeBatch, baseline: LinearFeatureBaseline, maml_spec: MAMLSpec) -> EpisodeBatch:
    batch.advantages = advantages(
        batch, baseline, maml_spec.gamma, maml_spec.gae_lambda, maml_spec.normalize_advantages
    )
    return batch


def adaptation_steps(
    sampler: Sampler,
    params: Params,
    tasks: Sequence,
    maml_spec: MAMLSpec,
    lrs: Sequence[float],
    seed: int,
    baseline: LinearFeatureBaseline,
) -> Iterator[tuple[EpisodeBatch, Params, bool]]:
    """Sample before each first-order inner step and after the last: ``len(lrs) + 1`` batches with advantages,
    each with the parameters it was sampled with (``per_task``: whether they carry a leading task axis)."""
    rng = np.random.default_rng(seed)
    policy, eps, n = sampler.policy, maml_spec.fast_batch_size, len(tasks)
    current, per_task = detached(params), False
    for k in range(len(lrs) + 1):
        batch = sampler.sample(current, list(tasks), eps, int(rng.integers(2**31)), per_task_params=per_task)
        batch = with_advantages(batch, baseline, maml_spec)
        yield batch, current, per_task
        if k < len(lrs):
            start = current if per_task else broadcast(current, n)
            start = {name: v.detach().requires_grad_() for name, v in start.items()}
            with torch.enable_grad():
                current = detached(adapt(policy, start, [batch], [lrs[k]], create_graph=False)[0])
            per_task = True


def sample_group(
    sampler: Sampler,
    params: Params,
    tasks: Sequence,
    task_ids: Sequence[int],
    maml_spec: MAMLSpec,
    baseline: LinearFeatureBaseline,
    seed: int,
    version: int = 0,
) -> TaskGroup:
    """The sampler side of one iteration for ``tasks``: every inner step's batch and the validation batch."""
    lrs = step_sizes(maml_spec.fast_lr, maml_spec.num_steps)
    batches = [batch for batch, _, _ in adaptation_steps(sampler, params, tasks, maml_spec, lrs, seed, baseline)]
    return TaskGroup(list(task_ids), batches[:-1], batches[-1], version)
