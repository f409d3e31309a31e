"""Tests for dlkit.data: containers, loading, canonical order, stats and loaders."""

from __future__ import annotations

import gzip
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets
from torch.utils.data import BatchSampler, DataLoader

from dlkit import data
from dlkit.data import (
    CIFAR10_CLASSES,
    FASHION_MNIST_CLASSES,
    ImageSet,
    canonical_order,
    channel_stats,
    data_dirs,
    load,
    make_loader,
    split_indices,
    to_tensors,
)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #
def _need(condition: bool, reason: str) -> None:
    """Skip when real data is missing, but fail on CI where it must be present."""
    if not condition:
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set, so this is an error, not a skip)")
        pytest.skip(reason)


def _image_set(n: int = 12, c: int = 3, hw: int = 4, n_classes: int = 3, seed: int = 0) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, c, hw, hw), dtype=torch.uint8, generator=g)
    labels = torch.arange(n) % n_classes
    return ImageSet(images, labels, [f"c{k}" for k in range(n_classes)], "toy", "train")


def _fake_fashion(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    y = rng.permutation(np.arange(n) % 10).astype(np.uint8)
    return x, y


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(arr, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def _write_idx_folder(folder: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]], gz: bool) -> None:
    ext = ".gz" if gz else ""
    for split, (x, y) in splits.items():
        prefix = "train" if split == "train" else "t10k"
        _write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", x)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", y)


def _write_npz(path: Path, train, test, classes=FASHION_MNIST_CLASSES, **override) -> None:
    arrays = {
        "x_train": train[0], "y_train": train[1], "x_test": test[0], "y_test": test[1],
        "class_names": np.array(classes),
    }
    arrays.update(override)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


def _shuffled(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(len(y))
    return x[perm], y[perm]


class _NoNetwork:
    """Stand-in for torchvision dataset classes: tests must never download."""

    calls: list = []

    def __init__(self, root, train=True, download=False, **kwargs):
        type(self).calls.append((root, train, download))
        raise RuntimeError("network disabled in tests")


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No data anywhere: HOME, cache and system folder are empty temp dirs."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("DLKIT_DATA_DIR", raising=False)
    monkeypatch.setattr(data.sources, "SYSTEM_DATA_DIR", tmp_path / "system")
    _NoNetwork.calls = []
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", _NoNetwork)
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", _NoNetwork)
    return tmp_path


# --------------------------------------------------------------------------- #
# ImageSet
# --------------------------------------------------------------------------- #
def test_imageset_rejects_bad_fields():
    good = _image_set()
    with pytest.raises(TypeError, match="uint8.*float32"):
        ImageSet(good.images.float(), good.labels, good.classes, "x", "train")
    with pytest.raises(ValueError, match=r"4-D.*\(12, 3, 16\)"):
        ImageSet(good.images.reshape(12, 3, 16), good.labels, good.classes, "x", "train")
    with pytest.raises(TypeError, match="int64.*int32"):
        ImageSet(good.images, good.labels.int(), good.classes, "x", "train")
    with pytest.raises(ValueError, match=r"N=12.*\(11,\)"):
        ImageSet(good.images, good.labels[:11], good.classes, "x", "train")
    with pytest.raises(ValueError, match=r"\[0, 2\).*\[0, 2\]"):
        ImageSet(good.images, good.labels, ["a", "b"], "x", "train")
    with pytest.raises(TypeError, match="list of str"):
        ImageSet(good.images, good.labels, "abc", "x", "train")


def test_imageset_int_index_returns_image_and_int_label():
    ds = _image_set()
    image, label = ds[5]
    assert torch.equal(image, ds.images[5]) and image.shape == (3, 4, 4)
    assert type(label) is int and label == 5 % 3
    assert ds[-1][1] == int(ds.labels[-1])
    assert ds[np.int64(4)][1] == 1 and ds[torch.tensor(4)][1] == 1
    with pytest.raises(IndexError):
        ds[12]
    assert len(ds) == 12


def test_imageset_slicing_and_index_tensors_give_new_sets():
    ds = _image_set()
    part = ds[2:6]
    assert isinstance(part, ImageSet) and len(part) == 4
    assert torch.equal(part.images, ds.images[2:6]) and part.classes == ds.classes
    idx = torch.tensor([7, 0, 3])
    for sub in (ds[idx], ds.subset(idx), ds[[7, 0, 3]], ds.subset(np.array([7, 0, 3]))):
        assert torch.equal(sub.labels, ds.labels[idx]) and torch.equal(sub.images, ds.images[idx])
        assert (sub.name, sub.split) == ("toy", "train")
    mask = ds.labels == 2
    assert len(ds[mask]) == 4 and bool((ds[mask].labels == 2).all())
    assert len(ds.subset([])) == 0


def test_imageset_summary_is_stable_text_and_repr_is_short():
    ds = ImageSet(
        torch.zeros(5, 1, 2, 3, dtype=torch.uint8), torch.tensor([0, 1, 1, 2, 2]),
        ["cat", "dog", "horse"], "toy", "test",
    )
    assert ds.summary() == (
        "ImageSet toy (test)\n"
        "  images:  5\n"
        "  shape:   1x2x3 (C x H x W)\n"
        "  dtype:   uint8\n"
        "  classes: 3\n"
        "  per-class counts:\n"
        "    cat    1\n"
        "    dog    2\n"
        "    horse  2"
    )
    assert repr(ds) == "ImageSet(name='toy', split='test', n=5, shape=1x2x3, classes=3)"
    assert ds.class_counts() == [1, 2, 2]


def test_imageset_is_frozen_and_copies_classes():
    names = ["a", "b", "c"]
    ds = ImageSet(torch.zeros(3, 1, 1, 1, dtype=torch.uint8), torch.tensor([0, 1, 2]), names, "t", "train")
    names.append("d")
    assert ds.classes == ["a", "b", "c"]
    with pytest.raises(AttributeError):
        ds.name = "other"  # type: ignore[misc]


# --------------------------------------------------------------------------- #
# Canonical order
# --------------------------------------------------------------------------- #
def test_canonical_order_sorts_by_label_then_bytes():
    ds = _image_set(n=40, n_classes=4, seed=3)
    order = canonical_order(ds.images, ds.labels)
    labels = ds.labels[order].tolist()
    raw = [ds.images[i].numpy().tobytes() for i in order.tolist()]
    expected = sorted(range(40), key=lambda i: (int(ds.labels[i]), ds.images[i].numpy().tobytes()))
    assert order.tolist() == expected
    assert labels == sorted(labels)
    assert raw[0] <= raw[1] or labels[0] != labels[1]


def test_canonical_order_undoes_any_shuffle():
    ds = _image_set(n=50, n_classes=5, seed=1)
    ref = canonical_order(ds.images, ds.labels)
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(9))
    shuffled_x, shuffled_y = ds.images[perm], ds.labels[perm]
    order = canonical_order(shuffled_x.numpy(), shuffled_y.numpy())
    assert torch.equal(shuffled_x[order], ds.images[ref])
    assert torch.equal(shuffled_y[order], ds.labels[ref])


