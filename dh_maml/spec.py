"""Experiment specs: YAML -> typed, validated dataclasses.

Precedence is defaults < YAML < command-line overrides (``--set trpo.max_kl=0.02``).
Every error names the key path, the offending value and what was expected, so a
user never has to read a traceback to fix a spec.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dh_maml import algorithms
from dh_maml.config import (
    SpecError,
    bounds,
    build_dataclass,
    load_yaml,
    matching,
    one_of,
    unknown_key_message,
)
from dh_maml.envs import validate_env_spec

MAX_SEED = 2**32 - 1  # what numpy's and torch's generators take from one integer
WEEK_S = 7 * 24 * 3600.0  # the longest timeout


@dataclass
class ExperimentSpec:
    # a folder name under runs/: letters, digits, '.', '_' and '-'
    name: str = field(
        default="experiment",
        metadata=matching(
            r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", "a name of letters, digits, '.', '_' and '-' (at most 100)"
        ),
    )
    algorithm: str = "maml-trpo"  # a name in dh_maml.algorithms
    seed: int = field(default=0, metadata=bounds(0, MAX_SEED))
    iterations: int = field(default=50, metadata=bounds(1, 10**9))
    device: str = field(default="cpu", metadata=one_of("cpu", "cuda"))
    learner_threads: int = field(default=2, metadata=bounds(1))  # the TRPO step's work runs in this many parts


@dataclass
class EnvSpec:
    family: str = "navigation-2d"
    horizon: int | None = field(default=None, metadata=bounds(1))
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class PolicySpec:
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64], metadata=bounds(1, 65536))
    nonlinearity: str = field(default="tanh", metadata=one_of("tanh", "relu"))
    init_std: float = field(default=1.0, metadata=bounds(0.0, lo_open=True))
    min_std: float = field(default=1e-6, metadata=bounds(0.0, lo_open=True))
    # the output layer's initial weights times this: below 1 the first actions sit near the mean 0 whatever
    # the observation (an Ant whose initial policy outputs about ±1 jumps out of its healthy range; docs/ant.md)
    init_output_scale: float = field(default=1.0, metadata=bounds(0.0, lo_open=True))


@dataclass
class MAMLSpec:
    meta_batch_size: int = field(default=20, metadata=bounds(1, 100_000))
    fast_batch_size: int = field(default=20, metadata=bounds(1, 100_000))
    fast_lr: float = field(default=0.1, metadata=bounds(0.0, lo_open=True))
    num_steps: int = field(default=1, metadata=bounds(1))
    first_order: bool = False
    gamma: float = field(default=0.99, metadata=bounds(0.0, 1.0))
    gae_lambda: float = field(default=1.0, metadata=bounds(0.0, 1.0))
    normalize_advantages: bool = True
    baseline_reg: float = field(default=1e-5, metadata=bounds(0.0, lo_open=True))
    # the learner's per-task terms: hand-derived products on kept passes (MLPs with tanh or relu), or the
    # plain-autograd reference they are tested against (any policy; about twice as slow)
    curvature: str = field(default="fast", metadata=one_of("fast", "autograd"))


@dataclass
class TRPOSpec:
    max_kl: float = field(default=1e-2, metadata=bounds(0.0, lo_open=True))
    cg_iters: int = field(default=10, metadata=bounds(1))
    cg_damping: float = field(default=1e-5, metadata=bounds(0.0))
    ls_max_steps: int = field(default=15, metadata=bounds(1))
    ls_backtrack_ratio: float = field(default=0.8, metadata=bounds(0.0, 1.0, lo_open=True))
    # share of each task's episodes (every batch, at least one episode) the conjugate gradient's curvature
    # products are estimated on; the gradient and the line search always use all of them. 1.0 is the exact
    # curvature; 0.25 learned as well on navigation (specs/navigation-2d.yaml) but slower on halfcheetah-dir
    # (docs/results.md)
    curvature_fraction: float = field(default=1.0, metadata=bounds(0.0, 1.0, lo_open=True))
    # where the step's gradient, curvature products and line-search scores are computed: by each observer
    # on the tasks it sampled (the agent only adds their sums; the step shrinks as observers are added),
    # or on the agent (its learner threads, or its GPU). auto: the agent with a CUDA learner, else the
    # observers (on an H200 machine with 8 observers: 1.72 s per halfcheetah-vel iteration with the step
    # on the GPU, 2.00 s on the observers, 3.05 s on the agent's CPU; docs/results.md)
    products: str = field(default="auto", metadata=one_of("auto", "agent", "observers"))


@dataclass
class SamplerSpec:
    observers: int = field(default=2, metadata=bounds(0, 256))  # per host; 0 samples in the learner's process
    torch_threads: int = field(default=1, metadata=bounds(1))  # per observer
    timeout_s: float = field(default=600.0, metadata=bounds(0.0, WEEK_S, lo_open=True))  # one RPC call, then dropped
    # how long every process waits for the whole world to join before it gives up
    rendezvous_timeout_s: float = field(default=300.0, metadata=bounds(0.0, WEEK_S, lo_open=True))
    idle_exit_s: float = field(
        default=1800.0, metadata=bounds(0.0, WEEK_S, lo_open=True)
    )  # observer alone this long exits


@dataclass
class MLSHSpec:
    """MLSH (Frans et al. 2017) with the published settings for MovementBandits as defaults."""

    num_subpolicies: int = field(default=2, metadata=bounds(1))
    macro_len: int = field(default=10, metadata=bounds(1))  # N: the master acts every N steps
    warmup: int = field(default=9, metadata=bounds(0))  # W: iterations per task updating the master only
    joint: int = field(default=1, metadata=bounds(0))  # U: iterations updating master and sub-policies
    slots: int = field(default=10, metadata=bounds(1))  # tasks trained side by side, their warm-ups staggered
    episodes: int = field(default=20, metadata=bounds(1))  # per task and iteration
    master_lr: float = field(default=1e-2, metadata=bounds(0.0, lo_open=True))
    sub_lr: float = field(default=3e-4, metadata=bounds(0.0, lo_open=True))
    update: str = field(default="ppo", metadata=one_of("ppo", "a2c"))  # a2c: one full-batch step per update
    clip: float = field(default=0.2, metadata=bounds(0.0, lo_open=True))
    value_coef: float = field(default=1.0, metadata=bounds(0.0))  # weight of the value loss
    entropy_coef: float = field(default=0.0, metadata=bounds(0.0))  # weight of the entropy bonus
    max_grad_norm: float = field(default=0.0, metadata=bounds(0.0))  # clip gradients to this norm; 0: off
    epochs: int = field(default=10, metadata=bounds(1))
    master_minibatch: int = field(default=64, metadata=bounds(1))
    sub_minibatches: int = field(default=15, metadata=bounds(1))
    gamma: float = field(default=0.99, metadata=bounds(0.0, 1.0))
    gae_lambda: float = field(default=0.98, metadata=bounds(0.0, 1.0))
    epsilon: float = field(default=0.1, metadata=bounds(0.0, 1.0))  # master exploration
    # sub-policy credit: GAE over the whole episode (published) or within the slice the sub-policy acted in
    sub_advantages: str = field(default="episode", metadata=one_of("episode", "slice"))
    # share of a joint iteration's episodes played start to end by one sub-policy drawn uniformly, in the first
    # ``joint_commit_rounds`` rounds (None: every round): once the sub-policies serve different tasks, a drawn
    # one plays the other's task half the time, against what its own episodes teach it
    joint_commit: float = field(default=0.0, metadata=bounds(0.0, 1.0))
    joint_commit_rounds: int | None = field(default=None, metadata=bounds(0))
    # learn from a round's segments while the observers sample the next round (which then acts with the
    # sub-policies from before that update: one version behind, the same on every run)
    overlap_update: bool = False
    # the sub-policies share their hidden layers and keep their own output layers (``SubPolicies``)
    shared_body: bool = False
    # the sub-policies (and the flat baselines) standardise their observations by running statistics of the
    # steps they learned from, clipped to ±5, as the MLSH code's do (``RunningNormalizer``); masters see them raw
    normalize_obs: bool = False
    adaptation_iterations: int = field(default=10, metadata=bounds(1))  # the adaptation test's master iterations
    flat_lr: float = field(default=1e-3, metadata=bounds(0.0, lo_open=True))  # the flat PPO control's Adam step


TRANSPORTS = ("uv", "shm", "ibv")
CHANNELS = ("basic", "cma", "mpt_uv", "cuda_basic", "cuda_ipc", "cuda_gdr", "cuda_xth")


@dataclass
class NetworkSpec:
    """How TensorPipe talks; each host reads its own (interface names differ between hosts).

    ``transports`` defaults to TCP (``uv``) alone: the shared-memory transport's
    reactor busy-polls, which took a third of each core from the learner and the
    observers on a 2-core host (docs/results.md).
    """

    interface: str = "lo"  # TP_SOCKET_IFNAME; anything but loopback also needs --trust-network
    transports: list[str] = field(default_factory=lambda: ["uv"], metadata=one_of(*TRANSPORTS))
    channels: list[str] | None = field(default=None, metadata=one_of(*CHANNELS))  # None: TensorPipe's default


@dataclass
class WandbSpec:
    """Unset (null) values leave wandb to its own environment variables (WANDB_PROJECT, WANDB_ENTITY,
    WANDB_MODE); the project is ``dh-maml`` when neither says."""

    enabled: bool = False
    project: str | None = None
    entity: str | None = None
    mode: str | None = field(default=None, metadata=one_of("online", "offline", "disabled"))


@dataclass
class MetricsSpec:
    queue_size: int = field(default=1024, metadata=bounds(1))
    wandb: WandbSpec = field(default_factory=WandbSpec)


@dataclass
class CheckpointSpec:
    every: int = field(default=10, metadata=bounds(1))
    # also keep every keep_every-th iteration's state as checkpoints/iter-NNNN.pt (0: none), so that the
    # iteration count can be chosen afterwards, on validation tasks, from one run
    keep_every: int = field(default=0, metadata=bounds(0))


@dataclass
class MetaTestSpec:
    every: int = field(default=0, metadata=bounds(0))
    num_tasks: int = field(default=100, metadata=bounds(1))
    num_steps: int = field(default=3, metadata=bounds(0))
    seed: int = field(default=10_000, metadata=bounds(0, MAX_SEED))
    paper_protocol: bool = False
    # episodes scored per task after each inner step with the adapted policy (Meta-World's protocol: 3);
    # 0 scores the fast_batch_size episodes the next step adapts on
    eval_episodes: int = field(default=0, metadata=bounds(0, 100_000))
    # how those scored episodes act: sampled from the policy, or its mean action (Meta-World's evaluation
    # scores its agents' deterministic action); adaptation always samples
    scored_actions: str = field(default="sampled", metadata=one_of("sampled", "mean"))
    # families with finitely many kinds of task (halfcheetah-dir, ant-dir: forward and backward): hold out
    # equally many of each, so a headline does not depend on how a draw split; false draws them as training does
    balanced: bool = True


@dataclass
class Spec:
    experiment: ExperimentSpec = field(default_factory=ExperimentSpec)
    env: EnvSpec = field(default_factory=EnvSpec)
    policy: PolicySpec = field(default_factory=PolicySpec)
    maml: MAMLSpec = field(default_factory=MAMLSpec)
    trpo: TRPOSpec = field(default_factory=TRPOSpec)
    mlsh: MLSHSpec = field(default_factory=MLSHSpec)
    sampler: SamplerSpec = field(default_factory=SamplerSpec)
    network: NetworkSpec = field(default_factory=NetworkSpec)
    metrics: MetricsSpec = field(default_factory=MetricsSpec)
    checkpoint: CheckpointSpec = field(default_factory=CheckpointSpec)
    meta_test: MetaTestSpec = field(default_factory=MetaTestSpec)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _merge(base: dict, override: Mapping) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def override_key(text: str) -> list[str]:
    """The key path of ``a.b.c=value`` as ``parse_override`` reads it (blank parts dropped)."""
    return [p for p in text.split("=", 1)[0].strip().split(".") if p]


def parse_override(text: str) -> dict[str, Any]:
    """Turn ``a.b.c=value`` into ``{"a": {"b": {"c": value}}}``; the value is read as YAML."""
    if "=" not in text:
        raise SpecError([f"--set {text!r}: expected KEY.PATH=VALUE, e.g. trpo.max_kl=0.02"])
    raw = text.split("=", 1)[1]
    parts = override_key(text)
    if not parts:
        raise SpecError([f"--set {text!r}: the key before '=' is empty"])
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise SpecError([f"--set {text!r}: the value is not valid YAML ({exc.problem})"]) from None
    out: dict[str, Any] = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        out = {part: out}
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise SpecError([f"spec file '{path}' does not exist (expected a YAML file, e.g. specs/navigation-2d.yaml)"])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([f"cannot read it as a UTF-8 text file ({exc})"], source=str(path)) from None
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError([f"malformed YAML{where}: {problem}"], source=str(path)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpecError([f"the top level must be a mapping of sections, got {type(data).__name__}"], source=str(path))
    return data


def spec_from_dict(data: Mapping[str, Any], source: str | None = None) -> Spec:
    """Validate a plain mapping, including the env family's own options."""
    problems: list[str] = []
    spec = build_dataclass(Spec, data, "", problems)
    if not problems:
        problems.extend(validate_env_spec(spec.env))
        if spec.meta_test.scored_actions == "mean" and spec.meta_test.eval_episodes == 0:
            problems.append(
                "meta_test.scored_actions: 'mean' needs meta_test.eval_episodes > 0 (with 0 the scored episodes "
                "are the ones the next step adapts on, which must be sampled)"
            )
        try:
            known = algorithms.names()
        except SpecError as exc:
            problems.extend(exc.problems)
        else:
            if spec.experiment.algorithm not in known:
                problems.append(
                    unknown_key_message("experiment.algorithm", spec.experiment.algorithm, known, what="algorithm")
                )
    if problems:
        raise SpecError(problems, source)
    return spec


def load_spec(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Spec:
    """Defaults < YAML file < ``--set`` overrides."""
    data: dict[str, Any] = read_yaml(path) if path is not None else {}
    overrides = list(overrides)
    for text in overrides:
        data = _merge(data, parse_override(text))
    return spec_from_dict(data, source=_source(path, overrides))


def _source(path: str | Path | None, overrides: list[str]) -> str | None:
    """Where a spec's values came from, for its errors: the file, the ``--set`` flags, or both."""
    flags = " ".join(f"--set {text}" for text in overrides)
    if path is None:
        return flags or None
    return f"{path} with {flags}" if flags else str(path)


def with_overrides(spec: Spec, overrides: Iterable[str]) -> Spec:
    """A validated copy of ``spec`` with ``--set`` overrides applied (used when resuming a run)."""
    data = spec.to_dict()
    overrides = list(overrides)
    for text in overrides:
        data = _merge(data, parse_override(text))
    return spec_from_dict(data, source=_source(None, overrides))
