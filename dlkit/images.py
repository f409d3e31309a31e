"""Opening untrusted image files safely, converting them to 8-bit RGB, and hashing their pixels.

One recipe, used by the collector of chapter 02 (:mod:`dlkit.collect`) and by the HTTP service
of chapter 09 (:mod:`dlkit.deploy.serve`):

1. :func:`open_image` reads only the *header*, with a format allow-list (:data:`FORMATS`), so no
   rarely used parser ever sees the bytes and no pixel is decoded yet;
2. :func:`check_pixels` refuses an image that claims more pixels than allowed (a decompression
   bomb: a few kilobytes that decode to gigabytes) *before* decoding;
3. :func:`load_pixels` decodes, turning a truncated or corrupt file into a clear error;
4. :func:`upright` applies the EXIF orientation, :func:`to_rgb` converts any mode to 8-bit RGB
   (alpha composited on white, 16-bit grey scaled, CMYK and palettes by Pillow), and
   :func:`to_tensor` gives the ``uint8`` ``C x H x W`` tensor a model takes;
5. :func:`pixel_sha256` is the one pixel hash: equal exactly when the decoded pixels are equal,
   whatever the file format.

:func:`decode_image` chains them for one uploaded image. Nothing here changes process-wide
state (no ``warnings.catch_warnings``, no Pillow flag written), so every function is safe to
call from many threads at once. Problems raise :class:`BadImage`, whose ``kind`` is one of the
manifest's problem kinds and whose ``status`` is the HTTP status to answer with.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from typing import IO, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "FORMATS",
    "BadImage",
    "check_pixels",
    "decode_image",
    "load_pixels",
    "open_image",
    "pixel_sha256",
    "to_rgb",
    "to_tensor",
    "upright",
]

PathLike = Union[str, "os.PathLike[str]"]

#: Pillow formats accepted: the common photo and web formats. Pillow reads dozens more, each a
#: parser that untrusted bytes could reach; an allow-list keeps only these.
FORMATS: tuple[str, ...] = ("BMP", "GIF", "JPEG", "PNG", "TIFF", "WEBP")

#: Modes with more than 8 bits per sample.
HIGH_DEPTH = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})

_ALPHA = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


class BadImage(ValueError):
    """An image that cannot be used.

    Attributes:
        kind: ``"empty"``, ``"not_an_image"``, ``"bomb"``, ``"truncated"``, ``"mode"`` or
            ``"too_small"`` (the problem kinds of :data:`dlkit.collect.PROBLEM_KINDS`).
        status: The HTTP status a service answers with: 400 when the bytes are not a usable
            file, 422 when the file is fine but the image is not acceptable.
        message: A sentence saying what was wrong.
        cause: The library's exception behind it, if any.
    """

    STATUS = {"empty": 400, "not_an_image": 400, "truncated": 400, "bomb": 422, "mode": 422,
              "too_small": 422}

    def __init__(self, kind: str, message: str, cause: BaseException | None = None) -> None:
        if kind not in self.STATUS:
            raise ValueError(f"kind must be one of {sorted(self.STATUS)}, got {kind!r}")
        super().__init__(message)
        self.kind = kind
        self.status = self.STATUS[kind]
        self.message = message
        self.cause = cause


def open_image(source: bytes | PathLike | IO[bytes], *,
               formats: Sequence[str] | None = FORMATS) -> Image.Image:
    """Read an image's header (size, mode, format) without decoding a single pixel.

    Used by :func:`decode_image` and :func:`dlkit.collect.inspect_file` (chapters 02 and 09).

    Args:
        source: The file's bytes, a path, or a binary file object.
        formats: Pillow format names tried (default :data:`FORMATS`); ``None`` tries all.

    Returns:
        A lazily loaded ``PIL.Image.Image``; call :func:`check_pixels` then :func:`load_pixels`.

    Raises:
        BadImage: ``kind="empty"`` for zero bytes; ``"not_an_image"`` when no allowed format
            recognises the bytes or a header is malformed; ``"bomb"`` when Pillow's own guard
            (twice ``PIL.Image.MAX_IMAGE_PIXELS``) refuses the size.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise BadImage("empty", "the file has 0 bytes")
        source = io.BytesIO(source)
    try:
        return Image.open(source, formats=None if formats is None else list(formats))
    except UnidentifiedImageError as err:
        raise BadImage("not_an_image", "no image format recognises the bytes", err) from None
    except Image.DecompressionBombError as err:
        raise BadImage("bomb", f"Pillow refused it: {err}", err) from None
    except OSError as err:  # a file that cannot be read at all is the caller's to report
        if not isinstance(source, io.BytesIO):
            raise
        raise BadImage("not_an_image", f"could not read the image header: {err}", err) from None
    except Exception as err:  # noqa: BLE001 (Pillow's plugins raise many types for malformed headers)
        raise BadImage("not_an_image", f"could not read the image header: {err}", err) from None


