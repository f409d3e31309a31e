"""Datasets and data-loading helpers for the course.

Everything a chapter needs to get images into a model lives here:

* :class:`ImageSet`, a small validated container of ``uint8`` images
  (``N x C x H x W``) and ``int64`` labels;
* :func:`load`, which returns an :class:`ImageSet` for ``"cifar10"``,
  ``"fashion_mnist"``, ``"digits"`` (scikit-learn's bundled 8x8 digits) or
  ``"shapes"`` (a procedural dataset that needs no files);
* :func:`channel_stats`, :func:`to_tensors`, :func:`make_loader` and
  :func:`split_indices`, which turn an :class:`ImageSet` into normalised
  tensors, fast batch loaders and a stratified validation split.

Where the files come from
-------------------------
CIFAR-10 and Fashion-MNIST are looked for, in this order, in ``root`` (the
argument), in ``$DLKIT_DATA_DIR``, in the user cache ``$XDG_CACHE_HOME/dlkit``
(``~/.cache/dlkit`` when ``XDG_CACHE_HOME`` is unset) and, for Fashion-MNIST
only, in ``/usr/share/datasets`` (Debian's ``dataset-fashion-mnist``). Each
folder may hold an ``NAME.npz`` file or torchvision's own folder layout; see
:func:`load`. When nothing is found, :func:`load` can download through
torchvision into ``$DLKIT_DATA_DIR`` or the user cache.

Canonical order
---------------
The same data may arrive in different orders (torchvision's batches, an
``.npz`` sorted by file name, ...). So that results never depend on where the
files came from, :func:`load` puts every split of a file-based dataset into a
canonical order: sorted by label, then by the raw bytes of the image in
``C x H x W`` layout, compared lexicographically (a stable sort, so identical
images keep their relative order). See :func:`canonical_order`.
"""

from __future__ import annotations

import gzip
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset

from dlkit.download import download

__all__ = [
    "CIFAR10_CLASSES",
    "DATASETS",
    "FASHION_MNIST_CLASSES",
    "ImageSet",
    "RunningChannelStats",
    "SHAPES_CLASSES",
    "canonical_order",
    "channel_stats",
    "data_dirs",
    "download",
    "group_split",
    "load",
    "make_loader",
    "split_indices",
    "stratified_kfold",
    "to_tensors",
]

DATASETS: tuple[str, ...] = ("cifar10", "fashion_mnist", "digits", "shapes")
SPLITS: tuple[str, ...] = ("train", "test")

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
DIGITS_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
SHAPES_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "cross")

#: Folder where Debian's ``dataset-fashion-mnist`` package installs the IDX files
#: (as ``fashion-mnist/*.gz``). A module constant so tests can redirect it.
SYSTEM_DATA_DIR = Path("/usr/share/datasets")

#: Seconds a single network operation may block during a download; offline
#: machines should fail fast instead of hanging a notebook.
DOWNLOAD_SOCKET_TIMEOUT = 20.0

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test", "class_names")
# Image shape (C, H, W) each file-based dataset must have.
_IMAGE_SHAPES = {"cifar10": (3, 32, 32), "fashion_mnist": (1, 28, 28)}
_IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_SHAPES_DEFAULT_SIZES = {"train": 4000, "test": 1000}

PathLike = Union[str, "os.PathLike[str]"]
Index = Union[int, slice, Sequence[int], np.ndarray, torch.Tensor]


