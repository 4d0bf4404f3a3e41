"""MAML: inner adaptation, per-task objectives, and the TRPO outer step.

The sampler side (``collect_task_results``) adapts first-order, only to choose
the parameters the validation episodes are sampled with. The learner side
rebuilds each task's adaptation with the full graph from one ``TaskResult``,
so results can be fed one at a time as they arrive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from dh_maml.algos.trpo import TRPOStats, trpo_step
from dh_maml.baseline import LinearFeatureBaseline, advantages
from dh_maml.episodes import EpisodeBatch, masked_mean
from dh_maml.policies import Params, Policy
from dh_maml.sampling import Sampler


@dataclass
class TaskResult:
    """What one task's sampling produces: the batch of every inner step and the validation batch."""

    task_id: int
    train: list[EpisodeBatch]
    valid: EpisodeBatch
    version: int = 0


def step_sizes(fast_lr: float, num_steps: int, paper_protocol: bool = False) -> list[float]:
    """Per-step inner learning rates: constant, or alpha then alpha/2 as in the MAML paper's evaluation."""
    return [fast_lr if (k == 0 or not paper_protocol) else fast_lr / 2 for k in range(num_steps)]


def inner_loss(policy: Policy, params: Params, batch: EpisodeBatch) -> Tensor:
    """REINFORCE loss with the batch's advantages."""
    log_probs = policy.dist(params, batch.observations).log_prob(batch.actions)
    return -masked_mean(log_probs * batch.advantages, batch.mask)


def adapt(policy: Policy, params: Params, batches: Sequence[EpisodeBatch], lrs: Sequence[float],
          create_graph: bool) -> Params:
    """One gradient step per batch. Without ``create_graph`` the result is first-order in ``params``."""
    for batch, lr in zip(batches, lrs):
        loss = inner_loss(policy, params, batch)
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
        params = {name: p - lr * g for (name, p), g in zip(params.items(), grads)}
    return params


def detached(params: Params) -> Params:
    return {k: v.detach() for k, v in params.items()}


def stack_params(per_task: Sequence[Params]) -> Params:
    return {k: torch.stack([p[k] for p in per_task]) for k in per_task[0]}


def with_advantages(batch: EpisodeBatch, baseline: LinearFeatureBaseline, maml_spec) -> EpisodeBatch:
    batch.advantages = advantages(batch, baseline, maml_spec.gamma, maml_spec.gae_lambda,
                                  maml_spec.normalize_advantages)
    return batch


def adapt_each(policy: Policy, params: Params, batches: Sequence[EpisodeBatch], lr: float,
               per_task_params: bool) -> Params:
    """One first-order step per task, from shared or per-task parameters; returns them stacked."""
    adapted = []
    for i, batch in enumerate(batches):
        start = {k: (v[i] if per_task_params else v).detach().requires_grad_() for k, v in params.items()}
        adapted.append(detached(adapt(policy, start, [batch], [lr], create_graph=False)))
    return stack_params(adapted)


def collect_task_results(sampler: Sampler, params: Params, tasks: Sequence, task_ids: Sequence[int],
                         maml_spec, baseline: LinearFeatureBaseline, rng: np.random.Generator,
                         version: int = 0) -> list[TaskResult]:
    """Sample every inner step's batch and the validation batch for all ``tasks`` at once."""
    policy, eps = sampler.policy, maml_spec.fast_batch_size
    lrs = step_sizes(maml_spec.fast_lr, maml_spec.num_steps)
    current, per_task = detached(params), False
    train: list[list[EpisodeBatch]] = [[] for _ in tasks]
    for lr in lrs:
        batch = sampler.sample(current, list(tasks), eps, int(rng.integers(2**31)), per_task_params=per_task)
        parts = [with_advantages(b, baseline, maml_spec) for b in batch.split(len(tasks))]
        for i, part in enumerate(parts):
            train[i].append(part)
        current, per_task = adapt_each(policy, current, parts, lr, per_task), True
    valid = sampler.sample(current, list(tasks), eps, int(rng.integers(2**31)), per_task_params=True)
    valid_parts = [with_advantages(b, baseline, maml_spec) for b in valid.split(len(tasks))]
    return [TaskResult(tid, train[i], valid_parts[i], version) for i, tid in enumerate(task_ids)]


@dataclass
class TaskObjective:
    """One task's post-adaptation surrogate loss and KL, with the graph back to the meta-parameters."""

    result: TaskResult
    loss: Tensor
    kl: Tensor
    inner_loss: float
    old_outputs: tuple[Tensor, ...] = field(repr=False)


@dataclass
class MetaStepStats:
    trpo: TRPOStats
    inner_loss: float


class MAMLTRPO:
    """Learner side of MAML-TRPO: per-task objectives, then one TRPO step on their mean."""

    def __init__(self, policy: Policy, maml_spec, trpo_spec):
        self.policy = policy
        self.maml = maml_spec
        self.trpo = trpo_spec
        self.lrs = step_sizes(maml_spec.fast_lr, maml_spec.num_steps)

    def objective(self, result: TaskResult, params: Params | None = None,
                  old_outputs: tuple[Tensor, ...] | None = None, create_graph: bool | None = None) -> TaskObjective:
        """Adapt on the task's train batches and score the validation batch (PPO-style ratio surrogate).

        With no ``old_outputs`` the adapted policy itself is the old policy (KL 0, ratio 1, but
        with gradients), which is how the TRPO step starts.
        """
        params = self.policy.params() if params is None else params
        create_graph = (not self.maml.first_order) if create_graph is None else create_graph
        first_loss = inner_loss(self.policy, params, result.train[0])
        adapted = adapt(self.policy, params, result.train, self.lrs, create_graph)
        valid = result.valid
        outputs = self.policy.outputs(adapted, valid.observations)
        if old_outputs is None:
            old_outputs = tuple(o.detach() for o in outputs)
        pi, old_pi = self.policy.distribution(outputs), self.policy.distribution(old_outputs)
        ratio = torch.exp(pi.log_prob(valid.actions) - old_pi.log_prob(valid.actions))
        loss = -masked_mean(ratio * valid.advantages, valid.mask)
        kl = masked_mean(torch.distributions.kl_divergence(pi, old_pi), valid.mask)
        return TaskObjective(result, loss, kl, first_loss.item(), old_outputs)

    def _evaluate(self, objectives: Sequence[TaskObjective], vector: Tensor) -> tuple[float, float]:
        candidate = {k: v.detach().requires_grad_() for k, v in self._unflatten(vector).items()}
        losses, kls = [], []
        for obj in objectives:
            with torch.enable_grad():
                o = self.objective(obj.result, candidate, obj.old_outputs, create_graph=False)
            losses.append(o.loss.item())
            kls.append(o.kl.item())
        return float(np.mean(losses)), float(np.mean(kls))

    def _unflatten(self, vector: Tensor) -> Params:
        out, offset = {}, 0
        for name, p in self.policy.named_parameters():
            out[name] = vector[offset:offset + p.numel()].view_as(p)
            offset += p.numel()
        return out

    def step(self, objectives: Sequence[TaskObjective]) -> MetaStepStats:
        """TRPO on the mean objective; writes the accepted parameters into the policy."""
        params = list(self.policy.parameters())
        loss = torch.stack([o.loss for o in objectives]).mean()
        kl = torch.stack([o.kl for o in objectives]).mean()
        new, stats = trpo_step(loss, kl, params, lambda v: self._evaluate(objectives, v), self.trpo)
        torch.nn.utils.vector_to_parameters(new, params)
        return MetaStepStats(stats, float(np.mean([o.inner_loss for o in objectives])))