def check_pixels(img: Image.Image, max_pixels: int) -> None:
    """Refuse an image whose header claims more than ``max_pixels`` pixels, before decoding.

    The limit used is the smaller of ``max_pixels`` and Pillow's ``MAX_IMAGE_PIXELS``, so an
    image Pillow only warns about (between one and two times its limit) is refused here as
    well: its warning becomes an error without touching the process-wide warning filters.

    Args:
        img: An opened, not yet loaded image.
        max_pixels: Largest ``width * height`` accepted.

    Raises:
        BadImage: ``kind="bomb"``, the message naming the size and the limit.
    """
    w, h = img.size
    limit = max_pixels if Image.MAX_IMAGE_PIXELS is None else min(max_pixels, Image.MAX_IMAGE_PIXELS)
    if w * h > limit:
        raise BadImage("bomb", f"the image is {w}×{h} = {w * h:,} pixels; at most {limit:,} are accepted")


def load_pixels(img: Image.Image) -> None:
    """Decode the pixels of an opened image.

    Relies on Pillow's default ``ImageFile.LOAD_TRUNCATED_IMAGES = False``, so a file cut
    short is an error rather than an image padded with grey.

    Raises:
        BadImage: ``kind="truncated"`` when the pixel data is cut short or corrupt.
    """
    try:
        img.load()
    except Exception as err:  # noqa: BLE001 (truncated or corrupt pixel data: many types)
        raise BadImage("truncated", f"the image data is truncated or corrupt: {err}", err) from None


def upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag, so the pixels are as a viewer shows them.

    Phones store photos sideways and tag how to rotate them; without this a model sees the
    picture on its side. Used in chapters 02 and 09.

    Returns:
        ``img`` itself when there is no orientation tag, else a rotated copy.
    """
    if img.getexif().get(0x0112, 1) in (1, None):  # 0x0112: Orientation; 1 = upright
        return img
    return ImageOps.exif_transpose(img)


def to_rgb(img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert any PIL image to 8-bit RGB the way a careful pipeline would.

    Transparent pixels are composited on ``background`` (not dropped to black),
    16- and 32-bit grey is scaled to 0..255 (not clipped), CMYK and palettes are
    converted by Pillow. Used in chapters 02 (data collection) and 09 (deployment).

    Args:
        img: Any image.
        background: Colour under transparent pixels.

    Returns:
        An ``RGB`` image of the same size.
    """
    if img.mode == "RGB":
        return img
    if img.mode in HIGH_DEPTH:
        a = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        return Image.fromarray(np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in _ALPHA:
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, background + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return img.convert("RGB")


def has_alpha(img: Image.Image) -> bool:
    """Whether the image has transparency (an alpha channel or a transparent palette entry)."""
    return img.mode in _ALPHA or (img.mode == "P" and "transparency" in img.info)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """The pixels of an RGB or grey image as a ``uint8`` ``C x H x W`` tensor (a copy)."""
    a = np.array(img, dtype=np.uint8)  # a writable copy
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(a))


