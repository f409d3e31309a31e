"""Collecting images from several sources into one validated manifest.

A *manifest* is a table with one row per item, whatever its source:

========== ==============================================================
column     meaning
========== ==============================================================
source     the source's name (e.g. ``"folder"``, ``"csv"``, ``"array"``)
path       the file (or the ``.npz``/array name for array items)
index      position in an array source, ``-1`` for files
label      class name as given (``""`` when missing)
sha256     SHA-256 of the file's bytes (of the pixel bytes for arrays)
pixel_sha256 SHA-256 of the decoded pixels: equal for equal images in any format
phash      64-bit perceptual hash, 16 hex digits (see :mod:`dlkit.dedup`)
format     file format found by decoding (``PNG``, ``JPEG``...), ``array``
width, height, mode, channels  as decoded
problem    ``""`` for a good item, else one of :data:`PROBLEM_KINDS`
detail     a readable reason
========== ==============================================================

Three kinds of source are read: :class:`FolderSource` (one sub-folder per
class), :class:`CsvSource` (an annotation file of ``path,label`` rows) and
:class:`ArraySource` (images already in an array, e.g. an ``.npz``). Bad items
never stop :func:`collect`: each gets its problem and reason, and good items go
on. Files are inspected in parallel processes when ``workers > 1``.

Also here: :func:`strip_metadata` and :func:`read_metadata` (privacy), and
:func:`write_messy_examples`, which writes one real file for every problem kind
so the validation can be shown and tested. Opening, checking and converting an
image, and the pixel hash, live in :mod:`dlkit.images` (shared with the HTTP
service of chapter 09); :func:`to_rgb` is re-exported here. Taught in chapter 02
(data collection).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import struct
import zlib
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from PIL import ExifTags, Image

from dlkit._util import atomic_write, check_positive_int
from dlkit.dedup import phash_image
from dlkit.images import FORMATS, BadImage, check_pixels, load_pixels, open_image, pixel_sha256, to_rgb, upright

__all__ = [
    "MANIFEST_COLUMNS",
    "MAX_FILE_BYTES",
    "PROBLEM_KINDS",
    "ArraySource",
    "CsvSource",
    "FolderSource",
    "Manifest",
    "collect",
    "inspect_file",
    "read_metadata",
    "strip_metadata",
    "to_rgb",
    "write_messy_examples",
]

PathLike = Union[str, "os.PathLike[str]"]

MANIFEST_COLUMNS: tuple[str, ...] = (
    "source", "path", "index", "label", "sha256", "pixel_sha256", "phash",
    "format", "width", "height", "mode", "channels", "problem", "detail",
)

#: Every problem an item can have, in the order checks run (the first found is reported).
PROBLEM_KINDS: tuple[str, ...] = (
    "missing_file",   # an annotation points at a file that does not exist
    "unreadable",     # the file exists but cannot be read (permissions, I/O error)
    "empty",          # zero bytes
    "not_an_image",   # no image format recognises the bytes (e.g. text named .jpg)
    "bomb",           # too big to process safely: more pixels than allowed (a decompression
                      # bomb) or a file over the byte cap
    "truncated",      # the header is fine but the pixel data is cut short or corrupt
    "mode",           # an unexpected colour mode (CMYK, 16-bit, palette, alpha...)
    "too_small",      # smaller than the minimum side
    "missing_label",  # no label at all
    "unknown_label",  # a label that is not one of the classes
)

#: Largest file :func:`inspect_file` reads (bytes); larger files are refused unread.
MAX_FILE_BYTES = 64 * 2**20

_CHUNK = 1 << 20  # bytes read (and hashed) at a time

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})

_CHANNELS = {"1": 1, "L": 1, "P": 1, "RGB": 3, "RGBA": 4, "LA": 2, "CMYK": 4, "YCbCr": 3,
             "I": 1, "F": 1, "I;16": 1, "I;16B": 1, "I;16L": 1, "HSV": 3, "LAB": 3, "RGBX": 4, "PA": 2}


# --------------------------------------------------------------------------- #
# Sources
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class FolderSource:
    """Images in a class-per-folder tree: ``root/<class>/<file>``.

    Files directly in ``root`` have no label (reported as ``missing_label``);
    files whose extension is not an image extension are skipped.
    """

    root: Path
    name: str = "folder"

    def tasks(self) -> list[tuple[str, str, str]]:
        root = Path(self.root)
        if not root.is_dir():
            raise FileNotFoundError(f"FolderSource: {root} is not a folder")
        out = []
        for p in sorted(root.rglob("*")):
            if p.suffix.lower() in IMAGE_EXTENSIONS and not p.is_dir():
                rel = p.relative_to(root)
                label = rel.parts[0] if len(rel.parts) > 1 else ""
                out.append((self.name, str(p), label))
        return out


@dataclass(frozen=True)
class CsvSource:
    """Images listed in a CSV annotation file with a path and a label column.

    Relative paths are resolved against ``root`` (default: the CSV's folder).
    """

    csv_path: Path
    root: Path | None = None
    path_column: str = "path"
    label_column: str = "label"
    name: str = "csv"

    def tasks(self) -> list[tuple[str, str, str]]:
        csv_path = Path(self.csv_path)
        root = Path(self.root) if self.root is not None else csv_path.parent
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = {self.path_column, self.label_column} - set(reader.fieldnames or [])
            if missing:
                raise ValueError(
                    f"{csv_path}: missing column(s) {sorted(missing)}; found {reader.fieldnames}"
                )
            rows = list(reader)
        return [
            (self.name, str(root / r[self.path_column]), (r[self.label_column] or "").strip())
            for r in rows
        ]


@dataclass(frozen=True)
class ArraySource:
    """Images already decoded: ``uint8`` ``N x H x W x C`` (or ``N x C x H x W``) and labels.

    Labels may be class names or integer indices into the ``classes`` given
    to :func:`collect`; ``-1`` or ``""`` means missing.
    """

    images: np.ndarray
    labels: Sequence[Any]
    name: str = "array"
    path: str = ""
    channels_first: bool = False

    @classmethod
    def from_npz(cls, path: PathLike, images_key: str = "x_test", labels_key: str = "y_test",
                 name: str = "npz", channels_first: bool = False) -> ArraySource:
        """Read two arrays of an ``.npz`` file (never unpickling objects)."""
        with np.load(path, allow_pickle=False) as npz:
            return cls(npz[images_key], npz[labels_key].tolist(), name, str(path), channels_first)


# --------------------------------------------------------------------------- #
# Inspection of one item
# --------------------------------------------------------------------------- #
def _row(source: str, path: str, index: int, label: str) -> dict[str, Any]:
    row: dict[str, Any] = {c: "" for c in MANIFEST_COLUMNS}
    row.update(source=source, path=path, index=index, label=label, width=0, height=0, channels=0)
    return row


def _check_label(row: dict[str, Any], classes: Sequence[str]) -> None:
    if row["problem"]:
        return
    if row["label"] == "":
        row.update(problem="missing_label", detail="no label given")
    elif row["label"] not in classes:
        row.update(problem="unknown_label",
                   detail=f"label {row['label']!r} is not one of the {len(classes)} classes")


def inspect_file(
    task: tuple[str, str, str],
    classes: Sequence[str],
    min_size: int = 8,
    max_pixels: int = 4096 * 4096,
    accept_modes: Sequence[str] = ("RGB", "L"),
    max_bytes: int = MAX_FILE_BYTES,
) -> dict[str, Any]:
    """Inspect one file and return its manifest row; never raises for a bad file.

    The file's size is checked (``stat``) before anything is read, so a huge file costs
    nothing; it is then read and hashed in chunks. Decoding follows :mod:`dlkit.images`:
    header first with a format allow-list, pixel count checked before any pixel is decoded.
    Used by :func:`collect` (chapter 02).

    Args:
        task: ``(source name, file path, label)``.
        classes: The valid class names.
        min_size: Smallest accepted width and height.
        max_pixels: Largest accepted ``width * height``, checked from the
            header before any pixel is decoded.
        accept_modes: PIL modes accepted as they are.
        max_bytes: Largest accepted file size; a larger file is a ``"bomb"`` and is not read.

    Returns:
        A dict with the :data:`MANIFEST_COLUMNS`.
    """
    source, path, label = task
    row = _row(source, path, -1, label)
    p = Path(path)
    if not p.exists():
        row.update(problem="missing_file", detail="no such file: the source lists it, the disk does not have it")
        return row
    try:
        size = p.stat().st_size
        if size > max_bytes:
            row.update(problem="bomb", detail=f"the file is {size:,} bytes; more than max_bytes = {max_bytes:,}")
            return row
        digest, chunks, read = hashlib.sha256(), [], 0
        with open(p, "rb") as f:
            while chunk := f.read(_CHUNK):
                read += len(chunk)
                if read > max_bytes:  # the file grew after stat()
                    row.update(problem="bomb", detail=f"the file is over max_bytes = {max_bytes:,} bytes")
                    return row
                digest.update(chunk)
                chunks.append(chunk)
    except OSError as err:
        row.update(problem="unreadable", detail=f"cannot read the file: {err.strerror or err}")
        return row
    row["sha256"] = digest.hexdigest()
    raw = b"".join(chunks)
    if not raw:
        row.update(problem="empty", detail="the file has 0 bytes")
        return row
    try:
        img = open_image(raw, formats=FORMATS)
    except BadImage as bad:
        if bad.kind == "bomb":
            row.update(problem="bomb", detail=bad.message)
        else:
            row.update(problem="not_an_image",
                       detail=f"no image format recognises the bytes ({type(bad.cause).__name__})")
        return row
    w, h = img.size
    row.update(format=img.format or "", width=w, height=h, mode=img.mode, channels=_CHANNELS.get(img.mode, 0))
    try:
        check_pixels(img, max_pixels)
        load_pixels(img)
    except BadImage as bad:
        detail = bad.message if bad.kind == "bomb" else f"decoding failed: {bad.cause}"
        row.update(problem=bad.kind, detail=detail)
        return row
    if img.mode not in accept_modes:
        row.update(problem="mode", detail=f"mode {img.mode} is not one of {', '.join(accept_modes)}")
    elif min(w, h) < min_size:
        row.update(problem="too_small", detail=f"{w}x{h} is smaller than {min_size} pixels on a side")
    if not row["problem"] or row["problem"] == "mode":
        # Hash what a model would see, so copies in different formats match.
        rgb = np.asarray(to_rgb(img))
        row["pixel_sha256"] = pixel_sha256(rgb.transpose(2, 0, 1))
        row["phash"] = f"{phash_image(img):016x}"
    _check_label(row, classes)
    return row


def _array_rows(src: ArraySource, classes: Sequence[str], min_size: int) -> list[dict[str, Any]]:
    x = np.asarray(src.images)
    if x.dtype != np.uint8 or x.ndim not in (3, 4):
        raise ValueError(f"ArraySource {src.name!r}: images must be uint8 N x H x W [x C], got {x.dtype} {x.shape}")
    if len(src.labels) != len(x):
        raise ValueError(f"ArraySource {src.name!r}: {len(x)} images but {len(src.labels)} labels")
    if x.ndim == 3:
        x = x[:, None] if src.channels_first else x[..., None]
    chw = x if src.channels_first else x.transpose(0, 3, 1, 2)
    rows = []
    for i, (img, lab) in enumerate(zip(chw, src.labels)):
        if isinstance(lab, (int, np.integer)) and not isinstance(lab, bool):
            label = classes[int(lab)] if 0 <= int(lab) < len(classes) else ("" if int(lab) == -1 else str(int(lab)))
        else:
            label = str(lab).strip()
        row = _row(src.name, src.path or src.name, i, label)
        c, h, w = img.shape
        rgb = img if c == 3 else np.repeat(img[:1], 3, axis=0)
        row.update(sha256=pixel_sha256(img), pixel_sha256=pixel_sha256(rgb), format="array", width=w, height=h,
                   mode="RGB" if c == 3 else "L", channels=c)
        row["phash"] = f"{phash_image(Image.fromarray(rgb.transpose(1, 2, 0))):016x}"
        if c not in (1, 3):
            row.update(problem="mode", detail=f"{c} channels; expected 1 or 3")
        elif min(w, h) < min_size:
            row.update(problem="too_small", detail=f"{w}x{h} is smaller than {min_size} pixels on a side")
        _check_label(row, classes)
        rows.append(row)
    return rows


def _inspect_chunk(args: tuple[list[tuple[str, str, str]], Sequence[str], int, int, Sequence[str], int]) -> list[dict[str, Any]]:
    tasks, classes, min_size, max_pixels, accept_modes, max_bytes = args
    return [inspect_file(t, classes, min_size, max_pixels, accept_modes, max_bytes) for t in tasks]


# --------------------------------------------------------------------------- #
# Manifest
# --------------------------------------------------------------------------- #
@dataclass
class Manifest:
    """The rows of a collection, with the classes and (for arrays) the source data.

    Used in chapter 02 (data collection).
    """

    rows: list[dict[str, Any]]
    classes: list[str]
    arrays: dict[str, ArraySource] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.rows)

    def good(self) -> list[dict[str, Any]]:
        """Rows without a problem."""
        return [r for r in self.rows if not r["problem"]]

    def bad(self) -> list[dict[str, Any]]:
        """Rows with a problem."""
        return [r for r in self.rows if r["problem"]]

    def summary(self) -> dict[str, int]:
        """Count of items per outcome: ``ok`` then every problem kind (zeros included)."""
        counts = {"ok": 0, **{k: 0 for k in PROBLEM_KINDS}}
        for r in self.rows:
            counts[r["problem"] or "ok"] += 1
        return counts

    def format_table(self, rows: Sequence[dict[str, Any]] | None = None,
                     columns: Sequence[str] = ("source", "path", "label", "width", "height", "mode", "problem", "detail"),
                     max_width: int = 48) -> str:
        """A plain-text table of ``rows`` (default: all), long cells shortened from the left."""
        rows = self.rows if rows is None else rows

        def cell(r: dict[str, Any], c: str) -> str:
            text = str(r[c])
            if c == "path" and r.get("format") != "array":
                text = Path(text).name if text else text
                text = f"{Path(str(r[c])).parent.name}/{text}" if text else text
            if c == "path" and r.get("format") == "array":
                text = f"{Path(text).name}[{r['index']}]"
            return text if len(text) <= max_width else text[: max_width - 1] + "…"

        table = [list(columns)] + [[cell(r, c) for c in columns] for r in rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
        lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in table]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def to_csv(self, path: PathLike) -> Path:
        """Write the manifest as CSV atomically (:func:`dlkit._util.atomic_write`).

        Returns:
            The path written.
        """
        path = Path(path)
        with atomic_write(path, "wb") as raw:
            f = io.TextIOWrapper(raw, encoding="utf-8", newline="")  # the csv module ends rows itself
            writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
            writer.writeheader()
            writer.writerows(self.rows)
            f.flush()
            f.detach()
        return path

    @classmethod
    def read_csv(cls, path: PathLike, classes: Sequence[str]) -> Manifest:
        """Read a manifest written by :meth:`to_csv` (array data is not restored).

        Raises:
            ValueError: If the header lacks one of :data:`MANIFEST_COLUMNS`.
        """
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in MANIFEST_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{path}: not a manifest, missing columns {missing}")
            rows = []
            for r in reader:
                for c in ("index", "width", "height", "channels"):
                    r[c] = int(r[c]) if r[c] != "" else 0
                rows.append(dict(r))
        return cls(rows, list(classes))

    def load_images(self, rows: Sequence[dict[str, Any]] | None = None, size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode rows (default: the good ones) into ``uint8`` ``N x 3 x H x W`` and label indices.

        Args:
            rows: Rows to load; each must have a known label.
            size: Resize every image to ``size x size`` (needed when sizes differ).

        Returns:
            ``(images, labels)`` tensors.

        Raises:
            ValueError: If a row has no valid label or images of different sizes
                are loaded without ``size``.
        """
        rows = self.good() if rows is None else rows
        index = {c: i for i, c in enumerate(self.classes)}
        images, labels = [], []
        for r in rows:
            if r["label"] not in index:
                raise ValueError(f"row {r['path']} has no valid label ({r['label']!r})")
            if r["format"] == "array":
                src = self.arrays[r["source"]]
                a = np.asarray(src.images[int(r["index"])])
                a = a if src.channels_first else (a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
                img = Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0))
            else:
                with Image.open(r["path"]) as im:
                    im.load()  # decode before the file closes
                    img = to_rgb(im)
            img = img.convert("RGB")
            if size is not None and img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BILINEAR)
            images.append(np.asarray(img).transpose(2, 0, 1))
            labels.append(index[r["label"]])
        shapes = {i.shape for i in images}
        if len(shapes) > 1:
            raise ValueError(f"images have different sizes {sorted(shapes)}; pass size=")
        x = np.stack(images) if images else np.zeros((0, 3, size or 0, size or 0), np.uint8)
        return torch.from_numpy(np.ascontiguousarray(x)), torch.tensor(labels, dtype=torch.int64)


