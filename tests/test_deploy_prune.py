"""dlkit.deploy.prune: freezing keeps weights, pruning zeroes them, removed filters change nothing."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from dlkit.deploy import (
    freeze,
    make_permanent,
    prunable,
    prune_filters,
    prune_unstructured,
    remove_zero_filters,
    sparsity,
    to_sequential,
)


def net_with_bn() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Conv2d(32, 24, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(24 * 4 * 4, 10),
    )
    with torch.no_grad():
        for bn in (net[0][1], net[1][1]):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    return net.eval()


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


def test_freezing_changes_neither_weights_nor_outputs():
    net = net_with_bn()
    x = torch.randn(4, 3, 16, 16)
    before = net(x).detach()
    weights = copy.deepcopy(net.state_dict())
    freeze(net, but=("5.",))
    assert [n for n, p in net.named_parameters() if p.requires_grad] == ["5.weight", "5.bias"]
    torch.testing.assert_close(net(x).detach(), before, rtol=0, atol=0)
    for k, v in net.state_dict().items():
        assert torch.equal(v, weights[k])
    assert sparsity(net) == 0.0


@pytest.mark.parametrize("amount", [0.3, 0.8])
def test_global_unstructured_zeroes_the_smallest_weights_across_layers(amount):
    net = net_with_bn()
    all_w = torch.cat([m.weight.detach().abs().flatten() for m, _ in prunable(net)])
    k = round(amount * all_w.numel())
    threshold = all_w.kthvalue(k).values
    prune_unstructured(net, amount)
    make_permanent(net)
    assert sparsity(net) == pytest.approx(k / all_w.numel(), abs=1e-9)
    for m, _ in prunable(net):
        w_orig_abs = m.weight.detach().abs()
        # Every surviving weight is at least as large as every pruned one.
        assert (w_orig_abs[w_orig_abs > 0] >= threshold).all()
    assert not any(k.endswith(("_mask", "_orig")) for k in net.state_dict())


def test_masks_keep_pruned_weights_at_zero_during_fine_tuning():
    net = net_with_bn().train()
    prune_unstructured(net, 0.5)
    zero_before = [(m.weight == 0).clone() for m, _ in prunable(net)]
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    loss = net(torch.randn(8, 3, 16, 16)).square().mean()
    loss.backward()
    opt.step()
    for (m, _), z in zip(prunable(net), zero_before):
        assert (m.weight[z] == 0).all()


def test_filter_pruning_zeroes_whole_filters_and_their_batchnorm_channels():
    net = net_with_bn()
    prune_filters(net, 0.25)
    make_permanent(net)
    conv, bn = net[1][0], net[1][1]
    dead = conv.weight.flatten(1).abs().sum(1) == 0
    assert int(dead.sum()) == 8  # 25% of 32 filters
    assert (conv.bias[dead] == 0).all() and (bn.weight[dead] == 0).all() and (bn.bias[dead] == 0).all()
    # The smallest-norm filters were the ones removed (checked against the unpruned copy).
    norms = net_with_bn()[1][0].weight.flatten(1).norm(dim=1)
    assert set(dead.nonzero().flatten().tolist()) == set(norms.argsort()[:8].tolist())


def test_removing_zero_filters_builds_a_smaller_equivalent_network():
    net = net_with_bn()
    x = torch.randn(5, 3, 16, 16)
    prune_filters(net, 0.5)
    make_permanent(net)
    seq = to_sequential(net, x)
    small = remove_zero_filters(seq, x)
    convs = [m for m in small if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 16, 12]
    assert small[-1].in_features == 12 * 4 * 4
    with torch.no_grad():
        torch.testing.assert_close(small(x), net(x), rtol=1e-5, atol=1e-5)
    assert sum(p.numel() for p in small.parameters()) < 0.4 * sum(p.numel() for p in net.parameters())


def test_remove_zero_filters_requires_permanent_pruning_and_known_layers():
    net = net_with_bn()
    x = torch.randn(2, 3, 16, 16)
    prune_filters(net, 0.5)
    with pytest.raises(ValueError, match="make_permanent"):
        remove_zero_filters(to_sequential(net, x), x)
    with pytest.raises(ValueError, match="not supported"):
        remove_zero_filters(nn.Sequential(nn.Conv2d(3, 3, 3), nn.Tanhshrink()), x)


def test_to_sequential_refuses_a_residual_network():
    with pytest.raises(ValueError, match="residual"):
        to_sequential(Residual(), torch.randn(1, 3, 8, 8))


def test_amount_is_checked():
    for bad in (1.0, -0.1, True, "0.5"):
        with pytest.raises(ValueError, match="amount"):
            prune_unstructured(net_with_bn(), bad)


def test_to_sequential_restores_each_submodules_mode():
    from dlkit.deploy.prune import to_sequential

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten())
    model.train()
    model[1].eval()  # frozen statistics while the rest trains
    before = [m.training for m in model.modules()]
    to_sequential(model, torch.randn(2, 3, 8, 8))
    assert [m.training for m in model.modules()] == before
