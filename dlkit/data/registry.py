"""The names :func:`load` knows, and :func:`load` itself.

Each named dataset is one :class:`Dataset` entry in a registry: its kind, how its arrays are
read or generated, and whether its files are put into the canonical order. :func:`load` looks
the name up and returns an :class:`~dlkit.data.ImageSet`; adding a dataset is adding an entry
(:func:`register`) in the module that reads it. Entries of another kind than ``"images"``
(text, ratings, ...) share the namespace of names but are loaded by their own function, which
the entry names in ``loader``; :func:`load` points there instead of guessing.

Used in chapter 01 (quickstart) and in every later chapter.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from dlkit.data._checks import _check_count, _check_seed
from dlkit.data.files import CIFAR10_CLASSES, FASHION_MNIST_CLASSES
from dlkit.data.imageset import SPLITS, ImageSet, PathLike, canonical_order
from dlkit.data.sources import DIGITS_CLASSES, _digits, _load_files
from dlkit.data.splits import _stratified_pick
from dlkit.data.synthetic import _SHAPES_DEFAULT_SIZES, SHAPES_CLASSES, _shapes

__all__ = ["DATASETS", "Dataset", "load", "names", "register"]

#: Reads one split: ``(split, root, download) -> (images N x C x H x W uint8, labels int64, classes)``.
Reader = Callable[[str, "PathLike | None", "bool | None"], tuple[np.ndarray, np.ndarray, list[str]]]
#: Generates one split: ``(split, n, image_size, seed) -> (images, labels)``.
Generator = Callable[[str, int, int, int], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Dataset:
    """One registered dataset name.

    Attributes:
        name: The name passed to :func:`load` (or to the ``loader`` of another kind).
        kind: ``"images"`` for the sets :func:`load` returns; another word otherwise.
        classes: Class names (image sets only).
        read: For image sets read from files or a library: see :data:`Reader`.
        generate: For generated image sets: see :data:`Generator`; then ``num_samples`` is
            how many to generate (default ``default_sizes[split]``) and ``image_size`` is free.
        default_sizes: Default number of generated images per split.
        canonical: Put each split into :func:`~dlkit.data.canonical_order` (for data that may
            arrive in different orders from different sources).
        loader: For other kinds, the dotted name of the function that loads it.
    """

    name: str
    kind: str = "images"
    classes: tuple[str, ...] = ()
    read: Reader | None = None
    generate: Generator | None = None
    default_sizes: dict[str, int] | None = None
    canonical: bool = False
    loader: str = "dlkit.data.load"


_REGISTRY: dict[str, Dataset] = {}


def register(entry: Dataset, *, replace: bool = False) -> Dataset:
    """Add a dataset name to the registry; returns ``entry``.

    Args:
        entry: The :class:`Dataset` to add. An image set needs exactly one of ``read`` and
            ``generate``.
        replace: Allow replacing an existing name (otherwise a clash is an error).

    Raises:
        ValueError: If the name is taken, or an image entry is not readable in exactly one way.
    """
    if entry.name in _REGISTRY and not replace:
        raise ValueError(f"dataset name {entry.name!r} is already registered")
    if entry.kind == "images" and (entry.read is None) == (entry.generate is None):
        raise ValueError(f"image dataset {entry.name!r} needs exactly one of read= and generate=")
    _REGISTRY[entry.name] = entry
    return entry


def names(kind: str | None = "images") -> tuple[str, ...]:
    """Registered dataset names, in registration order (of one ``kind``, or all with ``None``)."""
    return tuple(n for n, e in _REGISTRY.items() if kind is None or e.kind == kind)


def _digits_reader(split: str, root: PathLike | None, download: bool | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    x, y = _digits(split)
    return x, y, list(DIGITS_CLASSES)


register(Dataset("cifar10", classes=CIFAR10_CLASSES, canonical=True,
                 read=functools.partial(_load_files, "cifar10")))
register(Dataset("fashion_mnist", classes=FASHION_MNIST_CLASSES, canonical=True,
                 read=functools.partial(_load_files, "fashion_mnist")))
register(Dataset("digits", classes=DIGITS_CLASSES, read=_digits_reader))
register(Dataset("shapes", classes=SHAPES_CLASSES, generate=_shapes,
                 default_sizes=_SHAPES_DEFAULT_SIZES))

#: The image sets :func:`load` ships with (see :func:`names` for everything registered).
DATASETS: tuple[str, ...] = names()


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
    entry = _REGISTRY.get(name)
    if entry is None or entry.kind != "images":
        if entry is not None:
            raise ValueError(f"{name!r} is a {entry.kind} dataset, not an image set; load it with {entry.loader}()")
        valid = names()
        raise ValueError(f"unknown dataset {name!r}; valid names are: {', '.join(map(repr, valid))}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(map(repr, SPLITS))}; got {split!r}")
    seed = _check_seed(seed)
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
        raise TypeError(f"image_size must be an int, got {image_size!r}")

    if entry.generate is not None:
        if image_size < 8:
            raise ValueError(f"image_size must be >= 8 for {name!r}, got {image_size}")
        sizes = entry.default_sizes or {}
        n = sizes.get(split) if num_samples is None else num_samples
        n = _check_count(n, "num_samples", 1, 10_000_000)
        x, y = entry.generate(split, n, int(image_size), seed)
        return ImageSet(torch.from_numpy(x), torch.from_numpy(y), list(entry.classes), name, split)

    if image_size != 32:
        generated = ", ".join(repr(n) for n, e in _REGISTRY.items() if e.generate is not None)
        raise ValueError(
            f"image_size only applies to {generated}; {name!r} has a fixed image size "
            f"(resize with torchvision.transforms if needed), got image_size={image_size}"
        )
    assert entry.read is not None  # register() guarantees one of read/generate
    x, y, classes = entry.read(split, root, download)
    if entry.canonical:
        order = canonical_order(x, y).numpy()
        x, y = x[order], y[order]
    if num_samples is not None:
        count = _check_count(num_samples, "num_samples", 1, len(y))
        if count < len(y):
            keep = _stratified_pick(y, count, seed)
            x, y = x[keep], y[keep]
    return ImageSet(torch.from_numpy(x), torch.from_numpy(y), classes, name, split)
