"""Tests of dlkit.models: the arithmetic helpers against what PyTorch layers really produce."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dlkit import plot
from dlkit.models import (
    ArticleCNN,
    BasicBlock,
    ResNetCIFAR,
    SmallCNN,
    conv_output_shape,
    count_flops,
    count_params,
    feature_maps,
    layer_output_shape,
    random_crop_flip,
    receptive_field,
    train_budgeted,
)


def _random_layer(rng: random.Random) -> tuple[nn.Module, dict]:
    k = rng.randint(1, 5)
    d = rng.randint(1, 3)
    s = rng.randint(1, 3)
    kind = rng.choice(["conv", "max", "avg"])
    if kind == "conv":
        p = rng.randint(0, 3)
        return nn.Conv2d(2, 3, k, stride=s, padding=p, dilation=d), dict(
            kernel_size=k, stride=s, padding=p, dilation=d)
    p = rng.randint(0, k // 2)  # PyTorch's limit: pooling padding at most half the kernel
    ceil = rng.random() < 0.5
    if kind == "max":
        return nn.MaxPool2d(k, stride=s, padding=p, dilation=d, ceil_mode=ceil), dict(
            kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
    return nn.AvgPool2d(k, stride=s, padding=p, ceil_mode=ceil), dict(
        kernel_size=k, stride=s, padding=p, ceil_mode=ceil)


def test_conv_output_shape_matches_pytorch_on_random_layers(one_thread):
    rng = random.Random(0)
    checked = 0
    while checked < 300:
        layer, kw = _random_layer(rng)
        h, w = rng.randint(1, 20), rng.randint(1, 20)
        try:
            real = layer(torch.zeros(1, 2, h, w)).shape[2:]
        except RuntimeError:  # PyTorch refuses: the formula must refuse too
            with pytest.raises(ValueError):
                conv_output_shape((h, w), **kw)
            continue
        if min(real) == 0:
            continue
        assert conv_output_shape((h, w), **kw) == tuple(real), (layer, h, w)
        assert layer_output_shape(layer, (2, h, w))[1:] == tuple(real), (layer, h, w)
        checked += 1


@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_conv_output_shape_forms_and_errors():
    assert conv_output_shape(32, 3, padding=1) == 32
    assert conv_output_shape(32, 2, 2) == 16
    assert conv_output_shape((32, 17), (3, 5), stride=(1, 2), padding=(0, 2)) == (30, 9)
    for d in (1, 2, 3):  # "same" keeps the size even when d(k - 1) is odd (asymmetric padding)
        conv = nn.Conv2d(1, 1, 4, padding="same", dilation=d)
        assert conv(torch.zeros(1, 1, 11, 11)).shape[2:] == conv_output_shape((11, 11), 4, padding="same", dilation=d)
    assert conv_output_shape(10, 3, padding="valid") == 8
    with pytest.raises(ValueError, match="stride 1"):
        conv_output_shape(10, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="does not fit"):
        conv_output_shape(4, 7)
    with pytest.raises(ValueError, match="kernel_size"):
        conv_output_shape(8, 0)
    with pytest.raises(ValueError, match="padding"):
        conv_output_shape(8, 3, padding="full")


def test_layer_output_shape_follows_a_network_layer_by_layer():
    net = nn.Sequential(nn.Conv2d(3, 8, 5), nn.ReLU(), nn.MaxPool2d(2), nn.BatchNorm2d(8),
                        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.AdaptiveAvgPool2d((3, 2)),
                        nn.Flatten(), nn.Linear(96, 7))
    shape: tuple[int, ...] = (3, 37, 29)
    x = torch.zeros(2, *shape)
    for layer in net:
        shape = layer_output_shape(layer, shape)
        x = layer(x)
        assert shape == tuple(x.shape[1:])
    with pytest.raises(ValueError, match="in_channels|C=3"):
        layer_output_shape(nn.Conv2d(3, 4, 3), (4, 10, 10))
    with pytest.raises(ValueError, match="input features"):
        layer_output_shape(nn.Linear(10, 2), (12,))
    with pytest.raises(TypeError, match="no shape rule"):
        layer_output_shape(nn.LSTM(3, 3), (3,))


def _empirical_field(layers: list[nn.Module], size: int = 96) -> int:
    """Width of the input region that reaches the centre output unit, measured by autograd.

    Max pooling routes the gradient to one input per window, so it is swapped for average
    pooling (same window) and every weight set to 1: then every pixel in the theoretical field
    gets a positive gradient.
    """
    stack = []
    for layer in layers:
        if isinstance(layer, nn.MaxPool2d):
            layer = nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding)
        elif isinstance(layer, nn.Conv2d):
            nn.init.ones_(layer.weight)
        stack.append(layer)
    x = torch.ones(1, 1, size, size, requires_grad=True)
    out = nn.Sequential(*stack)(x)
    c = out.shape[-1] // 2
    out[0, 0, c, c].backward()
    cols = (x.grad[0, 0].abs().sum(0) > 0).nonzero()
    return int(cols.max() - cols.min() + 1)


def test_receptive_field_matches_autograd_on_random_stacks(one_thread):
    rng = random.Random(1)
    for _ in range(40):
        layers: list[nn.Module] = []
        for _ in range(rng.randint(1, 5)):
            k, s, d = rng.randint(1, 4), rng.randint(1, 2), rng.randint(1, 2)
            if rng.random() < 0.7:
                layers.append(nn.Conv2d(1, 1, k, stride=s, dilation=d, bias=False))
            else:
                layers.append(nn.MaxPool2d(max(k, 2), stride=s))
            if rng.random() < 0.5:
                layers.append(nn.ReLU())
        rf = receptive_field(nn.Sequential(*layers))
        assert rf.size == _empirical_field(layers), layers
        strides = [layer.stride if isinstance(layer.stride, int) else layer.stride[0]
                   for layer in layers if hasattr(layer, "stride")]
        assert rf.jump == torch.tensor(strides).prod().item()


def test_receptive_field_known_values_and_errors():
    # Three 3×3 convolutions see 7×7, the argument for stacking small kernels (VGG).
    assert receptive_field([nn.Conv2d(1, 1, 3) for _ in range(3)]).size == 7
    block = BasicBlock(4, 8, stride=2)  # main path: 3×3 stride 2, then 3×3 → 3 + 2·2 = 7
    assert receptive_field(block) == (7, 2)
    head_stops = nn.Sequential(nn.Conv2d(1, 1, 3), nn.Flatten(), nn.Linear(4, 2))
    assert receptive_field(head_stops).size == 3
    with pytest.raises(ValueError, match="square"):
        receptive_field([nn.Conv2d(1, 1, (1, 3))])
    with pytest.raises(TypeError, match="LSTM"):
        receptive_field([nn.LSTM(1, 1)])


def test_count_params_matches_the_layers_and_trainable_flag():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8, 2))
    assert count_params(net) == (3 * 8 * 9 + 8) + (8 + 8) + (8 * 2 + 2)
    net[0].requires_grad_(False)
    assert count_params(net, trainable_only=True) == (8 + 8) + (8 * 2 + 2)
    assert count_params(ArticleCNN()) == 64 * 27 + 64 + 64 * 16 * 16 * 256 + 256 + 2570
    assert count_params(ResNetCIFAR()) == 11_173_962  # torchvision's resnet18 is 11,689,512


def test_count_flops_equals_twice_the_multiply_adds_of_convs_and_linears(one_thread):
    net = ArticleCNN()
    conv = 2 * (3 * 9) * 64 * 32 * 32
    fc = 2 * (64 * 16 * 16 * 256 + 256 * 10)
    assert count_flops(net) == conv + fc
    assert count_flops(net, (5, 3, 32, 32)) == 5 * (conv + fc)
    small = SmallCNN(width=8)
    small.train()
    with FlopCounterMode(display=False) as counter:
        with torch.no_grad():
            small.eval()(torch.zeros(1, 3, 32, 32))
    small.train()
    assert count_flops(small) == counter.get_total_flops()
    assert small.training, "count_flops must restore the training mode"
    with pytest.raises(ValueError, match="input_shape"):
        count_flops(net, (32, 32))


@pytest.mark.parametrize("make", [
    lambda: ArticleCNN(num_classes=7),
    lambda: SmallCNN(num_classes=7, width=4),
    lambda: SmallCNN(num_classes=7, width=4, batch_norm=False, dropout=0.5, stages=3),
    lambda: ResNetCIFAR(num_classes=7, blocks=(1, 1), width=4),
    lambda: ResNetCIFAR(num_classes=7, blocks=(2, 1, 1), width=4, residual=False),
    lambda: ResNetCIFAR(num_classes=7, blocks=(1, 1), width=4, batch_norm=False),
    lambda: ResNetCIFAR(num_classes=7, blocks=(1, 1), width=4, zero_init_residual=True),
])
def test_models_give_logits_and_gradients(make, one_thread):
    torch.manual_seed(0)
    net = make()
    out = net(torch.randn(3, 3, 32, 32))
    assert out.shape == (3, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_model_options_change_the_architecture():
    bn = SmallCNN(width=4)
    plain = SmallCNN(width=4, batch_norm=False)
    assert any(isinstance(m, nn.BatchNorm2d) for m in bn.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    res = ResNetCIFAR(blocks=(2, 2), width=4)
    no_res = ResNetCIFAR(blocks=(2, 2), width=4, residual=False)
    n_convs = lambda m: sum(isinstance(x, nn.Conv2d) for x in m.modules())  # noqa: E731
    assert n_convs(res) == n_convs(no_res) + 1  # the one projection shortcut
    # Zero-initialised residual branches make each block the identity plus ReLU at the start.
    block = ResNetCIFAR(blocks=(1,), width=3, zero_init_residual=True).stages[0][0].eval()
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(block(x), torch.relu(x))
    with pytest.raises(ValueError, match="num_classes"):
        SmallCNN(num_classes=1)
    with pytest.raises(ValueError, match="zero_init_residual"):
        ResNetCIFAR(residual=False, zero_init_residual=True)


def test_residual_block_adds_the_shortcut():
    torch.manual_seed(0)
    block = BasicBlock(4, 4).eval()
    plain = BasicBlock(4, 4, residual=False).eval()
    plain.load_state_dict(block.state_dict())
    x = torch.randn(2, 4, 6, 6)
    inner = block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x)))))
    torch.testing.assert_close(block(x), torch.relu(inner + x))
    torch.testing.assert_close(plain(x), torch.relu(inner))


def test_random_crop_flip_is_a_shift_and_mirror_of_each_image():
    torch.manual_seed(0)
    X = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    y = torch.arange(64)
    out, y_out = random_crop_flip(X, y, padding=2)
    assert out.shape == X.shape and out.dtype == torch.uint8 and y_out is y
    padded = torch.nn.functional.pad(X, (2, 2, 2, 2))
    flips = 0
    for i in range(64):
        matches = [(dy, dx, f) for dy in range(5) for dx in range(5) for f in (0, 1)
                   if torch.equal(out[i], (lambda c: c.flip(2) if f else c)(
                       padded[i, :, dy:dy + 8, dx:dx + 8]))]
        assert matches, f"image {i} is not a crop (or mirrored crop) of its padded original"
        flips += matches[0][2]
    assert 15 < flips < 49  # about half are mirrored
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(random_crop_flip(X, y, generator=g1)[0], random_crop_flip(X, y, generator=g2)[0])
    assert torch.equal(random_crop_flip(X, y, padding=0, flip=False)[0], X)
    with pytest.raises(ValueError, match="N×C×H×W"):
        random_crop_flip(X[0], y)


def test_train_budgeted_learns_a_separable_task(one_thread):
    torch.manual_seed(0)
    # Class = which half of the image is bright: a CNN must reach near-perfect accuracy.
    y = torch.randint(0, 2, (256,))
    X = torch.randn(256, 3, 16, 16) * 0.3
    X[y == 0, :, :, :8] += 1.0
    X[y == 1, :, :, 8:] += 1.0
    torch.manual_seed(0)
    r = train_budgeted(SmallCNN(num_classes=2, width=4, stages=2), (X[:192], y[:192]),
                       (X[192:], y[192:]), epochs=4, batch_size=32, lr=0.05, augment=False,
                       device="cpu", name="tiny")
    assert r.name == "tiny" and len(r.history) == 4
    assert r.test_accuracy >= 0.95
    assert r.params == count_params(SmallCNN(num_classes=2, width=4, stages=2))
    assert r.flops == count_flops(SmallCNN(num_classes=2, width=4, stages=2), (3, 16, 16))
    assert r.images_per_s > 0 and r.seconds > 0
    assert set(r.row()) == {"model", "params", "MFLOPs", "images/s", "seconds", "test acc"}


def test_feature_maps_records_each_layer_in_order_and_removes_hooks():
    torch.manual_seed(0)
    net = SmallCNN(width=4, stages=2)
    x = torch.randn(1, 3, 32, 32)
    maps = feature_maps(net, x)
    assert list(maps) == ["features.0.2", "features.1", "features.2.2", "features.3"]
    assert [tuple(m.shape[1:]) for m in maps.values()] == [(4, 32, 32), (4, 16, 16), (8, 16, 16), (8, 8, 8)]
    with torch.no_grad():
        torch.testing.assert_close(maps["features.1"], net.eval().features[:2](x))
    assert all(not m._forward_hooks for m in net.modules())


def test_plot_filters_and_feature_maps_draw_one_panel_per_item():
    weight = torch.randn(10, 3, 3, 3)
    fig = plot.plot_filters(weight, ncols=4)
    assert sum(bool(ax.images) for ax in fig.axes) == 10
    assert "10 filters" in fig._suptitle.get_text()
    gray = plot.plot_filters(torch.randn(5, 8, 5, 5))
    assert sum(bool(ax.images) for ax in gray.axes) == 5
    maps = {"a": torch.rand(1, 6, 8, 8), "b": torch.rand(3, 4, 4)}
    fig = plot.plot_feature_maps(maps, n=4)
    assert sum(bool(ax.images) for ax in fig.axes) == 4 + 3
    with pytest.raises(ValueError, match="C_out"):
        plot.plot_filters(torch.randn(3, 3, 3))
    with pytest.raises(ValueError, match="empty"):
        plot.plot_feature_maps({})


def test_flops_and_feature_maps_restore_each_submodules_mode():
    # A partly frozen model (a submodule in eval mode on purpose) must come back exactly so.
    from dlkit.models import count_flops, feature_maps

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten())
    net.train()
    net[1].eval()
    before = [m.training for m in net.modules()]
    count_flops(net, (3, 8, 8))
    feature_maps(net, torch.zeros(1, 3, 8, 8))
    assert [m.training for m in net.modules()] == before


def test_train_budgeted_runs_with_exactly_four_steps(one_thread):
    # OneCycleLR divides by (pct_start * total_steps - 1): 0.25 * 4 - 1 = 0 would crash.
    torch.manual_seed(0)
    X, y = torch.randn(512, 3, 8, 8), torch.randint(0, 2, (512,))
    r = train_budgeted(SmallCNN(num_classes=2, width=4, stages=2), (X, y), (X[:64], y[:64]),
                       epochs=1, batch_size=128, device="cpu")
    assert len(r.history) == 1 and 0.0 <= r.test_accuracy <= 1.0
