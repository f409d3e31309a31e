"""Checkpoints you can trust: written atomically, loaded safely, enough to resume exactly.

Used in chapter 07 (training and evaluation) through ``fit(..., checkpoint=path, resume=True)``.
A checkpoint is a dict of tensors and plain Python values saved with :func:`torch.save` and read
back with ``torch.load(..., weights_only=True)``, which refuses to run arbitrary pickled code.
Writing goes through :func:`dlkit._util.atomic_write` (a temporary file in the same folder,
flushed to disk with ``fsync``, then renamed over the old checkpoint), so a crash or a full disk
mid-write never destroys the last good checkpoint; the one before it is kept as ``NAME.prev``.
"""

from __future__ import annotations

import os
import pickle
import random
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlkit._util import atomic_write, commit_file

__all__ = [
    "CheckpointError",
    "FORMAT",
    "save_checkpoint",
    "load_checkpoint",
    "previous_path",
    "rng_state",
    "set_rng_state",
    "loader_generators",
    "generator_states",
    "set_generator_states",
]

FORMAT = "dlkit.checkpoint/1"
PathLike = str | os.PathLike


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used: corrupt, truncated, or not a dlkit checkpoint."""


def previous_path(path: PathLike) -> Path:
    """Where the checkpoint before ``path`` is kept: ``path`` with ``.prev`` appended."""
    path = Path(path)
    return path.with_name(path.name + ".prev")


def _keep_previous(path: Path) -> None:
    prev = previous_path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{prev.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        os.link(path, tmp)  # a second name for the old file: no copy, no window without it
    except OSError:  # file systems without hard links
        import shutil

        shutil.copy2(path, tmp)
    commit_file(tmp, prev)  # the same rename-and-fsync policy as every atomic write


def save_checkpoint(state: dict[str, Any], path: PathLike, keep_previous: bool = True) -> Path:
    """Write ``state`` to ``path`` atomically.

    Used by :func:`dlkit.train.fit` (chapter 07).

    Args:
        state: Tensors and plain Python values (dict, list, tuple, str, int, float, bool, None).
        path: Destination file; its folder is created if needed.
        keep_previous: Keep the checkpoint being replaced as ``path.prev``.

    Returns:
        The path written.

    Raises:
        OSError: If writing fails; ``path`` (and ``path.prev``) are then left as they were and
            the temporary file is removed.
    """
    path = Path(path)

    def keep(old: Path) -> None:  # runs once the new file is complete, just before the rename
        if keep_previous and old.is_file():
            _keep_previous(old)

    with atomic_write(path, "wb", before_replace=keep) as f:
        torch.save(state, f)
    return path


def load_checkpoint(path: PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``.

    Used by :func:`dlkit.train.fit` (chapter 07). Tensors are loaded on the CPU; ``fit`` moves
    them to the model's device.

    Args:
        path: The checkpoint file.

    Returns:
        The saved dict.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        CheckpointError: If the file is corrupt or truncated, holds objects that safe loading
            refuses, or is not a dlkit checkpoint. The message names the file and, when it
            exists, the previous checkpoint to resume from instead.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    prev = previous_path(path)
    hint = (f" The previous checkpoint {prev} is untouched: resume from it with resume={str(prev)!r}."
            if prev.is_file() else "")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        refused = [line.strip() for line in str(err).splitlines() if "Unsupported global" in line]
        if isinstance(err, pickle.UnpicklingError) and refused:
            raise CheckpointError(
                f"checkpoint {path} holds objects other than tensors and plain Python values, "
                f"which safe loading (weights_only=True) refuses ({refused[0]}).{hint}") from err
        # Truncated zip, bad CRC, garbage bytes: all mean a broken file.
        reason = (str(err).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({path.stat().st_size:,} bytes) and cannot "
            f"be loaded ({type(err).__name__}: {reason}).{hint}") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a dlkit checkpoint (expected a dict with "
                              f"format={FORMAT!r}); it cannot be resumed from.{hint}")
    return state


def rng_state() -> dict[str, Any]:
    """The state of Python's, NumPy's and PyTorch's global generators, as tensors and ints.

    Used by :func:`dlkit.train.fit` (chapter 07). CUDA generators are included when CUDA is
    available. Only plain types are used so that ``weights_only=True`` can load them.
    """
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64),
                   "gauss": gauss},
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore generator states saved by :func:`rng_state`. Used in chapter 07."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["name"], npy["keys"].numpy().astype(np.uint32), npy["pos"],
                         npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        if len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        else:
            warnings.warn("the checkpoint was written with a different number of GPUs; their "
                          "random generators start fresh", RuntimeWarning, stacklevel=2)


def loader_generators(loader: Any) -> list[torch.Generator]:
    """The ``torch.Generator`` objects that decide a loader's shuffling order.

    Used by :func:`dlkit.train.fit` (chapter 07) to save and restore them, so that a resumed
    run sees the same batches as an uninterrupted one. Looks at the loader's own generator and
    at its sampler and batch sampler (and the samplers they wrap), e.g. the seeded
    ``RandomSampler`` of :func:`dlkit.data.make_loader`. A shuffling sampler without a generator
    draws from the global torch generator, which the checkpoint saves anyway.

    Args:
        loader: A DataLoader or any object; non-loaders give an empty list.

    Returns:
        The distinct generators found, in a fixed order.
    """
    found: list[torch.Generator] = []
    seen: set[int] = set()

    def visit(obj: Any, depth: int) -> None:
        if obj is None or depth > 4 or id(obj) in seen:
            return
        seen.add(id(obj))
        gen = getattr(obj, "generator", None)
        if isinstance(gen, torch.Generator) and all(g is not gen for g in found):
            found.append(gen)
        for name in ("sampler", "batch_sampler"):
            visit(getattr(obj, name, None), depth + 1)

    visit(loader, 0)
    return found


def generator_states(loader: Any) -> list[torch.Tensor]:
    """States of :func:`loader_generators` of ``loader`` (CPU byte tensors)."""
    return [g.get_state() for g in loader_generators(loader)]


def set_generator_states(loader: Any, states: Iterable[torch.Tensor]) -> None:
    """Restore the states saved by :func:`generator_states` into ``loader``'s generators."""
    states = list(states)
    gens = loader_generators(loader)
    if len(gens) != len(states):
        warnings.warn(
            f"the checkpoint saved {len(states)} shuffling generator(s) but this train_loader "
            f"has {len(gens)}: its shuffling order will differ from the interrupted run",
            RuntimeWarning, stacklevel=2)
        return
    for gen, st in zip(gens, states):
        gen.set_state(st)