def collect(
    sources: Sequence[FolderSource | CsvSource | ArraySource],
    classes: Sequence[str],
    *,
    workers: int = 1,
    min_size: int = 8,
    max_pixels: int = 4096 * 4096,
    accept_modes: Sequence[str] = ("RGB", "L"),
    max_bytes: int = MAX_FILE_BYTES,
) -> Manifest:
    """Inspect every item of every source and return the :class:`Manifest`.

    Nothing raises for a bad item: it gets a ``problem`` and a ``detail``.
    Used in chapter 02 (data collection).

    Args:
        sources: Folder, CSV and array sources, read in order.
        classes: The valid class names.
        workers: Processes inspecting files in parallel (1: in this process).
        min_size: Smallest accepted width and height.
        max_pixels: Largest accepted image area (decompression-bomb guard).
        accept_modes: PIL modes accepted.
        max_bytes: Largest file read; larger files are refused (``"bomb"``) unread.

    Returns:
        The manifest; rows in source order, files sorted by path in a folder.

    Raises:
        ValueError: If ``classes`` is empty, source names repeat or
            ``workers`` < 1; a malformed CSV header or array.
        FileNotFoundError: If a folder source does not exist.
    """
    classes = [str(c) for c in classes]
    if not classes:
        raise ValueError("classes must name at least one class")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    check_positive_int(max_bytes, "max_bytes")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"source names must be unique, got {names}")
    rows: list[dict[str, Any]] = []
    arrays: dict[str, ArraySource] = {}
    for src in sources:
        if isinstance(src, ArraySource):
            rows += _array_rows(src, classes, min_size)
            arrays[src.name] = src
            continue
        tasks = src.tasks()
        if workers == 1 or len(tasks) < 2 * workers:
            rows += _inspect_chunk((tasks, classes, min_size, max_pixels, accept_modes, max_bytes))
            continue
        # Chunks of tasks (not one task per message) keep inter-process traffic small.
        n_chunks = workers * 4
        chunks = [tasks[i::n_chunks] for i in range(n_chunks)]
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_inspect_chunk, [(c, classes, min_size, max_pixels, accept_modes, max_bytes) for c in chunks]))
        by_path = {}
        for part in results:
            for r in part:
                by_path.setdefault(r["path"], []).append(r)
        for _, path, _ in tasks:  # restore the source order
            rows.append(by_path[path].pop(0))
    return Manifest(rows, classes, arrays)


