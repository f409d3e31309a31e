"""dlkit.collect: three sources, one manifest, a real file for every problem kind, privacy."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import ExifTags, Image

from dlkit.collect import (
    PROBLEM_KINDS,
    ArraySource,
    CsvSource,
    FolderSource,
    Manifest,
    collect,
    inspect_file,
    read_metadata,
    strip_metadata,
    to_rgb,
    write_messy_examples,
)

CLASSES = ["cat", "dog"]


def _picture(seed=0, size=24):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


@pytest.fixture
def messy(tmp_path):
    """A folder tree with good and bad files, a CSV source, and an array source."""
    root = tmp_path / "folder"
    for i, label in enumerate(["cat", "dog", "dog"]):
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(_picture(i)).save(root / label / f"good{i}.png")
    Image.fromarray(_picture(9)).save(root / "loose.png")  # no class folder: missing label
    expected = write_messy_examples(root, _picture(5), "cat")
    files = tmp_path / "files"
    files.mkdir()
    Image.fromarray(_picture(0)).save(files / "copy_of_good0.png")  # same pixels as folder/cat/good0.png
    Image.fromarray(_picture(11)).save(files / "a.jpg", quality=90)
    Image.fromarray(_picture(12)).save(files / "b.png")
    Image.fromarray(_picture(13)).save(files / "c.png")
    (files / "a_folder.png").mkdir()  # exists but cannot be read as a file
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows([["files/copy_of_good0.png", "cat"], ["files/a.jpg", "dog"], ["files/b.png", ""],
                     ["files/c.png", "horse"], ["files/gone.png", "cat"], ["files/a_folder.png", "dog"]])
    arr = np.stack([_picture(20), _picture(21), _picture(0)])
    return tmp_path, expected, arr


def _by_name(manifest):
    return {r["path"].rsplit("/", 1)[-1] + (f"[{r['index']}]" if r["index"] >= 0 else ""): r for r in manifest.rows}


def test_every_problem_kind_is_found_with_real_files(messy):
    tmp_path, expected, arr = messy
    sources = [FolderSource(tmp_path / "folder"), CsvSource(tmp_path / "labels.csv"),
               ArraySource(arr, [0, 1, -1], name="arr")]
    m = collect(sources, CLASSES)
    rows = _by_name(m)
    for name, (_, kind) in expected.items():
        assert rows[name]["problem"] == kind, (name, rows[name])
        assert rows[name]["detail"]
    assert rows["loose.png"]["problem"] == "missing_label"
    assert rows["b.png"]["problem"] == "missing_label"
    assert rows["c.png"]["problem"] == "unknown_label" and "horse" in rows["c.png"]["detail"]
    assert rows["gone.png"]["problem"] == "missing_file"
    assert rows["a_folder.png"]["problem"] == "unreadable"
    assert rows["arr[2]"]["problem"] == "missing_label"
    for ok in ("good0.png", "good1.png", "good2.png", "copy_of_good0.png", "a.jpg", "arr[0]", "arr[1]"):
        assert rows[ok]["problem"] == "", rows[ok]
    # Each kind appears in the summary, and the counts add up.
    summary = m.summary()
    assert list(summary) == ["ok", *PROBLEM_KINDS]
    assert all(summary[k] >= 1 for k in PROBLEM_KINDS)
    assert sum(summary.values()) == len(m) == 3 + 1 + len(expected) + 6 + 3
    assert summary["ok"] == 7


def test_manifest_records_hashes_sizes_and_modes(messy):
    tmp_path, expected, arr = messy
    m = collect([FolderSource(tmp_path / "folder"), CsvSource(tmp_path / "labels.csv"),
                 ArraySource(arr, ["cat", "dog", ""], name="arr")], CLASSES)
    rows = _by_name(m)
    good0 = rows["good0.png"]
    import hashlib
    assert good0["sha256"] == hashlib.sha256((tmp_path / "folder/cat/good0.png").read_bytes()).hexdigest()
    assert (good0["width"], good0["height"], good0["mode"], good0["channels"], good0["format"]) == (24, 24, "RGB", 3, "PNG")
    # Same pixels from a PNG file, another PNG file and an array: one pixel hash.
    assert good0["pixel_sha256"] == rows["copy_of_good0.png"]["pixel_sha256"] == rows["arr[2]"]["pixel_sha256"]
    assert good0["sha256"] != rows["arr[2]"]["sha256"]
    assert rows["cmyk.jpg"]["mode"] == "CMYK" and rows["grey16.png"]["mode"] == "I;16"
    assert rows["palette.png"]["mode"] == "P" and rows["alpha.png"]["mode"] == "RGBA"
    assert len(good0["phash"]) == 16


def test_parallel_collection_gives_the_same_manifest(messy):
    tmp_path, _, _ = messy
    sources = [FolderSource(tmp_path / "folder"), CsvSource(tmp_path / "labels.csv")]
    assert collect(sources, CLASSES, workers=2).rows == collect(sources, CLASSES, workers=1).rows


def test_csv_roundtrip_and_loading_good_images(messy, tmp_path):
    root, _, arr = messy
    m = collect([FolderSource(root / "folder"), ArraySource(arr, [0, 1, 0], name="arr")], CLASSES)
    path = m.to_csv(tmp_path / "out" / "manifest.csv")
    again = Manifest.read_csv(path, CLASSES)
    assert [{k: str(v) for k, v in r.items()} for r in again.rows] == [{k: str(v) for k, v in r.items()} for r in m.rows]
    assert [p.name for p in path.parent.iterdir()] == ["manifest.csv"]
    x, y = m.load_images()
    assert x.shape == (6, 3, 24, 24) and y.tolist() == [0, 1, 1, 0, 1, 0]
    np.testing.assert_array_equal(x[0].numpy().transpose(1, 2, 0), _picture(0))
    np.testing.assert_array_equal(x[3].numpy().transpose(1, 2, 0), _picture(20))
    with pytest.raises(ValueError, match="not a manifest"):
        (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
        Manifest.read_csv(tmp_path / "bad.csv", CLASSES)


def test_limits_are_configurable(tmp_path):
    Image.fromarray(_picture(1, size=64)).save(tmp_path / "big.png")
    row = inspect_file(("s", str(tmp_path / "big.png"), "cat"), CLASSES, max_pixels=63 * 63)
    assert row["problem"] == "bomb" and "4,096 pixels" in row["detail"]
    row = inspect_file(("s", str(tmp_path / "big.png"), "cat"), CLASSES, min_size=100)
    assert row["problem"] == "too_small"
    messy_dir = tmp_path / "m"
    write_messy_examples(messy_dir, _picture(2), "cat")
    row = inspect_file(("s", str(messy_dir / "cat/palette.png"), "cat"), CLASSES, accept_modes=("RGB", "P"))
    assert row["problem"] == ""


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="classes"):
        collect([], [])
    with pytest.raises(ValueError, match="workers"):
        collect([], CLASSES, workers=0)
    with pytest.raises(ValueError, match="max_bytes"):
        collect([], CLASSES, max_bytes=0)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        collect([FolderSource(tmp_path / "nope")], CLASSES)
    (tmp_path / "x.csv").write_text("file,label\n")
    with pytest.raises(ValueError, match="missing column"):
        collect([CsvSource(tmp_path / "x.csv")], CLASSES)
    with pytest.raises(ValueError, match="unique"):
        collect([ArraySource(np.zeros((1, 8, 8, 3), np.uint8), [0]), ArraySource(np.zeros((1, 8, 8, 3), np.uint8), [0])], CLASSES)


def test_to_rgb_handles_every_mode(tmp_path):
    pic = _picture(3)
    paths = write_messy_examples(tmp_path, pic, "cat")
    for name in ("cmyk.jpg", "grey16.png", "palette.png", "alpha.png"):
        with Image.open(paths[name][0]) as img:
            out = to_rgb(img)
        assert out.mode == "RGB" and out.size == (24, 24)
    with Image.open(paths["grey16.png"][0]) as img:
        grey = np.asarray(to_rgb(img))[..., 0]
    np.testing.assert_array_equal(grey, np.asarray(Image.fromarray(pic).convert("L")))  # 16-bit scaled back exactly
    with Image.open(paths["alpha.png"][0]) as img:
        blended = np.asarray(to_rgb(img)).astype(int)
    want = np.round(pic * (200 / 255) + 255 * (55 / 255)).astype(int)
    assert np.abs(blended - want).max() <= 1  # composited on white, not dropped to black


def _smooth_picture(size=32):
    yy, xx = np.mgrid[0:size, 0:size]
    return np.stack([xx * 255 // size, yy * 255 // size, (xx + yy) * 127 // size], axis=-1).astype(np.uint8)


def _photo_with_gps(path):
    img = Image.fromarray(_smooth_picture())
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "PhoneMaker"
    exif[ExifTags.Base.DateTime] = "2024:05:01 12:00:00"
    exif[ExifTags.Base.Orientation] = 6  # stored sideways: viewers rotate 90 degrees
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (48.0, 51.0, 29.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (2.0, 17.0, 40.0)
    img.save(path, exif=exif, quality=95)
    return img


def test_strip_metadata_removes_exif_and_gps_and_keeps_the_picture_upright(tmp_path):
    src = tmp_path / "photo.jpg"
    original = _photo_with_gps(src)
    before = read_metadata(src)
    assert before["Make"] == "PhoneMaker" and before["GPSInfo"]["GPSLatitudeRef"] == "N"
    out = strip_metadata(src, tmp_path / "clean" / "photo.jpg")
    assert read_metadata(out) == {}
    with Image.open(out) as img:
        assert img.size == (32, 32) and not img.getexif()
        # Orientation 6 was applied: the clean pixels are the original rotated 90 degrees clockwise.
        got = np.asarray(img).astype(int)
        rotated = np.asarray(original.transpose(Image.Transpose.ROTATE_270)).astype(int)
        assert np.abs(got - rotated).mean() < 3
        assert np.abs(got - np.asarray(original).astype(int)).mean() > 30
    assert b"PhoneMaker" not in out.read_bytes()
    # In place: the source itself is replaced atomically.
    strip_metadata(src)
    assert read_metadata(src) == {} and [p.name for p in tmp_path.iterdir() if p.is_file()] == ["photo.jpg"]


def test_strip_metadata_png_text_chunks(tmp_path):
    from PIL.PngImagePlugin import PngInfo
    info = PngInfo()
    info.add_text("Author", "Jane Doe")
    Image.fromarray(_picture(6)).save(tmp_path / "a.png", pnginfo=info)
    assert read_metadata(tmp_path / "a.png") == {"Author": "Jane Doe"}
    strip_metadata(tmp_path / "a.png")
    assert read_metadata(tmp_path / "a.png") == {}
    with Image.open(tmp_path / "a.png") as img:
        np.testing.assert_array_equal(np.asarray(img), _picture(6))  # PNG stays lossless


def test_pixel_hash_is_sha256_of_the_shape_and_the_channel_first_bytes(messy):
    tmp_path, _, arr = messy
    m = collect([FolderSource(tmp_path / "folder")], CLASSES)
    good0 = _by_name(m)["good0.png"]
    chw = _picture(0).transpose(2, 0, 1)
    import hashlib
    by_hand = hashlib.sha256(b"(3, 24, 24)" + np.ascontiguousarray(chw).tobytes()).hexdigest()
    assert good0["pixel_sha256"] == by_hand


def test_file_hash_is_the_published_sha256_and_matches_hashlib_on_a_large_file(tmp_path):
    # FIPS 180-2, appendix B.1: SHA-256("abc").
    (tmp_path / "abc.png").write_bytes(b"abc")
    row = inspect_file(("s", str(tmp_path / "abc.png"), "cat"), CLASSES)
    assert row["sha256"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert row["problem"] == "not_an_image"
    # Several read chunks long: the streamed hash equals hashlib's one-shot hash.
    blob = np.random.default_rng(0).integers(0, 256, 5 * 2**20 + 123, dtype=np.uint8).tobytes()
    (tmp_path / "blob.png").write_bytes(blob)
    import hashlib
    row = inspect_file(("s", str(tmp_path / "blob.png"), "cat"), CLASSES)
    assert row["sha256"] == hashlib.sha256(blob).hexdigest()


def test_a_file_over_the_size_cap_is_rejected_without_being_read(tmp_path, monkeypatch):
    import builtins
    import pathlib

    import dlkit.collect as collect_module

    cap = 64 * 2**20
    big = tmp_path / "cat" / "huge.png"
    big.parent.mkdir()
    with open(big, "wb") as f:  # sparse: costs no disk space
        f.truncate(cap + 1)
    opened = []

    def no_read_bytes(self):
        raise AssertionError(f"read_bytes() of {self.name}: the whole file is read before any size check")

    real_open = builtins.open

    def spy_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "read_bytes", no_read_bytes)
    monkeypatch.setattr(collect_module, "open", spy_open, raising=False)
    row = inspect_file(("s", str(big), "cat"), CLASSES)
    assert row["problem"] == "bomb", row
    assert f"{cap + 1:,} bytes" in row["detail"] and f"{cap:,}" in row["detail"], row["detail"]
    assert str(big) not in opened, "a file over the cap must not even be opened"
    # The cap is an argument; files under it are read and hashed as usual.
    monkeypatch.undo()
    small = tmp_path / "cat" / "ok.png"
    Image.fromarray(_picture(1)).save(small)
    row = inspect_file(("s", str(small), "cat"), CLASSES, max_bytes=small.stat().st_size - 1)
    assert row["problem"] == "bomb" and "max_bytes" in row["detail"]
    assert inspect_file(("s", str(small), "cat"), CLASSES, max_bytes=small.stat().st_size)["problem"] == ""