def test_canonical_order_is_stable_for_duplicates_and_checks_input():
    x = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
    assert canonical_order(x, torch.tensor([1, 0, 1, 0])).tolist() == [1, 3, 0, 2]
    with pytest.raises(ValueError, match="uint8"):
        canonical_order(x.float(), torch.zeros(4))
    with pytest.raises(ValueError, match="labels"):
        canonical_order(x, torch.zeros(3))


# --------------------------------------------------------------------------- #
# load(): argument checks
# --------------------------------------------------------------------------- #
def test_load_rejects_unknown_name_listing_valid_ones():
    with pytest.raises(ValueError) as err:
        load("mnist")
    for name in ("cifar10", "fashion_mnist", "digits", "shapes"):
        assert repr(name) in str(err.value)


def test_load_rejects_bad_split_saying_which_are_accepted():
    with pytest.raises(ValueError, match=r"'train', 'test'.*'val'"):
        load("shapes", "val")


def test_load_rejects_bad_sizes_and_seed():
    with pytest.raises(ValueError, match=">= 8"):
        load("shapes", image_size=7)
    with pytest.raises(ValueError, match="only applies to 'shapes'"):
        load("digits", image_size=16)
    with pytest.raises(ValueError, match=r"num_samples must be in \[1, 1438\]"):
        load("digits", num_samples=5000)
    with pytest.raises(ValueError, match="num_samples"):
        load("shapes", num_samples=0)
    with pytest.raises(ValueError, match="seed"):
        load("shapes", seed=-1)
    with pytest.raises(TypeError, match="num_samples"):
        load("digits", num_samples=2.5)


