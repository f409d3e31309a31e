"""Where image sets come from: the folders searched, the download, and scikit-learn's digits.

:func:`data_dirs` gives the lookup order (``root``, ``$DLKIT_DATA_DIR``, the user cache and,
for Fashion-MNIST, Debian's ``/usr/share/datasets``); ``_load_files`` finds the first
readable form there (see :mod:`dlkit.data.files`) or downloads through torchvision, and when
neither works raises a ``FileNotFoundError`` that names every place looked. Used in chapter 00
(where the data comes from) and chapter 02 (data collection).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np

from dlkit.data.files import (
    _IDX_NAMES,
    _idx_pair,
    _read_idx_folder,
    _read_npz,
    _read_torchvision_cifar10,
)
from dlkit.data.imageset import PathLike

__all__ = ["DIGITS_CLASSES", "DOWNLOAD_SOCKET_TIMEOUT", "SYSTEM_DATA_DIR", "data_dirs"]

DIGITS_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))

#: Folder where Debian's ``dataset-fashion-mnist`` package installs the IDX files
#: (as ``fashion-mnist/*.gz``). A module constant so tests can redirect it
#: (``monkeypatch.setattr(dlkit.data.sources, "SYSTEM_DATA_DIR", ...)``).
SYSTEM_DATA_DIR = Path("/usr/share/datasets")

#: Seconds a single network operation may block during a download; offline
#: machines should fail fast instead of hanging a notebook.
DOWNLOAD_SOCKET_TIMEOUT = 20.0


def _cache_dir() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "dlkit"


def data_dirs(name: str, root: PathLike | None = None) -> list[tuple[Path, str]]:
    """Return the folders :func:`load` searches for ``name``, in order, with why.

    Used in chapter 00 (where the data comes from) and by :func:`load`'s error message.

    Args:
        name: ``"cifar10"`` or ``"fashion_mnist"``.
        root: The ``root`` argument of :func:`load`, if any.

    Returns:
        ``(folder, origin)`` pairs: ``root``, ``$DLKIT_DATA_DIR``, the user
        cache (``$XDG_CACHE_HOME/dlkit``, default ``~/.cache/dlkit``) and,
        for Fashion-MNIST, :data:`SYSTEM_DATA_DIR`; duplicates dropped.
    """
    dirs: list[tuple[Path, str]] = []
    if root is not None:
        dirs.append((Path(root).expanduser(), "root argument"))
    env = os.environ.get("DLKIT_DATA_DIR")
    if env:
        dirs.append((Path(env).expanduser(), "$DLKIT_DATA_DIR"))
    dirs.append((_cache_dir(), "user cache"))
    if name == "fashion_mnist":
        dirs.append((SYSTEM_DATA_DIR, "system datasets"))
    unique: list[tuple[Path, str]] = []
    for folder, origin in dirs:
        if all(folder != seen for seen, _ in unique):
            unique.append((folder, origin))
    return unique


def _forms(name: str, split: str, folder: Path) -> list[tuple[str, Path, str]]:
    """The file forms accepted in ``folder``: (kind, path, description)."""
    forms = [("npz", folder / f"{name}.npz", str(folder / f"{name}.npz"))]
    if name == "cifar10":
        d = folder / "cifar-10-batches-py"
        forms.append(("tv_cifar", d, f"{d}{os.sep} (torchvision layout)"))
    else:
        images, labels = _IDX_NAMES[split]
        for d, what in ((folder / "FashionMNIST" / "raw", "torchvision layout"), (folder / "fashion-mnist", "Debian layout")):
            forms.append(("idx", d, f"{d}{os.sep}{{{images},{labels}}}[.gz] ({what})"))
    return forms


def _find(name: str, split: str, folders: list[tuple[Path, str]]) -> tuple[np.ndarray, np.ndarray, list[str]] | None:
    for folder, _ in folders:
        for kind, path, _ in _forms(name, split, folder):
            if kind == "npz" and path.is_file():
                return _read_npz(path, name, split)
            if kind == "tv_cifar" and path.is_dir():
                return _read_torchvision_cifar10(folder, split)
            if kind == "idx" and _idx_pair(path, split) is not None:
                return _read_idx_folder(path, split)
    return None


def _download(name: str, split: str, dest: Path) -> None:
    import torchvision.datasets as tvd

    cls = tvd.CIFAR10 if name == "cifar10" else tvd.FashionMNIST
    new_dirs = [d for d in (dest, *dest.parents) if not d.exists()]
    dest.mkdir(parents=True, exist_ok=True)
    # torchvision's urlopen has no timeout of its own; bound it so an offline
    # machine fails in seconds, and restore the process-wide default after.
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_SOCKET_TIMEOUT)
    try:
        cls(str(dest), train=(split == "train"), download=True)
    except BaseException:
        # Don't leave empty folders behind after a failed (offline) attempt;
        # rmdir only ever removes empty ones.
        for d in (dest / "FashionMNIST" / "raw", dest / "FashionMNIST", *new_dirs):
            try:
                d.rmdir()
            except OSError:
                pass
        raise
    finally:
        socket.setdefaulttimeout(previous)


def _not_found_message(
    name: str, split: str, folders: list[tuple[Path, str]], download_note: str
) -> str:
    lines = [f"Could not find the {name} data ({split} split). Looked in:"]
    for folder, origin in folders:
        lines.append(f"  {folder}  [{origin}]")
        lines += [f"    - {desc}" for _, _, desc in _forms(name, split, folder)]
    if not os.environ.get("DLKIT_DATA_DIR"):
        lines.append("  ($DLKIT_DATA_DIR is not set.)")
    lines += [
        download_note,
        "To use files you already have, put them in a folder in one of the forms above and set",
        "the DLKIT_DATA_DIR environment variable to that folder, e.g. in a shell:",
        "    export DLKIT_DATA_DIR=/path/to/data",
        "or in a notebook, before calling load():",
        "    import os; os.environ['DLKIT_DATA_DIR'] = '/path/to/data'",
        "or pass root='/path/to/data' to load().",
    ]
    return "\n".join(lines)


def _load_files(
    name: str, split: str, root: PathLike | None, download: bool | None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    folders = data_dirs(name, root)
    found = _find(name, split, folders)
    if found is not None:
        return found
    env = os.environ.get("DLKIT_DATA_DIR")
    dest = Path(env).expanduser() if env else _cache_dir()
    if download is False:
        note = "Download was not attempted (download=False)."
        raise FileNotFoundError(_not_found_message(name, split, folders, note))
    try:
        _download(name, split, dest)
    except Exception as err:  # any failure becomes the one actionable error below
        note = (
            f"Downloading through torchvision into {dest} failed "
            f"(no internet?): {type(err).__name__}: {err}"
        )
        raise FileNotFoundError(_not_found_message(name, split, folders, note)) from err
    found = _find(name, split, [(dest, "download folder")])
    if found is None:
        note = f"A download into {dest} reported success but left no readable files there."
        raise FileNotFoundError(_not_found_message(name, split, folders, note))
    return found




def _digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    values = np.asarray(bunch.images, dtype=np.float64)  # 0..16
    # np.rint rounds half to even, like Python's round().
    x = np.rint(values * 255.0 / 16.0).astype(np.uint8)[:, None]
    y = np.asarray(bunch.target, dtype=np.int64)
    is_test = np.arange(len(y)) % 5 == 4
    keep = is_test if split == "test" else ~is_test
    return np.ascontiguousarray(x[keep]), y[keep]

