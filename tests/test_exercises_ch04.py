"""Tests of chapter 04's exercise checks: right answers pass, typical mistakes get their hint."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from dlkit.exercises import (
    check_conv_params,
    check_output_shape,
    check_receptive_field,
    check_residual_block,
)
from dlkit.models import BasicBlock


@pytest.mark.parametrize("layer, shape", [
    (nn.Conv2d(3, 16, 5, stride=2, padding=1), (3, 32, 32)),
    (nn.Conv2d(8, 4, 3, dilation=2, padding=1), (8, 20, 20)),
    (nn.MaxPool2d(3, stride=2), (6, 15, 15)),
])
def test_output_shape_accepts_the_measured_shape(layer, shape):
    truth = tuple(layer(torch.zeros(1, *shape)).shape[1:])
    assert check_output_shape(truth, layer, shape)
    assert check_output_shape(list(truth), layer, shape)
    assert check_output_shape(torch.Size(truth), layer, shape)


def test_output_shape_names_the_mistake():
    conv = nn.Conv2d(3, 16, 5, stride=2, padding=1)  # 32 -> floor(29/2)+1 = 15
    fb = check_output_shape((3, 15, 15), conv, (3, 32, 32))
    assert not fb and "out_channels" in fb.hint
    fb = check_output_shape((16, 14, 14), conv, (3, 32, 32))  # no padding: floor(27/2)+1 = 14
    assert not fb and "padding" in fb.message
    fb = check_output_shape((16, 30, 30), conv, (3, 32, 32))  # no stride: 29+1
    assert not fb and "stride" in fb.message
    fb = check_output_shape((16, 16, 16), conv, (3, 32, 32))  # ceil(29/2)+1 = 16
    assert not fb and "rounds up" in fb.message
    dil = nn.Conv2d(8, 4, 3, dilation=2, padding=1)  # 20 -> 20+2-4-1+1 = 18
    fb = check_output_shape((4, 20, 20), dil, (8, 20, 20))
    assert not fb and "dilation" in fb.message
    fb = check_output_shape((12, 7, 7), nn.MaxPool2d(3, 2), (6, 15, 15))
    assert not fb and "keeps the channel" in fb.hint
    assert not check_output_shape((6, 15, 15), nn.MaxPool2d(3, 2), (6, 15, 15))
    assert not check_output_shape("16x15x15", conv, (3, 32, 32))
    assert not check_output_shape((16, 15), conv, (3, 32, 32))


def test_receptive_field_check():
    stack = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3))
    assert check_receptive_field(8, stack)  # 1 + 2 + 1 + 2*2
    fb = check_receptive_field(6, stack)  # strides ignored: 1 + 2 + 1 + 2
    assert not fb and "stride" in fb.message
    assert not check_receptive_field(9, stack)
    assert not check_receptive_field(8.0, stack)


def test_conv_params_check():
    conv = nn.Conv2d(3, 16, 5)
    assert check_conv_params(16 * 3 * 25 + 16, conv)
    assert "biases" in check_conv_params(16 * 3 * 25, conv).message
    assert "input channels" in check_conv_params(16 * 25 + 16, conv).message
    assert check_conv_params(16 * 3 * 25, nn.Conv2d(3, 16, 5, bias=False))
    assert not check_conv_params(1.5, conv)


class _Block(nn.Module):
    def __init__(self, c: int, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.shortcut = nn.Identity()

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.mode == "right":
            return F.relu(out + self.shortcut(x))
        if self.mode == "plain":
            return F.relu(out)
        if self.mode == "relu_first":
            return F.relu(out) + x
        if self.mode == "no_relu":
            return out + x
        return F.relu(out + F.relu(x) * 2)


@pytest.mark.parametrize("mode, ok, word", [
    ("right", True, ""), ("plain", False, "not added"), ("relu_first", False, "before the addition"),
    ("no_relu", False, "missing"), ("other", False, "not relu"),
])
def test_residual_block_check(mode, ok, word):
    torch.manual_seed(0)
    fb = check_residual_block(_Block(8, mode))
    assert bool(fb) is ok
    assert word in fb.message


def test_residual_block_check_accepts_the_library_block_and_rejects_bad_inputs():
    torch.manual_seed(0)
    block = BasicBlock(8, 8)
    block.train()
    assert check_residual_block(block)
    assert block.training  # the mode is restored
    assert not check_residual_block(BasicBlock(8, 8, residual=False))
    assert not check_residual_block(_Block)
    assert "no" in check_residual_block(nn.Conv2d(8, 8, 3)).message


def test_residual_block_check_leaves_the_learners_block_untouched():
    # The check sets random batch-norm statistics to make mistakes visible; it must do that on a
    # copy: a learner who checks a trained block must get it back with its statistics and mode.
    torch.manual_seed(0)
    block = _Block(8, "right")
    block.train()
    with torch.no_grad():  # statistics as after some training, far from random ones
        for bn in (block.bn1, block.bn2):
            bn.running_mean.fill_(0.25)
            bn.running_var.fill_(3.0)
            bn.num_batches_tracked.fill_(7)
    before = {k: v.clone() for k, v in block.state_dict().items()}
    assert check_residual_block(block)
    after = block.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert not changed, f"check_residual_block changed the learner's {changed}"
    assert block.training and all(m.training for m in block.modules())
