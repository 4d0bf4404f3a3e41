"""The MLSH adaptation test: how fast a fresh master learns held-out tasks over frozen sub-policies.

The methods run on the same held-out tasks with the same seeds and step
budget: ``mlsh`` (a fresh master and optimiser over the trained sub-policies,
master-only PPO), ``flat-ppo`` (one policy per task trained from scratch with
PPO), ``untrained-subpolicies`` (the same master adaptation over freshly
initialised sub-policies) and, given a shared-policy run, ``shared-policy``
(that run's one flat policy, meta-trained on the same task distribution for the
same env steps, fine-tuned per task by the update it was trained with). If the sub-policies
learned something shared, ``mlsh`` is ahead from the first iterations and the
master's choice tells which latent goal the task has; if the hierarchy is what
helps, it is also ahead of ``shared-policy``. Given a latent goal's oracle (a
flat policy trained where that goal always pays), ``oracle`` fine-tunes it on
that goal's held-out tasks: the return MLSH would reach if it knew the goal.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch

from dh_maml.algorithms import EvaluationSettings, Gather, Trainer
from dh_maml.envs.base import TaskFamily, TaskVectorEnv
from dh_maml.mlsh.policies import SubPolicies, make_master
from dh_maml.mlsh.ppo import adam
from dh_maml.mlsh.sampling import sample_hierarchy
from dh_maml.mlsh.shared import Baselines
from dh_maml.mlsh.updates import SlotJob, learn, run_slots, sub_minibatch, subpolicy_segments
from dh_maml.seeding import Stream, stream_rng

if TYPE_CHECKING:
    from dh_maml.spec import MLSHSpec, PolicySpec

METHODS = ("mlsh", "flat-ppo", "untrained-subpolicies", "shared-policy")  # run on every held-out task
FLAT = ("flat-ppo", "shared-policy", "oracle")  # one policy per task, trained with PPO


@dataclass
class AdaptationJob:
    """Some held-out tasks for one method; ``seeds`` are per task and shared by every method. ``start``: the
    weights a flat method starts from (the shared policy's), None for fresh ones."""

    method: str
    tasks: list
    seeds: list[int]
    start: dict[str, torch.Tensor] | None = None


@dataclass
class Curves:
    returns: np.ndarray  # [tasks, iterations] mean episode return of each iteration
    choices: np.ndarray  # [tasks, iterations, K] how often the master chose each sub-policy (zeros for flat PPO)


def _iteration_seed(seed: int, i: int) -> int:
    return int(np.random.SeedSequence([seed, i]).generate_state(1)[0])


def seeded_subpolicies(
    observation_space: gym.Space,
    action_space: gym.Space,
    num: int,
    policy_spec: PolicySpec,
    mlsh_spec: MLSHSpec,
    seed: int,
) -> SubPolicies:
    """``num`` sub-policies as ``mlsh_spec`` builds them, their initial weights drawn from ``seed`` alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SubPolicies(
            observation_space, action_space, num, policy_spec, mlsh_spec.shared_body, mlsh_spec.normalize_obs
        )


def master_adaptation(
    env: TaskVectorEnv,
    subpolicies: SubPolicies,
    tasks: Sequence,
    seeds: Sequence[int],
    mlsh_spec: MLSHSpec,
    policy_spec: PolicySpec,
    horizon: int,
    iterations: int,
) -> Curves:
    """Fresh masters (and optimisers) learn the tasks side by side over frozen sub-policies."""
    master_only = dataclasses.replace(mlsh_spec, warmup=iterations)
    states: list[Any] = [None] * len(tasks)
    returns = np.zeros((len(tasks), iterations))
    choices = np.zeros((len(tasks), iterations, len(subpolicies)))
    for i in range(iterations):
        jobs = [SlotJob(k, task, i, seeds[k], states[k], _iteration_seed(seeds[k], i)) for k, task in enumerate(tasks)]
        for r in run_slots(env, subpolicies, jobs, master_only, policy_spec, horizon):
            states[r.slot] = r.master
            returns[r.slot, i] = r.returns.mean().item()
            choices[r.slot, i] = r.choices.numpy()
    return Curves(returns, choices)


def flat_ppo(
    env: TaskVectorEnv,
    tasks: Sequence,
    seeds: Sequence[int],
    mlsh_spec: MLSHSpec,
    policy_spec: PolicySpec,
    horizon: int,
    iterations: int,
    lr: float,
    start: dict[str, torch.Tensor] | None = None,
) -> Curves:
    """A flat actor-critic per task, trained with the sub-policies' update settings at ``lr``, from scratch or
    from the weights ``start`` of a one-member ``SubPolicies``.

    It runs as a hierarchy of one sub-policy (the master has one choice), so it
    samples exactly like the other methods.
    """
    returns = np.zeros((len(tasks), iterations))
    space, actions = env.single_observation_space, env.single_action_space
    for k, (task, seed) in enumerate(zip(tasks, seeds)):
        flat = seeded_subpolicies(space, actions, 1, policy_spec, mlsh_spec, seed)
        if start is not None:
            flat.load_state_dict(start)
        master = make_master(space, 1, policy_spec, seed)
        optimizer = adam(flat.parameters(), lr)
        generator = torch.Generator().manual_seed(seed)
        for i in range(iterations):
            (roll,) = sample_hierarchy(
                env, flat, [master], [task], horizon, mlsh_spec.macro_len, 0.0, _iteration_seed(seed, i)
            )
            samples = subpolicy_segments(roll, mlsh_spec.macro_len, mlsh_spec.gamma, mlsh_spec.gae_lambda).samples
            learn(mlsh_spec, flat[0], optimizer, samples, sub_minibatch(mlsh_spec, len(samples)), generator)
            returns[k, i] = roll.episode_returns().mean().item()
    return Curves(returns, np.zeros((len(tasks), iterations, 0)))


def run_adaptation(
    env_for: Callable[[int], TaskVectorEnv],
    family: TaskFamily,
    trained: SubPolicies,
    job: AdaptationJob,
    mlsh_spec: MLSHSpec,
    policy_spec: PolicySpec,
    iterations: int,
    flat_lr: float,
) -> Curves:
    """One job's curves; ``env_for(n)`` gives a vector env of ``n`` sub-envs."""
    episodes = mlsh_spec.episodes
    common = (job.tasks, job.seeds, mlsh_spec, policy_spec, family.horizon, iterations)
    if job.method in FLAT:
        # from scratch at flat_lr; a trained policy (shared, oracle) goes on at the lr it was trained with: at
        # flat_lr, 10x DoorKey's sub_lr, PPO's steps took the shared policy from 0.96 to 0.58 in 10 iterations
        lr = flat_lr if job.start is None else mlsh_spec.sub_lr
        return flat_ppo(env_for(episodes), *common, lr, job.start)
    if job.method == "untrained-subpolicies":
        space, actions, seed = family.observation_space, family.action_space, job.seeds[0]
        subpolicies = seeded_subpolicies(space, actions, len(trained), policy_spec, mlsh_spec, seed)
    elif job.method == "mlsh":
        subpolicies = trained
    else:
        raise ValueError(f"adaptation method: expected one of {', '.join(METHODS)}, got {job.method!r}")
    return master_adaptation(env_for(episodes * len(job.tasks)), subpolicies, *common)


def held_out(family: TaskFamily, num_tasks: int, seed: int) -> tuple[list, list[int]]:
    """Held-out tasks and their seeds, from the meta-test stream (never the training one)."""
    rng = stream_rng(seed, Stream.META_TEST_TASKS)
    tasks = family.held_out_tasks(num_tasks, rng)
    return tasks, [int(s) for s in rng.integers(2**31, size=num_tasks)]


def adaptation_jobs(
    tasks: Sequence, seeds: Sequence[int], latents: Sequence[str], baselines: Baselines | None = None
) -> list[AdaptationJob]:
    """The masters of a method adapt side by side in one job; the flat methods train one policy per task, one
    job each (``shared-policy`` and ``oracle`` only given their weights, an oracle on its latent's tasks)."""
    baselines = baselines or Baselines()
    together = [AdaptationJob(m, list(tasks), list(seeds)) for m in ("mlsh", "untrained-subpolicies")]
    flat = [AdaptationJob("flat-ppo", [t], [s]) for t, s in zip(tasks, seeds)]
    if baselines.shared is not None:
        flat += [AdaptationJob("shared-policy", [t], [s], baselines.shared) for t, s in zip(tasks, seeds)]
    for t, s, latent in zip(tasks, seeds, latents):
        if latent in baselines.oracles:
            flat.append(AdaptationJob("oracle", [t], [s], baselines.oracles[latent]))
    return together + flat


def joined(jobs: Sequence[AdaptationJob], results: Sequence[Curves]) -> dict[str, Curves]:
    """Each method's curves over all tasks, in task order (the oracles apart: ``oracle_returns``)."""
    out = {}
    for method in METHODS:
        parts = [c for j, c in zip(jobs, results) if j.method == method]
        if parts:
            out[method] = Curves(np.concatenate([c.returns for c in parts]), np.concatenate([c.choices for c in parts]))
    return out


def oracle_returns(
    jobs: Sequence[AdaptationJob], results: Sequence[Curves], latent: Callable[[Any], str]
) -> dict[str, np.ndarray]:
    """Each oracle's returns [its latent's tasks, iterations], in task order."""
    out: dict[str, list[np.ndarray]] = {}
    for job, curves in zip(jobs, results):
        if job.method == "oracle":
            out.setdefault(latent(job.tasks[0]), []).append(curves.returns[0])
    return {k: np.stack(v) for k, v in out.items()}


def mutual_information_bits(latents: Sequence[Any], choices: np.ndarray) -> float:
    """I(chosen sub-policy; latent goal) in bits, from per-task choice counts [tasks, K]."""
    labels = sorted(set(latents), key=str)
    joint = np.array([choices[[i for i, lt in enumerate(latents) if lt == label]].sum(0) for label in labels])
    total = joint.sum()
    if total == 0:
        return 0.0
    p = joint / total
    outer = p.sum(1, keepdims=True) @ p.sum(0, keepdims=True)
    nz = p > 0
    return float((p[nz] * np.log2(p[nz] / outer[nz])).sum())


@dataclass
class AdaptationReport:
    iterations: int
    window: list[int]  # the iterations (1-based) the late means cover
    latents: list[str]  # each task's latent goal
    seeds: list[int]
    curves: dict[str, list[list[float]]]  # method -> [task][iteration]
    late_by_latent: dict[str, dict[str, float]]  # method -> latent -> mean return over the window
    auc: dict[str, list[float]]  # method -> per task: the sum of the returns of every iteration
    mlsh_beats_flat: int  # tasks where MLSH's area is larger than flat PPO's
    mutual_information_bits: float  # chosen sub-policy vs latent goal, MLSH over the window
    mlsh_beats_shared: int | None = None  # tasks where MLSH's area is larger than the shared policy's
    oracle_curves: dict[str, list[list[float]]] = dataclasses.field(default_factory=dict)  # latent -> [task][it.]
    # latent -> MLSH's mean return over the window on that latent's tasks / the oracle's (None: oracle's <= 0)
    of_oracle: dict[str, float | None] = dataclasses.field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        return [m for m in METHODS if m in self.curves]

    def write(self, out: Path, title: str, tested: dict[str, Any] | None = None) -> list[Path]:
        return write_report(self, out, title, tested)

    def report(self) -> list[str]:
        window = f"iterations {self.window[0]}-{self.window[-1]}"
        lines = []
        for method in self.methods:
            late = "  ".join(f"latent {k}: {v:6.2f}" for k, v in self.late_by_latent[method].items())
            lines.append(f"{method:>22}: mean return over {window}  {late}")
        for latent, curves in self.oracle_curves.items():
            late = float(np.mean(np.asarray(curves)[:, [w - 1 for w in self.window]]))
            lines.append(f"{'oracle of latent ' + latent:>22}: mean return over {window}  {late:6.2f}")
        shared = "" if self.mlsh_beats_shared is None else f", the shared policy's on {self.mlsh_beats_shared}"
        if self.of_oracle:
            shares = ", ".join(  # one decimal: a share of 79.85 % must not read as the criterion's 80 %
                f"{'n/a' if share is None else f'{100 * share:.1f} %'} on latent {latent}"
                for latent, share in self.of_oracle.items()
            )
            lines.append(f"MLSH's mean return over {window} against the per-goal oracle's: {shares}")
        return [
            *lines,
            f"MLSH's area under the first {self.iterations} iterations beats flat PPO's on {self.mlsh_beats_flat} "
            f"of {len(self.latents)} tasks{shared}; chosen sub-policy vs latent goal: "
            f"{self.mutual_information_bits:.2f} bits",
            f"{len(self.latents)} held-out tasks",
        ]

    def note(self) -> str:
        late = "  ".join(f"{m} {np.mean(list(self.late_by_latent[m].values())):.2f}" for m in self.methods)
        return f"adaptation test, iterations {self.window[0]}-{self.window[-1]}: {late}"


async def adaptation_test(gather: Gather, trainer: Trainer, settings: EvaluationSettings) -> AdaptationReport:
    """The adaptation test of the trained sub-policies on held-out tasks (``meta_test.num_tasks`` of them, from
    ``meta_test.seed``) over ``mlsh.adaptation_iterations`` master iterations, unless ``settings`` say
    otherwise; jobs spread over the observers."""
    from dh_maml.mlsh.rollouts import MLSHRollouts  # here: the rollouts import this module

    spec = trainer.spec
    iterations = spec.mlsh.adaptation_iterations if settings.steps is None else settings.steps
    seed = spec.meta_test.seed if settings.seed is None else settings.seed
    family = trainer.family.for_evaluation()
    tasks, seeds = held_out(family, spec.meta_test.num_tasks if settings.tasks is None else settings.tasks, seed)
    latent = lambda task: str(family.latent(task))
    jobs = adaptation_jobs(tasks, seeds, [latent(t) for t in tasks], settings.baselines)
    weights = trainer.cpu_weights()
    curves = await gather(MLSHRollouts.adaptation, jobs, lambda job: (weights, job, iterations, spec.mlsh.flat_lr))
    return summarize_curves(
        [latent(t) for t in tasks], seeds, joined(jobs, curves), oracle_returns(jobs, curves, latent)
    )


def summarize_curves(
    latents: Sequence[Any],
    seeds: Sequence[int],
    curves: dict[str, Curves],
    oracles: dict[str, np.ndarray] | None = None,
) -> AdaptationReport:
    iterations = curves["mlsh"].returns.shape[1]
    window = list(range(iterations // 2 + 1, iterations + 1))  # 6..10 for 10 iterations
    cols = [w - 1 for w in window]
    names = [str(lt) for lt in latents]
    late = {
        m: {
            label: float(c.returns[[i for i, n in enumerate(names) if n == label]][:, cols].mean())
            for label in sorted(set(names))
        }
        for m, c in curves.items()
    }
    auc = {m: c.returns.sum(1).tolist() for m, c in curves.items()}
    beats = lambda other: int(sum(a > b for a, b in zip(auc["mlsh"], auc[other])))
    mi = mutual_information_bits(names, curves["mlsh"].choices[:, cols].sum(1))
    oracles = oracles or {}
    oracle_late = {k: float(v[:, cols].mean()) for k, v in oracles.items()}
    of_oracle = {k: late["mlsh"][k] / v if v > 0 else None for k, v in oracle_late.items() if k in late["mlsh"]}
    return AdaptationReport(
        iterations,
        window,
        names,
        list(seeds),
        {m: c.returns.tolist() for m, c in curves.items()},
        late,
        auc,
        beats("flat-ppo"),
        mi,
        beats("shared-policy") if "shared-policy" in curves else None,
        {k: v.tolist() for k, v in oracles.items()},
        of_oracle,
    )


def write_report(
    result: AdaptationReport, out: str | Path, title: str, tested: dict[str, Any] | None = None
) -> list[Path]:
    """JSON at ``out`` (with ``tested``, how the test was run, when given), the learning curves as PNG beside
    it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**dataclasses.asdict(result), **({"tested": tested} if tested else {})}, indent=2))
    png = out.with_suffix(".png")
    x = np.arange(1, result.iterations + 1)
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in result.methods:
        returns = np.asarray(result.curves[method])
        se = returns.std(0, ddof=1) / np.sqrt(len(returns)) if len(returns) > 1 else np.zeros(len(x))
        ax.plot(x, returns.mean(0), marker="o", label=method)
        ax.fill_between(x, returns.mean(0) - se, returns.mean(0) + se, alpha=0.2)
    mlsh = np.asarray(result.curves["mlsh"])
    for label in sorted(set(result.latents)):
        rows = [i for i, n in enumerate(result.latents) if n == label]
        ax.plot(x, mlsh[rows].mean(0), linestyle="--", linewidth=1, label=f"mlsh, latent {label}")
    for label, curves in result.oracle_curves.items():
        ax.plot(x, np.asarray(curves).mean(0), linestyle=":", linewidth=1.5, label=f"oracle, latent {label}")
    ax.set_xlabel("adaptation iteration (fresh master)")
    ax.set_ylabel("mean episode return")
    ax.set_title(f"{title}: {len(result.latents)} held-out tasks (± s.e.)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return [out, png]
