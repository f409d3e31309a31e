"""Pruning with ``torch.nn.utils.prune``, and freezing, which is something else.

*Freezing* (``requires_grad=False``) stops training from changing some weights; the weights keep
their values and the model computes exactly what it did, at the same cost. *Pruning* sets weights
to zero (unstructured: single weights; structured: whole filters) so that the model becomes
sparser or, once the zeroed filters are cut out, smaller. Used in chapter 09 (deployment).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import prune

from dlkit._util import eval_mode

__all__ = [
    "freeze",
    "make_permanent",
    "prunable",
    "prune_filters",
    "prune_unstructured",
    "remove_zero_filters",
    "sparsity",
    "to_sequential",
]

_PRUNABLE = (nn.Conv2d, nn.Linear)
_PASS_THROUGH = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.MaxPool2d, nn.AvgPool2d, nn.Dropout,
                 nn.Dropout2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Identity)


def freeze(model: nn.Module, but: tuple[str, ...] = ()) -> nn.Module:
    """Freeze every parameter except those whose name starts with one of ``but``.

    Freezing is for fine-tuning (train only the head, say); it does not make inference any
    cheaper. Used in chapter 09 to contrast it with pruning.

    Args:
        model: The network (changed in place).
        but: Parameter-name prefixes left trainable, e.g. ``("fc",)``.

    Returns:
        ``model``.
    """
    for name, p in model.named_parameters():
        p.requires_grad_(any(name.startswith(prefix) for prefix in but))
    return model


def prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """The ``(module, "weight")`` pairs of every Conv2d and Linear layer, in order.

    Used in chapter 09.
    """
    return [(m, "weight") for m in model.modules() if isinstance(m, _PRUNABLE)]


def _check_amount(amount: float) -> float:
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0 <= amount < 1:
        raise ValueError(f"amount must be a fraction in [0, 1), got {amount!r}")
    return float(amount)


def prune_unstructured(model: nn.Module, amount: float) -> nn.Module:
    """Zero the ``amount`` fraction of smallest-magnitude weights, ranked across all layers.

    ``torch.nn.utils.prune.global_unstructured`` with L1 magnitude: a global ranking prunes
    large layers more than small ones. The pruning stays as a mask (``weight_orig`` ×
    ``weight_mask``) so fine-tuning keeps the zeros; call :func:`make_permanent` afterwards.
    Used in chapter 09.

    Args:
        model: The network (changed in place).
        amount: Fraction of the Conv2d/Linear weights to zero, in ``[0, 1)``.

    Returns:
        ``model``.
    """
    amount = _check_amount(amount)
    params = prunable(model)
    if not params:
        raise ValueError(f"{type(model).__name__} has no Conv2d or Linear layer to prune")
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
    return model


def _conv_bn_pairs(model: nn.Module) -> list[tuple[nn.Conv2d, nn.BatchNorm2d | None]]:
    """Each Conv2d with the BatchNorm2d registered immediately after it, if any."""
    pairs: list[tuple[nn.Conv2d, nn.BatchNorm2d | None]] = []
    previous: nn.Module | None = None
    for m in model.modules():
        if list(m.children()):
            continue  # containers: only leaf layers have an order that matters here
        if isinstance(m, nn.Conv2d):
            pairs.append((m, None))
        elif isinstance(m, nn.BatchNorm2d) and isinstance(previous, nn.Conv2d) \
                and previous.out_channels == m.num_features:
            pairs[-1] = (previous, m)
        previous = m
    return pairs


def prune_filters(model: nn.Module, amount: float) -> nn.Module:
    """Remove the ``amount`` fraction of each convolution's filters with the smallest L2 norm.

    ``torch.nn.utils.prune.ln_structured`` along dimension 0 of every Conv2d weight; the same
    channels are masked in the conv's bias and in the scale and shift of the BatchNorm2d that
    follows it, so a pruned channel outputs exactly zero and :func:`remove_zero_filters` can cut
    it out without changing the network's function. Used in chapter 09.

    Args:
        model: The network (changed in place).
        amount: Fraction of the filters of each Conv2d to remove, in ``[0, 1)``.

    Returns:
        ``model``.
    """
    amount = _check_amount(amount)
    pairs = _conv_bn_pairs(model)
    if not pairs:
        raise ValueError(f"{type(model).__name__} has no Conv2d layer to prune")
    for conv, bn in pairs:
        prune.ln_structured(conv, "weight", amount=amount, n=2, dim=0)
        channel_mask = conv.weight_mask.flatten(1)[:, 0].clone()
        if conv.bias is not None:
            prune.custom_from_mask(conv, "bias", channel_mask)
        if bn is not None and bn.affine:
            prune.custom_from_mask(bn, "weight", channel_mask)
            prune.custom_from_mask(bn, "bias", channel_mask)
    return model


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold every pruning mask into its weight (``prune.remove``); the zeros stay.

    Used in chapter 09 before export or measurement: a masked layer recomputes
    ``weight_orig * weight_mask`` on every forward pass.
    """
    for module in model.modules():
        for name in [k[: -len("_mask")] for k, _ in module.named_buffers(recurse=False) if k.endswith("_mask")]:
            prune.remove(module, name)
    return model


def sparsity(model: nn.Module) -> float:
    """Fraction of exactly-zero weights over all Conv2d and Linear weights.

    Used in chapter 09.
    """
    zeros = total = 0
    for module, name in prunable(model):
        w = getattr(module, name)
        zeros += int((w == 0).sum())
        total += w.numel()
    return zeros / total if total else 0.0


