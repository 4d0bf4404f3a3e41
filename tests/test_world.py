"""The RPC world's settings, without starting it: interfaces, torchrun's environment, CUDA device maps."""

import dataclasses
import socket

import pytest
import torch

from dh_maml.runtime import Network, WorldError, cuda_device_maps, host_world, interface_address, torchrun_world

LOOPBACK = Network("lo")


def test_loopback_is_the_default_and_needs_no_trust(capsys):
    net = Network.checked("lo", ["uv"], None, multi_host=False, trusted=False)
    assert net == Network("lo", ("uv",), None)
    assert capsys.readouterr().err == ""
    assert interface_address("lo") == "127.0.0.1"


def test_other_interfaces_need_trust_and_warn(capsys):
    others = [name for _, name in socket.if_nameindex() if name != "lo"]
    if not others:
        pytest.skip("this host has no network interface besides loopback")
    with pytest.raises(WorldError, match="add --trust-network"):
        Network.checked(others[0], ["uv"], None, multi_host=True, trusted=False)
    Network.checked(others[0], ["uv", "shm"], ["basic"], multi_host=True, trusted=True)
    assert f"warning: RPC listens on {others[0]}" in capsys.readouterr().err


def test_interface_errors_name_the_flag():
    with pytest.raises(WorldError, match="--interface nope0: no such network interface on this host"):
        Network.checked("nope0", ["uv"], None, multi_host=False, trusted=True)
    with pytest.raises(WorldError, match="--interface lo: hosts cannot reach each other over loopback"):
        Network.checked("lo", ["uv"], None, multi_host=True, trusted=True)


def test_host_world_gives_each_host_its_own_observer_ranks():
    agent, first = host_world(3, 60.0, LOOPBACK, nnodes=2, node=0, master_addr="10.0.0.1")
    _, second = host_world(3, 60.0, LOOPBACK, nnodes=2, node=1, master_addr="10.0.0.1")
    assert agent.world_size == 7 and agent.master_port == 29500
    assert list(first) == [1, 2, 3] and list(second) == [4, 5, 6]
    assert agent.observers == [f"observer{r}" for r in range(1, 7)]


def test_torchrun_world_reads_the_environment(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    assert torchrun_world(LOOPBACK, 60.0) is None
    env = {"RANK": "2", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "4", "MASTER_ADDR": "10.1.2.3", "MASTER_PORT": "1234"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    world = torchrun_world(Network("lo", ("uv", "shm")), 60.0)
    assert (world.rank, world.world_size, world.master_addr, world.master_port) == (2, 4, "10.1.2.3", 1234)
    assert world.name == "observer2" and world.init_method == "env://" and world.network.transports == ("uv", "shm")
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(WorldError, match="WORLD_SIZE is 1"):
        torchrun_world(LOOPBACK, 60.0)


def test_device_maps_only_when_the_learner_has_cuda(monkeypatch):
    assert cuda_device_maps("cpu", range(1, 3)) == {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cuda_device_maps("cuda", range(1, 3)) == {}  # a map to a CPU-only build makes init_rpc fail
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    maps = cuda_device_maps("cuda", range(1, 3))
    assert maps == {"observer1": {"cuda:0": "cuda:0"}, "observer2": {"cuda:0": "cuda:0"}}
    agent, _ = host_world(2, 60.0, LOOPBACK, nnodes=2, node=0, master_addr="10.0.0.1", device="cuda:1")
    assert set(agent.device_maps) == {"observer1", "observer2"}  # the agent's host only, not the second one's
    assert agent.device_maps["observer1"] == {"cuda:1": "cuda:1"}
    assert agent.result_device is None
    assert dataclasses.replace(agent, rank=2).result_device == "cuda:1"
    assert dataclasses.replace(agent, rank=3).result_device is None
