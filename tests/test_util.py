"""Tests of dlkit._util: the atomic-write recipe, eval_mode and the argument validators."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from dlkit._util import (
    atomic_path,
    atomic_write,
    check_choice,
    check_fraction,
    check_positive_int,
    commit_file,
    eval_mode,
)


class Boom(Exception):
    pass


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- #
# atomic_write
# --------------------------------------------------------------------------- #
def test_atomic_write_binary_replaces_the_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "model.bin"
    target.write_bytes(b"old")
    with atomic_write(target) as f:
        f.write(b"\x00\x01new")
        # While the block runs, readers still see the old file.
        assert target.read_bytes() == b"old"
    assert target.read_bytes() == b"\x00\x01new"
    assert _names(tmp_path) == ["model.bin"]


def test_atomic_write_text_mode_is_utf8(tmp_path):
    target = tmp_path / "notes.txt"
    with atomic_write(target, "w") as f:
        f.write("größe ✓\n")
    assert target.read_bytes() == "größe ✓\n".encode("utf-8")
    assert _names(tmp_path) == ["notes.txt"]


@pytest.mark.parametrize("mode", ["wb", "w"])
def test_atomic_write_keeps_the_old_file_when_the_block_raises(tmp_path, mode):
    target = tmp_path / "manifest.json"
    target.write_bytes(b"old content")
    with pytest.raises(Boom):
        with atomic_write(target, mode) as f:
            f.write(b"half" if mode == "wb" else "half")
            raise Boom
    assert target.read_bytes() == b"old content"
    assert _names(tmp_path) == ["manifest.json"], "the temporary file was left behind"


def test_atomic_write_raising_without_an_old_file_creates_nothing(tmp_path):
    with pytest.raises(Boom):
        with atomic_write(tmp_path / "new.bin") as f:
            f.write(b"x")
            raise Boom
    assert _names(tmp_path) == []


def test_atomic_write_creates_the_folder_and_calls_before_replace(tmp_path):
    target = tmp_path / "a" / "b" / "ckpt.pt"
    seen = []
    with atomic_write(target, before_replace=lambda p: seen.append((p, p.exists()))) as f:
        f.write(b"1")
    assert target.read_bytes() == b"1"
    assert seen == [(target, False)]


def test_atomic_write_rejects_other_modes(tmp_path):
    with pytest.raises(ValueError, match=r"mode must be 'wb' or 'w', got 'a'"):
        with atomic_write(tmp_path / "x", "a"):
            pass


def test_atomic_write_fsyncs_file_and_folder_by_default(tmp_path, monkeypatch):
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd)))
    with atomic_write(tmp_path / "x.bin") as f:
        f.write(b"1")
    assert len(calls) == (2 if os.name == "posix" else 1)  # the file, then the folder
    calls.clear()
    with atomic_write(tmp_path / "y.bin", fsync=False) as f:
        f.write(b"1")
    assert calls == []


# --------------------------------------------------------------------------- #
# atomic_path and commit_file
# --------------------------------------------------------------------------- #
def test_atomic_path_yields_a_hidden_name_with_the_suffix_and_commits(tmp_path):
    target = tmp_path / "model.onnx"
    with atomic_path(target, suffix=".onnx") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".") and tmp.suffix == ".onnx"
        tmp.write_bytes(b"graph")
    assert target.read_bytes() == b"graph"
    assert _names(tmp_path) == ["model.onnx"]


def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "model.pt2"
    target.write_bytes(b"old")
    with pytest.raises(Boom):
        with atomic_path(target, suffix=".pt2") as tmp:
            tmp.write_bytes(b"partial")
            raise Boom
    assert target.read_bytes() == b"old"
    assert _names(tmp_path) == ["model.pt2"]


def test_commit_file_moves_a_finished_file_over_the_destination(tmp_path):
    part = tmp_path / "data.zip.part"
    part.write_bytes(b"verified")
    (tmp_path / "data.zip").write_bytes(b"old")
    assert commit_file(part, tmp_path / "data.zip") == tmp_path / "data.zip"
    assert (tmp_path / "data.zip").read_bytes() == b"verified"
    assert _names(tmp_path) == ["data.zip"]


def test_commit_file_refuses_another_folder(tmp_path):
    (tmp_path / "a").mkdir()
    src = tmp_path / "a" / "f"
    src.write_bytes(b"1")
    with pytest.raises(ValueError, match="must be in the destination's folder"):
        commit_file(src, tmp_path / "f")
    assert src.exists()


# --------------------------------------------------------------------------- #
# eval_mode
# --------------------------------------------------------------------------- #
def _net():
    return nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5), nn.Sequential(nn.BatchNorm1d(2), nn.Dropout()))


def _flags(model):
    return [m.training for m in model.modules()]


def test_eval_mode_sets_eval_and_restores_each_submodules_flag():
    model = _net()
    model.train()
    model[2].eval()  # a partly frozen model: the inner block stays in eval on purpose
    before = _flags(model)
    assert before == [True, True, True, False, False, False]
    with eval_mode(model):
        assert not any(_flags(model))
    assert _flags(model) == before


def test_eval_mode_restores_flags_when_the_block_raises():
    model, other = _net(), _net().eval()
    model.train()
    model[1].eval()
    before, before_other = _flags(model), _flags(other)
    with pytest.raises(Boom):
        with eval_mode(model, other):
            assert not any(_flags(model)) and not any(_flags(other))
            raise Boom
    assert _flags(model) == before and _flags(other) == before_other


def test_eval_mode_freezes_batchnorm_statistics_inside_the_block():
    model = nn.BatchNorm1d(3).train()
    with eval_mode(model):
        model(torch.randn(8, 3) + 5)
    assert torch.equal(model.running_mean, torch.zeros(3))
    assert model.training


# --------------------------------------------------------------------------- #
# validators
# --------------------------------------------------------------------------- #
def test_check_positive_int():
    assert check_positive_int(3, "epochs") == 3
    assert check_positive_int(0, "workers", minimum=0) == 0
    for bad in (0, -1, 2.0, True, "3", None):
        with pytest.raises(ValueError, match=rf"epochs must be an integer >= 1, got {bad!r}"):
            check_positive_int(bad, "epochs")


def test_check_fraction():
    assert check_fraction(0.25, "val_fraction") == 0.25
    assert check_fraction(1, "p", open_high=False) == 1.0
    assert check_fraction(0, "p", open_low=False) == 0.0
    with pytest.raises(ValueError, match=r"val_fraction must be in \(0, 1\), got 1\.0"):
        check_fraction(1.0, "val_fraction")
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\], got -0\.1"):
        check_fraction(-0.1, "p", open_low=False, open_high=False)
    with pytest.raises(ValueError, match=r"p must be a number between 0 and 1, got 'half'"):
        check_fraction("half", "p")
    with pytest.raises(ValueError, match=r"p must be in \(0, 1\], got True"):
        check_fraction(True, "p", open_high=False)


def test_check_choice():
    assert check_choice("macro", "average", ["macro", "micro", None]) == "macro"
    assert check_choice(None, "average", ("macro", None)) is None
    with pytest.raises(ValueError, match=r"average must be one of \['macro', 'micro'\], got 'mean'"):
        check_choice("mean", "average", iter(["macro", "micro"]))