# --------------------------------------------------------------------------- #
# load(): file forms and canonical order
# --------------------------------------------------------------------------- #
def test_npz_and_idx_folders_with_same_data_in_other_orders_load_identically(isolated):
    train, test = _fake_fashion(60, seed=1), _fake_fashion(30, seed=2)
    _write_npz(isolated / "a" / "fashion_mnist.npz", _shuffled(*train, 5), _shuffled(*test, 6))
    _write_idx_folder(isolated / "b" / "FashionMNIST" / "raw", {"train": train, "test": test}, gz=True)
    _write_idx_folder(isolated / "c" / "fashion-mnist", {"train": _shuffled(*train, 7), "test": test}, gz=False)
    for split, (x, y) in (("train", train), ("test", test)):
        sets = [load("fashion_mnist", split, root=isolated / d, download=False) for d in "abc"]
        for ds in sets:
            assert ds.images.shape == (len(y), 1, 28, 28) and ds.images.dtype == torch.uint8
            assert ds.labels.dtype == torch.int64 and ds.classes == list(FASHION_MNIST_CLASSES)
            assert torch.equal(ds.images, sets[0].images) and torch.equal(ds.labels, sets[0].labels)
        # Same multiset of images as written, now in canonical order.
        order = canonical_order(x[:, None], y).numpy()
        assert np.array_equal(sets[0].images.numpy(), x[order][:, None])
    assert _NoNetwork.calls == []


def test_npz_accepts_channel_last_images(isolated):
    x, y = _fake_fashion(20, seed=0)
    _write_npz(isolated / "fashion_mnist.npz", (x[..., None], y), (x[..., None], y))
    ds = load("fashion_mnist", "test", root=isolated, download=False)
    assert ds.images.shape == (20, 1, 28, 28)
    assert sorted(ds.images.reshape(20, -1).sum(1).tolist()) == sorted(x.reshape(20, -1).sum(1).tolist())


def test_npz_missing_keys_are_named(isolated):
    x, y = _fake_fashion(10, seed=0)
    _write_npz(isolated / "fashion_mnist.npz", (x, y), (x, y), y_test=None, class_names=None)
    with pytest.raises(ValueError) as err:
        load("fashion_mnist", root=isolated, download=False)
    msg = str(err.value)
    assert "missing keys ['y_test', 'class_names']" in msg and "fashion_mnist.npz" in msg
    assert "expected keys ['x_train', 'y_train', 'x_test', 'y_test', 'class_names']" in msg


@pytest.mark.parametrize(
    "x_train, y_train, expected",
    [
        (np.zeros((10, 32, 32), np.uint8), np.zeros(10, np.uint8), r"\(N, 28, 28, 1\) or \(N, 28, 28\).*\(10, 32, 32\)"),
        (np.zeros((10, 28, 28), np.float32), np.zeros(10, np.uint8), r"uint8.*float32"),
        (np.zeros((10, 28), np.uint8), np.zeros(10, np.uint8), r"\(N, 28, 28"),
        (np.zeros((10, 28, 28), np.uint8), np.zeros(9, np.uint8), r"labels.*\(10,\).*\(9,\)"),
        (np.zeros((10, 28, 28), np.uint8), np.full(10, 10, np.uint8), r"\[0, 10\)"),
    ],
)
def test_npz_wrong_shapes_and_dtypes_say_what_was_expected(isolated, x_train, y_train, expected):
    x, y = _fake_fashion(10, seed=0)
    _write_npz(isolated / "fashion_mnist.npz", (x_train, y_train), (x, y))
    with pytest.raises(ValueError, match=expected):
        load("fashion_mnist", root=isolated, download=False)
    assert load("fashion_mnist", "test", root=isolated, download=False).images.shape[0] == 10


def test_npz_cifar_expects_rgb_32(isolated):
    x, y = _fake_fashion(10, seed=0)
    _write_npz(isolated / "cifar10.npz", (x, y), (x, y), classes=CIFAR10_CLASSES)
    with pytest.raises(ValueError, match=r"\(N, 32, 32, 3\)"):
        load("cifar10", root=isolated, download=False)


def test_npz_object_arrays_are_refused(isolated):
    x, y = _fake_fashion(10, seed=0)
    _write_npz(isolated / "fashion_mnist.npz", (x, y), (x, y), class_names=np.array(list("abcdefghij"), dtype=object))
    with pytest.raises(ValueError, match="class_names"):
        load("fashion_mnist", root=isolated, download=False)