def pixel_sha256(image: np.ndarray | torch.Tensor) -> str:
    """SHA-256 of one image's pixels: its shape (as text) followed by its bytes, row-major.

    Two images get the same hash exactly when they have the same shape and every pixel is
    equal, whatever file format they came from; hash ``C x H x W`` arrays so that all callers
    agree. The one pixel hash of ``dlkit`` (chapter 02: manifests, :func:`dlkit.dedup.pixel_hashes`).

    Args:
        image: A ``uint8`` array or tensor, normally ``C x H x W``.

    Returns:
        The hex digest.
    """
    a = image.cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    h = hashlib.sha256(repr(a.shape).encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def decode_image(
    body: bytes,
    *,
    image_size: int = 32,
    min_side: int = 8,
    max_pixels: int = 4096 * 4096,
    convert_modes: bool = True,
    formats: Sequence[str] = FORMATS,
) -> tuple[np.ndarray, str | None]:
    """Decode, check and resize one uploaded image to ``image_size``×``image_size`` RGB.

    The header is read first and the pixel count checked *before* any pixel is decoded, so a
    small file that claims to be huge (a decompression bomb) costs nothing. The EXIF
    orientation is applied; non-square images are centre-cropped to a square, then resized
    (bilinear). Safe to call from many threads. Used in chapter 09 by the HTTP service.

    Args:
        body: The file's bytes.
        image_size: Side of the square the model takes.
        min_side: Smallest width or height accepted.
        max_pixels: Largest width × height accepted.
        convert_modes: Convert grayscale, palette, CMYK and alpha images to RGB (alpha is
            composited onto white); when False they are rejected. 16-bit and float images are
            always rejected: how to map them to 8 bits depends on how they were made.
        formats: Pillow formats accepted (default :data:`FORMATS`).

    Returns:
        ``(pixels, converted_from)``: a uint8 array ``image_size``×``image_size``×3 and the
        original mode when it was converted (``None`` for RGB).

    Raises:
        BadImage: With status 400 (empty, undecodable or truncated) or 422 (unusable mode,
            too small, too many pixels).
    """
    if not body:
        raise BadImage("empty", "the request body is empty: send the image file's bytes")
    try:
        img = open_image(body, formats=formats)
    except BadImage as bad:
        if isinstance(bad.cause, UnidentifiedImageError):
            raise BadImage("not_an_image", "the body is not an image this service can decode "
                                           f"(accepted formats: {', '.join(sorted(formats))})") from None
        if bad.kind == "bomb":
            raise BadImage("bomb", f"the image is too large to decode safely: {bad.cause}") from None
        raise
    check_pixels(img, max_pixels)
    w, h = img.size
    if min(w, h) < min_side:
        raise BadImage("too_small", f"the image is {w}×{h} pixels; at least {min_side}×{min_side} are needed")
    mode = img.mode
    if mode in HIGH_DEPTH:
        raise BadImage("mode", f"the image has {'16-bit' if mode.startswith('I;16') else '32-bit'} samples "
                               f"(mode {mode}); send an 8-bit RGB image")
    load_pixels(img)
    img = upright(img)
    converted = None
    if mode != "RGB":
        if not convert_modes:
            what = "an alpha channel" if has_alpha(img) else f"mode {mode}"
            raise BadImage("mode", f"the image has {what}; this service takes 8-bit RGB images")
        try:
            img = to_rgb(img)
        except Exception as err:  # noqa: BLE001 (bad input must never become a 500)
            raise BadImage("mode", f"cannot convert an image of mode {mode} to RGB: {err}") from None
        converted = mode
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side))
    img = img.resize((image_size, image_size), Image.Resampling.BILINEAR, reducing_gap=None)
    return np.asarray(img, dtype=np.uint8).copy(), converted
