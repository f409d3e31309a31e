"""Data-parallel training with PyTorch's own engine, launched by ``torchrun``.

Used in chapter 08 (efficient training). ``torchrun`` starts one process per device and tells
each one who it is through environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``). The helpers here read them, join the process group (gloo on
CPUs, nccl on GPUs), give each rank its share of the data, and make sure that only rank 0 prints
and writes files. Without ``torchrun`` the same script runs as a single process (world size 1),
so one file serves a laptop, one GPU and many.

    with distributed() as ctx:              # joins the group; always leaves it, even on error
        net = ctx.wrap(model)               # DistributedDataParallel when world_size > 1
        loader = shard_loader(X, y, per_rank_batch, seed=0)
        fit(net, loader, ..., device=ctx.device, progress=ctx.is_main, verbose=ctx.is_main)
        save_on_main(model.state_dict(), "model.pt")
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset

from dlkit._util import atomic_write

__all__ = [
    "Context",
    "distributed",
    "setup",
    "teardown",
    "is_main",
    "rank",
    "world_size",
    "print0",
    "barrier",
    "all_reduce_mean",
    "save_on_main",
    "shard_loader",
    "EpochLoader",
    "torchrun_command",
    "run_torchrun",
]

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclasses.dataclass(frozen=True)
class Context:
    """Who this process is in a (possibly one-process) data-parallel run.

    Attributes:
        rank: Global index of this process, ``0 .. world_size-1``.
        world_size: Number of processes taking part.
        local_rank: Index of this process on its own machine (picks its GPU).
        device: The device this process computes on.
        backend: ``"gloo"``, ``"nccl"``, or ``None`` when no process group was created.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that logs and saves."""
        return self.rank == 0

    def wrap(self, model: nn.Module, **ddp_kwargs: Any) -> nn.Module:
        """Move ``model`` to this rank's device and wrap it for data-parallel training.

        Args:
            model: The network (identical initial weights on every rank are not required:
                ``DistributedDataParallel`` broadcasts rank 0's weights when it is built).
            **ddp_kwargs: Passed on to ``DistributedDataParallel``.

        Returns:
            The ``DistributedDataParallel`` wrapper when ``world_size > 1``, else ``model``.
        """
        model = model.to(self.device)
        if self.backend is None or self.world_size == 1:
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, **ddp_kwargs)


def _env_int(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from None


def setup(backend: str | None = None, device: torch.device | str | None = None) -> Context:
    """Join the process group described by ``torchrun``'s environment variables.

    Used in chapter 08. Without ``RANK``/``WORLD_SIZE`` in the environment (a plain ``python``
    run) nothing is initialised and a one-process :class:`Context` is returned.

    Args:
        backend: ``"gloo"`` or ``"nccl"``; default nccl when this node has a GPU for each of
            its processes (``LOCAL_WORLD_SIZE``) and ``device`` is not a CPU, else gloo.
        device: Override the device; default ``cuda:LOCAL_RANK`` with CUDA, else the CPU.

    Returns:
        The :class:`Context` of this process.

    Raises:
        ValueError: If only some of the variables are set, or they are inconsistent
            (rank outside ``0 .. WORLD_SIZE-1``), or ``backend`` is unknown.
        RuntimeError: If ``nccl`` is asked for without CUDA.
    """
    present = [name for name in _ENV if name in os.environ]
    if 0 < len(present) < len(_ENV):
        missing = sorted(set(_ENV) - set(present))
        raise ValueError(
            f"found {present} but not {missing} in the environment: launch with torchrun, "
            "which sets RANK, WORLD_SIZE and LOCAL_RANK together"
        )
    launched = len(present) == len(_ENV)
    rank_, world, local = (_env_int(n) for n in _ENV) if launched else (0, 1, 0)
    if world < 1 or not 0 <= rank_ < world or local < 0:
        raise ValueError(f"need 0 <= RANK < WORLD_SIZE and LOCAL_RANK >= 0, got "
                         f"RANK={rank_}, WORLD_SIZE={world}, LOCAL_RANK={local}")
    cuda = torch.cuda.is_available()
    if backend is None:
        # nccl wants one GPU per process; more processes than GPUs on this node train on CPUs.
        per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        gpus_enough = cuda and per_node <= torch.cuda.device_count()
        backend = "nccl" if gpus_enough and (device is None or torch.device(device).type == "cuda") \
            else "gloo"
    if backend not in {"gloo", "nccl"}:
        raise ValueError(f"backend must be 'gloo' or 'nccl', got {backend!r}")
    if backend == "nccl" and not cuda:
        raise RuntimeError("the nccl backend needs CUDA GPUs; use backend='gloo' on CPUs")
    if device is None:
        device = torch.device("cuda", local % torch.cuda.device_count()) if backend == "nccl" \
            else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not launched:
        return Context(0, 1, 0, device, None)
    if not dist.is_initialized():
        # MASTER_ADDR/MASTER_PORT come from torchrun; env:// reads them.
        dist.init_process_group(backend=backend, init_method="env://",
                                rank=rank_, world_size=world)
    return Context(rank_, world, local, device, backend)


def teardown() -> None:
    """Leave the process group, if one was joined (safe to call twice). Used in chapter 08."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def distributed(backend: str | None = None,
                device: torch.device | str | None = None) -> Iterator[Context]:
    """:func:`setup` on entry and :func:`teardown` on exit, even when the body raises.

    Used in chapter 08. A process that dies without leaving the group can leave the others
    waiting in a collective until a timeout; leaving it cleanly lets ``torchrun`` report the
    error at once.

    Args:
        backend: See :func:`setup`.
        device: See :func:`setup`.

    Yields:
        The :class:`Context` of this process.
    """
    ctx = setup(backend, device)
    try:
        yield ctx
    finally:
        teardown()


def rank() -> int:
    """Global rank of this process (0 when not distributed). Used in chapter 08."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Number of processes (1 when not distributed). Used in chapter 08."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """True on rank 0 (and in a plain, one-process run). Used in chapter 08."""
    return rank() == 0


def print0(*args: Any, **kwargs: Any) -> None:
    """``print`` on rank 0 only, so that N processes do not print every line N times.

    Used in chapter 08. Output is flushed at once: several processes share one terminal.
    """
    if is_main():
        kwargs.setdefault("flush", True)
        print(*args, **kwargs)


def barrier() -> None:
    """Wait until every rank reaches this point (no-op in one process). Used in chapter 08."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(value: torch.Tensor | float) -> torch.Tensor:
    """The mean of ``value`` over all ranks (a copy; ``value`` itself is left alone).

    Used in chapter 08 to report a loss averaged over every rank rather than rank 0's share.

    Args:
        value: A tensor (on this rank's device; CPU for gloo) or a number.

    Returns:
        A float tensor equal on every rank.
    """
    t = torch.as_tensor(value).detach().clone()
    if not t.is_floating_point():
        t = t.double()
    if world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= world_size()
    return t


def save_on_main(obj: Any, path: str | os.PathLike) -> Path | None:
    """``torch.save`` on rank 0 only, atomically, then wait for every rank.

    Used in chapter 08. Writing from every rank would race on one file; writing through
    :func:`dlkit._util.atomic_write` means a reader never sees half a checkpoint. The barrier makes the file exist
    for every rank once this returns.

    Args:
        obj: What to save (for a DDP model, save ``model.module.state_dict()`` or the unwrapped
            model's, so that the keys carry no ``module.`` prefix).
        path: Destination file; its folder must exist.

    Returns:
        The path on rank 0, ``None`` on the other ranks.

    Raises:
        FileNotFoundError: If the destination folder does not exist (raised on rank 0).
    """
    path = Path(path)
    written: Path | None = None
    if is_main():
        if not path.parent.is_dir():
            raise FileNotFoundError(f"cannot save {path}: folder {path.parent} does not exist")
        with atomic_write(path, "wb") as f:
            torch.save(obj, f)
        written = path
    barrier()
    return written


class EpochLoader:
    """A DataLoader over a :class:`DistributedSampler`, with the sampler's ``set_epoch``.

    ``DistributedSampler`` draws its permutation from ``seed + epoch`` and must be told the
    epoch with ``set_epoch``; forgetting it repeats the first epoch's order forever.
    :func:`dlkit.train.fit` tells it (it calls ``set_epoch`` on its loader's sampler before
    every epoch, also after a resume, so epoch ``e`` always gets the permutation of
    ``seed + e``); a hand-written loop calls ``loader.set_epoch(epoch)`` itself. The wrapper
    keeps no epoch counter of its own: one that counted passes would restart at 0 in a resumed
    run and replay the first epoch's shuffle. Used in chapter 08.
    """

    def __init__(self, loader: DataLoader, sampler: DistributedSampler) -> None:
        self.loader = loader
        self.sampler = sampler

    def set_epoch(self, epoch: int) -> None:
        """Choose the permutation of ``epoch`` (0-based) for the next pass."""
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.loader)


def shard_loader(
    data: Dataset | tuple[torch.Tensor, torch.Tensor],
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int = 0,
    drop_last: bool = False,
    num_replicas: int | None = None,
    rank_: int | None = None,
    **loader_kwargs: Any,
) -> EpochLoader:
    """A loader that gives this rank its own ``1/world_size`` share of ``data`` every epoch.

    Used in chapter 08. Rank ``r`` of ``W`` gets positions ``r, r+W, r+2W, ...`` of one shared
    permutation (drawn from ``seed + epoch``), so batch ``k`` of the ``W`` ranks together holds
    exactly the examples of batch ``k`` of size ``W * batch_size`` in a one-process run with the
    same seed: data parallelism changes where the work is done, not what is computed.

    Args:
        data: A ``Dataset`` or a pair of tensors ``(X, y)``.
        batch_size: Examples per batch **on each rank**.
        shuffle: Draw a new permutation every epoch (from ``seed + epoch``).
        seed: Must be the same on every rank.
        drop_last: Drop the tail that does not divide evenly among ranks (else it is padded
            by repeating examples so that every rank gets the same number).
        num_replicas: Number of shares; default the world size.
        rank_: Which share; default this process's rank.
        **loader_kwargs: Passed to ``DataLoader`` (``num_workers``, ``pin_memory``...).

    Returns:
        An :class:`EpochLoader` yielding ``(X, y)`` batches.

    Raises:
        ValueError: If ``batch_size`` < 1 or the tensors differ in length.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(data, tuple):
        X, y = data
        if X.shape[0] != y.shape[0]:
            raise ValueError(f"X and y must have the same length, got {tuple(X.shape)} and "
                             f"{tuple(y.shape)}")
        data = TensorDataset(X, y)
    sampler = DistributedSampler(
        data,
        num_replicas=world_size() if num_replicas is None else num_replicas,
        rank=rank() if rank_ is None else rank_,
        shuffle=shuffle,
        seed=seed,
        drop_last=drop_last,
    )
    loader = DataLoader(data, batch_size=batch_size, sampler=sampler, **loader_kwargs)
    return EpochLoader(loader, sampler)


def torchrun_command(
    target: str | Sequence[str],
    nproc_per_node: int = 2,
    *,
    module: bool = False,
    nnodes: int | str = 1,
    rdzv_endpoint: str | None = None,
    rdzv_id: str = "dlkit",
) -> list[str]:
    """The ``torchrun`` command line that starts ``target`` on this machine or on several.

    Used in chapter 08. One node uses ``--standalone`` (a private rendezvous on localhost);
    several nodes meet at ``rdzv_endpoint`` (``host:port`` of any one of them) through the c10d
    rendezvous, and the same command is run on every node.

    Args:
        target: A script path (or module name with ``module=True``) followed by its arguments.
        nproc_per_node: Processes per machine (one per GPU, or a few on a CPU).
        module: Run ``target`` as ``python -m target``.
        nnodes: Number of machines, or an elastic range such as ``"1:4"``.
        rdzv_endpoint: ``host:port`` where the nodes meet; required when ``nnodes != 1``.
        rdzv_id: A name shared by the nodes of one job.

    Returns:
        The argument list (``torchrun`` is run as ``python -m torch.distributed.run``, which is
        the same program and needs no script on the ``PATH``).

    Raises:
        ValueError: If ``nproc_per_node`` < 1, or several nodes are asked for without an
            endpoint.
    """
    if isinstance(nproc_per_node, bool) or not isinstance(nproc_per_node, int) \
            or nproc_per_node < 1:
        raise ValueError(f"nproc_per_node must be a positive integer, got {nproc_per_node!r}")
    args = [target] if isinstance(target, str) else list(target)
    cmd = [sys.executable, "-m", "torch.distributed.run"]
    if str(nnodes) == "1":
        cmd += ["--standalone", "--nnodes", "1"]
    else:
        if not rdzv_endpoint:
            raise ValueError("several nodes need rdzv_endpoint='host:port' of the node to meet at")
        cmd += ["--nnodes", str(nnodes), "--rdzv-backend", "c10d",
                "--rdzv-endpoint", rdzv_endpoint, "--rdzv-id", rdzv_id]
    cmd += ["--nproc-per-node", str(nproc_per_node)]
    if module:
        cmd.append("-m")
    return cmd + args


def run_torchrun(
    target: str | Sequence[str],
    nproc_per_node: int = 2,
    *,
    module: bool = False,
    timeout: float = 300,
    threads_per_process: int = 1,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run ``torchrun`` on this machine and return its completed process (output captured).

    Used in chapter 08 (the notebook launches a real multi-process run) and in the tests.

    Args:
        target: Script or module and its arguments (see :func:`torchrun_command`).
        nproc_per_node: Number of processes.
        module: Run ``target`` as a module.
        timeout: Seconds before the run is killed.
        threads_per_process: ``OMP_NUM_THREADS`` of each worker: N processes of T threads should
            not exceed the cores, or they slow each other down.
        env: Extra environment variables.

    Returns:
        The ``subprocess.CompletedProcess`` (``stdout`` holds both streams).

    Raises:
        RuntimeError: If the run fails; the message ends with its output.
    """
    cmd = torchrun_command(target, nproc_per_node, module=module)
    full_env = {**os.environ, "OMP_NUM_THREADS": str(threads_per_process), **(env or {})}
    # Workers import dlkit from wherever this process does, installed or not.
    root = str(Path(__file__).resolve().parents[1])
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (root, full_env.get("PYTHONPATH")) if p)
    done = subprocess.run(cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"torchrun exited with status {done.returncode}:\n"
                           f"{' '.join(cmd)}\n{done.stdout[-4000:]}")
    return done