def test_idx_bad_magic_names_file_and_expected_magic(isolated):
    x, y = _fake_fashion(10, seed=0)
    folder = isolated / "fashion-mnist"
    _write_idx_folder(folder, {"train": (x, y)}, gz=False)
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(b"\x00\x00\x0d\x03" + path.read_bytes()[4:])
    with pytest.raises(ValueError) as err:
        load("fashion_mnist", root=isolated, download=False)
    assert str(path) in str(err.value) and "00000803" in str(err.value) and "00000d03" in str(err.value)


def test_idx_truncated_or_not_gzip_is_reported(isolated):
    x, y = _fake_fashion(10, seed=0)
    folder = isolated / "fashion-mnist"
    _write_idx_folder(folder, {"train": (x, y)}, gz=False)
    labels = folder / "train-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-3])
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte.*truncated.*need 18 bytes, got 15"):
        load("fashion_mnist", root=isolated, download=False)
    labels.unlink()
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(b"this is not gzip data")
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte\.gz"):
        load("fashion_mnist", root=isolated, download=False)


def test_lookup_order_root_then_env_then_cache_then_system(isolated, monkeypatch):
    def put(folder: Path, n: int) -> Path:
        x, y = _fake_fashion(n, seed=n)
        _write_npz(folder / "fashion_mnist.npz", (x, y), (x, y))
        return folder

    _write_idx_folder(isolated / "system" / "fashion-mnist", {"train": _fake_fashion(60, 1)}, gz=True)
    assert len(load("fashion_mnist", download=False)) == 60
    put(isolated / "home" / ".cache" / "dlkit", 40)
    assert len(load("fashion_mnist", download=False)) == 40
    xdg = isolated / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    put(xdg / "dlkit", 35)
    assert len(load("fashion_mnist", download=False)) == 35
    monkeypatch.setenv("DLKIT_DATA_DIR", str(put(isolated / "env", 30)))
    assert len(load("fashion_mnist", download=False)) == 30
    assert len(load("fashion_mnist", root=put(isolated / "root", 20), download=False)) == 20
    dirs = [d for d, _ in data_dirs("fashion_mnist", isolated / "root")]
    assert dirs == [isolated / "root", isolated / "env", xdg / "dlkit", isolated / "system"]
    assert [d for d, _ in data_dirs("cifar10", isolated / "env")] == [isolated / "env", xdg / "dlkit"]


# --------------------------------------------------------------------------- #
# load(): not found and downloads
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("name", ["fashion_mnist", "cifar10"])
def test_not_found_message_names_every_place_and_dlkit_data_dir(isolated, monkeypatch, name):
    env = isolated / "env"
    monkeypatch.setenv("DLKIT_DATA_DIR", str(env))
    root = isolated / "root"
    with pytest.raises(FileNotFoundError) as err:
        load(name, "test", root=root, download=False)
    msg = str(err.value)
    cache = isolated / "home" / ".cache" / "dlkit"
    folders = [root, env, cache] + ([isolated / "system"] if name == "fashion_mnist" else [])
    for folder in folders:
        assert str(folder / f"{name}.npz") in msg
        if name == "cifar10":
            assert str(folder / "cifar-10-batches-py") in msg
        else:
            assert str(folder / "FashionMNIST" / "raw") in msg and str(folder / "fashion-mnist") in msg
            assert "t10k-images-idx3-ubyte" in msg
    assert "DLKIT_DATA_DIR" in msg and "export DLKIT_DATA_DIR=" in msg and "download=False" in msg
    assert _NoNetwork.calls == []  # download=False never touches torchvision
    assert not env.exists() and not cache.exists()


@pytest.mark.parametrize("download", [None, True])
def test_failed_download_raises_file_not_found_with_the_cause(isolated, monkeypatch, download):
    seen = {}

    class Offline:
        def __init__(self, root, train=True, download=False, **kwargs):
            seen["args"] = (root, train, download, socket.getdefaulttimeout())
            raise OSError("simulated: no route to host")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Offline)
    before = socket.getdefaulttimeout()
    with pytest.raises(FileNotFoundError) as err:
        load("cifar10", download=download)
    msg = str(err.value)
    cache = isolated / "home" / ".cache" / "dlkit"
    assert "simulated: no route to host" in msg and "OSError" in msg
    assert str(cache / "cifar10.npz") in msg and "DLKIT_DATA_DIR" in msg
    assert seen["args"][:3] == (str(cache), True, True)
    assert seen["args"][3] == data.DOWNLOAD_SOCKET_TIMEOUT  # bounded while downloading...
    assert socket.getdefaulttimeout() == before  # ...and restored afterwards
    assert not cache.exists()  # no empty folders left behind


