"""The RPC world both process roles join: names, ranks, the rendezvous, TensorPipe options, a shutdown that
cannot hang, and the record a job comes back in.

Rank 0 is the agent; every other rank is an observer. The agent and the
observers both import this module; observers never import the agent, and no
other library module touches RPC.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

AGENT = "agent"
LOOPBACK = ("lo", "lo0")


@dataclass
class Timed:
    """A job's result with the seconds its observer spent computing it: the agent's round trip less this
    is the job's transfer and queueing, so an iteration's time splits into sampling and moving data."""

    result: Any
    compute_s: float


def timed(work: Callable[[], Any]) -> Timed:
    start = time.perf_counter()
    result = work()
    return Timed(result, time.perf_counter() - start)


def compute_thread(prefix: str) -> ThreadPoolExecutor:
    """One thread for torch work that rounds as this process does. A new thread's first parallel ops take
    OpenMP's default thread count, not the process's (``torch.set_num_threads``); reductions such as the
    conjugate gradient's dot products then rounded differently in the first iteration after a resume."""
    import torch

    return ThreadPoolExecutor(
        1, thread_name_prefix=prefix, initializer=torch.set_num_threads, initargs=(torch.get_num_threads(),)
    )


def identity() -> dict[str, Any]:
    """Who answers: the observer's pid and host, for the run's world.json."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


class WorldError(ValueError):
    """A world the flags or the environment describe wrongly; the message names the flag."""


def observer_name(rank: int) -> str:
    return f"observer{rank}"


@dataclass(frozen=True)
class Network:
    """This host's TensorPipe settings, checked: the interface exists, and leaving loopback was asked for."""

    interface: str = "lo"
    transports: tuple[str, ...] | None = ("uv",)  # None: TensorPipe's default
    channels: tuple[str, ...] | None = None

    @classmethod
    def checked(
        cls,
        interface: str,
        transports: Sequence[str] | None,
        channels: Sequence[str] | None,
        multi_host: bool,
        trusted: bool,
    ) -> Network:
        """TensorPipe unpickles whatever its peers send, so every host that can reach the listening
        interface can run code here: loopback unless the user says, on the command line, that the
        network is trusted."""
        names = [name for _, name in socket.if_nameindex()]
        if interface not in names:
            raise WorldError(
                f"--interface {interface}: no such network interface on this host (this host has: {', '.join(names)})"
            )
        loopback = interface in LOOPBACK
        if multi_host and loopback:
            raise WorldError(
                f"--interface {interface}: hosts cannot reach each other over loopback; give the "
                "interface of the private network that joins them, e.g. --interface eth0 "
                "--trust-network"
            )
        if not loopback and not trusted:
            raise WorldError(
                f"--interface {interface}: listening beyond loopback lets every host on that "
                "network send this process code to run (TensorPipe unpickles what its peers send); "
                "add --trust-network to confirm that the network is private"
            )
        if not loopback:
            print(
                f"warning: RPC listens on {interface} ({interface_address(interface)}): every host that can "
                "reach it is trusted to run code in this process; use a private network only",
                file=sys.stderr,
                flush=True,
            )
        return cls(interface, tuple(transports) if transports else None, tuple(channels) if channels else None)