# --------------------------------------------------------------------------- #
# ImageSet
# --------------------------------------------------------------------------- #
@dataclass(frozen=True, eq=False, repr=False)
class ImageSet:
    """A labelled set of ``uint8`` images, validated on construction.

    Used in chapter 01 (quickstart) and in every chapter that loads data.

    Attributes:
        images: ``uint8`` tensor of shape ``N x C x H x W``.
        labels: ``int64`` tensor of shape ``N`` with values in
            ``[0, len(classes))``.
        classes: Class names; ``classes[k]`` names label ``k``.
        name: Dataset name, e.g. ``"cifar10"``.
        split: ``"train"`` or ``"test"`` (free text for hand-made sets).

    Raises:
        TypeError: If a field has the wrong type or dtype.
        ValueError: If shapes disagree or a label is out of range.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str
    split: str

    def __post_init__(self) -> None:
        images, labels = self.images, self.labels
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
        if images.dtype != torch.uint8:
            raise TypeError(f"images must have dtype torch.uint8, got {images.dtype}")
        if images.dim() != 4:
            raise ValueError(
                f"images must be 4-D (N x C x H x W), got shape {tuple(images.shape)}"
            )
        if not isinstance(labels, torch.Tensor):
            raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
        if labels.dtype != torch.int64:
            raise TypeError(f"labels must have dtype torch.int64, got {labels.dtype}")
        if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(
                f"labels must be 1-D with N={images.shape[0]} entries (one per image), "
                f"got shape {tuple(labels.shape)}"
            )
        if isinstance(self.classes, str) or not all(isinstance(c, str) for c in self.classes):
            raise TypeError(f"classes must be a list of str, got {self.classes!r}")
        if len(self.classes) == 0:
            raise ValueError("classes must name at least one class, got an empty list")
        # Frozen dataclass: store a private list so callers' lists can't alias it.
        object.__setattr__(self, "classes", list(self.classes))
        if labels.numel():
            lo, hi = int(labels.min()), int(labels.max())
            if lo < 0 or hi >= len(self.classes):
                raise ValueError(
                    f"label values must be in [0, {len(self.classes)}) for "
                    f"{len(self.classes)} classes, got values in [{lo}, {hi}]"
                )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: Index) -> tuple[torch.Tensor, int] | ImageSet:
        """Return ``(image, label)`` for an integer, a new :class:`ImageSet` otherwise.

        Args:
            index: An int (also a numpy integer or 0-d tensor), a slice, a
                sequence of ints, or an integer/boolean index tensor or array.

        Returns:
            ``(image C x H x W uint8 tensor, int label)`` for an integer index,
            else the selected images as a new :class:`ImageSet`.

        Raises:
            IndexError: If an integer index is out of range.
        """
        if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
            return self.images[index], int(self.labels[index])
        if isinstance(index, torch.Tensor) and index.dim() == 0 and not index.is_floating_point():
            i = int(index)
            return self.images[i], int(self.labels[i])
        return self.subset(index)

    def subset(self, indices: Index) -> ImageSet:
        """Return the images selected by ``indices`` as a new :class:`ImageSet`.

        Used in chapter 02 (data) to take small training subsets.

        Args:
            indices: A slice, a sequence of ints, or an integer/boolean index
                tensor or array.

        Returns:
            A new :class:`ImageSet` with the same classes, name and split.
            Slices share memory with this set; index lists copy.
        """
        if not isinstance(indices, (slice, torch.Tensor)):
            indices = torch.as_tensor(np.asarray(indices))
            if indices.numel() == 0:
                indices = indices.long()
        return ImageSet(self.images[indices], self.labels[indices], self.classes, self.name, self.split)

    def class_counts(self) -> list[int]:
        """Return the number of images of each class, in class order."""
        return torch.bincount(self.labels, minlength=len(self.classes)).tolist()

    def summary(self) -> str:
        """Return a short, stable multi-line description (used in notebook outputs).

        Used in chapter 01 (quickstart).

        Returns:
            Name, split, number of images, image shape, dtype, number of
            classes and the count of every class, one per line.
        """
        c, h, w = self.images.shape[1:]
        dtype = str(self.images.dtype).replace("torch.", "")
        width = max(len(name) for name in self.classes)
        lines = [
            f"ImageSet {self.name} ({self.split})",
            f"  images:  {len(self)}",
            f"  shape:   {c}x{h}x{w} (C x H x W)",
            f"  dtype:   {dtype}",
            f"  classes: {len(self.classes)}",
            "  per-class counts:",
        ]
        lines += [f"    {name:<{width}}  {n}" for name, n in zip(self.classes, self.class_counts())]
        return "\n".join(lines)

    def __repr__(self) -> str:
        shape = "x".join(str(s) for s in self.images.shape[1:])
        return (
            f"ImageSet(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"shape={shape}, classes={len(self.classes)})"
        )


# --------------------------------------------------------------------------- #
# Canonical order and stratified selection
# --------------------------------------------------------------------------- #
def canonical_order(images: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Return the permutation that puts images into the canonical order.

    The canonical order sorts by label, then by the raw bytes of each image
    (in the layout given, ``C x H x W`` for :class:`ImageSet`), compared
    lexicographically; the sort is stable. :func:`load` applies it so the same
    data from an ``.npz`` file or from torchvision's files gives identical
    tensors. Used in chapter 02 (data).

    Args:
        images: ``uint8`` array or tensor of shape ``N x ...``.
        labels: Integer array or tensor of shape ``N``.

    Returns:
        An ``int64`` tensor ``perm`` such that ``images[perm]`` is canonical.

    Raises:
        ValueError: If the images are not ``uint8`` or the lengths differ.
    """
    x = images.cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    y = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if x.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {x.dtype}")
    if y.ndim != 1 or x.ndim < 1 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"expected images N x ... and labels of shape (N,), got {x.shape} and {y.shape}"
        )
    n = x.shape[0]
    row_bytes = int(np.prod(x.shape[1:], dtype=np.int64))
    if n == 0 or row_bytes == 0:
        return torch.from_numpy(np.argsort(y, kind="stable").astype(np.int64))
    # One opaque "void" scalar per image: numpy compares these with memcmp,
    # i.e. lexicographically by byte, which is fast even for 50,000 images.
    rows = np.ascontiguousarray(x.reshape(n, row_bytes))
    keys = rows.view(np.dtype((np.void, row_bytes))).ravel()
    by_bytes = np.argsort(keys, kind="stable")
    order = by_bytes[np.argsort(y[by_bytes], kind="stable")]
    return torch.from_numpy(order.astype(np.int64))


