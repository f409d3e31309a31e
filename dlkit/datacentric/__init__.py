"""Data-centric deep learning: what to label, which labels are wrong, whom the model fails, and
what it looks at (chapter 15).

Modules:

- :mod:`dlkit.datacentric.heads`: a backbone's penultimate features and small heads trained on
  them full-batch (:func:`fit_head`), fast enough to retrain in every experiment.
- :mod:`dlkit.datacentric.active`: active-learning strategies (random, entropy, margin,
  core-set, BADGE) and :func:`run_active_learning` at equal label budgets.
- :mod:`dlkit.datacentric.noise`: label corruption at exact rates, out-of-sample probabilities
  for confident learning (cleanlab), detection precision/recall, a noise-robust loss.
- :mod:`dlkit.datacentric.subgroups`: brightness and colourfulness subgroups, Wilson and
  Newcombe intervals, targeted darkening.
- :mod:`dlkit.datacentric.calibration`: reliability bins, expected calibration error,
  temperature scaling.
- :mod:`dlkit.datacentric.explain`: the completeness check of Integrated Gradients, the model
  randomisation test, attribution on a region, a planted spurious cue.
"""

from dlkit.datacentric.active import (STRATEGIES, ActiveRun, badge_select, entropy_scores,
                                      kcenter_greedy, margin_scores, run_active_learning, select)
from dlkit.datacentric.calibration import (Bins, expected_calibration_error, fit_temperature,
                                           reliability_bins)
from dlkit.datacentric.explain import (completeness_gap, mark_region, plant_mark,
                                       randomized_copy, rank_correlation, region_share)
from dlkit.datacentric.heads import Head, accuracy_of, extract_features, fit_head, predict_proba
from dlkit.datacentric.noise import (Corruption, Detection, cross_val_probs, detection_report,
                                     generalized_cross_entropy, pair_noise, symmetric_noise)
from dlkit.datacentric.subgroups import (GroupRow, bootstrap_interval, brightness, colourfulness, difference_interval,
                                         grayscale, group_table, scale_brightness, wilson_interval)

__all__ = [
    "extract_features", "Head", "fit_head", "predict_proba", "accuracy_of",
    "STRATEGIES", "entropy_scores", "margin_scores", "kcenter_greedy", "badge_select", "select",
    "ActiveRun", "run_active_learning",
    "Corruption", "symmetric_noise", "pair_noise", "cross_val_probs", "Detection",
    "detection_report", "generalized_cross_entropy",
    "brightness", "colourfulness", "wilson_interval", "difference_interval", "GroupRow",
    "group_table", "scale_brightness", "grayscale", "bootstrap_interval",
    "Bins", "reliability_bins", "expected_calibration_error", "fit_temperature",
    "completeness_gap", "region_share", "randomized_copy", "rank_correlation", "plant_mark",
    "mark_region",
]
