"""The RPC world both roles join: names, ranks, TensorPipe options, and a shutdown that cannot hang.

Rank 0 is the agent; every other rank is an observer. Agents import this
module to address observers; observers never import agents.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import warnings
from dataclasses import dataclass

AGENT = "agent"


class WorldError(ValueError):
    """A world the flags or the environment describe wrongly; the message names the flag."""


def observer_name(rank: int) -> str:
    return f"observer{rank}"


@dataclass(frozen=True)
class WorldConfig:
    """Where the world meets: rank 0 hosts the rendezvous store at master_addr:master_port."""

    rank: int
    world_size: int
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    rpc_timeout_s: float = 600.0
    init_method: str | None = None  # "env://" under torchrun, else tcp://master_addr:master_port

    @property
    def name(self) -> str:
        return AGENT if self.rank == 0 else observer_name(self.rank)

    @property
    def observers(self) -> list[str]:
        return [observer_name(r) for r in range(1, self.world_size)]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def torchrun_world() -> WorldConfig | None:
    """The world torchrun describes in the environment (this process's rank), or None outside torchrun."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    world_size = int(os.environ["WORLD_SIZE"])
    if world_size < 2:
        raise WorldError(f"torchrun: WORLD_SIZE is {world_size}; DH-MAML needs at least 2 processes "
                         "(rank 0 is the agent, the others observe)")
    return WorldConfig(int(os.environ["RANK"]), world_size, os.environ.get("MASTER_ADDR", "127.0.0.1"),
                       int(os.environ.get("MASTER_PORT", 29500)), init_method="env://")


def host_world(observers: int, timeout_s: float, nnodes: int = 1, node: int = 0, master_addr: str | None = None,
               master_port: int | None = None) -> tuple[WorldConfig, range]:
    """A launch.py world seen from this host: (the agent's config, the observer ranks this host runs).

    Host ``node`` runs ``observers`` ranks after the agent's rank 0. One host
    listens on loopback only (TensorPipe trusts what its peers send).
    """
    if node >= nnodes:
        raise WorldError(f"--node-rank {node}: must be below --nnodes {nnodes}")
    if nnodes > 1 and master_addr is None:
        raise WorldError("--master-addr: required with --nnodes > 1 (the address of the host with --node-rank 0)")
    if nnodes == 1:
        os.environ.setdefault("TP_SOCKET_IFNAME", "lo")
    port = master_port or (free_port() if nnodes == 1 else 29500)
    world = WorldConfig(0, 1 + nnodes * observers, master_addr or "127.0.0.1", port, timeout_s)
    return world, range(1 + node * observers, 1 + (node + 1) * observers)


def join(cfg: WorldConfig) -> None:
    """``init_rpc`` with TensorPipe; returns once every rank has joined (or fails after ``rpc_timeout_s``)."""
    from torch.distributed import rpc

    options = rpc.TensorPipeRpcBackendOptions(
        num_worker_threads=16,
        rpc_timeout=cfg.rpc_timeout_s,
        init_method=cfg.init_method or f"tcp://{cfg.master_addr}:{cfg.master_port}",
    )
    with warnings.catch_warnings():  # init_rpc's own use of a deprecated gloo path is not the user's business
        warnings.filterwarnings("ignore", message=".*as a ProcessGroup.*", category=UserWarning)
        rpc.init_rpc(cfg.name, rank=cfg.rank, world_size=cfg.world_size, rpc_backend_options=options)


def leave(graceful: bool, timeout_s: float = 10.0) -> None:
    """RPC shutdown: graceful (every rank meets, no broken-pipe noise) when the whole world is alive,
    local otherwise; the process exits hard if even that does not return in time."""
    from torch.distributed import rpc

    watchdog = threading.Timer(timeout_s + 5.0, _hard_exit, args=("rpc.shutdown did not return",))
    watchdog.daemon = True
    watchdog.start()
    try:
        rpc.shutdown(graceful=graceful, timeout=timeout_s)
    except Exception as exc:  # a peer left early: the local shutdown in rpc.shutdown's finally has run
        print(f"note: RPC shutdown was not graceful ({type(exc).__name__})", file=sys.stderr, flush=True)
    finally:
        watchdog.cancel()


def _hard_exit(reason: str, code: int = 1) -> None:
    print(f"{reason}; exiting", file=sys.stderr, flush=True)
    os._exit(code)


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies, so no observer outlives its launcher."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