def test_download_goes_to_dlkit_data_dir_and_is_then_read(isolated, monkeypatch):
    train_xy, test_xy = _fake_fashion(40, seed=3), _fake_fashion(20, seed=4)

    class FakeFashionMNIST:
        def __init__(self, root, train=True, download=False, **kwargs):
            assert download is True
            raw = Path(root) / "FashionMNIST" / "raw"
            _write_idx_folder(raw, {"train": train_xy, "test": test_xy}, gz=True)

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", FakeFashionMNIST)
    env = isolated / "env"
    monkeypatch.setenv("DLKIT_DATA_DIR", str(env))
    ds = load("fashion_mnist", "test")
    assert len(ds) == 20 and (env / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte.gz").is_file()
    order = canonical_order(*test_xy).numpy()
    assert np.array_equal(ds.images[:, 0].numpy(), test_xy[0][order])


def test_torchvision_cifar_layout_is_read_through_torchvision(isolated, monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8)
    y = np.arange(30) % 10
    calls = []

    class FakeCIFAR10:
        def __init__(self, root, train=True, download=False, **kwargs):
            calls.append((root, train, download))
            if not (Path(root) / "cifar-10-batches-py").is_dir():
                raise RuntimeError("Dataset not found or corrupted.")
            self.data, self.targets = x[::-1].copy(), list(y[::-1])

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    (isolated / "tv" / "cifar-10-batches-py").mkdir(parents=True)
    _write_npz(isolated / "npz" / "cifar10.npz", (x, y.astype(np.uint8)), (x, y.astype(np.uint8)), classes=CIFAR10_CLASSES)
    from_tv = load("cifar10", "test", root=isolated / "tv", download=False)
    from_npz = load("cifar10", "test", root=isolated / "npz", download=False)
    assert calls == [(str(isolated / "tv"), False, False)]
    assert from_tv.images.shape == (30, 3, 32, 32) and from_tv.classes == list(CIFAR10_CLASSES)
    assert torch.equal(from_tv.images, from_npz.images) and torch.equal(from_tv.labels, from_npz.labels)


def test_corrupt_torchvision_cifar_folder_is_a_value_error(isolated, monkeypatch):
    class Corrupt:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("Dataset not found or corrupted.")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Corrupt)
    (isolated / "cifar-10-batches-py").mkdir()
    with pytest.raises(ValueError, match=r"cifar-10-batches-py.*md5"):
        load("cifar10", root=isolated, download=False)


def test_num_samples_gives_a_stratified_deterministic_subset(isolated):
    train = _fake_fashion(100, seed=0)
    _write_npz(isolated / "fashion_mnist.npz", train, train)
    full = load("fashion_mnist", root=isolated, download=False)
    a = load("fashion_mnist", root=isolated, download=False, num_samples=30, seed=1)
    b = load("fashion_mnist", root=isolated, download=False, num_samples=30, seed=1)
    c = load("fashion_mnist", root=isolated, download=False, num_samples=30, seed=2)
    assert a.class_counts() == [3] * 10
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    full_rows = {bytes(r) for r in full.images.reshape(100, -1).numpy()}
    assert all(bytes(r) in full_rows for r in a.images.reshape(30, -1).numpy())
    assert a.labels.tolist() == sorted(a.labels.tolist())  # still canonical
    assert len(load("fashion_mnist", root=isolated, download=False, num_samples=100)) == 100


# --------------------------------------------------------------------------- #
# digits and shapes
# --------------------------------------------------------------------------- #
def test_digits_split_scaling_and_classes():
    from sklearn.datasets import load_digits

    ref = load_digits()
    train, test = load("digits"), load("digits", "test")
    assert (len(train), len(test)) == (1438, 359)
    assert train.images.shape[1:] == (1, 8, 8) and train.classes == [str(d) for d in range(10)]
    idx = np.arange(len(ref.target))
    expected = np.rint(ref.images[idx % 5 == 4] * 255 / 16).astype(np.uint8)
    assert np.array_equal(test.images[:, 0].numpy(), expected)
    assert np.array_equal(train.labels.numpy(), ref.target[idx % 5 != 4])
    values = set(np.unique(train.images.numpy()).tolist())
    assert {0, 128, 255} <= values and max(values) == 255  # 8 -> round(127.5) = 128, 16 -> 255
    sub = load("digits", num_samples=100, seed=3)
    share = torch.tensor(train.class_counts()) * 100 / len(train)
    assert len(sub) == 100 and bool(((torch.tensor(sub.class_counts()) - share).abs() < 1).all())