def _largest_remainder(counts: np.ndarray, total: int) -> np.ndarray:
    """Share ``total`` among classes in proportion to ``counts`` (Hamilton's method)."""
    quotas = counts * (total / counts.sum())
    alloc = np.floor(quotas).astype(np.int64)
    alloc = np.minimum(alloc, counts)
    short = total - int(alloc.sum())
    # Ties between equal remainders go to the lower class index (stable sort)
    # so the allocation never depends on the random seed.
    for k in np.argsort(-(quotas - alloc), kind="stable"):
        if short == 0:
            break
        if alloc[k] < counts[k]:
            alloc[k] += 1
            short -= 1
    return alloc


def _stratified_pick(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Pick ``count`` indices, class-stratified and seeded; returned sorted."""
    classes, inverse = np.unique(labels, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(classes))
    alloc = _largest_remainder(counts, count)
    rng = np.random.default_rng(seed)
    picked = []
    for k in range(len(classes)):
        members = np.flatnonzero(inverse == k)
        picked.append(rng.permutation(members)[: alloc[k]])
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


def _check_count(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{what} must be in [{low}, {high}], got {value}")
    return int(value)


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return int(seed)


def split_indices(
    labels: torch.Tensor, val_fraction: float | int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices ``0..N-1`` into stratified, disjoint train and validation sets.

    The validation size is shared among classes by the largest-remainder
    method, so each class's share is within one item of its proportion; which
    items go to validation is drawn with a generator seeded by ``seed``.
    Used in chapter 03 (training loop) for early stopping and model selection.

    Args:
        labels: Integer tensor of shape ``N``.
        val_fraction: A float in ``(0, 1)`` (fraction of ``N``, rounded) or an
            int count in ``[1, N - 1]``.
        seed: Non-negative seed; the same seed gives the same split.

    Returns:
        ``(train_idx, val_idx)``: sorted ``int64`` tensors that together cover
        every index exactly once.

    Raises:
        ValueError: If ``labels`` is not 1-D with at least 2 items, or
            ``val_fraction`` or ``seed`` is out of range.
        TypeError: If ``val_fraction`` is neither float nor int.
    """
    y = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if y.ndim != 1 or y.shape[0] < 2:
        raise ValueError(f"labels must be 1-D with at least 2 items, got shape {y.shape}")
    n = y.shape[0]
    if isinstance(val_fraction, bool):
        raise TypeError("val_fraction must be a float in (0, 1) or an int count, got bool")
    if isinstance(val_fraction, (int, np.integer)):
        n_val = _check_count(val_fraction, "val_fraction (as a count)", 1, n - 1)
    elif isinstance(val_fraction, (float, np.floating)):
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1) as a float, got {val_fraction}")
        n_val = min(max(int(round(val_fraction * n)), 1), n - 1)
    else:
        raise TypeError(
            f"val_fraction must be a float in (0, 1) or an int count, got {type(val_fraction).__name__}"
        )
    val = _stratified_pick(y, n_val, _check_seed(seed))
    mask = np.ones(n, dtype=bool)
    mask[val] = False
    return torch.from_numpy(np.flatnonzero(mask).astype(np.int64)), torch.from_numpy(val.astype(np.int64))


# --------------------------------------------------------------------------- #
# File readers
# --------------------------------------------------------------------------- #
def _to_chw(x: np.ndarray) -> np.ndarray:
    """``N x H x W`` or ``N x H x W x C`` -> contiguous ``N x C x H x W``."""
    if x.ndim == 3:
        return np.ascontiguousarray(x[:, None])
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _check_arrays(x: np.ndarray, y: np.ndarray, name: str, source: str, n_classes: int) -> None:
    c, h, w = _IMAGE_SHAPES[name]
    expected = f"(N, {h}, {w}, {c})" + (f" or (N, {h}, {w})" if c == 1 else "")
    shape_ok = (
        x.dtype == np.uint8
        and ((x.ndim == 4 and x.shape[1:] == (h, w, c)) or (c == 1 and x.ndim == 3 and x.shape[1:] == (h, w)))
    )
    if not shape_ok:
        raise ValueError(
            f"{source}: images for {name} must be uint8 with shape {expected}, "
            f"got dtype {x.dtype} and shape {x.shape}"
        )
    if y.ndim != 1 or y.shape[0] != x.shape[0] or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"{source}: labels must be integers of shape ({x.shape[0]},) to match the images, "
            f"got dtype {y.dtype} and shape {y.shape}"
        )
    if y.size and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(
            f"{source}: label values must be in [0, {n_classes}), got [{int(y.min())}, {int(y.max())}]"
        )


