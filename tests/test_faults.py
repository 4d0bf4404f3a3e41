"""Faults an adversary finds: what listens on the network, and what a launcher killed early leaves behind."""

import os
import signal
import time
from pathlib import Path

import pytest
from conftest import ROOT, alive, descendants, wait_for_iterations

NAV = ROOT / "specs/navigation-2d.yaml"
SMALL = ["--set", "maml.meta_batch_size=4", "--set", "maml.fast_batch_size=5", "--observers", "2"]
LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp
LOOPBACK_ADDRESSES = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1 and ::1, as the kernel writes them


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    except OSError:
        pass
    return inodes


def listening_addresses(inodes: set[str]) -> list[str]:
    """The local addresses (hex, as in /proc/net/tcp*) of the listening TCP sockets among ``inodes``."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == LISTEN and fields[9] in inodes:
                found.append(fields[1])
    return found


def test_a_single_host_run_listens_on_loopback_only(tmp_path, launcher):
    run = tmp_path / "run"
    launch = launcher("train", "--spec", NAV, "--iterations", 200, "--run-dir", run, *SMALL)
    wait_for_iterations(run)
    pids = [launch.proc.pid, *descendants(launch.proc.pid)]
    listening = listening_addresses(set().union(*map(socket_inodes, pids)))
    assert listening, "the agent's TensorPipe listener was not found"
    outside = [address for address in listening if address.split(":")[0] not in LOOPBACK_ADDRESSES]
    assert outside == [], f"listening beyond loopback: {outside}"


def spawned_children(pid: int) -> list[int]:
    found = []
    for child in descendants(pid):
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
        except OSError:
            continue
    return found


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL, signal.SIGINT])
def test_a_launcher_killed_while_observers_start_leaves_no_process(tmp_path, launcher, signum):
    """SIGTERM and SIGKILL to the launcher alone, as a scheduler would; SIGINT to the whole process group,
    as a terminal's Ctrl-C does (the observers get it too, which is no observer failure)."""
    launch = launcher("train", "--spec", NAV, "--iterations", 200, "--run-dir", tmp_path / "run", *SMALL)
    deadline = time.monotonic() + 120
    while not spawned_children(launch.proc.pid):
        assert launch.proc.poll() is None and time.monotonic() < deadline, "no observer was ever spawned"
        time.sleep(0.02)
    seen: set[int] = set()
    until = time.monotonic() + 0.3
    while time.monotonic() < until:  # every process the launcher started, up to the kill
        seen.update(descendants(launch.proc.pid))
        time.sleep(0.02)
    seen.update(descendants(launch.proc.pid))
    if signum == signal.SIGINT:
        os.killpg(launch.proc.pid, signum)
    else:
        launch.proc.send_signal(signum)
    code, _, err = launch.wait(timeout=60)
    if signum != signal.SIGKILL:
        name = signal.Signals(signum).name
        assert code == 128 + signum and f"stopped by {name} before training started" in err, err
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in seen) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [pid for pid in seen if alive(pid)] == []