@dataclass(frozen=True)
class WorldConfig:
    """Where the world meets and how TensorPipe talks: the interface it listens on, its transports and
    channels, CUDA device maps.

    The rendezvous: on one host a file store in a private folder (``store_dir``), so no network listener
    exists at all; across hosts rank 0's TCP store at master_addr:master_port, listening on ``--interface``
    only; under torchrun torchrun's own store (``env://``). Waiting for the world is bounded by
    ``rendezvous_timeout_s``, each call afterwards by ``rpc_timeout_s``.
    """

    rank: int
    world_size: int
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    rpc_timeout_s: float = 600.0
    rendezvous_timeout_s: float = 300.0
    store_dir: str | None = None  # one host: the folder of the file store
    torchrun: bool = False
    network: Network = Network()
    device_maps: dict[str, dict[str, str]] = field(default_factory=dict)  # the agent's, per observer name

    @property
    def name(self) -> str:
        return AGENT if self.rank == 0 else observer_name(self.rank)

    @property
    def observers(self) -> list[str]:
        return [observer_name(r) for r in range(1, self.world_size)]

    @property
    def result_device(self) -> str | None:
        """Where this observer puts what it returns: the agent's GPU when the agent mapped it, else CPU."""
        mapped = self.device_maps.get(self.name)
        return next(iter(mapped.values())) if mapped else None

    @property
    def init_method(self) -> str:
        """The rendezvous URL ``init_rpc`` gets (schemes ``FILE_SCHEME`` and ``TCP_SCHEME`` are ours)."""
        query = {"timeout_s": self.rendezvous_timeout_s}
        if self.torchrun:
            return "env://"
        if self.store_dir is not None:
            return f"{FILE_SCHEME}://{Path(self.store_dir, 'store').resolve()}?{urlencode(query)}"
        listen = interface_address(self.network.interface) if self.network.interface not in LOOPBACK else None
        query["listen"] = listen or "127.0.0.1"
        return f"{TCP_SCHEME}://{self.master_addr}:{self.master_port}?{urlencode(query)}"


def interface_address(interface: str) -> str | None:
    """The IPv4 address of a network interface (what TensorPipe listens on), or None if it has none."""
    import fcntl
    import struct

    siocgifaddr = 0x8915
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            packed = fcntl.ioctl(s.fileno(), siocgifaddr, struct.pack("256s", interface.encode()[:15]))
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])


FILE_SCHEME, TCP_SCHEME = "dh-maml-file", "dh-maml-tcp"


def _rendezvous(url: str, **_: object) -> Iterator[tuple[object, int, int]]:
    """The store of a world: a file store (one host), or rank 0's TCP store listening on one address only
    (torch's own ``tcp://`` listens on every interface and waits 30 minutes whatever the caller wants)."""
    from torch.distributed import FileStore, TCPStore

    parsed = urlparse(url)
    query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    rank, world_size = int(query["rank"]), int(query["world_size"])
    timeout = timedelta(seconds=float(query["timeout_s"]))
    if parsed.scheme == FILE_SCHEME:
        store = FileStore(parsed.path, world_size)
        store.set_timeout(timeout)
    elif rank == 0:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((query["listen"], parsed.port))
            listener.listen()
        except OSError:
            listener.close()
            raise
        store = TCPStore(
            parsed.hostname, parsed.port, world_size, True, timeout, master_listen_fd=listener.detach()
        )  # the store owns the socket from here
    else:
        store = TCPStore(parsed.hostname, parsed.port, world_size, False, timeout)
    yield store, rank, world_size
    raise RuntimeError("the DH-MAML rendezvous cannot be repeated")


def _register_rendezvous() -> None:
    from torch.distributed.rendezvous import register_rendezvous_handler

    for scheme in (FILE_SCHEME, TCP_SCHEME):
        try:
            register_rendezvous_handler(scheme, _rendezvous)
        except RuntimeError:  # already registered in this process
            pass


def private_store_dir() -> str:
    """A fresh folder only this user can enter, for one host's file store."""
    return tempfile.mkdtemp(prefix="dh-maml-rendezvous-")


def remove_store_dir(world: WorldConfig | None) -> None:
    if world is not None and world.store_dir is not None:
        shutil.rmtree(world.store_dir, ignore_errors=True)


def torchrun_multi_host() -> bool:
    """Under torchrun: whether the world spans several hosts (it has more ranks than this host)."""
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    return world_size > int(os.environ.get("LOCAL_WORLD_SIZE", world_size))


