"""Datasets and data-loading helpers for the course.

Everything a chapter needs to get images into a model lives here:

* :class:`ImageSet`, a small validated container of ``uint8`` images
  (``N x C x H x W``) and ``int64`` labels;
* :func:`load`, which returns an :class:`ImageSet` for ``"cifar10"``,
  ``"fashion_mnist"``, ``"digits"`` (scikit-learn's bundled 8x8 digits) or
  ``"shapes"`` (a procedural dataset that needs no files);
* :func:`channel_stats`, :func:`to_tensors`, :func:`make_loader` and
  :func:`split_indices`, which turn an :class:`ImageSet` into normalised
  tensors, fast batch loaders and a stratified validation split;
* :func:`group_split`, :func:`stratified_kfold` and :class:`RunningChannelStats` for
  group-aware splits and statistics over a stream.

The package is split by role; everything is re-exported here, so ``from dlkit.data import
load`` and ``data.make_loader(...)`` read the same whatever module holds the code:

========================  ==========================================================
``dlkit.data.imageset``   :class:`ImageSet`, :func:`canonical_order`
``dlkit.data.registry``   the dataset names (:func:`register`, :func:`names`) and :func:`load`
``dlkit.data.sources``    where files are looked for (:func:`data_dirs`), download, digits
``dlkit.data.files``      readers of ``.npz``, torchvision's and Debian's layouts, IDX
``dlkit.data.synthetic``  the generated ``"shapes"`` set
``dlkit.data.splits``     :func:`split_indices`, :func:`group_split`, :func:`stratified_kfold`
``dlkit.data.stats``      :func:`channel_stats`, :class:`RunningChannelStats`
``dlkit.data.loaders``    :func:`to_tensors`, :func:`make_loader`
========================  ==========================================================

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

from dlkit.data.files import CIFAR10_CLASSES, FASHION_MNIST_CLASSES, _read_idx
from dlkit.data.imageset import SPLITS, ImageSet, Index, PathLike, canonical_order
from dlkit.data.loaders import make_loader, to_tensors
from dlkit.data.registry import DATASETS, Dataset, load, names, register
# SYSTEM_DATA_DIR is read where it lives: to redirect it (tests), patch dlkit.data.sources.
from dlkit.data.sources import (
    DIGITS_CLASSES,
    DOWNLOAD_SOCKET_TIMEOUT,
    SYSTEM_DATA_DIR,
    data_dirs,
)
from dlkit.data.splits import group_split, split_indices, stratified_kfold
from dlkit.data.stats import RunningChannelStats, channel_stats
from dlkit.data.synthetic import SHAPES_CLASSES
from dlkit.download import download
from dlkit.data.ratings import RatingSet, load_ratings  # noqa: F401  (chapter 13: MovieLens ratings)

__all__ = [
    "CIFAR10_CLASSES",
    "DATASETS",
    "DIGITS_CLASSES",
    "DOWNLOAD_SOCKET_TIMEOUT",
    "Dataset",
    "FASHION_MNIST_CLASSES",
    "ImageSet",
    "Index",
    "PathLike",
    "RunningChannelStats",
    "SHAPES_CLASSES",
    "SPLITS",
    "SYSTEM_DATA_DIR",
    "canonical_order",
    "channel_stats",
    "data_dirs",
    "download",
    "group_split",
    "load",
    "make_loader",
    "names",
    "register",
    "split_indices",
    "stratified_kfold",
    "to_tensors",
]
# Chapter 10: Tiny Shakespeare (registers the "tiny_shakespeare" text corpus; load it with load_text).
from dlkit.data.text import TextCorpus, load_text, split_text  # noqa: E402,F401
