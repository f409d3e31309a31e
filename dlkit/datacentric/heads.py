"""Small classifiers trained on fixed features: the model behind chapter 15's experiments.

Chapter 15 (data-centric deep learning) runs many labelling rounds, cross-validation folds and
noise levels; retraining a CNN for each would not fit a CPU budget, so a convolutional
backbone is trained once on images the experiments never use, and each experiment trains a
head on its penultimate features (:func:`extract_features`), as one would on top of a
pretrained network.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check_xy(features: torch.Tensor, labels: torch.Tensor) -> None:
    if features.ndim != 2:
        raise ValueError(f"features must be N x D, got shape {tuple(features.shape)}")
    if labels.ndim != 1 or len(labels) != len(features):
        raise ValueError(f"labels must be a vector of {len(features)} class indices, "
                         f"got shape {tuple(labels.shape)}")
    if len(labels) == 0:
        raise ValueError("cannot train a head on zero examples")


@torch.no_grad()
def extract_features(model: nn.Module, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Penultimate features of a :class:`~dlkit.models.SmallCNN`-shaped model.

    The model must have ``features`` (the convolutional stages) and ``head`` whose last layer is
    the linear classifier; the features are the head's input to that layer (after global
    average pooling). Evaluated in eval mode, in float32, batch by batch.

    Args:
        model: The trained backbone.
        images: Normalised ``N x C x H x W`` images.
        batch_size: Images per forward pass.

    Returns:
        ``N x D`` float32 features on the CPU.
    """
    if not hasattr(model, "features") or not hasattr(model, "head"):
        raise TypeError(f"expected a model with .features and .head (SmallCNN), got {type(model).__name__}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    pool = nn.Sequential(*list(model.head.children())[:-1])
    out = [pool(model.features(images[i:i + batch_size].to(device))).float().cpu()
           for i in range(0, len(images), batch_size)]
    model.train(was_training)
    return torch.cat(out)


class Head(nn.Module):
    """Standardise features, then a linear layer or a one-hidden-layer MLP.

    Args:
        mean: Per-feature mean used to standardise (from the training features).
        std: Per-feature standard deviation.
        num_classes: Outputs.
        hidden: Width of the hidden layer; ``0`` gives a linear (softmax regression) head.
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, num_classes: int, hidden: int = 0) -> None:
        super().__init__()
        self.register_buffer("mean", mean.clone())
        self.register_buffer("std", std.clone())
        d = mean.numel()
        self.net = (nn.Linear(d, num_classes) if hidden == 0 else
                    nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net((features - self.mean) / self.std)


def fit_head(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    hidden: int = 0,
    steps: int = 150,
    lr: float = 0.01,
    weight_decay: float = 1e-3,
    loss_fn: LossFn | None = None,
    weights: torch.Tensor | None = None,
    seed: int = 0,
) -> Head:
    """Train a :class:`Head` full-batch with Adam and a cosine schedule.

    Deterministic for a seed (full batches, no shuffling), and fast enough to retrain hundreds
    of times: used by chapter 15 in every labelling round and every cross-validation fold.

    Args:
        features: ``N x D`` training features.
        labels: ``N`` class indices (possibly noisy).
        num_classes: Number of classes.
        hidden: Hidden width; ``0`` for a linear head.
        steps: Full-batch optimizer steps.
        lr: Peak learning rate.
        weight_decay: AdamW's decoupled weight decay.
        loss_fn: ``fn(logits, labels)`` returning per-example losses; cross-entropy when
            ``None`` (chapter 15 passes :func:`dlkit.datacentric.generalized_cross_entropy`).
        weights: Optional per-example weights (reweighting a rare subgroup); the loss is their
            weighted mean.
        seed: Seed of the initialisation.

    Returns:
        The trained head, in eval mode.
    """
    _check_xy(features, labels)
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}")
    if weights is not None and (weights.shape != labels.shape or (weights < 0).any()):
        raise ValueError("weights must be one non-negative number per example")
    features = features.float()
    std = features.std(0) if len(features) > 1 else torch.ones(features.shape[1])
    with torch.random.fork_rng(devices=[]):  # seed the initialisation without touching the global RNG
        torch.manual_seed(seed)
        head = Head(features.mean(0), std.clamp_min(1e-6), num_classes, hidden)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    loss_fn = loss_fn or (lambda z, y: nn.functional.cross_entropy(z, y, reduction="none"))
    w = None if weights is None else weights.float() / weights.float().sum()
    for _ in range(steps):
        per_example = loss_fn(head(features), labels)
        loss = per_example.mean() if w is None else (per_example * w).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return head.eval()


@torch.no_grad()
def predict_proba(head: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """Softmax probabilities of ``head`` on ``features`` (``N x C``)."""
    return torch.softmax(head(features.float()), dim=1)


def accuracy_of(head: nn.Module, features: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of ``features`` that ``head`` classifies as ``labels``."""
    return (predict_proba(head, features).argmax(1) == labels).float().mean().item()