def torchrun_world(
    network: Network, rpc_timeout_s: float, device: str = "cpu", rendezvous_timeout_s: float = 300.0
) -> WorldConfig | None:
    """The world torchrun describes in the environment (this process's rank), or None outside torchrun.

    torchrun numbers ranks node by node, so the agent's host holds ranks below LOCAL_WORLD_SIZE.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    world_size = int(os.environ["WORLD_SIZE"])
    if world_size < 2:
        raise WorldError(
            f"torchrun: WORLD_SIZE is {world_size}; DH-MAML needs at least 2 processes "
            "(rank 0 is the agent, the others observe)"
        )
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    return WorldConfig(
        int(os.environ["RANK"]),
        world_size,
        os.environ.get("MASTER_ADDR", "127.0.0.1"),
        int(os.environ.get("MASTER_PORT", 29500)),
        rpc_timeout_s,
        rendezvous_timeout_s,
        torchrun=True,
        network=network,
        device_maps=cuda_device_maps(device, range(1, local)),
    )


def host_world(
    observers: int,
    timeout_s: float,
    network: Network,
    nnodes: int = 1,
    node: int = 0,
    master_addr: str | None = None,
    master_port: int | None = None,
    device: str = "cpu",
    rendezvous_timeout_s: float = 300.0,
) -> tuple[WorldConfig, range]:
    """A launch.py world seen from this host: (the agent's config, the observer ranks this host runs).

    Host ``node`` runs ``observers`` ranks after the agent's rank 0. One host meets in a fresh private
    file store (remove it with ``remove_store_dir``); several at master_addr:master_port.
    """
    local = range(1 + node * observers, 1 + (node + 1) * observers)
    maps = cuda_device_maps(device, range(1, 1 + observers))  # the agent's host: node 0's ranks
    world = WorldConfig(
        0,
        1 + nnodes * observers,
        master_addr or "127.0.0.1",
        master_port or 29500,
        timeout_s,
        rendezvous_timeout_s,
        private_store_dir() if nnodes == 1 else None,
        network=network,
        device_maps=maps,
    )
    return world, local


def cuda_device_maps(device: str, agent_host_ranks: range) -> dict[str, dict[str, str]]:
    """The agent's CUDA device maps: to observers on its own host, only when the learner runs on CUDA and
    CUDA is there. Observers on other hosts are not mapped: whether they have CUDA is unknown before the
    world is up, and a map to a peer without it makes ``init_rpc`` fail."""
    import torch

    if not device.startswith("cuda") or not torch.cuda.is_available():
        return {}
    target = str(torch.device(device if ":" in device else f"cuda:{torch.cuda.current_device()}"))
    return {observer_name(r): {target: target} for r in agent_host_ranks}


def join(cfg: WorldConfig) -> None:
    """``init_rpc`` with TensorPipe; returns once every rank has joined (or fails after ``rpc_timeout_s``)."""
    from torch.distributed import rpc

    # Read when init_rpc builds TensorPipe and the Gloo group it uses for barriers: both listen on this interface.
    net = cfg.network
    os.environ["TP_SOCKET_IFNAME"] = os.environ["GLOO_SOCKET_IFNAME"] = net.interface
    _register_rendezvous()
    options = rpc.TensorPipeRpcBackendOptions(
        num_worker_threads=16,
        rpc_timeout=cfg.rendezvous_timeout_s,  # init_rpc's waits on the store; calls get rpc_timeout_s below
        init_method=cfg.init_method,
        device_maps=cfg.device_maps if cfg.rank == 0 else None,
        _transports=list(net.transports) if net.transports else None,
        _channels=list(net.channels) if net.channels else None,
    )
    with warnings.catch_warnings():  # init_rpc's own use of a deprecated gloo path is not the user's business
        warnings.filterwarnings("ignore", message=".*as a ProcessGroup.*", category=UserWarning)
        rpc.init_rpc(cfg.name, rank=cfg.rank, world_size=cfg.world_size, rpc_backend_options=options)
    rpc._set_rpc_timeout(cfg.rpc_timeout_s)


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


def die_with_parent(parent: int | None = None) -> None:
    """Ask Linux to SIGKILL this process when its parent dies, so no observer outlives its launcher.

    The request only covers a parent that dies after it is made; a spawned observer makes it a second or
    more after it started (it imports torch first), so given the ``parent`` pid it exits at once when that
    parent is already gone.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def keep_freed_memory() -> None:
    """Let this process reuse the memory it frees instead of handing it back to the kernel at once.

    The learner's curvature products allocate and free the same megabyte-sized activations thousands of
    times per TRPO step. glibc served each of them with a fresh mmap whose pages the kernel then faulted
    in and zeroed, a large share of the TRPO step (measured in docs/results.md). Fixed thresholds (mmap
    above 32 MiB only, trim above 256 MiB) keep such blocks in the heap. glibc on Linux only.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass
