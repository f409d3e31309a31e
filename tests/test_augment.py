"""Tests of dlkit.augment: policies, batched augmentation against torchvision, boxes and masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn
from torchvision import tv_tensors
from torchvision.transforms import v2

from dlkit import augment as A
from dlkit import data
from dlkit.train import fit

# A test fails by chance with probability about 1e-5; the statistics use many thousands of draws.
P_MIN = 1e-5


def _images(n: int = 16, c: int = 3, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=g)


# --------------------------------------------------------------------------- #
# Per-image policies
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("name", list(A.POLICIES))
def test_policies_keep_dtype_and_shape(name, one_thread):
    torch.manual_seed(0)
    t = A.policy(name)
    for img in _images(8):
        out = t(img)
        assert out.dtype == torch.uint8 and out.shape == (3, 32, 32)
    out = t(tv_tensors.Image(_images(1)[0]))
    assert isinstance(out, tv_tensors.Image) and out.shape == (3, 32, 32)


def test_policies_change_images_except_none(one_thread):
    X = _images(32)
    for name in A.POLICIES:
        torch.manual_seed(0)
        out = A.apply_per_image(A.policy(name), X)
        changed = (out != X).flatten(1).any(dim=1).float().mean().item()
        if name == "none":
            assert changed == 0
        else:  # a crop offset of (4, 4) without a flip is the identity: 1 chance in 162
            assert changed > 0.8, name


def test_unknown_policy_names_the_choices():
    with pytest.raises(ValueError, match="unknown policy 'mixup'.*standard"):
        A.policy("mixup")


def test_apply_per_image_is_a_loop_and_rejects_size_changes():
    X = _images(5)
    out = A.apply_per_image(v2.RandomHorizontalFlip(p=1.0), X)
    assert torch.equal(out, X.flip(-1))
    with pytest.raises(ValueError, match="changed an image's shape"):
        A.apply_per_image(v2.CenterCrop(16), X)
    with pytest.raises(ValueError, match="N×C×H×W"):
        A.apply_per_image(v2.Identity(), X[0])


def test_grouped_application_shares_one_draw_per_group():
    X = _images(40)
    torch.manual_seed(19)
    one = A.apply_grouped(v2.RandomHorizontalFlip(p=0.5), X, groups=1)
    assert torch.equal(one, X) or torch.equal(one, X.flip(-1))  # the whole batch or nothing
    flipped = []
    for seed in range(50):
        out = A.apply_grouped(v2.RandomHorizontalFlip(p=0.5), X, groups=4,
                              generator=torch.Generator().manual_seed(seed))
        is_flipped = (out == X.flip(-1)).flatten(1).all(dim=1)
        assert torch.equal(out[~is_flipped], X[~is_flipped])  # every image: flipped or intact
        assert int(is_flipped.sum()) % 10 == 0  # groups of 10 images flip together
        flipped.append(is_flipped)
    rate = torch.stack(flipped).float().mean(dim=0)
    assert 0.2 < rate.min() and rate.max() < 0.8  # each image flips about half the time
    out = A.apply_grouped(v2.TrivialAugmentWide(), X, groups=8)
    assert out.dtype == torch.uint8 and out.shape == X.shape
    with pytest.raises(ValueError, match="groups"):
        A.apply_grouped(v2.Identity(), X, groups=0)
    with pytest.raises(ValueError, match="changed the images' shape"):
        A.apply_grouped(v2.CenterCrop(8), X, groups=2)


# --------------------------------------------------------------------------- #
# Batched crop and flip
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
def test_crop_flip_keeps_dtype_shape_and_each_crop_is_a_slice_of_the_padded_image(dtype):
    X = _images(64, c=3, h=12, w=10).to(dtype)
    pad = 3
    out, top, left, flipped = A.random_crop_flip(X, padding=pad, fill=7, return_params=True,
                                                 generator=torch.Generator().manual_seed(1))
    assert out.dtype == dtype and out.shape == X.shape
    padded = nn.functional.pad(X, (pad,) * 4, value=7)
    for i in range(len(X)):
        crop = padded[i, :, top[i]:top[i] + 12, left[i]:left[i] + 10]
        assert torch.equal(out[i], crop.flip(-1) if flipped[i] else crop)
    assert 0 < flipped.sum() < len(X)


def test_crop_flip_without_padding_or_flip_is_the_identity():
    X = _images(4)
    assert torch.equal(A.random_crop_flip(X, padding=0, flip_p=0.0), X)
    assert torch.equal(A.random_crop_flip(X, padding=0, flip_p=1.0), X.flip(-1))


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_flip_rate_is_p(p):
    n = 40_000
    X = torch.zeros(n, 1, 2, 2)
    _, _, _, flipped = A.random_crop_flip(X, padding=1, flip_p=p, return_params=True,
                                          generator=torch.Generator().manual_seed(2))
    k = int(flipped.sum())
    if p in (0.0, 1.0):
        assert k == p * n
    else:  # exact binomial test
        assert stats.binomtest(k, n, p).pvalue > P_MIN


def test_crop_offsets_are_uniform_and_independent():
    n, pad = 81 * 200, 4
    X = torch.zeros(n, 1, 4, 4)
    _, top, left, flipped = A.random_crop_flip(X, padding=pad, return_params=True,
                                               generator=torch.Generator().manual_seed(3))
    assert int(top.min()) == 0 and int(top.max()) == 2 * pad
    for offsets in (top, left):
        counts = torch.bincount(offsets, minlength=2 * pad + 1).numpy()
        assert stats.chisquare(counts).pvalue > P_MIN
    joint = torch.bincount(top * 9 + left, minlength=81).numpy()  # uniform over all 81 pairs
    assert stats.chisquare(joint).pvalue > P_MIN
    table = np.zeros((9, 2))  # flips independent of offsets
    np.add.at(table, (top.numpy(), flipped.numpy().astype(int)), 1)
    assert stats.chi2_contingency(table).pvalue > P_MIN


def _recover(out: torch.Tensor, padded: torch.Tensor, h: int, w: int) -> tuple[int, int, int]:
    """(top, left, flipped) of the crop of ``padded`` that equals ``out`` (unique values)."""
    for top in range(padded.shape[-2] - h + 1):
        for left in range(padded.shape[-1] - w + 1):
            crop = padded[..., top:top + h, left:left + w]
            if torch.equal(out, crop):
                return top, left, 0
            if torch.equal(out, crop.flip(-1)):
                return top, left, 1
    raise AssertionError("not a crop of the padded image")


def test_batched_crop_flip_has_the_distribution_of_torchvisions_per_image_transform(one_thread):
    h = w = 6
    pad = 2
    img = torch.arange(1, h * w + 1, dtype=torch.float32).view(1, h, w)  # unique values, fill 0
    padded = nn.functional.pad(img, (pad,) * 4)
    n = 4000
    torch.manual_seed(4)
    reference = v2.Compose([v2.RandomCrop(h, padding=pad), v2.RandomHorizontalFlip()])
    theirs = [_recover(reference(img), padded, h, w) for _ in range(n)]
    out = A.random_crop_flip(img.expand(n, 1, h, w), padding=pad,
                             generator=torch.Generator().manual_seed(5))
    ours = [_recover(o, padded, h, w) for o in out]
    cells = {key: i for i, key in enumerate(
        (t, l, f) for t in range(2 * pad + 1) for l in range(2 * pad + 1) for f in (0, 1))}
    table = np.zeros((2, len(cells)))
    for row, draws in enumerate((theirs, ours)):
        for key in draws:
            table[row, cells[key]] += 1
    assert (table.sum(axis=0) > 0).all()  # every (top, left, flip) occurs in both
    assert stats.chi2_contingency(table).pvalue > P_MIN


def test_crop_flip_is_deterministic_under_a_seed():
    X = _images(32)
    a = A.random_crop_flip(X, generator=torch.Generator().manual_seed(6))
    b = A.random_crop_flip(X, generator=torch.Generator().manual_seed(6))
    c = A.random_crop_flip(X, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(8)
    d = A.random_crop_flip(X)
    torch.manual_seed(8)
    assert torch.equal(d, A.random_crop_flip(X))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"X": torch.zeros(3, 8, 8)}, ValueError, "N×C×H×W"),
    ({"X": torch.zeros(2, 3, 8, 8, dtype=torch.int32)}, TypeError, "uint8 or floating"),
    ({"padding": -1}, ValueError, "padding"),
    ({"flip_p": 1.5}, ValueError, "flip_p"),
])
def test_crop_flip_rejects_bad_input(kwargs, error, match):
    args = {"X": torch.zeros(2, 3, 8, 8), **kwargs}
    with pytest.raises(error, match=match):
        A.random_crop_flip(args.pop("X"), **args)


# --------------------------------------------------------------------------- #
# Batched random erasing
# --------------------------------------------------------------------------- #
def test_erasing_writes_value_exactly_inside_its_box():
    X = _images(200).float() + 1  # no pixel is 0 before erasing
    out, boxes = A.random_erasing(X, p=0.7, generator=torch.Generator().manual_seed(9),
                                  return_boxes=True)
    assert out.dtype == X.dtype and out.shape == X.shape
    for i, (top, left, h, w) in enumerate(boxes.tolist()):
        inside = torch.zeros(32, 32, dtype=torch.bool)
        inside[top:top + h, left:left + w] = True
        assert (out[i][:, inside] == 0).all() and torch.equal(out[i][:, ~inside], X[i][:, ~inside])
        if h:
            assert h < 32 and w < 32 and top + h <= 32 and left + w <= 32
    assert torch.equal(A.random_erasing(X, p=0.0), X)
    u8 = A.random_erasing(_images(4), p=1.0, value=255)
    assert u8.dtype == torch.uint8


def _erased_box(out: torch.Tensor) -> tuple[int, int, int, int]:
    rows = torch.nonzero((out[0] == 0).any(dim=1)).flatten()
    cols = torch.nonzero((out[0] == 0).any(dim=0)).flatten()
    if len(rows) == 0:
        return 0, 0, 0, 0
    return int(rows[0]), int(cols[0]), len(rows), len(cols)


def test_batched_erasing_has_the_distribution_of_torchvisions(one_thread):
    n, size = 3000, 24
    img = torch.ones(1, size, size)
    torch.manual_seed(10)
    reference = v2.RandomErasing(p=0.6, value=0)
    theirs = torch.tensor([_erased_box(reference(img)) for _ in range(n)])
    _, ours = A.random_erasing(img.expand(n, 1, size, size), p=0.6,
                               generator=torch.Generator().manual_seed(11), return_boxes=True)
    erased_t, erased_o = theirs[:, 2] > 0, ours[:, 2] > 0
    assert stats.chi2_contingency([[int(erased_t.sum()), int((~erased_t).sum())],
                                   [int(erased_o.sum()), int((~erased_o).sum())]]).pvalue > P_MIN
    t, o = theirs[erased_t], ours[erased_o]
    for column in range(4):  # top, left, height, width
        assert stats.ks_2samp(t[:, column].numpy(), o[:, column].numpy()).pvalue > P_MIN, column
    area_t, area_o = (t[:, 2] * t[:, 3]).numpy(), (o[:, 2] * o[:, 3]).numpy()
    assert stats.ks_2samp(area_t, area_o).pvalue > P_MIN


def test_erasing_rejects_bad_arguments():
    X = torch.zeros(2, 3, 8, 8)
    with pytest.raises(ValueError, match="p must be"):
        A.random_erasing(X, p=-0.1)
    with pytest.raises(ValueError, match="scale"):
        A.random_erasing(X, scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="ratio"):
        A.random_erasing(X, ratio=(0.0, 1.0))


# --------------------------------------------------------------------------- #
# MixUp and CutMix
# --------------------------------------------------------------------------- #
def _distinct_batch(n: int = 8, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    # Image i is the constant i + 1 and has label i: each pixel tells which image it came from.
    X = (torch.arange(n, dtype=torch.float32) + 1).view(n, 1, 1, 1).expand(n, 3, size, size)
    return X.contiguous(), torch.arange(n)


def test_mixup_mixes_images_and_labels_with_the_same_weight():
    X, y = _distinct_batch()
    torch.manual_seed(12)
    out, soft = A.mixup_cutmix(8, mixup_alpha=0.4, cutmix_alpha=0)(X, y)
    assert out.dtype == X.dtype and out.shape == X.shape and soft.shape == (8, 8)
    assert torch.allclose(soft.sum(dim=1), torch.ones(8))
    lam = soft[0, 0].item()
    assert 0 <= lam <= 1 and soft[0, 7].item() == pytest.approx(1 - lam)
    assert torch.allclose(out, lam * X + (1 - lam) * X.roll(1, 0))


def test_cutmix_label_weight_is_the_pasted_area_fraction():
    X, y = _distinct_batch(size=20)
    cutmix = A.mixup_cutmix(8, mixup_alpha=0, cutmix_alpha=1.0)
    torch.manual_seed(13)
    seen = set()
    for _ in range(50):
        out, soft = cutmix(X, y)
        assert torch.allclose(soft.sum(dim=1), torch.ones(8))
        for i in range(8):
            own = (out[i, 0] == i + 1).float().mean().item()
            assert soft[i, i].item() == pytest.approx(own, abs=1e-6)
            assert soft[i, (i - 1) % 8].item() == pytest.approx(1 - own, abs=1e-6)
        seen.add(round(soft[0, 0].item(), 4))
    assert len(seen) > 10  # the pasted area varies from batch to batch


def test_mixup_cutmix_is_deterministic_under_the_global_seed_and_checks_arguments():
    X, y = _distinct_batch()
    mix = A.mixup_cutmix(8)
    torch.manual_seed(14)
    a = mix(X, y)
    torch.manual_seed(14)
    b = mix(X, y)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="not both 0"):
        A.mixup_cutmix(10, mixup_alpha=0, cutmix_alpha=0)
    with pytest.raises(ValueError, match="num_classes"):
        A.mixup_cutmix(1)


def test_soft_label_cross_entropy_is_the_mix_of_the_two_losses():
    torch.manual_seed(15)
    logits, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    lam = 0.3
    soft = lam * nn.functional.one_hot(y, 4).float() + (1 - lam) * nn.functional.one_hot(
        y.roll(1), 4).float()
    ce = nn.CrossEntropyLoss()
    assert ce(logits, soft).item() == pytest.approx(
        lam * ce(logits, y).item() + (1 - lam) * ce(logits, y.roll(1)).item(), rel=1e-6)


# --------------------------------------------------------------------------- #
# BatchAugment
# --------------------------------------------------------------------------- #
def test_batch_policy_none_normalises_like_to_tensors():
    ds = data.load("shapes", "train", num_samples=20, image_size=16)
    mean, std = data.channel_stats(ds)
    X_ref, y_ref = data.to_tensors(ds, mean, std)
    X, y = A.batch_policy("none", mean=mean, std=std)(ds.images, ds.labels)
    assert X.dtype == torch.float32 and torch.allclose(X, X_ref, atol=1e-6)
    assert torch.equal(y, y_ref)


def test_batch_policy_standard_is_crop_flip_then_normalise():
    X = _images(16)
    aug = A.batch_policy("standard", mean=[0.5] * 3, std=[0.25] * 3,
                         generator=torch.Generator().manual_seed(16))
    out, y = aug(X, torch.arange(16))
    expected = A.random_crop_flip(X, padding=4, flip_p=0.5,
                                  generator=torch.Generator().manual_seed(16))
    assert torch.allclose(out, (expected.float() / 255 - 0.5) / 0.25)
    assert torch.equal(y, torch.arange(16))


def test_batch_policy_strong_gives_soft_labels_and_is_repeatable(one_thread):
    X = _images(16)
    outs = []
    for _ in range(2):
        torch.manual_seed(17)
        aug = A.batch_policy("strong", mean=[0.5] * 3, std=[0.25] * 3,
                             generator=torch.Generator().manual_seed(17))
        outs.append(aug(X, torch.arange(16) % 10))
    (a, ya), (b, yb) = outs
    assert a.dtype == torch.float32 and a.shape == X.shape and ya.shape == (16, 10)
    assert torch.allclose(ya.sum(dim=1), torch.ones(16))
    assert torch.equal(a, b) and torch.equal(ya, yb)
    assert "TrivialAugmentWide" in repr(aug) and "erasing" in repr(aug)
    grouped = A.batch_policy("strong", groups=4)
    assert "groups=4" in repr(grouped)
    Xg, yg = grouped(X, torch.arange(16) % 10)
    assert Xg.shape == X.shape and torch.allclose(yg.sum(dim=1), torch.ones(16))


def test_batch_augment_checks_its_arguments():
    with pytest.raises(ValueError, match="std values must be > 0"):
        A.BatchAugment(std=[0.2, 0.0, 0.2])
    with pytest.raises(ValueError, match="mean has 3 values but the images have 1 channels"):
        A.BatchAugment(mean=[0.5] * 3)(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.zeros(2))
    with pytest.raises(ValueError, match="groups"):
        A.BatchAugment(groups=0)
    with pytest.raises(ValueError, match="erasing_p"):
        A.BatchAugment(erasing_p=2.0)
    with pytest.raises(ValueError, match="unknown batch policy"):
        A.batch_policy("medium")


def test_fit_trains_with_a_batch_policy_and_soft_labels(one_thread):
    ds = data.load("shapes", "train", num_samples=64, image_size=16)
    loader = data.make_loader(ds.images, ds.labels, 16, shuffle=True, seed=0)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, len(ds.classes)))
    aug = A.batch_policy("strong", num_classes=len(ds.classes))
    history = fit(net, loader, epochs=1, device="cpu", progress=False, verbose=False,
                  train_transform=aug)
    assert len(history) == 1 and np.isfinite(history.train_loss[0])


# --------------------------------------------------------------------------- #
# Boxes and masks
# --------------------------------------------------------------------------- #
def test_box_of_mask_uses_pixel_edges():
    m = torch.zeros(2, 10, 12, dtype=torch.bool)
    m[0, 2:5, 3:9] = True
    m[1, 7, 1] = True
    boxes = A.box_of_mask(m)
    assert isinstance(boxes, tv_tensors.BoundingBoxes) and boxes.canvas_size == (10, 12)
    assert boxes.tolist() == [[3, 2, 9, 5], [1, 7, 2, 8]]
    with pytest.raises(ValueError, match="at least one pixel"):
        A.box_of_mask(torch.zeros(1, 4, 4, dtype=torch.bool))


def test_synthetic_scene_objects_are_separate_and_boxed():
    for seed in range(20):
        img, boxes, masks = A.synthetic_scene(64, seed)
        assert img.dtype == torch.uint8 and img.shape == (3, 64, 64) and masks.shape == (2, 64, 64)
        assert not (masks[0] & masks[1]).any()
        assert torch.equal(boxes, A.box_of_mask(masks))
    with pytest.raises(ValueError, match="size"):
        A.synthetic_scene(16)


def _overshoot(boxes: torch.Tensor, masks: torch.Tensor) -> float:
    """How far (pixels) the mask's pixels stick out of its box; <= 0 when the box encloses them."""
    worst = -np.inf
    for box, mask in zip(boxes, masks):
        if not mask.any():
            continue
        tight = A.box_of_mask(mask[None])[0]
        worst = max(worst, float((box[:2] - tight[:2]).max()), float((tight[2:] - box[2:]).max()))
    return worst


# Flips and pixel crops move boxes and masks exactly. Resampling transforms map the box corners
# exactly but resample the mask by nearest neighbour, so a mask pixel whose centre is inside
# the transformed box can stick out of it by up to one pixel.
@pytest.mark.parametrize("transform, tolerance", [
    (v2.RandomHorizontalFlip(p=1.0), 0.0),
    (v2.RandomVerticalFlip(p=1.0), 0.0),
    (v2.RandomCrop(96, padding=12), 0.0),
    (v2.RandomCrop(64), 0.0),
    (v2.RandomRotation(30), 1.0),
    (v2.RandomAffine(20, translate=(0.1, 0.1), scale=(0.8, 1.2)), 1.0),
    (v2.RandomResizedCrop(64, scale=(0.3, 1.0)), 1.0),
], ids=["hflip", "vflip", "pad-crop", "crop", "rotate", "affine", "resized-crop"])
def test_boxes_still_enclose_their_masks_after_each_transform(transform, tolerance, one_thread):
    torch.manual_seed(18)
    checked = 0
    for seed in range(30):
        img, boxes, masks = A.synthetic_scene(96, seed)
        out_img, out_boxes, out_masks = transform(img, boxes, masks)
        assert isinstance(out_boxes, tv_tensors.BoundingBoxes) and isinstance(out_masks, tv_tensors.Mask)
        assert out_img.shape[-2:] == out_masks.shape[-2:] == out_boxes.canvas_size
        assert out_masks.shape[0] == out_boxes.shape[0] == 2
        if out_masks.any():
            assert _overshoot(out_boxes, out_masks) <= tolerance
            checked += 1
        if tolerance == 0 and out_masks.flatten(1).any(dim=1).all() and "Flip" in type(transform).__name__:
            assert torch.equal(out_boxes, A.box_of_mask(out_masks))  # flips: still the tight box
    assert checked >= 20


def test_flipping_moves_boxes_to_the_mirror_position():
    img, boxes, masks = A.synthetic_scene(64, 3)
    _, flipped, _ = v2.RandomHorizontalFlip(p=1.0)(img, boxes, masks)
    x0, y0, x1, y1 = boxes.unbind(-1)
    assert torch.equal(flipped, torch.stack([64 - x1, y0, 64 - x0, y1], dim=-1))
