"""Discovery payload (SEMANTICS §4) shared by regression certificates and prediction models.

``build_discovery(predicted, outcomes)`` pairs each prediction with what really
happened, up to the shorter of the two sequences:

* ``predicted[i]``: the predicted value; its sign is the direction
  (> 0 increase, < 0 decrease, 0 neutral).
  Regressions pass ``pct_change(x[-1], pred[-1])`` (§3); prediction models pass
  ``features_sum[i]`` (§7.2).
* ``outcomes[i]``: +1 the price increased, -1 it decreased, 0 no outcome.
  Regressions pass the sign of ``pct_change(x[-1], y[-1])``; prediction models
  pass the label for the configuration's pcr (always 1 or -1).

Per pair, as the original:

* outcome 0 -> a neutral *outcome*; the prediction is not scored at all
  (§3: "If real == 0: neutral outcome. Else ...").
* otherwise predicted > 0 -> increase prediction, successful iff outcome > 0;
  predicted < 0 -> decrease prediction, successful iff outcome < 0;
  predicted == 0 -> neutral prediction (not scored).
* Outcome counts follow the scored predictions: a successful increase or an
  unsuccessful decrease counts one increase outcome, and vice versa.
* Points: +1 per success, -1 per failure, cumulative over the scored
  predictions in order. ``points_hist`` holds the running total after 10%,
  20%, .. 100% of them (after ``floor(n * q / 10)`` predictions, 0 before any);
  ``points`` is the final total.
* Accuracies are ``successes * 100 / predictions`` rounded to 2 decimals (0 when
  there are none); list statistics are rounded to 6 decimals (0 for an empty list).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from epoch_builder.numbers import round_to

POINTS_SAMPLES = 10
LIST_NAMES = (
    "increase",
    "decrease",
    "increase_successful",
    "increase_unsuccessful",
    "decrease_successful",
    "decrease_unsuccessful",
)


def accuracy(successful: int, total: int) -> float:
    """Percentage of successes, 2 decimals; 0 when there is nothing to score."""
    if total <= 0:
        return 0.0
    return round_to(successful * 100 / total, 2)


def list_stats(values: np.ndarray) -> dict[str, float]:
    """min/max/mean/median rounded to 6 decimals; all 0 for an empty list."""
    if values.size == 0:
        return {"min": 0.0, "max": 0.0, "mean": 0.0, "median": 0.0}
    return {
        "min": round_to(float(np.min(values)), 6),
        "max": round_to(float(np.max(values)), 6),
        "mean": round_to(float(np.mean(values)), 6),
        "median": round_to(float(np.median(values)), 6),
    }


def sampled_points(points: np.ndarray) -> list[float]:
    """Running point total after 10%, 20% .. 100% of the scored predictions."""
    count = points.size
    cumulative = np.concatenate(([0.0], np.cumsum(points, dtype=np.float64)))
    return [float(cumulative[(count * q) // POINTS_SAMPLES]) for q in range(1, POINTS_SAMPLES + 1)]


def build_discovery(predicted: Sequence[float], outcomes: Sequence[int]) -> dict[str, Any]:
    """The §4 payload for paired predictions and outcomes (see the module docstring)."""
    size = min(len(predicted), len(outcomes))
    pred = np.asarray(predicted, dtype=np.float64)[:size]
    outc = np.asarray(outcomes, dtype=np.int64)[:size]

    has_outcome = outc != 0
    increase = has_outcome & (pred > 0)
    decrease = has_outcome & (pred < 0)
    neutral = has_outcome & (pred == 0)
    inc_ok = increase & (outc > 0)
    dec_ok = decrease & (outc < 0)
    inc_bad = increase & ~inc_ok
    dec_bad = decrease & ~dec_ok

    scored = increase | decrease
    successful = (inc_ok | dec_ok)[scored]
    points = np.where(successful, 1.0, -1.0)

    masks = {
        "increase": increase,
        "decrease": decrease,
        "increase_successful": inc_ok,
        "increase_unsuccessful": inc_bad,
        "decrease_successful": dec_ok,
        "decrease_unsuccessful": dec_bad,
    }
    n_inc, n_dec = int(increase.sum()), int(decrease.sum())
    n_inc_ok, n_dec_ok = int(inc_ok.sum()), int(dec_ok.sum())

    payload: dict[str, Any] = {
        "neutral_num": int(neutral.sum()),
        "increase_num": n_inc,
        "decrease_num": n_dec,
        "neutral_outcome_num": int((~has_outcome).sum()),
        "increase_outcome_num": n_inc_ok + (n_dec - n_dec_ok),
        "decrease_outcome_num": n_dec_ok + (n_inc - n_inc_ok),
        "points_hist": sampled_points(points),
        "points": float(points.sum()),
        "increase_accuracy": accuracy(n_inc_ok, n_inc),
        "decrease_accuracy": accuracy(n_dec_ok, n_dec),
        "accuracy": accuracy(n_inc_ok + n_dec_ok, n_inc + n_dec),
    }
    for name in LIST_NAMES:
        values = pred[masks[name]]
        payload[f"{name}_list"] = values.tolist()
        for stat, value in list_stats(values).items():
            payload[f"{name}_{stat}"] = value
    return payload
