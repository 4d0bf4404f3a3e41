"""Two hosts on one machine: network namespaces joined by a veth pair, the agent in one, observers in both.

Each namespace has its own loopback and its own interface, so the only way the
second host's observer can join the world is across the veth link, exactly as
between two machines. Needs root and iproute2; where either is missing the test
is skipped with the reason.
"""

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NAV = ROOT / "specs/navigation-2d.yaml"
SMALL = ["--set", "maml.meta_batch_size=4", "--set", "maml.fast_batch_size=5", "--observers", "1"]


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class TwoHosts:
    """Namespaces ``<tag>a`` (10.77.0.1 on ``<tag>va``) and ``<tag>b`` (10.77.0.2 on ``<tag>vb``)."""

    def __init__(self) -> None:
        tag = f"dhm{uuid.uuid4().hex[:6]}"
        self.names = (f"{tag}a", f"{tag}b")
        self.interfaces = (f"{tag}va", f"{tag}vb")  # at most 15 characters, as Linux requires
        self.addresses = ("10.77.0.1", "10.77.0.2")

    def __enter__(self) -> "TwoHosts":
        try:
            for ns in self.names:
                ip("netns", "add", ns)
            ip("link", "add", self.interfaces[0], "type", "veth", "peer", "name", self.interfaces[1])
            for ns, interface, address in zip(self.names, self.interfaces, self.addresses):
                ip("link", "set", interface, "netns", ns)
                ip("-n", ns, "addr", "add", f"{address}/24", "dev", interface)
                ip("-n", ns, "link", "set", interface, "up")
                ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        for ns in self.names:  # deleting a namespace deletes its end of the veth pair, and so the pair
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)

    def launch(self, host: int, *args, runner: tuple = ()) -> subprocess.Popen:
        """``launch.py ARGS`` in namespace ``host``, started by ``runner`` (e.g. torchrun) if given."""
        cmd = [
            "ip",
            "netns",
            "exec",
            self.names[host],
            sys.executable,
            *runner,
            str(ROOT / "launch.py"),
            *map(str, args),
        ]
        return subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )


def namespaces_unavailable() -> str | None:
    """Why two network namespaces cannot be built here, or None when they can."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux only"
    if shutil.which("ip") is None:
        return "the 'ip' command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    probe = f"dhmprobe{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True)
    if made.returncode != 0:
        return f"'ip netns add' failed here: {made.stderr.strip()}"
    return None


@pytest.fixture
def two_hosts():
    reason = namespaces_unavailable()
    if reason:
        pytest.skip(reason)
    with TwoHosts() as hosts:
        yield hosts


def finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, err = proc.communicate()
        pytest.fail(f"timed out after {timeout} s\n{out}\n{err}")
    return proc.returncode, out, err


def test_agent_and_observers_train_across_two_hosts(tmp_path, two_hosts):
    run = tmp_path / "run"
    hosts = ["--nnodes", 2, "--master-addr", two_hosts.addresses[0], "--trust-network", *SMALL]
    agent = two_hosts.launch(
        0,
        "train",
        "--spec",
        NAV,
        "--iterations",
        2,
        "--run-dir",
        run,
        "--node-rank",
        0,
        "--interface",
        two_hosts.interfaces[0],
        *hosts,
    )
    other = two_hosts.launch(
        1, "train", "--spec", NAV, "--node-rank", 1, "--interface", two_hosts.interfaces[1], *hosts
    )
    code, out, err = finish(agent)
    other_code, other_out, other_err = finish(other, timeout=60)
    assert code == 0, out + err
    assert other_code == 0, other_out + other_err
    assert f"RPC listens on {two_hosts.interfaces[0]} ({two_hosts.addresses[0]})" in err
    assert f"RPC listens on {two_hosts.interfaces[1]} ({two_hosts.addresses[1]})" in other_err
    world = json.loads((run / "world.json").read_text())
    assert {name: w["address"] for name, w in world.items()} == {
        "observer1": two_hosts.addresses[0],
        "observer2": two_hosts.addresses[1],
    }
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [1, 2]
    assert all(r["observers/alive"] == 2 for r in records)
    assert all(r["env_steps"] > 0 and r["returns/post"] == r["returns/post"] for r in records)


@pytest.mark.parametrize("rendezvous", ["static", "c10d"])
def test_torchrun_across_two_hosts(tmp_path, two_hosts, rendezvous):
    run = tmp_path / "run"
    args = ["train", "--spec", NAV, "--iterations", 2, "--run-dir", run, "--trust-network", *SMALL[:4]]
    procs = []
    for host in (0, 1):
        if rendezvous == "static":  # node ranks given: the agent is on host 0
            where = (f"--node-rank={host}", f"--master-addr={two_hosts.addresses[0]}", "--master-port=29500")
        else:  # the rendezvous numbers the nodes; host 0 serves its store (its host name is not its address)
            where = (
                "--rdzv-backend=c10d",
                f"--rdzv-endpoint={two_hosts.addresses[0]}:29400",
                "--rdzv-id=test",
                f"--rdzv-conf=is_host={str(host == 0).lower()}",
                f"--local-addr={two_hosts.addresses[host]}",
            )
        runner = ("-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=2", *where)
        procs.append(two_hosts.launch(host, *args, "--interface", two_hosts.interfaces[host], runner=runner))
    for proc in procs:
        code, out, err = finish(proc)
        assert code == 0, out + err
    world = json.loads((run / "world.json").read_text())
    addresses = sorted(w["address"] for w in world.values())
    assert sorted(world) == ["observer1", "observer2", "observer3"]
    assert set(addresses) == set(two_hosts.addresses)  # observers on both hosts, each on its own interface
    if rendezvous == "static":
        assert world["observer1"]["address"] == two_hosts.addresses[0]  # rank 1 shares host 0 with the agent
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["iteration"], r["observers/alive"]) for r in records] == [(1, 3), (2, 3)]


def test_leaving_loopback_without_trust_is_refused(two_hosts):
    proc = two_hosts.launch(
        1,
        "train",
        "--spec",
        NAV,
        "--interface",
        two_hosts.interfaces[1],
        "--nnodes",
        2,
        "--node-rank",
        1,
        "--master-addr",
        two_hosts.addresses[0],
    )
    code, _, err = finish(proc, timeout=60)
    assert code == 2 and "add --trust-network to confirm" in err and "Traceback" not in err