def _read_npz(path: Path, name: str, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    with np.load(path, allow_pickle=False) as npz:
        missing = [k for k in _NPZ_KEYS if k not in npz.files]
        if missing:
            raise ValueError(
                f"{path}: missing keys {missing}; expected keys {list(_NPZ_KEYS)}, found {sorted(npz.files)}"
            )
        try:
            class_names = npz["class_names"]
        except ValueError as err:  # object arrays need pickle, which we refuse
            raise ValueError(f"{path}: class_names must be an array of str, not objects ({err})") from err
        if class_names.ndim != 1 or class_names.dtype.kind not in "US":
            raise ValueError(
                f"{path}: class_names must be a 1-D array of str, got dtype {class_names.dtype} "
                f"and shape {class_names.shape}"
            )
        classes = [str(c) for c in class_names.tolist()]
        # Only the requested split is decompressed: npz members load lazily.
        x, y = npz[f"x_{split}"], npz[f"y_{split}"]
    _check_arrays(x, y, name, str(path), len(classes))
    return _to_chw(x), y.astype(np.int64), classes


def _read_torchvision_cifar10(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    import torchvision.datasets as tvd

    # torchvision md5-checks every pickled batch before unpickling it; we never
    # unpickle anything ourselves.
    try:
        ds = tvd.CIFAR10(str(folder), train=(split == "train"), download=False)
    except RuntimeError as err:
        raise ValueError(
            f"{folder / 'cifar-10-batches-py'}: torchvision could not read CIFAR-10 there "
            f"(files missing or failing their md5 check, e.g. an interrupted download): {err}. "
            "Delete that folder to download it again, or point DLKIT_DATA_DIR elsewhere."
        ) from err
    x, y = np.asarray(ds.data), np.asarray(ds.targets)
    _check_arrays(x, y, "cifar10", str(folder / "cifar-10-batches-py"), len(CIFAR10_CLASSES))
    return _to_chw(x), y.astype(np.int64), list(CIFAR10_CLASSES)


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """Parse an IDX file of ``uint8`` values (gzip-compressed if it ends in .gz)."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError) as err:
        raise ValueError(f"{path}: cannot read IDX data ({err})") from err
    header = 4 + 4 * ndim
    # Magic: two zero bytes, type 0x08 (unsigned byte), then the number of dims.
    expected_magic = bytes([0, 0, 8, ndim])
    if raw[:4] != expected_magic:
        raise ValueError(
            f"{path}: bad IDX magic number {raw[:4].hex()}; expected {expected_magic.hex()} "
            f"(uint8 data with {ndim} dimension{'s' if ndim > 1 else ''})"
        )
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header; expected {header} bytes, got {len(raw)}")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    size = int(np.prod(dims, dtype=np.int64))
    if len(raw) != header + size:
        raise ValueError(
            f"{path}: IDX file is truncated or has trailing bytes; dims {dims} need "
            f"{header + size} bytes, got {len(raw)}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _idx_pair(folder: Path, split: str) -> tuple[Path, Path] | None:
    """Return the (images, labels) IDX files of ``split`` in ``folder``, plain or .gz."""
    found = []
    for base in _IDX_NAMES[split]:
        # Prefer the uncompressed copy torchvision leaves next to the .gz.
        path = next((p for p in (folder / base, folder / f"{base}.gz") if p.is_file()), None)
        if path is None:
            return None
        found.append(path)
    return found[0], found[1]


def _read_idx_folder(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    pair = _idx_pair(folder, split)
    assert pair is not None  # callers check first
    x, y = _read_idx(pair[0], 3), _read_idx(pair[1], 1)
    _check_arrays(x, y, "fashion_mnist", f"{pair[0]} + {pair[1].name}", len(FASHION_MNIST_CLASSES))
    return _to_chw(x), y.astype(np.int64), list(FASHION_MNIST_CLASSES)


# --------------------------------------------------------------------------- #
# Lookup and download
# --------------------------------------------------------------------------- #
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


# --------------------------------------------------------------------------- #
# File-free datasets
# --------------------------------------------------------------------------- #
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


def _shapes(split: str, n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    # Seeding from (seed, split) keeps train and test different for one seed.
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    labels = rng.permutation(np.arange(n, dtype=np.int64) % len(SHAPES_CLASSES))
    r = rng.uniform(0.2, 0.4, n) * size  # half-extent of the shape
    cx = rng.uniform(r, size - r)
    cy = rng.uniform(r, size - r)
    grid = np.arange(size, dtype=np.float32) + 0.5  # pixel centres
    mask = np.empty((n, size, size), dtype=bool)
    for k in range(len(SHAPES_CLASSES)):
        sel = labels == k
        dx = np.abs(grid[None, None, :] - cx[sel, None, None].astype(np.float32))
        dy = grid[None, :, None] - cy[sel, None, None].astype(np.float32)  # signed: y grows downwards
        half = r[sel, None, None].astype(np.float32)
        # Sizes are chosen so the four shapes cover similar areas (no "brightness" shortcut).
        if k == 0:  # circle
            mask[sel] = dx**2 + dy**2 <= (0.9 * half) ** 2
        elif k == 1:  # square
            mask[sel] = (dx <= 0.8 * half) & (np.abs(dy) <= 0.8 * half)
        elif k == 2:  # triangle, apex up
            mask[sel] = (np.abs(dy) <= half) & (dx <= (dy + half) / 2)
        else:  # cross
            bar = 0.3 * half
            mask[sel] = ((dx <= bar) & (np.abs(dy) <= half)) | ((np.abs(dy) <= bar) & (dx <= half))
    # One colour from [0, 100] and one from [155, 255] per channel keeps
    # shape and background at least 55 levels apart in every channel.
    dark = rng.uniform(0, 100, (n, 3, 1, 1)).astype(np.float32)
    light = rng.uniform(155, 255, (n, 3, 1, 1)).astype(np.float32)
    light_shape = rng.random(n)[:, None, None, None] < 0.5
    fg = np.where(light_shape, light, dark)
    bg = np.where(light_shape, dark, light)
    img = np.where(mask[:, None], fg, bg)
    img += rng.standard_normal(img.shape, dtype=np.float32) * 6.0
    return np.rint(np.clip(img, 0, 255)).astype(np.uint8), labels


# --------------------------------------------------------------------------- #
# Public loading API
# --------------------------------------------------------------------------- #
def load(
    name: str,
    split: str = "train",
    root: str | os.PathLike | None = None,
    download: bool | None = None,
    *,
    num_samples: int | None = None,
    image_size: int = 32,
    seed: int = 0,
) -> ImageSet:
    """Load a dataset split as an :class:`ImageSet`.

    Used in chapter 01 (quickstart) and in every later chapter.

    ``"cifar10"`` and ``"fashion_mnist"`` come from files, searched in
    ``root``, ``$DLKIT_DATA_DIR``, ``$XDG_CACHE_HOME/dlkit`` (default
    ``~/.cache/dlkit``) and, for Fashion-MNIST, ``/usr/share/datasets``. In
    each folder these forms are accepted, first match wins:

    * ``NAME.npz`` (``cifar10.npz``, ``fashion_mnist.npz``) with keys
      ``x_train y_train x_test y_test class_names``; images ``N x H x W`` or
      ``N x H x W x C`` ``uint8``;
    * torchvision's layout: ``cifar-10-batches-py/`` (read by torchvision,
      which md5-checks the pickles) or ``FashionMNIST/raw/`` IDX files;
    * Debian's layout ``fashion-mnist/`` of IDX files (plain or ``.gz``).

    Splits of these two are returned in the canonical order (see
    :func:`canonical_order`), so every source gives identical tensors.
    Nothing is cached on disk.

    ``"digits"`` is scikit-learn's bundled 8x8 digits scaled to 0..255
    (image ``i`` is a test image when ``i % 5 == 4``), in scikit-learn's
    order. ``"shapes"`` is generated: circles, squares, triangles and crosses
    on random colours, balanced, deterministic for ``(split, seed,
    num_samples, image_size)``.

    Args:
        name: One of ``"cifar10"``, ``"fashion_mnist"``, ``"digits"``, ``"shapes"``.
        split: ``"train"`` or ``"test"``.
        root: Folder searched first for the files.
        download: ``None`` or ``True``: if no files are found, try to download
            them through torchvision into ``$DLKIT_DATA_DIR`` (or the user
            cache); offline this fails within seconds. ``False``: never
            download. Ignored by ``"digits"`` and ``"shapes"``.
        num_samples: For ``"shapes"``, how many images to generate (default
            4000 train, 1000 test). For the others, the size of a
            class-stratified subset drawn with ``seed`` (default: all).
        image_size: Side length of ``"shapes"`` images (>= 8). Other datasets
            have a fixed size and only accept the default.
        seed: Non-negative seed for ``"shapes"`` and for subsets.

    Returns:
        The requested split as an :class:`ImageSet`.

    Raises:
        ValueError: For an unknown name or split, an invalid ``num_samples``,
            ``image_size`` or ``seed``, or malformed data files.
        FileNotFoundError: If the files are found nowhere and cannot be
            downloaded; the message lists every place looked and how to set
            ``DLKIT_DATA_DIR``.
        TypeError: If ``num_samples`` or ``image_size`` is not an int.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names are: {', '.join(map(repr, DATASETS))}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(map(repr, SPLITS))}; got {split!r}")
    seed = _check_seed(seed)
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
        raise TypeError(f"image_size must be an int, got {image_size!r}")

    if name == "shapes":
        if image_size < 8:
            raise ValueError(f"image_size must be >= 8 for 'shapes', got {image_size}")
        n = _SHAPES_DEFAULT_SIZES[split] if num_samples is None else num_samples
        n = _check_count(n, "num_samples", 1, 10_000_000)
        x, y = _shapes(split, n, int(image_size), seed)
        return ImageSet(torch.from_numpy(x), torch.from_numpy(y), list(SHAPES_CLASSES), name, split)

    if image_size != 32:
        raise ValueError(
            f"image_size only applies to 'shapes'; {name!r} has a fixed image size "
            f"(resize with torchvision.transforms if needed), got image_size={image_size}"
        )
    if name == "digits":
        x, y = _digits(split)
        classes = list(DIGITS_CLASSES)
    else:
        x, y, classes = _load_files(name, split, root, download)
        order = canonical_order(x, y).numpy()
        x, y = x[order], y[order]
    if num_samples is not None:
        count = _check_count(num_samples, "num_samples", 1, len(y))
        if count < len(y):
            keep = _stratified_pick(y, count, seed)
            x, y = x[keep], y[keep]
    return ImageSet(torch.from_numpy(x), torch.from_numpy(y), classes, name, split)


