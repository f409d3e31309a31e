"""Small recipes that several ``dlkit`` modules need, each written once.

- :func:`atomic_write`: the one way ``dlkit`` writes a file that must never be seen half
  written (checkpoints, manifests, shards, exported models, downloads). Two variants share its
  policy: :func:`atomic_path` for writers that take a file *name* (``torch.export.save``, ONNX
  tools) and :func:`commit_file` for a file already complete elsewhere in the folder (a
  download's verified ``.part`` file).
- :func:`eval_mode`: run a model in eval mode and put its previous mode back afterwards.
- :func:`check_positive_int`, :func:`check_fraction`, :func:`check_choice`: argument validators
  whose error messages say what was expected and what came in.

This module sits at the bottom of the package: it imports nothing from ``dlkit``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "atomic_path", "commit_file", "fsync_dir", "eval_mode", "check_positive_int", "check_fraction",
           "check_choice"]

PathLike = str | os.PathLike


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's metadata (the names it holds) to disk; a no-op where unsupported.

    A rename lives in the folder's metadata: without this, a power cut right after
    :func:`os.replace` may undo the rename even though the file's bytes reached the disk.
    """
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems (e.g. certain network mounts) refuse a folder fsync
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "wb", *, fsync: bool = True,
                 before_replace: Callable[[Path], None] | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success rename it over ``path``.

    The policy, the same for every caller: write to a temporary file in the destination's
    folder (so the rename cannot cross file systems), flush and ``fsync`` it, rename it over
    the destination with :func:`os.replace` (atomic on POSIX and Windows), then ``fsync`` the
    folder. If the block raises, the temporary file is removed and ``path`` is left exactly as
    it was. Readers therefore see either the old file or the complete new one, never a part.

    Args:
        path: The destination file. Its folder is created if needed.
        mode: ``"wb"`` (bytes) or ``"w"`` (text, UTF-8).
        fsync: Flush the data and the folder to disk (keep ``True`` except for scratch files).
        before_replace: Called with ``path`` after the new file is complete and just before the
            rename (e.g. to keep the old file as a backup).

    Yields:
        The open file object to write to.

    Raises:
        ValueError: If ``mode`` is not ``"wb"`` or ``"w"``.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        encoding = "utf-8" if mode == "w" else None
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        if before_replace is not None:
            before_replace(path)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if fsync:
        fsync_dir(path.parent)


def commit_file(src: PathLike, path: PathLike, *, fsync: bool = True) -> Path:
    """Move a complete file ``src`` over ``path`` with :func:`atomic_write`'s policy.

    ``fsync`` the file, rename it with :func:`os.replace`, then ``fsync`` the folder. For a
    file that had to be written under a name of its own first, e.g. a download's ``.part``
    file that is kept between attempts so a later call can resume, and renamed only once its
    checksum is verified. ``src`` must be in the same folder (one file system) as ``path``.

    Args:
        src: The finished file.
        path: The destination; replaced in one step if it exists.
        fsync: Flush the data and the folder to disk.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: If ``src`` is in another folder than ``path``.
    """
    src, path = Path(src), Path(path)
    if src.parent.resolve() != path.parent.resolve():
        raise ValueError(f"src must be in the destination's folder {path.parent}, got {src}")
    if fsync:
        with open(src, "rb+") as f:
            os.fsync(f.fileno())
    os.replace(src, path)
    if fsync:
        fsync_dir(path.parent)
    return path


@contextlib.contextmanager
def atomic_path(path: PathLike, *, suffix: str = ".tmp", fsync: bool = True) -> Iterator[Path]:
    """Like :func:`atomic_write`, for writers that want a file name rather than a file object.

    Yields the name of a fresh temporary file beside ``path`` (hidden: it starts with ``.``;
    it ends with ``suffix`` for libraries that look at the extension). When the block
    returns, that file is committed over ``path`` by :func:`commit_file`; when it raises, the
    temporary file is removed and ``path`` is left as it was.

    Args:
        path: The destination file. Its folder is created if needed.
        suffix: End of the temporary name, e.g. ``".onnx"`` or ``".pt2"``.
        fsync: Flush the data and the folder to disk.

    Yields:
        The temporary :class:`~pathlib.Path` to write to (it exists, empty).

    Raises:
        FileNotFoundError: If the block did not leave a file at the yielded name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        commit_file(tmp, path, fsync=fsync)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def eval_mode(*modules: Any) -> Iterator[None]:
    """Put each module in eval mode for the block, then restore each one's previous mode.

    Restoring matters: a helper that leaves a learner's model in eval mode silently turns off
    its dropout and freezes its batch-norm statistics for the rest of the training.

    Args:
        *modules: ``torch.nn.Module`` objects (anything with ``.training`` and ``.train()``).
    """
    # Remember every submodule's flag: a model may be partly frozen on purpose.
    saved = [(m, [(sub, sub.training) for sub in m.modules()]) for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for _, flags in saved:
            for sub, was_training in flags:
                sub.training = was_training


def check_positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` if it is an int (not a bool) ``>= minimum``; raise ``ValueError`` if not."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_fraction(value: Any, name: str, *, open_low: bool = True,
                   open_high: bool = True) -> float:
    """Return ``value`` as a float in (0, 1) (ends included when not open); raise if outside."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}") from None
    low_ok = v > 0 if open_low else v >= 0
    high_ok = v < 1 if open_high else v <= 1
    if isinstance(value, bool) or not (low_ok and high_ok):
        lo, hi = "(" if open_low else "[", ")" if open_high else "]"
        raise ValueError(f"{name} must be in {lo}0, 1{hi}, got {value!r}")
    return v


def check_choice(value: Any, name: str, choices: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``; raise ``ValueError`` naming them if not."""
    options = list(choices)
    if value not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value
