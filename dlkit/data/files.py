"""Readers of the file forms :func:`dlkit.data.load` accepts, each validating what it reads.

* ``NAME.npz`` with keys ``x_train y_train x_test y_test class_names`` (no pickles);
* torchvision's CIFAR-10 layout ``cifar-10-batches-py/`` (torchvision md5-checks and reads it);
* IDX files (Fashion-MNIST's original format, plain or ``.gz``), as torchvision
  (``FashionMNIST/raw/``) and Debian (``fashion-mnist/``) lay them out.

Every reader returns ``(images N x C x H x W uint8, labels int64, class names)``. Used in
chapter 02 (data collection) through :func:`dlkit.data.load`.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

__all__ = ["CIFAR10_CLASSES", "FASHION_MNIST_CLASSES"]

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test", "class_names")
# Image shape (C, H, W) each file-based dataset must have.
_IMAGE_SHAPES = {"cifar10": (3, 32, 32), "fashion_mnist": (1, 28, 28)}
_IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


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