# --------------------------------------------------------------------------- #
# Privacy
# --------------------------------------------------------------------------- #
def read_metadata(path: PathLike) -> dict[str, Any]:
    """EXIF tags (by name, GPS expanded) and text chunks of an image file.

    Used in chapter 02 to show what a photo reveals and that stripping worked.

    Args:
        path: An image file.

    Returns:
        ``{tag name: value}``; GPS data under ``"GPSInfo"`` as a dict of
        names; PNG/other text chunks under their keys. Empty when none.
    """
    out: dict[str, Any] = {}
    with Image.open(path) as img:
        exif = img.getexif()
        for tag, value in exif.items():
            if tag == ExifTags.Base.GPSInfo:
                continue
            out[ExifTags.TAGS.get(tag, str(tag))] = value
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
        if gps:
            out["GPSInfo"] = {ExifTags.GPSTAGS.get(k, str(k)): v for k, v in gps.items()}
        for key, value in img.info.items():
            if key in ("exif", "icc_profile", "xmp", "XML:com.adobe.xmp") or isinstance(value, str):
                out.setdefault(key, value if isinstance(value, str) else f"<{len(value)} bytes>")
    return out


def strip_metadata(src: PathLike, dest: PathLike | None = None, quality: int = 95) -> Path:
    """Rewrite an image with its pixels only: no EXIF, GPS, XMP, ICC or text chunks.

    The EXIF orientation is applied first, so the picture still looks the
    same once the tag that rotated it is gone. The output is written to a
    temporary file and renamed (``dest`` defaults to ``src``, replaced
    atomically). JPEG is re-encoded at ``quality``. Used in chapter 02.

    Args:
        src: The image file.
        dest: Where to write; default overwrite ``src``.
        quality: JPEG quality when the format is JPEG.

    Returns:
        The path written.
    """
    src = Path(src)
    dest = src if dest is None else Path(dest)
    with Image.open(src) as img:
        fmt = img.format or "PNG"
        turned = upright(img)
        # A fresh image from the pixel buffer carries no info dict at all.
        clean = Image.frombytes(turned.mode, turned.size, turned.tobytes())
        if turned.mode == "P":
            clean.putpalette(turned.getpalette())
    kwargs = {"quality": quality} if fmt == "JPEG" else {}
    with atomic_write(dest, "wb") as f:
        clean.save(f, format=fmt, **kwargs)
    return dest


