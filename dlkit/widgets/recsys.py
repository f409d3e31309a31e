"""Explorer of chapter 13 (recommender systems): one user's history and recommendations.

:func:`recommendation_explorer` lets a reader pick a user and a model and see, side by side, the
movies the user rated in the training period (their best rated first) and the model's top-k
list, with the movies the user went on to rate in the held-out period marked as hits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import ipywidgets as W
import torch
from matplotlib.figure import Figure

from dlkit.widgets.core import Explorer, _ShownFigure

__all__ = ["plot_recommendations", "recommendation_explorer"]


def _short(title: str, width: int = 44) -> str:
    return title if len(title) <= width else title[: width - 1] + "…"


def plot_recommendations(titles: Sequence[str], history: Sequence[tuple[int, float]],
                         recommended: Sequence[int], hits: set[int], user: int,
                         model: str = "", shown: int = 10) -> Figure:
    """A two-column figure: the user's rated movies and the recommended ones (hits marked).

    Used in chapter 13.

    Args:
        titles: Title of every item.
        history: The user's training ratings as ``(item, stars)``.
        recommended: The recommended item ids, best first.
        hits: Items the user rated in the held-out period.
        user: The user's id (for the heading).
        model: The model's name (for the heading).
        shown: How many history lines to show (best rated, then most recent).

    Returns:
        The figure (not attached to pyplot).
    """
    fig = _ShownFigure(figsize=(11, 0.32 * max(shown, len(recommended)) + 1.2))
    left, right = fig.add_axes((0.0, 0.0, 0.5, 1.0)), fig.add_axes((0.5, 0.0, 0.5, 1.0))
    for ax in (left, right):
        ax.set_axis_off()
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    best = sorted(history, key=lambda p: -p[1])[:shown]
    rows = max(shown, len(recommended)) + 2
    step = 1.0 / rows
    left.text(0.02, 1 - step, f"user {user}: {len(history)} ratings in training, best rated",
              fontsize=10, fontweight="bold", va="center")
    for j, (item, stars) in enumerate(best):
        left.text(0.02, 1 - (j + 2) * step, f"{stars:3.1f}*  {_short(titles[item])}",
                  fontsize=9, va="center", family="monospace")
    n_hits = sum(i in hits for i in recommended)
    right.text(0.02, 1 - step, f"{model} top {len(recommended)}: {n_hits} rated later (+)",
               fontsize=10, fontweight="bold", va="center")
    for j, item in enumerate(recommended):
        mark = "+" if item in hits else " "
        right.text(0.02, 1 - (j + 2) * step, f"{j + 1:2d}. {mark} {_short(titles[item])}",
                   fontsize=9, va="center", family="monospace",
                   color="tab:green" if item in hits else "black")
    return fig


def recommendation_explorer(titles: Sequence[str], train_user: torch.Tensor,
                            train_item: torch.Tensor, train_rating: torch.Tensor,
                            test_user: torch.Tensor, test_item: torch.Tensor,
                            scores: Mapping[str, torch.Tensor], user: int = 0,
                            k: int = 10) -> Explorer:
    """Pick a user and a model; see the user's history and the model's top-k recommendations.

    Items the user rated in training are excluded from the recommendations, as in the chapter's
    evaluation. Used in chapter 13 (recommender systems).

    Args:
        titles: Title of every item.
        train_user, train_item, train_rating: The training ratings.
        test_user, test_item: The held-out interactions (shown as hits).
        scores: A (num_users × num_items) score matrix per model name.
        user: The initial user.
        k: Length of the lists.

    Returns:
        The explorer; display it to get the widget, or its PNG in the book.

    Raises:
        ValueError: If ``scores`` is empty or a matrix does not have one column per title.
    """
    if not scores:
        raise ValueError("scores is empty: give at least one model's score matrix")
    num_users = next(iter(scores.values())).shape[0]
    for name, s in scores.items():
        if s.shape != (num_users, len(titles)):
            raise ValueError(f"scores[{name!r}] has shape {tuple(s.shape)}, expected "
                             f"({num_users}, {len(titles)})")
    if not 0 <= user < num_users:
        raise ValueError(f"user must be in [0, {num_users}), got {user}")

    def draw(user: int, model: str) -> Figure:
        own = train_user == user
        items, stars = train_item[own].tolist(), train_rating[own].tolist()
        s = scores[model][user].clone()
        s[train_item[own]] = float("-inf")
        top = torch.topk(s, k).indices.tolist()
        hits = set(test_item[test_user == user].tolist())
        return plot_recommendations(titles, list(zip(items, stars)), top, hits, user, model)

    controls = {
        "user": W.BoundedIntText(value=user, min=0, max=num_users - 1, description="user"),
        "model": W.Dropdown(options=list(scores), value=next(iter(scores)), description="model"),
    }
    return Explorer(controls, draw, f"recommendations for user {user} (pick a user and a model)")
