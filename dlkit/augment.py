"""Data augmentation: torchvision v2 policies per image, and the same ideas batched on the device.

Used in chapter 03 (augmentation). Three layers:

* **Policies** (:func:`policy`): ``torchvision.transforms.v2`` pipelines applied to one
  ``uint8`` image C×H×W at a time, as a ``Dataset`` would: the standard CIFAR crop-and-flip,
  random erasing (Cutout), AutoAugment, RandAugment, TrivialAugment, and a strong combination.
* **Batched augmentation** (:func:`random_crop_flip`, :func:`random_erasing`,
  :class:`BatchAugment`): the same random crops, flips and erasing drawn independently for every
  image of a whole N×C×H×W batch in a few tensor operations, on whatever device the batch is on.
  A v2 transform called on a batch draws *one* set of parameters for all its images; these
  functions draw one per image, with the same distribution as the per-image transform (the tests
  compare them statistically).
* **Label-aware geometry** (:func:`box_of_mask`, :func:`synthetic_scene`): bounding boxes and
  masks as ``torchvision.tv_tensors``, which v2 transforms move together with the image.

MixUp and CutMix (:func:`mixup_cutmix`) are torchvision's batch transforms; they turn class
indices into N×K soft labels, which ``nn.CrossEntropyLoss`` accepts as probability targets.

Conventions: :class:`BatchAugment` takes the training batch as it leaves an in-memory ``uint8``
tensor (4× less data to move to the device than float32), crops, flips and runs per-image
policies on ``uint8``, then converts to float in [0, 1], normalises with ``mean``/``std``, and
only then erases (so the erased value 0 is the dataset's mean colour) and mixes (mixing needs
floats). Randomness comes from an optional ``torch.Generator`` (crops, flips, erasing) and from
torch's global generator (torchvision's transforms): :func:`dlkit.env.seed_everything` makes
both repeatable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision import tv_tensors
from torchvision.ops import masks_to_boxes
from torchvision.transforms import v2

__all__ = [
    "POLICIES", "policy", "apply_per_image", "apply_grouped", "random_crop_flip", "random_erasing",
    "mixup_cutmix", "BatchAugment", "batch_policy", "BATCH_POLICIES", "box_of_mask",
    "synthetic_scene",
]

BatchTransform = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


# --------------------------------------------------------------------------- #
# Per-image policies (torchvision.transforms.v2)
# --------------------------------------------------------------------------- #
def _standard(size: int = 32, padding: int = 4) -> list[v2.Transform]:
    # Pad-and-crop plus mirror: the CIFAR recipe of He et al. (2016), 4 pixels of zero padding.
    return [v2.RandomCrop(size, padding=padding), v2.RandomHorizontalFlip(p=0.5)]


def _erasing(p: float = 0.5) -> v2.Transform:
    # Zhong et al.'s defaults; value 0 on uint8 images is a black patch (Cutout-style).
    return v2.RandomErasing(p=p, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0)


#: Name -> builder of a per-image policy for 32×32 ``uint8`` images (C×H×W in, same out).
POLICIES: dict[str, Callable[[], v2.Transform]] = {
    "none": lambda: v2.Identity(),
    "standard": lambda: v2.Compose(_standard()),
    "erasing": lambda: v2.Compose([*_standard(), _erasing()]),
    "autoaugment": lambda: v2.Compose(
        [*_standard(), v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)]),
    "randaugment": lambda: v2.Compose([*_standard(), v2.RandAugment(num_ops=2, magnitude=9)]),
    "trivialaugment": lambda: v2.Compose([*_standard(), v2.TrivialAugmentWide()]),
    "strong": lambda: v2.Compose([*_standard(), v2.TrivialAugmentWide(), _erasing(0.25)]),
}


def policy(name: str) -> v2.Transform:
    """A per-image augmentation policy from ``torchvision.transforms.v2``.

    Used in chapter 03 (augmentation). All policies take one ``uint8`` image C×H×W (a tensor,
    a ``tv_tensors.Image`` or a PIL image) and return the same type, size and dtype:

    * ``none``: the identity;
    * ``standard``: 4-pixel zero padding, random 32×32 crop, horizontal flip with p = 0.5;
    * ``erasing``: standard, then random erasing (p = 0.5, 2-33 % of the area, black);
    * ``autoaugment``: standard, then AutoAugment's learned CIFAR-10 policy;
    * ``randaugment``: standard, then RandAugment (2 operations at magnitude 9);
    * ``trivialaugment``: standard, then TrivialAugmentWide (one operation, random strength);
    * ``strong``: standard, TrivialAugmentWide, then random erasing with p = 0.25.

    Args:
        name: A key of :data:`POLICIES`.

    Returns:
        A new transform (its randomness comes from torch's global generator).

    Raises:
        ValueError: If ``name`` is not a known policy.
    """
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; expected one of {', '.join(POLICIES)}")
    return POLICIES[name]()


def apply_per_image(transform: Callable[[Tensor], Tensor], images: Tensor) -> Tensor:
    """Apply a per-image transform to each image of a batch, one at a time.

    Used in chapter 03 as the reference that the batched functions are compared with, and by
    :class:`BatchAugment` for policies that have no batched form (AutoAugment and friends).

    Args:
        transform: Takes one C×H×W image and returns one of the same shape.
        images: N×C×H×W tensor.

    Returns:
        The N transformed images stacked, same dtype and device.

    Raises:
        ValueError: If ``images`` is not 4-D or an output changes the image's shape.
    """
    _check_batch(images)
    outs = [transform(img) for img in images]
    if outs and any(o.shape != images.shape[1:] for o in outs):
        raise ValueError(f"the transform changed an image's shape from {tuple(images.shape[1:])}; "
                         "a batch needs images of one size")
    return torch.stack([o.as_subclass(Tensor) for o in outs]) if outs else images.clone()


def apply_grouped(transform: Callable[[Tensor], Tensor], images: Tensor, groups: int,
                  generator: torch.Generator | None = None) -> Tensor:
    """Apply a v2 transform to random groups of a batch: one random draw per group.

    Used in chapter 03 (augmentation) for policies that have no batched form (AutoAugment,
    RandAugment, TrivialAugment) when a per-image loop is too slow, e.g. on a GPU. The batch is
    shuffled and cut into ``groups`` nearly equal groups, and the transform, called once on each
    group, draws one operation and strength for all of its images. Each image still gets the
    policy's distribution; only images of the same group are correlated. ``groups`` equal to
    the batch size is :func:`apply_per_image`.

    Args:
        transform: A v2 transform (it treats leading dimensions as a batch).
        images: N×C×H×W tensor.
        groups: Number of groups (>= 1; more than N counts as N).
        generator: Source of the shuffle; torch's global generator when ``None``.

    Returns:
        The transformed batch in the original order, same shape, dtype and device.

    Raises:
        ValueError: If ``images`` is not 4-D, ``groups`` < 1, or the transform changes the size.
    """
    _check_batch(images)
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    n = images.shape[0]
    device = generator.device if generator is not None else images.device
    perm = torch.randperm(n, generator=generator, device=device).to(images.device)
    out = torch.empty_like(images)
    for idx in torch.tensor_split(perm, min(groups, n)):
        part = transform(images[idx]).as_subclass(Tensor)
        if part.shape != images[idx].shape:
            raise ValueError(f"the transform changed the images' shape from "
                             f"{tuple(images.shape[1:])}; a batch needs images of one size")
        out[idx] = part
    return out


# --------------------------------------------------------------------------- #
# Batched augmentation
# --------------------------------------------------------------------------- #
def _check_batch(X: Any) -> None:
    if not isinstance(X, Tensor) or X.ndim != 4:
        got = f"shape {tuple(X.shape)}" if isinstance(X, Tensor) else type(X).__name__
        raise ValueError(f"expected a batch of images N×C×H×W (a 4-D tensor), got {got}")
    if not (X.dtype == torch.uint8 or X.is_floating_point()):
        raise TypeError(f"expected uint8 or floating-point images, got {X.dtype}")


def _check_prob(p: float, what: str) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{what} must be a probability in [0, 1], got {p}")


def _rand(n: int, X: Tensor, generator: torch.Generator | None) -> Tensor:
    """``n`` uniform draws in [0, 1) made on the generator's device, returned on X's device."""
    device = generator.device if generator is not None else X.device
    return torch.rand(n, generator=generator, device=device).to(X.device)


def _randint(high: Tensor | int, n: int, X: Tensor, generator: torch.Generator | None) -> Tensor:
    """``n`` integers uniform in ``[0, high)`` (``high`` may differ per draw)."""
    device = generator.device if generator is not None else X.device
    if isinstance(high, int):
        return torch.randint(high, (n,), generator=generator, device=device).to(X.device)
    # floor(U * high) is uniform on {0, ..., high - 1} for every high >= 1.
    u = torch.rand(n, generator=generator, device=device, dtype=torch.float64).to(X.device)
    return (u * high).floor().long().clamp_max(high - 1)


def random_crop_flip(
    X: Tensor,
    *,
    padding: int = 4,
    flip_p: float = 0.5,
    fill: float = 0,
    generator: torch.Generator | None = None,
    return_params: bool = False,
) -> Tensor | tuple[Tensor, Tensor, Tensor, Tensor]:
    """Random padded crop and horizontal flip, drawn independently for every image of a batch.

    Used in chapter 03 (augmentation). Equivalent in distribution to
    ``v2.Compose([v2.RandomCrop(H, padding=padding, fill=fill), v2.RandomHorizontalFlip(flip_p)])``
    applied to each image: the batch is padded once, each image gets a top and left offset
    uniform in ``{0, ..., 2 * padding}`` and a flip with probability ``flip_p``, and one gather
    reads every output pixel from the padded batch.

    Args:
        X: N×C×H×W batch, ``uint8`` or floating point, on any device.
        padding: Pixels of constant padding on each side (>= 0); 0 disables cropping.
        flip_p: Probability of a horizontal flip.
        fill: Value of the padding (in the units of ``X``).
        generator: Source of randomness; torch's global generator when ``None``. It may live on
            another device than ``X`` (the draws are moved), which keeps CPU and GPU runs equal.
        return_params: Also return the offsets and flips.

    Returns:
        The augmented batch, same shape, dtype and device as ``X``; with ``return_params``,
        ``(batch, top, left, flipped)``, the last three of length N on ``X.device``.

    Raises:
        ValueError: If ``X`` is not N×C×H×W, ``padding`` < 0 or ``flip_p`` not in [0, 1].
        TypeError: If ``X`` is neither ``uint8`` nor floating point.
    """
    _check_batch(X)
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be a non-negative int, got {padding!r}")
    _check_prob(flip_p, "flip_p")
    n, c, h, w = X.shape
    top = _randint(2 * padding + 1, n, X, generator)
    left = _randint(2 * padding + 1, n, X, generator)
    flipped = _rand(n, X, generator) < flip_p
    padded = F.pad(X, (padding,) * 4, value=fill) if padding else X
    rows = top[:, None] + torch.arange(h, device=X.device)  # N×H
    j = torch.arange(w, device=X.device)
    # A flipped crop reads its columns right to left: out[j] = crop[W - 1 - j].
    cols = left[:, None] + torch.where(flipped[:, None], w - 1 - j, j)  # N×W
    batch = torch.arange(n, device=X.device)[:, None, None, None]
    chan = torch.arange(c, device=X.device)[None, :, None, None]
    out = padded[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]
    return (out, top, left, flipped) if return_params else out


def random_erasing(
    X: Tensor,
    *,
    p: float = 0.5,
    scale: tuple[float, float] = (0.02, 0.33),
    ratio: tuple[float, float] = (0.3, 3.3),
    value: float = 0.0,
    generator: torch.Generator | None = None,
    return_boxes: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Random erasing (Cutout-style) with an independent rectangle for every image of a batch.

    Used in chapter 03 (augmentation). The sampling is the one of ``v2.RandomErasing``: with
    probability ``p`` an image gets a rectangle whose area is a uniform fraction in ``scale`` of
    the image and whose aspect ratio h/w is log-uniform in ``ratio``; of ten such candidates the
    first that fits is used (none fits: the image is left alone), at a uniform position.

    Args:
        X: N×C×H×W batch, ``uint8`` or floating point, on any device.
        p: Probability that an image is erased.
        scale: Range of the erased area as a fraction of the image, ``0 < lo <= hi <= 1``.
        ratio: Range of the aspect ratio, ``0 < lo <= hi``.
        value: The value written into the rectangle (0 on normalised images: the mean colour).
        generator: Source of randomness; torch's global generator when ``None``.
        return_boxes: Also return the rectangles.

    Returns:
        A new batch, same shape, dtype and device; with ``return_boxes``, also an N×4 ``int64``
        tensor of ``(top, left, height, width)``, height and width 0 where nothing was erased.

    Raises:
        ValueError: On a bad batch, probability, scale or ratio.
        TypeError: If ``X`` is neither ``uint8`` nor floating point.
    """
    _check_batch(X)
    _check_prob(p, "p")
    if not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(f"scale must satisfy 0 < lo <= hi <= 1, got {scale}")
    if not 0 < ratio[0] <= ratio[1]:
        raise ValueError(f"ratio must satisfy 0 < lo <= hi, got {ratio}")
    n, _, H, W = X.shape
    tries = 10
    area = H * W * (scale[0] + (scale[1] - scale[0]) * _rand(n * tries, X, generator).double())
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(lo + (hi - lo) * _rand(n * tries, X, generator).double())
    # torch.round, like Python's round(), rounds halves to even.
    hs = torch.round(torch.sqrt(area * aspect)).long().view(n, tries)
    ws = torch.round(torch.sqrt(area / aspect)).long().view(n, tries)
    fits = (hs < H) & (ws < W)
    first = fits.int().argmax(dim=1)  # index of the first candidate that fits (0 if none)
    h = hs.gather(1, first[:, None])[:, 0]
    w = ws.gather(1, first[:, None])[:, 0]
    erase = (_rand(n, X, generator) < p) & fits.any(dim=1)
    h, w = h * erase, w * erase
    top = _randint(H - h + 1, n, X, generator)
    left = _randint(W - w + 1, n, X, generator)
    rows = torch.arange(H, device=X.device)
    cols = torch.arange(W, device=X.device)
    inside_r = (rows[None] >= top[:, None]) & (rows[None] < (top + h)[:, None])  # N×H
    inside_c = (cols[None] >= left[:, None]) & (cols[None] < (left + w)[:, None])  # N×W
    mask = (inside_r[:, :, None] & inside_c[:, None, :])[:, None]  # N×1×H×W
    out = X.masked_fill(mask, value)
    if return_boxes:
        return out, torch.stack([top, left, h, w], dim=1)
    return out


def mixup_cutmix(num_classes: int, *, mixup_alpha: float = 0.2,
                 cutmix_alpha: float = 1.0) -> BatchTransform:
    """MixUp or CutMix, picked at random for each batch, from ``torchvision.transforms.v2``.

    Used in chapter 03 (augmentation). MixUp replaces a batch by
    ``λ·x_i + (1−λ)·x_{i−1}`` with labels mixed the same way, ``λ ~ Beta(α, α)``; CutMix pastes
    a rectangle of image ``i − 1`` into image ``i`` and weights the labels by the areas. Both
    pair each image with its neighbour in the batch, so the loader must shuffle.

    Args:
        num_classes: Number of classes K (labels come in as N indices, leave as N×K).
        mixup_alpha: MixUp's α (> 0), or 0 to use CutMix only.
        cutmix_alpha: CutMix's α (> 0), or 0 to use MixUp only.

    Returns:
        A callable ``(X, y) -> (X_mixed, soft_labels)``; ``X`` must be floating point.

    Raises:
        ValueError: If both alphas are 0, one is negative, or ``num_classes`` < 2.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if mixup_alpha < 0 or cutmix_alpha < 0 or mixup_alpha == cutmix_alpha == 0:
        raise ValueError("mixup_alpha and cutmix_alpha must be >= 0 and not both 0, got "
                         f"{mixup_alpha} and {cutmix_alpha}")
    choices: list[v2.Transform] = []
    if mixup_alpha > 0:
        choices.append(v2.MixUp(alpha=mixup_alpha, num_classes=num_classes))
    if cutmix_alpha > 0:
        choices.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
    return choices[0] if len(choices) == 1 else v2.RandomChoice(choices)


class BatchAugment:
    """A training-batch transform for :func:`dlkit.train.fit`'s ``train_transform``.

    Used in chapter 03 (augmentation). Runs, in this order and each only when enabled:
    crop and flip (:func:`random_crop_flip`), a per-image v2 policy (``per_image``, e.g.
    ``v2.TrivialAugmentWide()``, looped over the images), conversion of ``uint8`` to float in
    [0, 1], normalisation with ``mean``/``std``, random erasing (:func:`random_erasing`, value 0:
    the mean colour), and a batch mix such as :func:`mixup_cutmix`. With nothing enabled it only
    converts and normalises, which is the "no augmentation" baseline fed the same way.

    Args:
        padding: Crop padding in pixels; 0 for no cropping.
        flip_p: Horizontal flip probability.
        per_image: A v2 transform applied to each ``uint8`` image, or ``None``.
        groups: Apply ``per_image`` to this many random groups of the batch, one draw per group
            (:func:`apply_grouped`, much faster on a GPU), instead of image by image (``None``).
        erasing_p: Probability of random erasing per image.
        mean: Per-channel mean in [0, 1] units (length C), or ``None`` for 0.
        std: Per-channel std in [0, 1] units (length C), or ``None`` for 1.
        mix: A batch transform ``(X, y) -> (X, soft_y)``, or ``None``.
        generator: Generator for crops, flips and erasing (torchvision's parts use the global
            one); ``None`` for torch's global generator.

    Raises:
        ValueError: On a bad probability or padding, or a non-positive std.
    """

    def __init__(
        self,
        *,
        padding: int = 0,
        flip_p: float = 0.0,
        per_image: Callable[[Tensor], Tensor] | None = None,
        groups: int | None = None,
        erasing_p: float = 0.0,
        mean: Sequence[float] | Tensor | None = None,
        std: Sequence[float] | Tensor | None = None,
        mix: BatchTransform | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise ValueError(f"padding must be a non-negative int, got {padding!r}")
        _check_prob(flip_p, "flip_p")
        _check_prob(erasing_p, "erasing_p")
        if groups is not None and (isinstance(groups, bool) or not isinstance(groups, int)
                                   or groups < 1):
            raise ValueError(f"groups must be a positive int or None, got {groups!r}")
        self.padding, self.flip_p, self.per_image = padding, flip_p, per_image
        self.groups = groups
        self.erasing_p, self.mix, self.generator = erasing_p, mix, generator
        self.mean = None if mean is None else torch.as_tensor(mean, dtype=torch.float32).flatten()
        self.std = None if std is None else torch.as_tensor(std, dtype=torch.float32).flatten()
        if self.std is not None and not bool((self.std > 0).all()):
            raise ValueError(f"std values must be > 0, got {self.std.tolist()}")

    def __call__(self, X: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Augment one batch.

        Args:
            X: N×C×H×W ``uint8`` images (or floats already in [0, 1]), on the training device.
            y: N class indices.

        Returns:
            ``(X, y)``: normalised float32 images of the same shape, and ``y`` unchanged (N) or
            N×K soft labels when a mix is set.

        Raises:
            ValueError: If the batch is not N×C×H×W or ``mean``/``std`` do not have C values.
        """
        _check_batch(X)
        c = X.shape[1]
        for name, v in (("mean", self.mean), ("std", self.std)):
            if v is not None and v.numel() != c:
                raise ValueError(f"{name} has {v.numel()} values but the images have {c} channels")
        if self.padding or self.flip_p:
            X = random_crop_flip(X, padding=self.padding, flip_p=self.flip_p,
                                 generator=self.generator)
        if self.per_image is not None and self.groups is not None:
            X = apply_grouped(self.per_image, X, self.groups, self.generator)
        elif self.per_image is not None:
            X = apply_per_image(self.per_image, X)
        X = X.float().div_(255.0) if X.dtype == torch.uint8 else X.float()
        if self.mean is not None:
            X = X.sub_(self.mean.to(X.device).view(1, c, 1, 1))
        if self.std is not None:
            X = X.div_(self.std.to(X.device).view(1, c, 1, 1))
        if self.erasing_p:
            X = random_erasing(X, p=self.erasing_p, generator=self.generator)  # type: ignore[assignment]
        if self.mix is not None:
            X, y = self.mix(X, y)
        return X, y

    def __repr__(self) -> str:
        parts = []
        if self.padding:
            parts.append(f"crop(padding={self.padding})")
        if self.flip_p:
            parts.append(f"flip(p={self.flip_p})")
        if self.per_image is not None:
            name = type(self.per_image).__name__
            parts.append(name if self.groups is None else f"{name}(groups={self.groups})")
        parts.append("normalise")
        if self.erasing_p:
            parts.append(f"erasing(p={self.erasing_p})")
        if self.mix is not None:
            parts.append(type(self.mix).__name__)
        return f"BatchAugment({' -> '.join(parts)})"


#: The three policies of chapter 03's experiment, in batched form.
BATCH_POLICIES = ("none", "standard", "strong")


def batch_policy(
    name: str,
    *,
    mean: Sequence[float] | Tensor | None = None,
    std: Sequence[float] | Tensor | None = None,
    num_classes: int = 10,
    groups: int | None = None,
    generator: torch.Generator | None = None,
) -> BatchAugment:
    """One of chapter 03's experiment policies as a :class:`BatchAugment`.

    Used in chapter 03 (augmentation):

    * ``none``: convert and normalise only;
    * ``standard``: crop with 4-pixel padding and horizontal flip;
    * ``strong``: standard, TrivialAugmentWide per image, random erasing (p = 0.25), then MixUp
      (α = 0.2) or CutMix (α = 1), one of the two per batch.

    Args:
        name: One of :data:`BATCH_POLICIES`.
        mean: Per-channel normalisation mean in [0, 1] units.
        std: Per-channel normalisation std in [0, 1] units.
        num_classes: Classes, for the soft labels of ``strong``.
        groups: For ``strong``: run TrivialAugment on this many groups per batch
            (:func:`apply_grouped`) instead of per image.
        generator: Generator for crops, flips and erasing.

    Returns:
        The batch transform.

    Raises:
        ValueError: If ``name`` is unknown.
    """
    common: dict[str, Any] = {"mean": mean, "std": std, "generator": generator}
    if name == "none":
        return BatchAugment(**common)
    if name == "standard":
        return BatchAugment(padding=4, flip_p=0.5, **common)
    if name == "strong":
        return BatchAugment(padding=4, flip_p=0.5, per_image=v2.TrivialAugmentWide(),
                            groups=groups, erasing_p=0.25, mix=mixup_cutmix(num_classes), **common)
    raise ValueError(f"unknown batch policy {name!r}; expected one of {', '.join(BATCH_POLICIES)}")


# --------------------------------------------------------------------------- #
# Boxes and masks
# --------------------------------------------------------------------------- #
def box_of_mask(masks: Tensor) -> tv_tensors.BoundingBoxes:
    """The tightest XYXY box around each mask's pixels.

    Used in chapter 03 (augmentation). A pixel (row r, column c) covers ``[c, c+1] × [r, r+1]``
    in XYXY coordinates, so the box of a single pixel is ``(c, r, c+1, r+1)``.

    Args:
        masks: K×H×W boolean (or 0/1) masks, each with at least one pixel set.

    Returns:
        ``tv_tensors.BoundingBoxes`` of shape K×4, format XYXY, canvas H×W, float32.

    Raises:
        ValueError: If ``masks`` is not 3-D or a mask is empty.
    """
    if not isinstance(masks, Tensor) or masks.ndim != 3:
        raise ValueError(f"expected masks K×H×W, got {getattr(masks, 'shape', type(masks))}")
    m = masks.as_subclass(Tensor).bool()
    if not bool(m.flatten(1).any(dim=1).all()):
        raise ValueError("every mask needs at least one pixel to have a box")
    boxes = masks_to_boxes(m).float() + torch.tensor([0.0, 0.0, 1.0, 1.0])
    return tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=tuple(m.shape[1:]))


