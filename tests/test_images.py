"""dlkit.images: safe opening, checks before decoding, conversion to RGB and the pixel hash.

References are independent of the code under test: hashlib on bytes written out by hand,
Pillow's own decoding, crop boxes and rotations computed by hand with numpy.
"""

from __future__ import annotations

import hashlib
import io
import threading
import warnings

import numpy as np
import pytest
import torch
from PIL import ExifTags, Image

from dlkit import images
from dlkit.images import (
    FORMATS,
    BadImage,
    check_pixels,
    decode_image,
    load_pixels,
    open_image,
    pixel_sha256,
    to_rgb,
    to_tensor,
    upright,
)


def encode(img: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def smooth(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 127 // (h + w)], axis=-1).astype(np.uint8)


def test_pixel_hash_is_sha256_of_the_shape_text_and_the_bytes():
    a = np.arange(4, dtype=np.uint8).reshape(1, 2, 2)
    assert pixel_sha256(a) == hashlib.sha256(b"(1, 2, 2)" + bytes([0, 1, 2, 3])).hexdigest()
    assert pixel_sha256(torch.from_numpy(a)) == pixel_sha256(a)
    # Same bytes, other shape: another hash. A non-contiguous view hashes its values, row-major.
    assert pixel_sha256(a.reshape(1, 1, 4)) != pixel_sha256(a)
    b = np.arange(6, dtype=np.uint8).reshape(2, 3).T[None]  # (1, 3, 2): values 0 3 / 1 4 / 2 5
    assert pixel_sha256(b) == hashlib.sha256(b"(1, 3, 2)" + bytes([0, 3, 1, 4, 2, 5])).hexdigest()


def test_the_pixel_hash_has_one_home():
    import importlib

    from dlkit import collect, dedup

    serve = importlib.import_module("dlkit.deploy.serve")  # dlkit.deploy.serve is also a function

    x = np.stack([noise(8, 8, s).transpose(2, 0, 1) for s in range(3)])
    assert dedup.pixel_hashes(x) == [pixel_sha256(i) for i in x]
    assert collect.pixel_sha256 is pixel_sha256
    assert collect.to_rgb is to_rgb
    assert serve.decode_image is decode_image and serve.BadImage is BadImage


def test_open_reads_the_header_only_and_refuses_what_is_not_an_allowed_image():
    body = encode(Image.fromarray(noise(20, 30)))
    img = open_image(body)
    assert (img.format, img.size, img.mode) == ("PNG", (30, 20), "RGB")
    assert img.tile, "no pixel decoded yet: the tiles are still pending"
    with pytest.raises(BadImage) as err:
        open_image(b"")
    assert err.value.kind == "empty" and err.value.status == 400
    with pytest.raises(BadImage) as err:
        open_image(b"<html>404</html>")
    assert err.value.kind == "not_an_image" and err.value.status == 400
    # PPM is a real image format Pillow reads, but not on the allow-list.
    ppm = encode(Image.fromarray(noise(10, 10)), "PPM")
    assert open_image(ppm, formats=None).format == "PPM"
    assert "PPM" not in FORMATS
    with pytest.raises(BadImage, match="no image format"):
        open_image(ppm)


def test_bombs_are_refused_from_the_header():
    # Over twice Pillow's limit: Pillow itself refuses it while reading the header.
    huge = encode(Image.new("1", (14_000, 14_000)))
    assert 14_000**2 > 2 * Image.MAX_IMAGE_PIXELS and len(huge) < 100_000
    with pytest.raises(BadImage) as err:
        open_image(huge)
    assert err.value.kind == "bomb" and err.value.status == 422
    # Between one and two times Pillow's limit Pillow only warns; check_pixels refuses it even
    # when the caller's own limit is larger.
    band = encode(Image.new("1", (13_000, 13_000)))
    assert Image.MAX_IMAGE_PIXELS < 13_000**2 < 2 * Image.MAX_IMAGE_PIXELS
    with pytest.warns(Image.DecompressionBombWarning):
        img = open_image(band)
    with pytest.raises(BadImage, match="13000×13000 = 169,000,000 pixels") as err:
        check_pixels(img, max_pixels=10**12)
    assert err.value.kind == "bomb"
    small = open_image(encode(Image.fromarray(noise(64, 64))))
    check_pixels(small, 64 * 64)
    with pytest.raises(BadImage, match="4,096 pixels; at most 4,095"):
        check_pixels(small, 64 * 64 - 1)


def test_truncated_pixel_data_is_an_error():
    png = encode(Image.fromarray(noise(64, 64)))
    img = open_image(png[: len(png) // 2])
    with pytest.raises(BadImage) as err:
        load_pixels(img)
    assert err.value.kind == "truncated" and err.value.status == 400 and "truncated" in err.value.message


def test_decode_matches_pillow_and_a_hand_computed_crop():
    square = noise(32, 32, seed=1)
    pixels, converted = decode_image(encode(Image.fromarray(square)))
    np.testing.assert_array_equal(pixels, square)  # already the model's size: untouched
    assert converted is None and pixels.dtype == np.uint8
    wide = noise(40, 50, seed=2)  # 50 wide, 40 high: the centred square is columns 5..44
    pixels, _ = decode_image(encode(Image.fromarray(wide)))
    want = Image.fromarray(np.ascontiguousarray(wide[:, 5:45])).resize((32, 32), Image.Resampling.BILINEAR,
                                                                       reducing_gap=None)
    np.testing.assert_array_equal(pixels, np.asarray(want))
    jpeg = encode(Image.fromarray(smooth(32, 32)), "JPEG", quality=90)
    pixels, _ = decode_image(jpeg, image_size=32)
    np.testing.assert_array_equal(pixels, np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")))


def test_decode_applies_the_exif_orientation():
    stored = smooth(32, 32)
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # stored sideways: show it rotated 90 degrees clockwise
    body = encode(Image.fromarray(stored), "JPEG", quality=95, exif=exif)
    pixels, _ = decode_image(body)
    clockwise = np.rot90(stored, k=-1)
    assert np.abs(pixels.astype(int) - clockwise).mean() < 3
    assert np.abs(pixels.astype(int) - stored).mean() > 30
    tall = Image.open(io.BytesIO(encode(Image.fromarray(smooth(48, 32)), "JPEG", exif=exif)))
    assert upright(tall).size == (48, 32)  # 32 wide x 48 high, shown 48 wide x 32 high
    plain = Image.fromarray(stored)
    assert upright(plain) is plain


def test_to_rgb_composites_alpha_on_white_and_scales_16_bit():
    clear = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert (np.asarray(to_rgb(clear)) == 255).all()
    half = Image.new("RGBA", (4, 4), (200, 100, 0, 128))
    want = np.round(np.array([200, 100, 0]) * 128 / 255 + 255 * 127 / 255)
    assert np.abs(np.asarray(to_rgb(half)).astype(int)[0, 0] - want).max() <= 1
    grey16 = Image.fromarray(np.array([[0, 257 * 7, 65535]], dtype=np.uint16))
    assert grey16.mode.startswith("I;16")
    assert np.asarray(to_rgb(grey16))[0, :, 0].tolist() == [0, 7, 255]
    cmyk = Image.fromarray(noise(8, 8)).convert("CMYK")
    np.testing.assert_array_equal(np.asarray(to_rgb(cmyk)), np.asarray(cmyk.convert("RGB")))


def test_to_tensor_is_channels_first_uint8():
    a = noise(5, 7)
    t = to_tensor(Image.fromarray(a))
    assert t.dtype == torch.uint8 and t.shape == (3, 5, 7)
    np.testing.assert_array_equal(t.numpy(), a.transpose(2, 0, 1))
    assert to_tensor(Image.fromarray(a[..., 0])).shape == (1, 5, 7)


@pytest.mark.parametrize("kind,status", [("empty", 400), ("not_an_image", 400), ("truncated", 400),
                                         ("bomb", 422), ("mode", 422), ("too_small", 422)])
def test_bad_image_statuses(kind, status):
    assert BadImage(kind, "x").status == status
    with pytest.raises(ValueError, match="kind must be one of"):
        BadImage("weird", "x")


def test_decoding_from_many_threads_changes_no_global_state():
    bodies = [encode(Image.fromarray(noise(40, 40, s))) for s in range(6)]
    expected = [decode_image(b)[0] for b in bodies]
    filters = list(warnings.filters)
    results: dict[tuple[int, int], np.ndarray] = {}

    def work(t: int) -> None:
        for i, b in enumerate(bodies):
            results[t, i] = decode_image(b)[0]

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (_, i), got in results.items():
        np.testing.assert_array_equal(got, expected[i])
    assert len(results) == 8 * 6 and warnings.filters == filters
    assert images.__name__ == "dlkit.images"
