"""dlkit.data additions of chapter 02: group-aware splits, k-fold, streaming channel statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from dlkit import data


def _labels(n=200, k=4, seed=0):
    return np.random.default_rng(seed).integers(0, k, n)


def test_group_split_keeps_groups_whole_and_classes_balanced():
    y = _labels()
    groups = np.arange(200) // 2  # pairs of "duplicates"
    groups[[10, 50, 51, 120]] = 10  # a larger group mixing classes
    tr, va = data.group_split(y, 0.25, groups, seed=1)
    assert sorted(torch.cat([tr, va]).tolist()) == list(range(200))
    assert not set(groups[tr.numpy()]) & set(groups[va.numpy()])
    want = np.bincount(y, minlength=4) * 0.25
    got = np.bincount(y[va.numpy()], minlength=4)
    assert np.abs(got - want).max() <= 4  # within about one group per class
    again = data.group_split(y, 0.25, groups, seed=1)
    assert torch.equal(again[1], va)
    assert not torch.equal(data.group_split(y, 0.25, groups, seed=2)[1], va)


def test_group_split_without_groups_hits_the_exact_class_targets():
    y = _labels()
    _, va = data.group_split(y, 0.2, seed=0)
    _, ref = data.split_indices(torch.from_numpy(y), 0.2, seed=0)
    assert np.array_equal(np.bincount(y[va.numpy()], minlength=4), np.bincount(y[ref.numpy()], minlength=4))
    with pytest.raises(ValueError, match="val_fraction"):
        data.group_split(y, 1.5)
    with pytest.raises(ValueError, match="groups"):
        data.group_split(y, 0.2, groups=np.arange(5))


def test_stratified_kfold_matches_scikit_learn():
    y = _labels()
    folds = data.stratified_kfold(y, 5, seed=3)
    ref = StratifiedKFold(5, shuffle=True, random_state=3).split(np.zeros(200), y)
    for (tr, va), (rtr, rva) in zip(folds, ref):
        assert va.tolist() == sorted(rva.tolist()) and tr.tolist() == sorted(rtr.tolist())
    assert sorted(torch.cat([va for _, va in folds]).tolist()) == list(range(200))
    groups = np.arange(200) // 4
    gfolds = data.stratified_kfold(y, 4, groups=groups, seed=3)
    gref = StratifiedGroupKFold(4, shuffle=True, random_state=3).split(np.zeros(200), y, groups)
    for (tr, va), (_, rva) in zip(gfolds, gref):
        assert va.tolist() == sorted(rva.tolist())
        assert not set(groups[tr.numpy()]) & set(groups[va.numpy()])
    with pytest.raises(ValueError, match="k must"):
        data.stratified_kfold(y, 1)


def test_running_channel_stats_equal_numpy_population_stats():
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (37, 3, 5, 6), dtype=np.uint8)
    stats = data.RunningChannelStats()
    for start in range(0, 37, 8):
        stats.update(torch.from_numpy(x[start : start + 8]))
    flat = x.transpose(1, 0, 2, 3).reshape(3, -1).astype(np.float64) / 255
    np.testing.assert_allclose(stats.mean.numpy(), flat.mean(1), rtol=1e-12)
    np.testing.assert_allclose(stats.std.numpy(), flat.std(1), rtol=1e-12)  # ddof=0
    m, s = data.channel_stats(torch.from_numpy(x))
    np.testing.assert_allclose(stats.std.numpy(), s.numpy(), rtol=1e-6)
    assert stats.count == 37 * 30


def test_running_channel_stats_rejects_bad_input():
    stats = data.RunningChannelStats()
    with pytest.raises(ValueError, match="update"):
        _ = stats.mean
    with pytest.raises(ValueError, match="uint8"):
        stats.update(np.zeros((2, 3, 4, 4), np.float32))
    stats.update(np.zeros((2, 3, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="channels"):
        stats.update(np.zeros((2, 1, 4, 4), np.uint8))