def _flat(module: nn.Module) -> list[nn.Module]:
    if isinstance(module, nn.Sequential):
        return [leaf for child in module for leaf in _flat(child)]
    return [module]


def to_sequential(model: nn.Module, example: torch.Tensor) -> nn.Sequential:
    """The model's layers as one flat ``nn.Sequential``, if that computes the same function.

    Works for networks whose ``forward`` applies their children in registration order (the
    common features → classifier shape). The copy is checked on ``example``. Used in chapter 09.

    Args:
        model: The network.
        example: An input batch used to check the copy.

    Returns:
        A deep copy as a flat ``nn.Sequential``.

    Raises:
        ValueError: If applying the children in order does not reproduce ``model``'s output
            (a residual connection or functional op in ``forward``, say), or pruning masks
            are still attached.
    """
    if any(k.endswith("_mask") for k, _ in model.named_buffers()):
        raise ValueError("call make_permanent(model) first: pruning masks are still attached")
    layers = [copy.deepcopy(leaf) for child in model.children() for leaf in _flat(child)]
    seq = nn.Sequential(*layers).eval()
    try:
        with eval_mode(model), torch.no_grad():
            same = torch.allclose(seq(example), model(example), atol=1e-5)
    except Exception as err:
        raise ValueError(f"{type(model).__name__}'s children cannot be chained in order: {err}") from err
    if not same:
        raise ValueError(f"{type(model).__name__}'s forward is not its children applied in order "
                         "(residual connections or functional ops?); filters cannot be removed this way")
    return seq


def remove_zero_filters(seq: nn.Sequential, example: torch.Tensor) -> nn.Sequential:
    """Build a smaller network without the channels that :func:`prune_filters` zeroed.

    Structured pruning saves compute only once the zeroed filters are cut out: each Conv2d
    loses those output channels, the following BatchNorm2d the same channels, and the next
    Conv2d (or the Linear after ``Flatten``) the matching inputs. A channel is cut when it
    provably outputs zero: its BatchNorm's scale and shift are both zero, or (without a
    BatchNorm) its filter and bias are. The result computes the same function. Used in chapter 09.

    Args:
        seq: A flat ``nn.Sequential`` (see :func:`to_sequential`) of Conv2d, BatchNorm2d,
            element-wise activations that map 0 to 0, pooling, Dropout, Flatten and Linear
            layers, with pruning made permanent (:func:`make_permanent`).
        example: An input batch, used to find the shape before ``Flatten``.

    Returns:
        A new, smaller ``nn.Sequential`` in eval mode.

    Raises:
        ValueError: If a layer type is not supported, or pruning masks are still attached.
    """
    if any(k.endswith("_mask") for k, _ in seq.named_buffers()):
        raise ValueError("call make_permanent(model) first: pruning masks are still attached")
    layers = [copy.deepcopy(m) for m in seq]
    shapes, x = [], example
    with torch.no_grad():
        for m in copy.deepcopy(seq).eval():
            shapes.append(tuple(x.shape))
            x = m(x)
    keep: torch.Tensor | None = None  # indices of the previous layer's outputs that survive
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.Conv2d):
            if layer.groups != 1:
                raise ValueError(f"layer {i}: grouped convolutions are not supported")
            w = layer.weight.data if keep is None else layer.weight.data[:, keep]
            layer.in_channels = w.shape[1]
            bias = layer.bias.data if layer.bias is not None else torch.zeros(w.shape[0])
            dead = (w.flatten(1).abs().sum(1) == 0) & (bias == 0)
            bn = layers[i + 1] if i + 1 < len(layers) and isinstance(layers[i + 1], nn.BatchNorm2d) else None
            if bn is not None:
                dead = (bn.weight.data == 0) & (bn.bias.data == 0) if bn.affine else torch.zeros_like(dead)
            alive = ~dead
            if not alive.any():
                alive[0] = True  # keep one channel so that the shapes stay valid
            keep = alive.nonzero().flatten()
            layer.weight = nn.Parameter(w[keep].clone())
            if layer.bias is not None:
                layer.bias = nn.Parameter(layer.bias.data[keep].clone())
            layer.out_channels = int(keep.numel())
        elif isinstance(layer, nn.BatchNorm2d):
            if keep is not None:
                if layer.affine:
                    layer.weight = nn.Parameter(layer.weight.data[keep].clone())
                    layer.bias = nn.Parameter(layer.bias.data[keep].clone())
                layer.running_mean = layer.running_mean[keep].clone()
                layer.running_var = layer.running_var[keep].clone()
                layer.num_features = int(keep.numel())
        elif isinstance(layer, nn.Flatten):
            if keep is not None:
                if len(shapes[i]) != 4:
                    raise ValueError(f"layer {i}: Flatten after a conv expects N×C×H×W, got {shapes[i]}")
                hw = shapes[i][2] * shapes[i][3]
                keep = (keep[:, None] * hw + torch.arange(hw)).flatten()
        elif isinstance(layer, nn.Linear):
            if keep is not None:
                layer.weight = nn.Parameter(layer.weight.data[:, keep].clone())
                layer.in_features = int(keep.numel())
            keep = None
        elif not isinstance(layer, _PASS_THROUGH):
            raise ValueError(  # noqa: TRY004 (a value of the network, not a wrong argument type)
                f"layer {i} ({type(layer).__name__}) is not supported by remove_zero_filters")
    return nn.Sequential(*layers).eval()