def synthetic_scene(size: int = 96, seed: int = 0) -> tuple[tv_tensors.Image, tv_tensors.BoundingBoxes,
                                                            tv_tensors.Mask]:
    """A small road scene with two objects, their masks and boxes.

    Used in chapter 03 (augmentation) to show boxes and masks following the image through
    flips, crops and rotations. A grey road with lane marks, a red car (a rectangle with a
    cabin) and a blue pedestrian (an ellipse), placed at random positions by ``seed``.

    Args:
        size: Side of the square image in pixels (>= 32).
        seed: Placement of the objects.

    Returns:
        ``(image, boxes, masks)``: a ``uint8`` 3×size×size image, 2×4 XYXY boxes (car, then
        pedestrian) and a 2×size×size boolean mask.

    Raises:
        ValueError: If ``size`` < 32.
    """
    if size < 32:
        raise ValueError(f"size must be >= 32, got {size}")
    g = torch.Generator().manual_seed(seed)
    img = torch.empty(3, size, size, dtype=torch.uint8)
    img[:] = torch.tensor([110, 160, 90], dtype=torch.uint8)[:, None, None]  # grass
    road = slice(size // 4, 3 * size // 4)
    img[:, road, :] = 90
    lane = torch.arange(size) % 12 < 6
    img[:, size // 2, lane] = 230  # dashed centre line
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")

    def pick(lo: int, hi: int) -> int:
        return int(torch.randint(lo, hi, (1,), generator=g))

    cw, ch = size // 3, size // 6
    cx, cy = pick(0, size - cw), pick(size // 4, 3 * size // 4 - ch)
    car = (xx >= cx) & (xx < cx + cw) & (yy >= cy) & (yy < cy + ch)
    cabin = (xx >= cx + cw // 4) & (xx < cx + 3 * cw // 4) & (yy >= cy - ch // 2) & (yy < cy)
    car = car | cabin
    rx, ry = max(2, size // 24), max(4, size // 10)
    # The pedestrian goes in the wider gap beside the car, so the two never overlap.
    if cx >= size - (cx + cw):
        px = pick(rx, cx - rx)
    else:
        px = pick(cx + cw + rx, size - rx)
    py = pick(ry, size - ry)
    person = ((xx - px) / rx) ** 2 + ((yy - py) / ry) ** 2 <= 1
    img[:, car] = torch.tensor([200, 30, 40], dtype=torch.uint8)[:, None]
    img[:, person] = torch.tensor([40, 60, 220], dtype=torch.uint8)[:, None]
    masks = torch.stack([car, person])
    return tv_tensors.Image(img), box_of_mask(masks), tv_tensors.Mask(masks)
