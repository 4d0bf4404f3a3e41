"""The layers' rules, read from every import statement (module level or inside a function): dependency
arrows point down only, the processes are blind to which algorithm runs, and RPC stays in its module."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALGORITHMS = ("dh_maml.maml", "dh_maml.mlsh")


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def sources(*parts: str) -> list[Path]:
    paths = []
    for part in parts:
        target = ROOT / part
        paths.extend(sorted(target.rglob("*.py")) if target.is_dir() else [target])
    return paths


def offenders(paths: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{p.relative_to(ROOT)} imports {name}"
        for p in paths
        for name in sorted(imports(p))
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    ]


PROCESSES = ("dh_maml.agents", "dh_maml.observers", "agents", "observers")


def test_the_library_imports_no_process():
    assert offenders(sources("dh_maml"), PROCESSES) == []


def test_observers_never_import_the_agent():
    assert offenders(sources("observers"), ("dh_maml.agents", "agents")) == []


def test_the_processes_install_under_the_project_name_only(tmp_path):
    """No top-level ``agents`` or ``observers`` module (they would shadow, or be shadowed by, other packages)."""
    probe = "import importlib.util as u; print([u.find_spec(n) is not None for n in ARGS])".replace(
        "ARGS", repr(["agents", "observers", "dh_maml.agents", "dh_maml.observers", "launch"])
    )
    found = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[False, False, True, True, True]"


@pytest.mark.parametrize("part", ["launch.py", "agents", "observers", "dh_maml/plots.py", "dh_maml/in_process.py"])
def test_the_processes_and_tools_reach_algorithms_only_through_the_registry(part):
    assert offenders(sources(part), ALGORITHMS) == []


def test_algorithms_do_not_import_each_other():
    assert offenders(sources("dh_maml/maml"), ("dh_maml.mlsh",)) == []
    assert offenders(sources("dh_maml/mlsh"), ("dh_maml.maml",)) == []


def test_the_shared_library_sits_below_the_algorithms():
    shared = [p for p in sources("dh_maml") if p.parent == ROOT / "dh_maml" and p.name != "__init__.py"]
    shared += sources("dh_maml/envs", "dh_maml/policies")
    assert offenders(shared, ALGORITHMS) == []


def test_rpc_lives_in_the_runtime_module_and_the_processes():
    library = [p for p in sources("dh_maml") if p.name != "runtime.py"]
    assert offenders(library, ("torch.distributed",)) == []


def test_no_process_code_asks_which_algorithm_runs():
    for path in sources("launch.py", "agents", "observers", "dh_maml/plots.py"):
        assert "algorithm ==" not in path.read_text(), path
