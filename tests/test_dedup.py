"""dlkit.dedup: perceptual hash properties, Hamming distance, nearest neighbours, groups."""

from __future__ import annotations

import io

import numpy as np
import pytest
import scipy.fft
import torch
from PIL import Image

from dlkit import data
from dlkit.dedup import (
    duplicate_groups,
    exact_groups,
    hamming,
    image_features,
    nearest_neighbours,
    phash,
    phash_image,
    pixel_hashes,
)


def _smooth_images(n, size=64, seed=0):
    """Natural-ish images: smooth random fields (phash is meant for photos, not white noise)."""
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, (n, 3, 6, 6)).astype(np.float32)
    x = torch.nn.functional.interpolate(torch.from_numpy(low), size=size, mode="bicubic", align_corners=False)
    return x.clamp(0, 255).round().to(torch.uint8).numpy()


def test_phash_matches_a_direct_dct_definition():
    img = Image.fromarray(_smooth_images(1)[0].transpose(1, 2, 0))
    grey = np.asarray(img.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    # The 2-D DCT-II written as two matrix products, independent of scipy.fft.dctn.
    k = np.arange(32)
    basis = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / 64) * np.sqrt(2 / 32)
    basis[0] /= np.sqrt(2)
    coeffs = (basis @ grey @ basis.T)[:8, :8]
    np.testing.assert_allclose(coeffs, scipy.fft.dctn(grey, norm="ortho")[:8, :8], atol=1e-8)
    bits = (coeffs > np.median(coeffs)).ravel()
    assert phash_image(img) == sum(int(b) << (63 - i) for i, b in enumerate(bits))


def test_phash_is_stable_under_reencoding_and_rescaling_and_far_for_other_images():
    x = _smooth_images(20)
    h = phash(x)
    copies = []
    for img in x:
        pil = Image.fromarray(img.transpose(1, 2, 0))
        buf = io.BytesIO()
        pil.resize((48, 48), Image.Resampling.BILINEAR).save(buf, format="JPEG", quality=75)
        copies.append(Image.open(io.BytesIO(buf.getvalue())))
    h_copy = phash(copies)
    same = hamming(h, h_copy)
    assert same.max() <= 8, same
    cross = hamming(h[:, None], h[None, :])
    off = cross[~np.eye(20, dtype=bool)]
    assert off.min() > 10 and 24 < off.mean() < 40, (off.min(), off.mean())


def test_hamming_equals_python_bit_count():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2**63, 50, dtype=np.uint64) * 2 + rng.integers(0, 2, 50, dtype=np.uint64)
    b = rng.integers(0, 2**63, 50, dtype=np.uint64)
    want = [bin(int(p) ^ int(q)).count("1") for p, q in zip(a, b)]
    assert hamming(a, b).tolist() == want
    assert hamming(a[:, None], b[None, :]).shape == (50, 50)


def test_phash_rejects_bad_input():
    with pytest.raises(ValueError, match="hash_size"):
        phash(np.zeros((1, 3, 8, 8), np.uint8), hash_size=9)
    with pytest.raises(ValueError, match="uint8"):
        phash(np.zeros((1, 3, 8, 8), np.float32))


def test_exact_groups_and_pixel_hashes():
    x = _smooth_images(5, size=8)
    x = np.concatenate([x, x[[1, 3, 1]]])
    groups = exact_groups(pixel_hashes(x))
    assert groups == [[1, 5, 7], [3, 6]]
    assert pixel_hashes(x[:1]) != pixel_hashes(x[:1, :, :4])  # same bytes prefix, other shape


def test_nearest_neighbours_matches_brute_force_and_finds_planted_copies(one_thread):
    rng = np.random.default_rng(2)
    ref = rng.integers(0, 256, (300, 3, 32, 32), dtype=np.uint8)
    query = rng.integers(0, 256, (40, 3, 32, 32), dtype=np.uint8)
    planted = [3, 17, 29]
    for q, r in zip(planted, (10, 200, 299)):
        # A brightened, contrast-changed copy: still a correlation of ~1.
        query[q] = np.clip(ref[r].astype(np.int32) * 0.8 + 30, 0, 255).astype(np.uint8)
    fq, fr = image_features(query), image_features(ref)
    idx, sim = nearest_neighbours(fq, fr, chunk=7)
    full = fq @ fr.T
    assert torch.equal(idx, full.argmax(dim=1))
    torch.testing.assert_close(sim, full.max(dim=1).values)
    assert idx[planted].tolist() == [10, 200, 299]
    assert (sim[planted] > 0.99).all() and sim[[i for i in range(40) if i not in planted]].max() < 0.5
    # exclude_self: an image is not its own neighbour.
    idx_self, _ = nearest_neighbours(fr, fr, chunk=64, exclude_self=True)
    assert (idx_self != torch.arange(300)).all()
    with pytest.raises(ValueError, match="Q x D"):
        nearest_neighbours(fq, fr[:, :10])


def test_duplicate_groups_is_transitive():
    g = duplicate_groups(7, [(5, 2), (2, 6), (0, 1)])
    assert g.tolist() == [0, 0, 2, 3, 4, 2, 2]
    with pytest.raises(IndexError):
        duplicate_groups(3, [(0, 3)])


def test_cifar_like_exact_duplicate_is_found_by_features():
    ds = data.load("shapes", "train", num_samples=50, seed=0)
    x = ds.images.numpy()
    f = image_features(x)
    idx, sim = nearest_neighbours(f, f, exclude_self=True)
    assert (sim < 0.999).all()  # generated shapes have noise: no two are identical
    x2 = np.concatenate([x, x[[7]]])
    f2 = image_features(x2)
    idx2, sim2 = nearest_neighbours(f2, f2, exclude_self=True)
    assert idx2[50] == 7 and sim2[50] > 0.9999


def test_background_removal_separates_small_objects_on_the_same_sky():
    yy, xx = np.mgrid[0:32, 0:32]
    sky = np.stack([80 + 2 * yy, 120 + 2 * yy, 200 + yy], axis=0).astype(np.uint8)
    a, b = sky.copy(), sky.copy()
    a[:, 5:9, 5:9] = 20  # a dark bird top-left
    b[:, 22:26, 20:24] = 20  # another one bottom-right
    x = np.stack([a, b])
    plain = image_features(x, coarse=0)
    detail = image_features(x)
    assert float(plain[0] @ plain[1]) > 0.8  # the gradient makes them look alike
    assert float(detail[0] @ detail[1]) < 0.3
    np.testing.assert_allclose(detail.norm(dim=1).numpy(), 1.0, rtol=1e-5)
