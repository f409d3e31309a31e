"""Finding exact and near-duplicate images, within a set and across train/test.

Three tools, from cheapest to most tolerant:

* :func:`exact_groups` groups items whose content hashes are equal (byte-for-byte
  copies);
* :func:`phash` computes the perceptual DCT hash of Zauner (2010): an image is
  reduced to 32x32 grey levels, its 2-D DCT taken, and each of the 64
  lowest-frequency coefficients compared with their median, giving 64 bits
  that survive re-encoding and rescaling. :func:`hamming` counts the differing
  bits between two sets of hashes;
* :func:`nearest_neighbours` compares :func:`image_features` (the detail of a
  thumbnail, centred and normalised) by a chunked matrix product (cosine
  similarity), which scales to 10,000 x 50,000 pairs on a CPU.

:func:`duplicate_groups` turns any list of duplicate pairs into group ids, so a
split can keep every copy of an image on the same side. Taught in chapter 02
(data collection).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import scipy.fft
import torch
import torch.nn.functional as F
from PIL import Image

from dlkit.images import pixel_sha256

__all__ = [
    "duplicate_groups",
    "exact_groups",
    "hamming",
    "image_features",
    "nearest_neighbours",
    "phash",
    "phash_image",
    "pixel_hashes",
]


def _as_nchw_uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    x = images.cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if x.dtype != np.uint8 or x.ndim not in (3, 4):
        raise ValueError(f"images must be uint8 N x C x H x W (or N x H x W), got {x.dtype} {x.shape}")
    return x[:, None] if x.ndim == 3 else x


def pixel_hashes(images: torch.Tensor | np.ndarray) -> list[str]:
    """SHA-256 of each image's pixels (``C x H x W`` bytes plus the shape): :func:`dlkit.images.pixel_sha256`.

    Two images get the same hash exactly when every pixel is equal, whatever
    file format they came from. Used in chapter 02 (data collection).

    Args:
        images: ``uint8`` array or tensor ``N x C x H x W``.

    Returns:
        ``N`` hex digests.
    """
    return [pixel_sha256(img) for img in _as_nchw_uint8(images)]


def exact_groups(hashes: Sequence[str]) -> list[list[int]]:
    """Groups of indices whose hashes are equal, only groups with 2 or more items.

    Used in chapter 02 (data collection).

    Args:
        hashes: One hash (any hashable) per item.

    Returns:
        Lists of indices in increasing order, sorted by their first index.
    """
    seen: dict[object, list[int]] = {}
    for i, h in enumerate(hashes):
        seen.setdefault(h, []).append(i)
    return sorted((g for g in seen.values() if len(g) > 1), key=lambda g: g[0])


def phash_image(img: Image.Image, hash_size: int = 8, highfreq_factor: int = 4) -> int:
    """Perceptual DCT hash of one PIL image, as a Python int of ``hash_size**2`` bits.

    The image is converted to grey (ITU-R 601-2 luma), resized to
    ``hash_size * highfreq_factor`` pixels square with Lanczos filtering, its
    orthonormal 2-D DCT-II computed, and the top-left ``hash_size x hash_size``
    block (the lowest frequencies) thresholded at its median. Used in chapter 02.

    Args:
        img: Any PIL image.
        hash_size: Side of the kept DCT block (64 bits for 8).
        highfreq_factor: Resize factor before the DCT.

    Returns:
        The hash; bit ``k`` (row-major over the block) is 1 where the
        coefficient exceeds the median.
    """
    side = hash_size * highfreq_factor
    grey = np.asarray(img.convert("L").resize((side, side), Image.Resampling.LANCZOS), dtype=np.float64)
    coeffs = scipy.fft.dctn(grey, type=2, norm="ortho")[:hash_size, :hash_size]
    bits = (coeffs > np.median(coeffs)).ravel()
    return int("".join("1" if b else "0" for b in bits), 2)


def phash(images: torch.Tensor | np.ndarray | Iterable[Image.Image], hash_size: int = 8) -> np.ndarray:
    """Perceptual hashes of many images (see :func:`phash_image`).

    Used in chapter 02 (data collection).

    Args:
        images: ``uint8`` ``N x C x H x W`` (C = 1 or 3) array/tensor, or PIL images.
        hash_size: Side of the DCT block; at most 8 so a hash fits ``uint64``.

    Returns:
        ``uint64`` array of ``N`` hashes.

    Raises:
        ValueError: If ``hash_size`` is not in ``[2, 8]`` or images are malformed.
    """
    if not 2 <= hash_size <= 8:
        raise ValueError(f"hash_size must be in [2, 8] so that a hash fits 64 bits, got {hash_size}")
    if isinstance(images, (torch.Tensor, np.ndarray)):
        x = _as_nchw_uint8(images)
        if x.shape[1] not in (1, 3):
            raise ValueError(f"images must have 1 or 3 channels, got {x.shape[1]}")
        pil = (Image.fromarray(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)) for img in x)
    else:
        pil = iter(images)
    return np.array([phash_image(im, hash_size) for im in pil], dtype=np.uint64)


def hamming(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """Number of differing bits between hashes, broadcast like ``a ^ b``.

    ``hamming(h[:, None], h[None, :])`` gives the full distance matrix. Used in
    chapter 02 (data collection).

    Args:
        a: ``uint64`` hashes (or a Python int).
        b: ``uint64`` hashes (or a Python int).

    Returns:
        Integer array of bit counts (0 = identical hashes, 64 = all bits differ).
    """
    x = np.bitwise_xor(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64))
    return np.bitwise_count(x).astype(np.int64)


def image_features(images: torch.Tensor | np.ndarray, size: int = 16, coarse: int = 4) -> torch.Tensor:
    """Thumbnail features for near-duplicate search: detail of a ``size x size`` thumbnail, unit length.

    Area-averaging to a thumbnail removes noise and compression artefacts.
    Subtracting a ``coarse x coarse`` version of the thumbnail (upsampled
    bilinearly) removes the smooth background, so two unrelated pictures of a
    small object on a blue sky no longer look alike. Centring and dividing by
    the norm make the dot product of two feature vectors their correlation,
    which ignores a change of brightness or contrast. Used in chapter 02.

    Args:
        images: ``uint8`` ``N x C x H x W`` array or tensor.
        size: Thumbnail side.
        coarse: Side of the background estimate removed; ``0`` keeps it.

    Returns:
        ``float32`` tensor ``N x (C * size * size)`` with rows of norm 1 (or 0
        for a constant image).
    """
    x = torch.as_tensor(_as_nchw_uint8(images)).float()
    thumbs = F.adaptive_avg_pool2d(x, size)
    if coarse:
        background = F.adaptive_avg_pool2d(thumbs, coarse)
        thumbs = thumbs - F.interpolate(background, size=size, mode="bilinear", align_corners=False)
    thumbs = thumbs.flatten(1)
    thumbs -= thumbs.mean(dim=1, keepdim=True)
    return thumbs / thumbs.norm(dim=1, keepdim=True).clamp_min(1e-6)


def nearest_neighbours(
    query: torch.Tensor,
    reference: torch.Tensor,
    *,
    chunk: int = 512,
    exclude_self: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query row, the most similar reference row by dot product, in chunks.

    Memory is ``chunk x len(reference)`` floats at a time, so 10,000 queries
    against 50,000 references fit on a laptop. Used in chapter 02 to find
    CIFAR-10 test images that have a near-duplicate in the training set.

    Args:
        query: ``Q x D`` features (e.g. from :func:`image_features`).
        reference: ``R x D`` features.
        chunk: Query rows per matrix product.
        exclude_self: Query and reference are the same set: ignore the
            diagonal (an image is not its own duplicate).

    Returns:
        ``(index, similarity)``: for each query, the index of its best match
        in ``reference`` and their dot product.

    Raises:
        ValueError: If the feature sizes differ, or ``exclude_self`` is set
            for sets of different lengths.
    """
    if query.ndim != 2 or reference.ndim != 2 or query.shape[1] != reference.shape[1]:
        raise ValueError(
            f"query and reference must be Q x D and R x D, got {tuple(query.shape)} and {tuple(reference.shape)}"
        )
    if exclude_self and query.shape[0] != reference.shape[0]:
        raise ValueError("exclude_self needs query and reference to be the same set")
    best_idx = torch.empty(query.shape[0], dtype=torch.int64)
    best_sim = torch.empty(query.shape[0], dtype=query.dtype)
    ref_t = reference.T.contiguous()
    for start in range(0, query.shape[0], chunk):
        sims = query[start : start + chunk] @ ref_t
        if exclude_self:
            rows = torch.arange(sims.shape[0])
            sims[rows, rows + start] = -float("inf")
        sim, idx = sims.max(dim=1)
        best_idx[start : start + chunk] = idx
        best_sim[start : start + chunk] = sim
    return best_idx, best_sim


def duplicate_groups(n: int, pairs: Iterable[tuple[int, int]]) -> np.ndarray:
    """Group ids such that the two items of every pair share a group (union-find).

    Duplicates are transitive for a split: if A copies B and B copies C, all
    three must land on the same side. Used in chapter 02 with
    :func:`dlkit.data.group_split` and :func:`dlkit.data.stratified_kfold`.

    Args:
        n: Number of items.
        pairs: ``(i, j)`` index pairs of duplicates.

    Returns:
        ``int64`` array of ``n`` group ids; each group's id is its smallest member.

    Raises:
        IndexError: If a pair index is outside ``[0, n)``.
    """
    parent = np.arange(n, dtype=np.int64)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]  # path halving keeps the trees flat
            i = int(parent[i])
        return i

    for i, j in pairs:
        i, j = int(i), int(j)
        if not (0 <= i < n and 0 <= j < n):
            raise IndexError(f"pair ({i}, {j}) is outside [0, {n})")
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return np.array([root(i) for i in range(n)], dtype=np.int64)