# --------------------------------------------------------------------------- #
# A folder of real bad files, for teaching and tests
# --------------------------------------------------------------------------- #
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_bomb(path: Path, side: int) -> None:
    """A complete, valid 1-bit PNG of ``side x side`` black pixels: tiny file, huge image."""
    row = b"\x00" + b"\x00" * ((side + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    parts = []
    block = row * 1024
    for start in range(0, side, 1024):
        parts.append(comp.compress(block if side - start >= 1024 else row * (side - start)))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
                     + _png_chunk(b"IDAT", b"".join(parts)) + _png_chunk(b"IEND", b""))


def write_messy_examples(folder: PathLike, image: np.ndarray, label: str) -> dict[str, tuple[Path, str]]:
    """Write one real file per file-level problem into ``folder/label/``.

    Used in chapter 02 to build a messy collection and in the tests.

    Args:
        folder: Root of a class-per-folder tree.
        image: A ``uint8`` ``H x W x 3`` picture (at least 16 x 16) to derive the files from.
        label: The class sub-folder to write into.

    Returns:
        ``{file name: (path, expected problem kind)}``.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 16:
        raise ValueError(f"image must be uint8 H x W x 3 with H, W >= 16, got {image.dtype} {image.shape}")
    d = Path(folder) / label
    d.mkdir(parents=True, exist_ok=True)
    rgb = Image.fromarray(image)
    out: dict[str, tuple[Path, str]] = {}

    def put(name: str, kind: str) -> Path:
        out[name] = (d / name, kind)
        return d / name

    put("empty.png", "empty").write_bytes(b"")
    good = io.BytesIO()
    rgb.save(good, format="PNG")
    put("truncated.png", "truncated").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    put("notes.jpg", "not_an_image").write_text("a text file named like a photo\n")
    put("html_error.png", "not_an_image").write_text("<html><body>404 Not Found</body></html>\n")
    rgb.convert("CMYK").save(put("cmyk.jpg", "mode"), quality=95)
    grey16 = (np.asarray(rgb.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    Image.fromarray(grey16).save(put("grey16.png", "mode"))  # mode I;16
    rgb.quantize(16).save(put("palette.png", "mode"))
    rgba = rgb.copy()
    rgba.putalpha(200)
    rgba.save(put("alpha.png", "mode"))
    rgb.resize((4, 4)).save(put("tiny.png", "too_small"))
    _png_bomb(put("bomb.png", "bomb"), 20_000)
    return out
