"""The ways to install DH-MAML agree: pyproject.toml, the conda recipe, the Docker image and its compose file."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CONDA_TO_PYPI = {"pytorch": "torch"}


def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def requirements(lines) -> dict[str, Requirement]:
    reqs = [Requirement(line) for line in lines]
    return {r.name.lower(): r for r in reqs}


def tool(name: str) -> str:
    """A command-line tool of the test extra, from this interpreter's environment or PATH."""
    found = shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if found is None:
        pytest.fail(f"'{name}' is missing: install the test extra (pip install -e '.[test]')")
    return found


def test_conda_recipe_matches_pyproject():
    recipe = yaml.safe_load((ROOT / "conda-recipe.yaml").read_text())
    conda = [d for d in recipe["dependencies"] if isinstance(d, str) and d not in ("pip",)]
    (pip,) = [d["pip"] for d in recipe["dependencies"] if isinstance(d, dict)]
    assert "--editable ." in pip, "the recipe must install the project itself"
    python = [d for d in conda if d.startswith("python")]
    assert python == [f"python{pyproject()['requires-python']}"]
    listed = {}
    for line in [d for d in conda if not d.startswith("python")] + [p for p in pip if not p.startswith("-")]:
        req = Requirement(line)
        listed[CONDA_TO_PYPI.get(req.name, req.name).lower()] = req
    project = pyproject()
    wanted = requirements(project["dependencies"] + project["optional-dependencies"]["wandb"])
    assert sorted(listed) == sorted(wanted)
    for name, req in wanted.items():
        assert listed[name].specifier == req.specifier, name
        assert listed[name].extras == req.extras, name


def test_image_pins_satisfy_pyproject_and_cover_every_dependency():
    pins = requirements(
        line
        for line in (ROOT / "docker/constraints.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    project = pyproject()
    wanted = requirements(project["dependencies"] + project["optional-dependencies"]["wandb"])
    assert sorted(pins) == sorted(set(wanted) - {"torch"})  # torch comes with the base image
    for name, pin in pins.items():
        (version,) = [s.version for s in pin.specifier if s.operator == "=="]
        assert wanted[name].specifier.contains(version), f"{name}=={version} is outside {wanted[name].specifier}"


def test_dockerfile_is_lint_clean_and_follows_the_rules():
    lint = subprocess.run([tool("hadolint"), "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    text = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^FROM docker\.io/pytorch/pytorch:(\d+\.\d+\.\d+)-cuda[\d.]+-cudnn\d+-runtime$", text, re.M)
    assert base, "the base must be a pinned official CUDA build of PyTorch"
    torch_bound = requirements(pyproject()["dependencies"])["torch"].specifier
    assert torch_bound.contains(base.group(1))
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert not re.search(r"ssh|passw", text, re.I)
    assert re.search(r'^ENTRYPOINT \["/opt/dh-maml/docker/entrypoint.sh"\]$', text, re.M)
    # The image installs the way the README's `make` does: through install.sh.
    assert re.search(r"^RUN .*\./install\.sh ", text, re.M)
    assert "./install.sh $(VENV)" in (ROOT / "Makefile").read_text()


def test_the_image_run_folder_exists_for_its_user_and_dependencies_come_before_the_code():
    """Read from the Dockerfile's instructions, since no engine runs here."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    user = re.search(r"useradd .*--uid (\d+) .*?(\w+)\s+&&", text)
    assert user, "the image creates its own user"
    uid, name = user.groups()
    (volume,) = re.findall(r'^VOLUME \["(\S+)"\]', text, re.M)
    made = re.search(rf"install -d -o {name} -g {name} [^\n]*(?<!\S){re.escape(volume)}(?!\S)", text)
    assert made, f"{volume} is created and owned by {name} before it becomes a volume"
    assert made.start() < re.search(r"^VOLUME ", text, re.M).start()
    assert re.findall(r"^USER (\d+):", text, re.M)[-1] == uid
    deps = next(i for i, line in enumerate(lines) if re.match(r"RUN .*pip install .*-r docker/constraints\.txt", line))
    first_code = next(i for i, line in enumerate(lines) if re.match(r"COPY .*\b(dh_maml|README\.md)\b", line))
    assert deps < first_code, "the dependency layer must not depend on the code or the README"
    assert [line for line in lines[:deps] if line.startswith("COPY")] == [
        "COPY --chown=dhmaml:dhmaml docker/constraints.txt docker/"
    ]


def test_compose_file_is_valid_and_describes_one_world():
    path = ROOT / "docker/compose.yaml"
    check = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    compose = yaml.safe_load(path.read_text())
    services = compose["services"]
    env = {name: s["environment"] for name, s in services.items()}
    assert sorted(int(e["DHMAML_NODE_RANK"]) for e in env.values()) == list(range(len(services)))
    assert all(int(e["DHMAML_NNODES"]) == len(services) for e in env.values())
    (agent,) = [name for name, e in env.items() if e["DHMAML_NODE_RANK"] == "0"]
    assert all(e["DHMAML_MASTER_ADDR"] in (agent, services[agent].get("hostname")) for e in env.values())
    for service in services.values():
        (network,) = service["networks"]
        assert compose["networks"][network]["internal"] is True  # the trusted network reaches nothing else
        assert service["init"] is True and service["shm_size"]
        command = service["command"]
        assert "--run-dir" not in command, "a fixed --run-dir would make every `compose up` reuse one run's folder"
        assert (
            command[command.index("--observers") + 1]
            == services[agent]["command"][services[agent]["command"].index("--observers") + 1]
        ), "every host must run as many observers"


@pytest.mark.parametrize(
    "interface, expected",
    [("lo", "hosts cannot reach each other over loopback"), ("nope0", "--interface nope0: no such network interface")],
)
def test_entrypoint_turns_the_container_environment_into_launch_flags(interface, expected):
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DHMAML_NNODES": "2",
        "DHMAML_NODE_RANK": "1",
        "DHMAML_MASTER_ADDR": "agent",
        "DHMAML_INTERFACE": interface,
        "DHMAML_TRUST_NETWORK": "1",
    }
    proc = subprocess.run(
        [str(ROOT / "docker/entrypoint.sh"), "train", "--spec", "specs/navigation-2d.yaml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and expected in proc.stderr, proc.stderr
