"""The benchmarks' measuring pieces run (the figures themselves are printed by bench/, never asserted)."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.env_throughput import observer_envs, raw_steps_per_s  # noqa: E402
from dh_maml.spec import load_spec  # noqa: E402


@pytest.mark.parametrize("name", ["navigation-2d", "bandit-k5-n10", "halfcheetah-vel"])
def test_raw_throughput_steps_the_family(name):
    spec = load_spec(ROOT / f"specs/{name}.yaml")
    assert raw_steps_per_s(spec, num_envs=4, seconds=0.05) > 0


def test_observer_envs_is_one_observers_share_of_the_meta_batch():
    spec = load_spec(ROOT / "specs/halfcheetah-vel.yaml")
    assert observer_envs(spec, 2) == 20 * 20 and observer_envs(spec, 1) == 40 * 20
