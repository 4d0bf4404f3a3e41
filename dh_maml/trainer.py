"""In-process MAML-TRPO: the whole loop in one process, no RPC (a notebook can run it)."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

import torch

from dh_maml.algos.maml import MAMLTRPO, collect_task_results
from dh_maml.baseline import LinearFeatureBaseline
from dh_maml.envs import make_family
from dh_maml.meta_test import MetaTestResult, run_meta_test
from dh_maml.policies import make_policy
from dh_maml.sampling import Sampler
from dh_maml.seeding import Stream, stream_rng
from dh_maml.spec import Spec

class LocalTrainer:
    def __init__(self, spec: Spec):
        self.spec = spec
        torch.manual_seed(spec.experiment.seed)
        self.family = make_family(spec.env)
        self.policy = make_policy(self.family.observation_space, self.family.action_space, spec.policy)
        self.sampler = Sampler(self.family, self.policy)
        self.baseline = LinearFeatureBaseline(spec.maml.baseline_reg)
        self.learner = MAMLTRPO(self.policy, spec.maml, spec.trpo)
        self.task_rng = stream_rng(spec.experiment.seed, Stream.TRAIN_TASKS)
        self.sample_rng = stream_rng(spec.experiment.seed, Stream.TRAIN_SAMPLING)
        self.iteration = 0

    def iterate(self) -> dict[str, Any]:
        """One meta-iteration; returns its metrics record."""
        spec = self.spec
        t0 = time.perf_counter()
        tasks = self.family.sample_tasks(spec.maml.meta_batch_size, self.task_rng)
        results = collect_task_results(self.sampler, self.policy.params(), tasks, range(len(tasks)), spec.maml,
                                       self.baseline, self.sample_rng, version=self.iteration)
        t1 = time.perf_counter()
        objectives = [self.learner.objective(r) for r in results]
        stats = self.learner.step(objectives)
        t2 = time.perf_counter()
        self.iteration += 1
        return iteration_record(self.iteration, results, stats, sampling=t1 - t0, trpo=t2 - t1)

    def meta_test(self) -> MetaTestResult:
        """Meta-test the current weights with the spec's ``meta_test`` settings, reusing this trainer's envs."""
        return run_meta_test(self.spec, self.sampler)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: weights, iteration, every RNG, the spec."""
        return {
            "policy": self.policy.state_dict(),
            "iteration": self.iteration,
            "task_rng": self.task_rng.bit_generator.state,
            "sample_rng": self.sample_rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "spec": self.spec.to_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.iteration = int(state["iteration"])
        self.task_rng.bit_generator.state = state["task_rng"]
        self.sample_rng.bit_generator.state = state["sample_rng"]
        torch.set_rng_state(state["torch_rng"])

    def close(self) -> None:
        self.sampler.close()


def iteration_record(iteration: int, results, stats, **times: float) -> dict[str, Any]:
    pre = torch.stack([r.train[0].episode_returns().mean() for r in results])
    post = torch.stack([r.valid.episode_returns().mean() for r in results])
    steps = sum(b.num_steps for r in results for b in (*r.train, r.valid))
    total = sum(times.values())
    record = {
        "iteration": iteration,
        "returns/pre": pre.mean().item(),
        "returns/pre_std": pre.std().item() if len(pre) > 1 else 0.0,
        "returns/post": post.mean().item(),
        "returns/post_std": post.std().item() if len(post) > 1 else 0.0,
        "loss/inner": stats.inner_loss,
        "env_steps": steps,
        "env_steps_per_s": steps / total if total > 0 else 0.0,
        "time/iteration": total,
    }
    trpo = asdict(stats.trpo)
    record.update({
        "loss/surrogate_before": trpo["loss_before"], "loss/surrogate_after": trpo["loss_after"],
        "kl/after": trpo["kl_after"], "cg/residual": trpo["cg_residual"], "line_search/steps": trpo["ls_steps"],
        "line_search/accepted": float(trpo["accepted"]), "step/norm": trpo["step_norm"],
    })
    record.update({f"time/{k}": v for k, v in times.items()})
    return record
