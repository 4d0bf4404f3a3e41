import subprocess
import sys
from pathlib import Path

import pytest

from dh_maml.spec import Spec, SpecError, load_spec, parse_override, with_overrides

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))


def write(tmp_path, text):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def test_defaults_yaml_overrides_precedence(tmp_path):
    path = write(tmp_path, "trpo:\n  max_kl: 0.05\nmaml:\n  fast_lr: 0.3\n")
    spec = load_spec(path, ["trpo.max_kl=0.02"])
    assert spec.trpo.max_kl == 0.02  # CLI beats YAML
    assert spec.maml.fast_lr == 0.3  # YAML beats default
    assert spec.trpo.cg_iters == Spec().trpo.cg_iters  # default stays


def test_every_shipped_spec_is_valid():
    names = {p.stem for p in SPECS}
    assert {
        "navigation-2d",
        "halfcheetah-vel",
        "halfcheetah-dir",
        "ant-vel",
        "ant-dir",
        "ant-goal",
        "bandit-k5-n10",
        "bandit-k10-n100",
        "bandit-k50-n500",
        "tabular-mdp",
    } <= names
    for path in SPECS:
        load_spec(path)


def test_reference_hyperparameters_of_navigation():
    spec = load_spec(ROOT / "specs" / "navigation-2d.yaml")
    assert (spec.maml.meta_batch_size, spec.maml.fast_batch_size, spec.maml.fast_lr) == (20, 20, 0.1)
    assert spec.policy.hidden_sizes == [64, 64] and spec.policy.nonlinearity == "tanh"
    assert (spec.trpo.max_kl, spec.trpo.cg_iters, spec.trpo.cg_damping) == (0.01, 10, 1e-5)
    assert (spec.trpo.ls_max_steps, spec.trpo.ls_backtrack_ratio) == (15, 0.8)


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("trpo:\n  max_kll: 0.01\n", ["trpo: unknown key 'max_kll'", "did you mean 'max_kl'"]),
        ("tpro:\n  max_kl: 0.01\n", ["unknown key 'tpro'", "did you mean 'trpo'"]),
        ("maml:\n  meta_batch_size: many\n", ["maml.meta_batch_size", "expected an integer", "'many'"]),
        ("maml:\n  first_order: 1\n", ["maml.first_order", "expected true or false"]),
        ("trpo:\n  max_kl: -0.1\n", ["trpo.max_kl", "expected a value > 0.0", "-0.1"]),
        ("maml:\n  gamma: 1.5\n", ["maml.gamma", "<= 1.0", "1.5"]),
        ("policy:\n  nonlinearity: sigmoid\n", ["policy.nonlinearity", "one of tanh, relu", "sigmoid"]),
        ("env:\n  family: navigation2d\n", ["env.family", "did you mean 'navigation-2d'"]),
        ("env:\n  family: bandit\n  options: {num_arm: 5}\n", ["env.options", "did you mean 'num_arms'"]),
        ("env:\n  family: bandit\n  options: {num_arms: 1}\n", ["env.options.num_arms", ">= 2"]),
        ("trpo: 3\n", ["trpo: expected a mapping"]),
        ("policy:\n  hidden_sizes: [64, x]\n", ["policy.hidden_sizes[1]", "expected an integer"]),
        ("meta_test:\n  scored_actions: greedy\n", ["meta_test.scored_actions", "one of sampled, mean"]),
        ("meta_test:\n  scored_actions: mean\n", ["meta_test.scored_actions", "needs meta_test.eval_episodes > 0"]),
    ],
)
def test_bad_specs_name_key_value_and_expectation(tmp_path, text, fragments):
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, text))
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message


def test_missing_file_and_malformed_yaml(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")
    with pytest.raises(SpecError, match=r"malformed YAML at line \d+, column \d+"):
        load_spec(write(tmp_path, "trpo:\n  max_kl: [0.01\n"))
    with pytest.raises(SpecError, match="top level must be a mapping"):
        load_spec(write(tmp_path, "- a\n- b\n"))


def test_override_parsing_and_errors():
    assert parse_override("trpo.max_kl=0.02") == {"trpo": {"max_kl": 0.02}}
    assert parse_override("policy.hidden_sizes=[8, 8]") == {"policy": {"hidden_sizes": [8, 8]}}
    with pytest.raises(SpecError, match=r"expected KEY\.PATH=VALUE"):
        parse_override("trpo.max_kl")
    with pytest.raises(SpecError, match="trpo: unknown key 'max_k'"):
        load_spec(None, ["trpo.max_k=1"])
    assert with_overrides(Spec(), ["maml.num_steps=2"]).maml.num_steps == 2


def test_exponents_without_a_dot_are_numbers(tmp_path):
    """PyYAML alone reads ``1e-3`` as the string '1e-3', which a float key then rejects."""
    assert load_spec(write(tmp_path, "trpo:\n  max_kl: 2e-2\n")).trpo.max_kl == 0.02
    assert with_overrides(Spec(), ["mlsh.sub_lr=1e-3"]).mlsh.sub_lr == 0.001
    assert parse_override("a=-2E+4") == {"a": -20000.0}
    assert parse_override("a=12") == {"a": 12}
    assert parse_override("a=1e3x") == {"a": "1e3x"}


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("trpo:\n  max_kll: 0.01\n", "did you mean 'max_kl'"),
        ("trpo:\n  max_kl: [0.01\n", "malformed YAML"),
    ],
)
def test_check_spec_cli_exit_code_and_message(tmp_path, text, fragment):
    bad = write(tmp_path, text)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "launch.py"), "check-spec", str(bad)], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 2
    assert fragment in proc.stderr
    assert "Traceback" not in proc.stderr
    ok = subprocess.run(
        [sys.executable, str(ROOT / "launch.py"), "check-spec", *map(str, SPECS)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert ok.returncode == 0, ok.stderr


def test_check_spec_cli_missing_file(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "launch.py"), "check-spec", str(tmp_path / "x.yaml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr
