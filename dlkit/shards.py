"""Writing a dataset as shards and streaming it back with bounded memory.

A shard is one uncompressed ``.npz`` file holding ``images`` (``uint8``
``n x C x H x W``), ``labels`` (``int64``) and ``ids`` (``int64``, the item's
position in the original dataset). ``index.json`` lists the shards with their
item counts and SHA-256 checksums. Every file is written to a temporary name
and renamed, and ``index.json`` last, so a crash never leaves a half-written
dataset that looks complete.

:class:`ShardedDataset` is an :class:`~torch.utils.data.IterableDataset` that
holds one shard in memory at a time. Shards, not items, are divided among the
readers: with ``world_size`` processes (distributed ranks) each running
``num_workers`` DataLoader workers, reader ``r = rank * num_workers + worker``
takes shards ``r, r + R, r + 2R, ...`` of the epoch's shard order (``R`` =
readers in all), so every item is read exactly once per epoch. The shard order
and the order inside each shard are shuffled from ``(seed, epoch)``: the same
on every rank, different every epoch.

Taught in chapter 02 (data collection); used in chapter 08 (efficient training).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from dlkit._util import atomic_write

__all__ = ["INDEX_NAME", "ShardedDataset", "shard_assignment", "write_shards"]

PathLike = Union[str, "os.PathLike[str]"]
INDEX_NAME = "index.json"
FORMAT = "dlkit-shards-1"


def _batches(data: Any) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Accept an ImageSet, an (images, labels) pair, or an iterable of such pairs."""
    if hasattr(data, "images") and hasattr(data, "labels"):
        yield np.asarray(data.images), np.asarray(data.labels)
    elif isinstance(data, tuple) and len(data) == 2 and not isinstance(data[0], tuple):
        x, y = data
        yield (x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x),
               y.numpy() if isinstance(y, torch.Tensor) else np.asarray(y))
    else:
        for x, y in data:
            yield (x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x),
                   y.numpy() if isinstance(y, torch.Tensor) else np.asarray(y))


def write_shards(
    data: Any,
    out_dir: PathLike,
    *,
    shard_size: int = 1000,
    classes: list[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write images and labels as shards of ``shard_size`` items plus ``index.json``.

    ``data`` may be an iterable of batches, so a dataset larger than memory is
    written while holding one shard at a time. Used in chapter 02 (data
    collection) and chapter 08 (efficient training).

    Args:
        data: An :class:`~dlkit.data.ImageSet`, an ``(images, labels)`` pair, or
            an iterable of ``(images, labels)`` batches; images ``uint8``
            ``N x C x H x W``, labels integers.
        out_dir: Folder to write to (created).
        shard_size: Items per shard (the last shard may be smaller).
        classes: Class names stored in the index.
        overwrite: Replace an existing dataset in ``out_dir``.

    Returns:
        The path of ``index.json``.

    Raises:
        FileExistsError: If ``out_dir`` already holds an index and not ``overwrite``.
        ValueError: If a batch is not ``uint8`` ``N x C x H x W`` with one label
            per image, shapes change between batches, or there is no data.
    """
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"shard_size must be an int >= 1, got {shard_size!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    index_path = out / INDEX_NAME
    if index_path.exists():
        if not overwrite:
            raise FileExistsError(f"{index_path} exists; pass overwrite=True to replace that dataset")
        old = json.loads(index_path.read_text())
        index_path.unlink()  # first, so a crash below cannot leave a stale, valid-looking index
        for s in old.get("shards", []):
            (out / s["file"]).unlink(missing_ok=True)
    shards: list[dict[str, Any]] = []
    shape: tuple[int, ...] | None = None
    buf_x: list[np.ndarray] = []
    buf_y: list[np.ndarray] = []
    buffered = 0
    next_id = 0

    def flush(n: int) -> None:
        nonlocal buf_x, buf_y, buffered, next_id
        x, y = np.concatenate(buf_x), np.concatenate(buf_y)
        x_out, y_out = x[:n], y[:n]
        name = f"shard-{len(shards):05d}.npz"
        ids = np.arange(next_id, next_id + n, dtype=np.int64)
        with atomic_write(out / name) as f:
            np.savez(f, images=x_out, labels=y_out, ids=ids)
        digest = hashlib.sha256((out / name).read_bytes()).hexdigest()
        shards.append({"file": name, "count": int(n), "sha256": digest})
        next_id += n
        buf_x, buf_y, buffered = [x[n:]], [y[n:]], len(y) - n

    for x, y in _batches(data):
        if x.dtype != np.uint8 or x.ndim != 4:
            raise ValueError(f"images must be uint8 N x C x H x W, got {x.dtype} {x.shape}")
        if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"labels must be integers of shape ({len(x)},), got {y.dtype} {y.shape}")
        if shape is None:
            shape = tuple(x.shape[1:])
        elif tuple(x.shape[1:]) != shape:
            raise ValueError(f"every image must be {shape}, got a batch of {tuple(x.shape[1:])}")
        buf_x.append(np.ascontiguousarray(x))
        buf_y.append(y.astype(np.int64))
        buffered += len(y)
        while buffered >= shard_size:
            flush(shard_size)
    if buffered:
        flush(buffered)
    if not shards:
        raise ValueError("no items to write")
    index = {"format": FORMAT, "shape": list(shape or ()), "classes": classes or [],
             "count": next_id, "shards": shards}
    with atomic_write(index_path, "w") as f:
        f.write(json.dumps(index, indent=1))
    return index_path


def shard_assignment(num_shards: int, rank: int, world_size: int, worker: int, num_workers: int) -> list[int]:
    """Positions (in the epoch's shard order) read by one worker of one rank.

    Reader ``r = rank * num_workers + worker`` of ``R = world_size * num_workers``
    readers takes positions ``r, r + R, r + 2R, ...``: disjoint, together all.
    Used by :class:`ShardedDataset` (chapter 02).

    Args:
        num_shards: Shards in the dataset.
        rank: This process's rank in ``[0, world_size)``.
        world_size: Number of processes.
        worker: This DataLoader worker's id in ``[0, num_workers)``.
        num_workers: Workers per process (1 without worker processes).

    Returns:
        The positions, increasing.

    Raises:
        ValueError: If an id is out of range.
    """
    if not (0 <= rank < world_size and 0 <= worker < num_workers):
        raise ValueError(f"need 0 <= rank < world_size and 0 <= worker < num_workers, got "
                         f"rank={rank}, world_size={world_size}, worker={worker}, num_workers={num_workers}")
    readers = world_size * num_workers
    return list(range(rank * num_workers + worker, num_shards, readers))


class ShardedDataset(IterableDataset):
    """Stream ``(image, label)`` pairs from shards written by :func:`write_shards`.

    One shard is in memory at a time (per worker). Shards are split among
    DataLoader workers and distributed ranks (see :func:`shard_assignment`),
    so each item is yielded once per epoch across all of them. With fewer
    shards than readers some readers get nothing: write at least
    ``world_size * num_workers`` shards. Ranks can get different item counts
    when shard sizes differ; a training loop across ranks must then stop at
    the shortest rank (or use equal shards). Call :meth:`set_epoch` before each
    epoch to get a new order.

    Used in chapter 02 (data collection) and chapter 08 (efficient training).

    Args:
        root: Folder with ``index.json``.
        shuffle: Shuffle the shard order and the items in each shard.
        seed: Seed of the shuffle (with the epoch).
        rank: This process's rank; default: ``torch.distributed``'s rank when
            initialised, else 0.
        world_size: Number of processes; default as for ``rank``, else 1.
        transform: Applied to each ``uint8`` ``C x H x W`` image tensor.
        verify: Check each shard's SHA-256 before using it.
        with_ids: Yield ``(image, label, id)``, the id being the item's
            position in the data given to :func:`write_shards`.

    Raises:
        FileNotFoundError: If ``root`` has no ``index.json``.
        ValueError: If the index is not in this format, or ``rank``/``world_size`` are invalid.
    """

    def __init__(
        self,
        root: PathLike,
        *,
        shuffle: bool = False,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        transform: Callable[[torch.Tensor], Any] | None = None,
        verify: bool = False,
        with_ids: bool = False,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        index_path = self.root / INDEX_NAME
        if not index_path.is_file():
            raise FileNotFoundError(f"{index_path} not found: write the shards with dlkit.shards.write_shards first")
        index = json.loads(index_path.read_text())
        if index.get("format") != FORMAT:
            raise ValueError(f"{index_path}: format {index.get('format')!r}, expected {FORMAT!r}")
        self.shards: list[dict[str, Any]] = index["shards"]
        self.classes: list[str] = index.get("classes", [])
        self.shape = tuple(index["shape"])
        self.num_items = int(index["count"])
        if rank is None or world_size is None:
            dist = torch.distributed
            initialised = dist.is_available() and dist.is_initialized()
            rank = (dist.get_rank() if initialised else 0) if rank is None else rank
            world_size = (dist.get_world_size() if initialised else 1) if world_size is None else world_size
        if not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.rank, self.world_size = int(rank), int(world_size)
        self.shuffle, self.seed, self.epoch = shuffle, int(seed), 0
        self.transform, self.verify, self.with_ids = transform, verify, with_ids

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose shuffle the next iteration uses (same on every rank)."""
        self.epoch = int(epoch)

    def shard_order(self) -> list[int]:
        """The order in which this epoch visits the shards (the same on every rank)."""
        order = np.arange(len(self.shards))
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(order)
        return order.tolist()

    def _reader(self) -> tuple[int, int]:
        info = get_worker_info()
        return (0, 1) if info is None else (info.id, info.num_workers)

    def my_shards(self) -> list[int]:
        """Indices of the shards this rank and worker read this epoch, in reading order."""
        worker, num_workers = self._reader()
        order = self.shard_order()
        return [order[p] for p in shard_assignment(len(order), self.rank, self.world_size, worker, num_workers)]

    def read_shard(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Load shard ``k``: ``(images, labels, ids)``.

        Raises:
            ValueError: If ``verify`` is on and the checksum differs, or the
                shard holds another number of items than the index says.
        """
        meta = self.shards[k]
        path = self.root / meta["file"]
        if self.verify:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest != meta["sha256"]:
                raise ValueError(f"{path}: SHA-256 {digest} differs from the index ({meta['sha256']}); the shard is corrupt")
        with np.load(path, allow_pickle=False) as npz:
            x, y, ids = npz["images"], npz["labels"], npz["ids"]
        if len(y) != meta["count"] or len(x) != len(y):
            raise ValueError(f"{path}: holds {len(y)} items, the index says {meta['count']}")
        return x, y, ids

    def iter_shards(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yield this reader's shards whole (for statistics and fast batch reading)."""
        for k in self.my_shards():
            yield self.read_shard(k)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        for k in self.my_shards():
            x, y, ids = self.read_shard(k)
            order = np.arange(len(y))
            if self.shuffle:
                order = np.random.default_rng([self.seed, self.epoch, k]).permutation(order)
            for i in order:
                img = torch.from_numpy(x[i])
                img = self.transform(img) if self.transform else img
                yield (img, int(y[i]), int(ids[i])) if self.with_ids else (img, int(y[i]))
