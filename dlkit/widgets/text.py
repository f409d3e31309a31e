"""Explorer of chapter 10 (sequence models): sampling temperature and top-k on a trained model."""

from __future__ import annotations

import textwrap
from typing import Any

import ipywidgets as W
import torch
from matplotlib.figure import Figure
from torch import nn

from dlkit.text import generate
from dlkit.widgets.core import Explorer, _ShownFigure

__all__ = ["plot_sampling", "temperature_explorer"]


def plot_sampling(model: nn.Module, tokenizer: Any, prompt: str, temperature: float,
                  top_k: int | None = None, num_tokens: int = 240, seed: int = 0,
                  bars: int = 12) -> Figure:
    """The next-token distribution after ``prompt`` at a temperature, and a sampled continuation.

    Used in chapter 10. Left: the probabilities of the ``bars`` most likely next characters
    after the prompt, as the model gives them (temperature 1) and as sampled (after dividing
    the logits by ``temperature`` and keeping the ``top_k`` most likely). Right: a continuation
    of ``num_tokens`` tokens sampled with those settings and ``seed``.

    Args:
        model: A character language model (see :func:`dlkit.text.generate`).
        tokenizer: Has ``encode(str)`` and ``decode(ids)``.
        prompt: The text to continue.
        temperature: Softmax temperature (> 0; 0 is greedy decoding).
        top_k: Keep only the ``top_k`` most likely tokens (``None``: all).
        num_tokens: Length of the sampled continuation.
        seed: Seed of the sampling.
        bars: How many next-token probabilities to show.

    Returns:
        The figure.
    """
    ids = tokenizer.encode(prompt)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(ids[None].to(device))[0, -1].float().cpu()
    finally:
        model.train(was_training)
    p1 = logits.softmax(-1)
    if temperature > 0:
        scaled = logits / temperature
        if top_k is not None:
            kth = scaled.topk(min(top_k, len(scaled))).values[-1]
            scaled = scaled.masked_fill(scaled < kth, float("-inf"))
        pt = scaled.softmax(-1)
    else:
        pt = torch.nn.functional.one_hot(logits.argmax(), len(logits)).float()
    top = p1.topk(min(bars, len(p1))).indices
    labels = [repr(tokenizer.decode([int(i)]))[1:-1] or "''" for i in top]
    text = tokenizer.decode(generate(model, ids, num_tokens, temperature=temperature,
                                     top_k=top_k, seed=seed)[len(ids):])
    fig = _ShownFigure(figsize=(11, 4.2), layout="constrained")
    ax, box = fig.subplots(1, 2, width_ratios=[1, 1.9])
    x = torch.arange(len(top)).numpy()
    ax.bar(x - 0.2, p1[top].numpy(), width=0.4, label="model (T = 1)")
    ax.bar(x + 0.2, pt[top].numpy(), width=0.4, label=f"sampled (T = {temperature:g}"
           + (f", top-{top_k})" if top_k else ")"))
    ax.set_xticks(x, labels, fontfamily="monospace")
    ax.set(ylabel="probability", title=f"next character after {prompt[-12:]!r}")
    ax.legend(fontsize=8)
    wrapped = "\n".join(textwrap.fill(line, 62) or " " for line in text.split("\n")[:14])
    box.axis("off")
    box.text(0, 1, prompt + "|\n" + wrapped, va="top", ha="left", fontfamily="monospace",
             fontsize=8, transform=box.transAxes)
    box.set_title(f"sampled continuation (seed {seed})")
    return fig


def temperature_explorer(model: nn.Module, tokenizer: Any, prompt: str,
                         temperature: float = 0.8, top_k: int = 0,
                         num_tokens: int = 240) -> Explorer:
    """Sliders for the temperature and top-k of :func:`plot_sampling`.

    Used in chapter 10. In the built book the figure for the initial settings is shown.

    Args:
        model: A character language model.
        tokenizer: Has ``encode`` and ``decode``.
        prompt: The text to continue.
        temperature: Initial temperature.
        top_k: Initial top-k (0: no cut).
        num_tokens: Length of each continuation.

    Returns:
        The explorer.
    """
    slider = {"continuous_update": False}
    controls = {
        "temperature": W.FloatSlider(value=temperature, min=0.0, max=2.0, step=0.05,
                                     description="temperature", **slider),
        "top_k": W.IntSlider(value=top_k, min=0, max=40, description="top-k (0: all)", **slider),
        "seed": W.IntSlider(value=0, min=0, max=20, description="seed", **slider),
    }

    def draw(temperature: float, top_k: int, seed: int) -> Figure:
        return plot_sampling(model, tokenizer, prompt, temperature, top_k or None,
                             num_tokens=num_tokens, seed=seed)

    return Explorer(controls, draw, f"Sampling explorer (temperature {temperature:g})")