# --------------------------------------------------------------------------- #
# Tensors and loaders
# --------------------------------------------------------------------------- #
def channel_stats(
    images: torch.Tensor | ImageSet, batch_size: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation of ``uint8`` images, in [0, 1] units.

    One streaming pass over chunks of ``batch_size`` images with float64
    accumulators, so memory stays bounded and the result is exact to float64
    precision. The std is the population std (divides by the pixel count).
    Used in chapter 02 (data) to compute normalisation constants.

    Args:
        images: ``uint8`` tensor ``N x C x H x W`` or an :class:`ImageSet`.
        batch_size: Images per chunk.

    Returns:
        ``(mean, std)``, two float32 tensors of length ``C``.

    Raises:
        ValueError: If the images are not 4-D ``uint8`` or empty, or
            ``batch_size`` < 1.
    """
    x = images.images if isinstance(images, ImageSet) else images
    if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or x.dim() != 4:
        got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"images must be a uint8 tensor N x C x H x W, got {got}")
    if x.shape[0] == 0 or x[0].numel() == 0:
        raise ValueError(f"images must not be empty, got shape {tuple(x.shape)}")
    batch_size = _check_count(batch_size, "batch_size", 1, 2**62)
    c = x.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, x.shape[0], batch_size):
        chunk = x[start : start + batch_size].to(torch.float64)
        total += chunk.sum(dim=(0, 2, 3))
        total_sq += chunk.square_().sum(dim=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    # Sums of integers are exact in float64, so E[x^2] - E[x]^2 loses nothing here.
    var = (total_sq / count - mean.square()).clamp_min(0.0)
    return (mean / 255.0).float(), (var.sqrt() / 255.0).float()


def _per_channel(value: Any, c: int, what: str, default: float) -> torch.Tensor:
    if value is None:
        return torch.full((c,), default, dtype=torch.float32)
    t = torch.as_tensor(value, dtype=torch.float32).flatten()
    if t.numel() != c:
        raise ValueError(f"{what} must have one value per channel (C={c}), got {t.numel()} values")
    return t


def to_tensors(
    ds: ImageSet,
    mean: Sequence[float] | torch.Tensor | None = None,
    std: Sequence[float] | torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn an :class:`ImageSet` into a normalised float32 tensor and its labels.

    ``X = (images / 255 - mean) / std`` per channel. Used in chapter 01
    (quickstart) and chapter 02 (data).

    Args:
        ds: The images to convert.
        mean: Per-channel means in [0, 1] units (length ``C``); default 0.
        std: Per-channel stds (length ``C``, all > 0); default 1, so with
            neither given the images are only scaled to [0, 1].

    Returns:
        ``(X, y)``: float32 ``N x C x H x W`` and int64 ``N`` (a copy).

    Raises:
        ValueError: If ``mean`` or ``std`` does not have ``C`` values, or a
            std is not positive.
    """
    c = ds.images.shape[1]
    m = _per_channel(mean, c, "mean", 0.0)
    s = _per_channel(std, c, "std", 1.0)
    if not bool((s > 0).all()):
        raise ValueError(f"std values must be > 0, got {s.tolist()}")
    x = ds.images.to(torch.float32).div_(255.0)
    # In place: a float copy of CIFAR-10 is already 600 MB.
    x.sub_(m.view(1, c, 1, 1)).div_(s.view(1, c, 1, 1))
    return x, ds.labels.clone()


def make_loader(
    X: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    *,
    shuffle: bool = False,
    drop_last: bool = False,
    seed: int | None = None,
) -> DataLoader:
    """A :class:`~torch.utils.data.DataLoader` that fetches whole batches at once.

    The sampler yields lists of indices and the dataset is indexed with the
    whole list, so each step is one fancy-indexing operation instead of
    ``batch_size`` item fetches plus a collate: much faster for in-memory
    tensors. ``len(loader)`` is the number of batches. Used in chapter 03
    (training loop).

    Args:
        X: Inputs, first dimension ``N``.
        y: Targets, first dimension ``N``.
        batch_size: Items per batch (>= 1).
        shuffle: Reshuffle every epoch.
        drop_last: Drop the last incomplete batch.
        seed: If given, shuffling is deterministic: a new loader with the same
            seed yields the same sequence of epochs.

    Returns:
        A DataLoader yielding ``(X_batch, y_batch)`` tuples.

    Raises:
        ValueError: If ``X`` and ``y`` differ in length or ``batch_size`` < 1.
        TypeError: If ``X`` or ``y`` is not a tensor or ``batch_size`` not an int.
    """
    if not isinstance(X, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"X and y must be tensors, got {type(X).__name__} and {type(y).__name__}")
    if X.dim() == 0 or y.dim() == 0 or X.shape[0] != y.shape[0]:
        raise ValueError(
            f"X and y must have the same length, got shapes {tuple(X.shape)} and {tuple(y.shape)}"
        )
    batch_size = _check_count(batch_size, "batch_size", 1, 2**62)
    ds = TensorDataset(X, y)
    if shuffle:
        generator = None
        if seed is not None:
            generator = torch.Generator()
            generator.manual_seed(int(seed))
        base = RandomSampler(ds, generator=generator)
    else:
        base = SequentialSampler(ds)
    sampler = BatchSampler(base, batch_size=batch_size, drop_last=drop_last)
    return DataLoader(ds, batch_size=None, sampler=sampler)


# --------------------------------------------------------------------------- #
# Group-aware splits and streaming statistics (chapter 02)
# --------------------------------------------------------------------------- #
def _labels_and_groups(labels: Any, groups: Any) -> tuple[np.ndarray, np.ndarray]:
    y = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if y.ndim != 1 or y.shape[0] < 2:
        raise ValueError(f"labels must be 1-D with at least 2 items, got shape {y.shape}")
    if groups is None:
        g = np.arange(y.shape[0])
    else:
        g = groups.cpu().numpy() if isinstance(groups, torch.Tensor) else np.asarray(groups)
        if g.shape != y.shape:
            raise ValueError(f"groups must have one entry per label, shape {y.shape}, got {g.shape}")
    return y, g


def group_split(
    labels: torch.Tensor | np.ndarray,
    val_fraction: float,
    groups: torch.Tensor | np.ndarray | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified train/validation split that never separates a group.

    Items with the same group id (e.g. duplicates found by
    :func:`dlkit.dedup.duplicate_groups`) all go to the same side, so no copy
    of a validation image is trained on. Each group counts for the class of
    its items. Groups are visited in a seeded random order and a group
    joins validation while its class is still below its target share (the
    largest-remainder allocation of :func:`split_indices`), so class shares
    stay within about one group's size of exact. Without ``groups`` every item is
    its own group. Used in chapter 02 (data collection).

    Args:
        labels: Integer class of each of ``N`` items.
        val_fraction: Fraction in ``(0, 1)`` of items for validation.
        groups: Group id of each item (any integers), or ``None``.
        seed: Non-negative seed; same seed, same split.

    Returns:
        ``(train_idx, val_idx)``: sorted, disjoint ``int64`` tensors covering ``0..N-1``.

    Raises:
        ValueError: If shapes disagree, ``val_fraction`` is not in ``(0, 1)``
            or ``seed`` is negative.
    """
    y, g = _labels_and_groups(labels, groups)
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (float, np.floating)) or not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be a float in (0, 1), got {val_fraction!r}")
    rng = np.random.default_rng(_check_seed(seed))
    uniq, inverse = np.unique(g, return_inverse=True)
    classes, class_of_item = np.unique(y, return_inverse=True)
    # Items of each class in each group: a group of duplicates may mix labels.
    per_group = np.zeros((len(uniq), len(classes)), dtype=np.int64)
    np.add.at(per_group, (inverse, class_of_item), 1)
    target = _largest_remainder(np.bincount(class_of_item), int(round(val_fraction * len(y))))
    taken = np.zeros(len(classes), dtype=np.int64)
    in_val = np.zeros(len(uniq), dtype=bool)
    for k in rng.permutation(len(uniq)):
        # Join if that brings the class counts closer to their targets than staying out.
        if np.abs(taken + per_group[k] - target).sum() < np.abs(taken - target).sum():
            in_val[k] = True
            taken += per_group[k]
    val_mask = in_val[inverse]
    return (torch.from_numpy(np.flatnonzero(~val_mask).astype(np.int64)),
            torch.from_numpy(np.flatnonzero(val_mask).astype(np.int64)))


def stratified_kfold(
    labels: torch.Tensor | np.ndarray,
    k: int = 5,
    groups: torch.Tensor | np.ndarray | None = None,
    seed: int = 0,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Stratified k-fold indices, keeping groups whole; scikit-learn does the work.

    Without ``groups`` this is :class:`sklearn.model_selection.StratifiedKFold`
    with ``shuffle=True, random_state=seed``; with groups it is
    :class:`~sklearn.model_selection.StratifiedGroupKFold`. Used in chapter 02
    (data collection) and chapter 07 (cross-validation).

    Args:
        labels: Integer class of each item.
        k: Number of folds (>= 2).
        groups: Group id of each item, or ``None``.
        seed: Non-negative seed.

    Returns:
        ``k`` pairs ``(train_idx, val_idx)`` of sorted ``int64`` tensors; the
        validation parts partition ``0..N-1``.

    Raises:
        ValueError: If ``k`` < 2, shapes disagree, or a class has fewer than
            ``k`` members (scikit-learn's message).
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    y, g = _labels_and_groups(labels, groups)
    k = _check_count(k, "k", 2, len(y))
    seed = _check_seed(seed)
    if groups is None:
        splits = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)
    else:
        splits = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y, g)
    return [(torch.from_numpy(np.sort(tr).astype(np.int64)), torch.from_numpy(np.sort(va).astype(np.int64)))
            for tr, va in splits]


class RunningChannelStats:
    """Per-channel mean and std of ``uint8`` images, updated batch by batch.

    Keeps three integer counters per channel (count, sum, sum of squares) in
    ``int64``: exact for up to ~10^14 pixels, and the memory used does not
    depend on the data size. ``std`` is the population std over all pixels,
    the convention of published normalisation constants. Used in chapter 02
    (data collection) on a stream of shards.

    Example::

        stats = RunningChannelStats()
        for images, _ in shard_batches:
            stats.update(images)
        mean, std = stats.mean, stats.std
    """

    def __init__(self) -> None:
        self.count = 0
        self._sum: np.ndarray | None = None
        self._sumsq: np.ndarray | None = None

    def update(self, images: torch.Tensor | np.ndarray) -> RunningChannelStats:
        """Add a batch of ``uint8`` images ``N x C x H x W``; returns ``self``.

        Raises:
            ValueError: If the batch is not 4-D ``uint8`` or its channel count changes.
        """
        x = images.cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
        if x.dtype != np.uint8 or x.ndim != 4:
            raise ValueError(f"images must be uint8 N x C x H x W, got {x.dtype} {x.shape}")
        if self._sum is not None and x.shape[1] != self._sum.shape[0]:
            raise ValueError(f"expected {self._sum.shape[0]} channels as before, got {x.shape[1]}")
        v = x.transpose(1, 0, 2, 3).reshape(x.shape[1], -1).astype(np.int64)
        s, sq = v.sum(axis=1), np.einsum("ij,ij->i", v, v)
        if self._sum is None:
            self._sum, self._sumsq = s, sq
        else:
            self._sum += s
            self._sumsq += sq
        self.count += v.shape[1]
        return self

    def _check(self) -> tuple[np.ndarray, np.ndarray]:
        if self._sum is None or self._sumsq is None or self.count == 0:
            raise ValueError("no images seen yet: call update() first")
        return self._sum, self._sumsq

    @property
    def mean(self) -> torch.Tensor:
        """Per-channel mean in [0, 1] units (float64)."""
        s, _ = self._check()
        return torch.from_numpy(s / self.count / 255.0)

    @property
    def std(self) -> torch.Tensor:
        """Per-channel population std in [0, 1] units (float64)."""
        s, sq = self._check()
        # n * sumsq - sum^2 is an exact integer (Python ints do not overflow).
        var = np.array([(self.count * int(b) - int(a) ** 2) for a, b in zip(s, sq)], dtype=np.float64)
        return torch.from_numpy(np.sqrt(var) / self.count / 255.0)
