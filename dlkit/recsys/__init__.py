"""Recommender systems on MovieLens: splits, baselines, MF, two-tower, BPR, metrics and serving.

==========================  ===================================================================
``dlkit.recsys.splits``     :func:`random_split`, :func:`temporal_split`, :func:`temporal_violations`,
                            :func:`interaction_mask`
``dlkit.recsys.models``     :class:`GlobalMean`, :class:`Biases` (:func:`fit_biases`),
                            :class:`MatrixFactorization` (:func:`mf_gradients`),
                            :class:`TwoTower`, :class:`RatingStep`, :class:`BPRStep`
``dlkit.recsys.metrics``    :func:`rating_metrics`, :func:`rating_validation`,
                            :func:`ranking_metrics`, :func:`ranking_from_scores`, coverage
``dlkit.recsys.serving``    :func:`exact_topk`, :class:`AnnIndex` (faiss), recall of the approximation
==========================  ===================================================================

The ratings themselves come from :func:`dlkit.data.load_ratings`. Everything is re-exported
here. Used in chapter 13 (recommender systems).
"""

from __future__ import annotations

from dlkit.recsys.metrics import (catalogue_coverage, popularity_of, ranking_from_scores,
                                  ranking_metrics, rating_metrics, rating_validation,
                                  score_matrix)
from dlkit.recsys.models import (BPRStep, Biases, GlobalMean, MatrixFactorization, RatingStep,
                                 SoftmaxStep, TwoTower, fit_biases, item_popularity, mf_gradients,
                                 mf_objective)
from dlkit.recsys.serving import AnnIndex, exact_topk, recall_of_approximation
from dlkit.recsys.splits import (Split, interaction_mask, random_split, temporal_split,
                                 temporal_violations)

__all__ = [
    "AnnIndex", "BPRStep", "Biases", "GlobalMean", "MatrixFactorization", "RatingStep", "Split",
    "SoftmaxStep",
    "TwoTower", "catalogue_coverage", "exact_topk", "fit_biases", "interaction_mask",
    "item_popularity", "mf_gradients", "mf_objective", "popularity_of", "random_split",
    "ranking_from_scores", "ranking_metrics", "rating_metrics", "rating_validation",
    "recall_of_approximation", "score_matrix", "temporal_split", "temporal_violations",
]