def test_shapes_are_balanced_deterministic_and_differ_by_split_and_seed():
    train = load("shapes")
    assert train.images.shape == (4000, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.classes == ["circle", "square", "triangle", "cross"]
    assert train.class_counts() == [1000] * 4
    assert len(load("shapes", "test")) == 1000
    again = load("shapes", num_samples=4000)
    assert torch.equal(train.images, again.images) and torch.equal(train.labels, again.labels)
    assert not torch.equal(load("shapes", "test", num_samples=4000).images, train.images)
    assert not torch.equal(load("shapes", seed=1).images, train.images)
    small = load("shapes", "test", num_samples=10, image_size=8)
    assert small.images.shape == (10, 3, 8, 8) and max(small.class_counts()) - min(small.class_counts()) <= 1


def test_shapes_have_clear_contrast_and_visible_shapes():
    ds = load("shapes", "test", num_samples=400)
    gray = ds.images.float().mean(1).reshape(len(ds), -1)
    spread = gray.quantile(0.98, dim=1) - gray.quantile(0.02, dim=1)
    assert float(spread.min()) > 40  # every image shows a shape against its background
    # The background is the median colour; the shape must cover a visible,
    # but not dominant, part of every image.
    fg = (gray - gray.median(dim=1, keepdim=True).values).abs() > 20
    area = fg.float().mean(1)
    assert float(area.min()) > 0.01 and float(area.max()) < 0.6


# --------------------------------------------------------------------------- #
# channel_stats, to_tensors
# --------------------------------------------------------------------------- #
def test_channel_stats_matches_direct_computation_in_chunks():
    ds = _image_set(n=50, c=3, hw=6, seed=4)
    expected_mean = ds.images.float().div(255).mean(dim=(0, 2, 3))
    expected_std = ds.images.float().div(255).std(dim=(0, 2, 3), unbiased=False)
    for batch_size in (1, 7, 4096):
        mean, std = channel_stats(ds.images, batch_size=batch_size)
        assert mean.shape == (3,) and mean.dtype == torch.float32
        assert torch.allclose(mean, expected_mean, atol=1e-6)
        assert torch.allclose(std, expected_std, atol=1e-6)
    mean, std = channel_stats(ds)
    assert torch.allclose(std, expected_std, atol=1e-6)


def test_channel_stats_known_values_and_errors():
    x = torch.zeros(2, 2, 1, 2, dtype=torch.uint8)
    x[:, 1] = torch.tensor([0, 255], dtype=torch.uint8)
    mean, std = channel_stats(x)
    assert mean.tolist() == [0.0, 0.5] and std.tolist() == [0.0, 0.5]
    with pytest.raises(ValueError, match="uint8"):
        channel_stats(x.float())
    with pytest.raises(ValueError, match="empty"):
        channel_stats(x[:0])
    with pytest.raises(ValueError, match="batch_size"):
        channel_stats(x, batch_size=0)


def test_to_tensors_scales_and_normalises():
    ds = _image_set(n=6, c=3, hw=2)
    X, y = to_tensors(ds)
    assert X.dtype == torch.float32 and torch.allclose(X, ds.images.float() / 255)
    assert torch.equal(y, ds.labels) and y.data_ptr() != ds.labels.data_ptr()
    mean, std = [0.1, 0.2, 0.3], torch.tensor([0.5, 0.25, 2.0])
    X, _ = to_tensors(ds, mean, std)
    manual = (ds.images.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    assert torch.allclose(X, manual, atol=1e-6)
    with pytest.raises(ValueError, match=r"C=3.*got 2"):
        to_tensors(ds, mean=[0.5, 0.5])
    with pytest.raises(ValueError, match="> 0"):
        to_tensors(ds, std=[1.0, 0.0, 1.0])


# --------------------------------------------------------------------------- #
# make_loader
# --------------------------------------------------------------------------- #
def test_make_loader_batches_in_order_without_shuffle():
    X, y = torch.arange(10.0).view(10, 1), torch.arange(10)
    loader = make_loader(X, y, batch_size=4)
    assert isinstance(loader, DataLoader) and isinstance(loader.sampler, BatchSampler)
    assert loader.batch_size is None  # whole batches fetched by one indexing op
    batches = list(loader)
    assert len(loader) == 3 and [len(b[1]) for b in batches] == [4, 4, 2]
    assert torch.equal(torch.cat([b[1] for b in batches]), y)
    assert torch.equal(batches[1][0], X[4:8])
    assert len(make_loader(X, y, 4, drop_last=True)) == 2


def test_make_loader_shuffles_deterministically_with_a_seed():
    X, y = torch.randn(100, 3), torch.arange(100)

    def epochs(loader, n=2):
        return [torch.cat([b[1] for b in loader]) for _ in range(n)]

    a = epochs(make_loader(X, y, 16, shuffle=True, seed=0))
    b = epochs(make_loader(X, y, 16, shuffle=True, seed=0))
    c = epochs(make_loader(X, y, 16, shuffle=True, seed=1))
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[0], a[1])
    assert sorted(a[0].tolist()) == list(range(100)) and not torch.equal(a[0], y)
    for xb, yb in make_loader(X, y, 16, shuffle=True, seed=0):
        assert torch.equal(xb, X[yb])  # inputs and targets stay paired


def test_make_loader_validates_arguments():
    X = torch.zeros(5, 2)
    with pytest.raises(ValueError, match=r"same length.*\(5, 2\).*\(4,\)"):
        make_loader(X, torch.zeros(4), 2)
    with pytest.raises(ValueError, match="batch_size"):
        make_loader(X, torch.zeros(5), 0)
    with pytest.raises(TypeError, match="batch_size"):
        make_loader(X, torch.zeros(5), True)
    with pytest.raises(TypeError, match="tensors"):
        make_loader(X.numpy(), torch.zeros(5), 2)


# --------------------------------------------------------------------------- #
# split_indices
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("val_fraction, n_val", [(0.2, 60), (0.1, 30), (45, 45)])
def test_split_indices_is_stratified_disjoint_and_complete(val_fraction, n_val):
    labels = torch.tensor([0] * 150 + [1] * 90 + [2] * 45 + [3] * 15)
    labels = labels[torch.randperm(300, generator=torch.Generator().manual_seed(0))]
    train, val = split_indices(labels, val_fraction, seed=3)
    assert len(val) == n_val and len(train) == 300 - n_val
    assert torch.equal(torch.sort(torch.cat([train, val])).values, torch.arange(300))
    assert not set(train.tolist()) & set(val.tolist())
    counts = torch.bincount(labels, minlength=4).double()
    val_counts = torch.bincount(labels[val], minlength=4).double()
    assert bool(((val_counts - counts * n_val / 300).abs() <= 1).all())
    again = split_indices(labels, val_fraction, seed=3)
    assert torch.equal(again[0], train) and torch.equal(again[1], val)
    assert not torch.equal(split_indices(labels, val_fraction, seed=4)[1], val)


def test_split_indices_rejects_bad_fractions():
    labels = torch.arange(10) % 2
    for bad in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"\(0, 1\)"):
            split_indices(labels, bad)
    for bad in (0, 10):
        with pytest.raises(ValueError, match=r"\[1, 9\]"):
            split_indices(labels, bad)
    with pytest.raises(TypeError):
        split_indices(labels, "0.2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="1-D"):
        split_indices(labels.view(2, 5), 0.2)


def test_public_helpers_say_where_they_are_taught():
    for fn in (ImageSet, ImageSet.summary, ImageSet.subset, load, channel_stats, to_tensors,
               make_loader, split_indices, canonical_order, data_dirs):
        assert "Used in chapter" in (fn.__doc__ or ""), fn.__qualname__


# --------------------------------------------------------------------------- #
# Real data (skipped when absent, but failing on CI)
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def real_cifar10():
    folder = Path(os.environ.get("DLKIT_DATA_DIR") or SHARED_DATA)
    _need((folder / "cifar10.npz").is_file(), f"no cifar10.npz in {folder}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DLKIT_DATA_DIR", str(folder))
        return load("cifar10", download=False), load("cifar10", "test", download=False)


def test_real_cifar10_sizes_and_shapes(real_cifar10):
    train, test = real_cifar10
    assert (len(train), len(test)) == (50_000, 10_000)
    assert train.images.shape[1:] == (3, 32, 32) and test.images.shape[1:] == (3, 32, 32)
    assert train.class_counts() == [5000] * 10 and test.class_counts() == [1000] * 10
    assert train.classes == list(CIFAR10_CLASSES)
    order = canonical_order(test.images, test.labels)
    assert torch.equal(order, torch.arange(10_000))  # already canonical


def test_real_cifar10_channel_stats_match_published_values(real_cifar10):
    mean, std = channel_stats(real_cifar10[0])
    assert [round(v, 4) for v in mean.tolist()] == [0.4914, 0.4822, 0.4465]
    assert [round(v, 4) for v in std.tolist()] == [0.2470, 0.2435, 0.2616]


def test_real_fashion_mnist_idx_and_shuffled_npz_load_identically(isolated, monkeypatch):
    _need(
        all((DEBIAN_FASHION / f).is_file() for f in ("t10k-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")),
        f"Debian Fashion-MNIST files not in {DEBIAN_FASHION}",
    )
    monkeypatch.setattr(data.sources, "SYSTEM_DATA_DIR", DEBIAN_FASHION.parent)
    raw = {
        split: (data._read_idx(DEBIAN_FASHION / f"{p}-images-idx3-ubyte.gz", 3),
                data._read_idx(DEBIAN_FASHION / f"{p}-labels-idx1-ubyte.gz", 1))
        for split, p in (("train", "train"), ("test", "t10k"))
    }
    _write_npz(isolated / "npz" / "fashion_mnist.npz", _shuffled(*raw["train"], 1), _shuffled(*raw["test"], 2))
    for split, n in (("train", 60_000), ("test", 10_000)):
        from_idx = load("fashion_mnist", split, download=False)
        from_npz = load("fashion_mnist", split, root=isolated / "npz", download=False)
        assert len(from_idx) == n and from_idx.class_counts() == [n // 10] * 10
        assert torch.equal(from_idx.images, from_npz.images)
        assert torch.equal(from_idx.labels, from_npz.labels)


# --------------------------------------------------------------------------- #
# The package layout: names re-exported, the registry of dataset names
# --------------------------------------------------------------------------- #
def test_every_name_of_the_former_module_is_importable_from_dlkit_data():
    import dlkit.data as pkg

    former = ["CIFAR10_CLASSES", "DATASETS", "DIGITS_CLASSES", "DOWNLOAD_SOCKET_TIMEOUT",
              "FASHION_MNIST_CLASSES", "ImageSet", "RunningChannelStats", "SHAPES_CLASSES",
              "SPLITS", "SYSTEM_DATA_DIR", "canonical_order", "channel_stats", "data_dirs",
              "download", "group_split", "load", "make_loader", "split_indices",
              "stratified_kfold", "to_tensors", "_read_idx", "Index", "PathLike"]
    missing = [n for n in former if not hasattr(pkg, n)]
    assert not missing, f"dlkit.data no longer exports {missing}"
    assert set(pkg.__all__) <= set(dir(pkg))


def test_registry_lists_the_builtin_image_sets_in_order():
    assert data.DATASETS == ("cifar10", "fashion_mnist", "digits", "shapes")
    assert data.names() == data.DATASETS


def test_registry_refuses_a_taken_name_and_an_image_entry_without_a_reader():
    with pytest.raises(ValueError, match="already registered"):
        data.register(data.Dataset("shapes", generate=lambda *a: None))
    with pytest.raises(ValueError, match="exactly one of read= and generate="):
        data.register(data.Dataset("no_reader"))
    assert "no_reader" not in data.names(None)


def test_a_registered_dataset_of_another_kind_points_to_its_own_loader(monkeypatch):
    from dlkit.data import registry

    monkeypatch.setitem(registry._REGISTRY, "poems",
                        data.Dataset("poems", kind="text", loader="dlkit.text.load"))
    assert "poems" in data.names(None) and "poems" not in data.names()
    with pytest.raises(ValueError, match=r"'poems' is a text dataset.*dlkit\.text\.load\(\)"):
        data.load("poems")


def test_a_registered_image_reader_is_loaded_validated_and_subset(monkeypatch):
    from dlkit.data import registry

    x = np.arange(6 * 2 * 2, dtype=np.uint8).reshape(6, 1, 2, 2)
    y = np.array([0, 1, 0, 1, 0, 1], dtype=np.int64)
    entry = data.Dataset("tiny", classes=("a", "b"), read=lambda split, root, download: (x, y, ["a", "b"]))
    monkeypatch.setitem(registry._REGISTRY, "tiny", entry)
    ds = data.load("tiny", num_samples=4)
    assert isinstance(ds, data.ImageSet) and ds.class_counts() == [2, 2]
