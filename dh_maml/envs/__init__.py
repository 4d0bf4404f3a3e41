"""Task families by name, and validation of a spec's ``env`` section."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dh_maml.config import SpecError, build_dataclass, unknown_key_message
from dh_maml.envs import metaworld
from dh_maml.envs.ant_bandits import AntBandits
from dh_maml.envs.bandit import BernoulliBandit
from dh_maml.envs.base import TaskFamily, TaskVectorEnv, VectorEnvCache
from dh_maml.envs.minigrid import MiniGridFourRooms, MiniGridPlain, MiniGridTwoGoals
from dh_maml.envs.movement_bandits import MovementBandits
from dh_maml.envs.mujoco import AntDir, AntGoal, AntVel, HalfCheetahDir, HalfCheetahVel
from dh_maml.envs.navigation import Navigation2D
from dh_maml.envs.tabular import TabularMDP

if TYPE_CHECKING:
    from dh_maml.spec import EnvSpec

FAMILIES: dict[str, type[TaskFamily]] = {
    cls.name: cls
    for cls in (
        Navigation2D,
        BernoulliBandit,
        TabularMDP,
        HalfCheetahVel,
        HalfCheetahDir,
        AntVel,
        AntDir,
        AntGoal,
        MovementBandits,
        AntBandits,
        MiniGridTwoGoals,
        MiniGridFourRooms,
        MiniGridPlain,
        *metaworld.FAMILIES,
    )
}

__all__ = ["FAMILIES", "TaskFamily", "TaskVectorEnv", "VectorEnvCache", "make_family", "validate_env_spec"]


def _family_options(env_spec: EnvSpec, problems: list[str]) -> tuple[type[TaskFamily] | None, Any]:
    cls = FAMILIES.get(env_spec.family)
    if cls is None:
        problems.append(unknown_key_message("env.family", env_spec.family, FAMILIES, what="family"))
        return None, None
    if cls.max_horizon is not None and env_spec.horizon is not None and env_spec.horizon > cls.max_horizon:
        problems.append(
            f"env.horizon: expected a value <= {cls.max_horizon} ({cls.name}'s own episodes end there), "
            f"got {env_spec.horizon}"
        )
    count = len(problems)
    options = build_dataclass(cls.Options, env_spec.options, "env.options", problems)
    if len(problems) == count:
        problems.extend(cls.option_problems(options))
    return cls, options


def validate_env_spec(env_spec: EnvSpec) -> list[str]:
    """Problems with ``env.family`` and ``env.options`` (empty when valid)."""
    problems: list[str] = []
    _family_options(env_spec, problems)
    return problems


def make_family(env_spec: EnvSpec) -> TaskFamily:
    problems: list[str] = []
    cls, options = _family_options(env_spec, problems)
    if problems:
        raise SpecError(problems)
    return cls(horizon=env_spec.horizon, options=options)
