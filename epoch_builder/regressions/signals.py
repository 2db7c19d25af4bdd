"""Vectorised §3 signals: percentage changes, discovery inputs and features.

Each function equals the scalar rule of SEMANTICS.md applied per element
(``numbers.pct_change`` / NumPy rounding), checked by the tests.
"""

from __future__ import annotations

import numpy as np

FEATURE_MIN_CHANGE = 0.01  # |change| below this is no signal
FEATURE_MAX_CHANGE = 1.0


def pct_changes(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """``numbers.pct_change`` elementwise: (new-old)/old*100, 0 where old == 0, floored at -100, 2 decimals."""
    old = np.asarray(old, dtype=np.float64)
    new = np.asarray(new, dtype=np.float64)
    safe = np.where(old == 0, 1.0, old)
    change = np.maximum((new - old) / safe * 100, -100.0)
    return np.where(old == 0, 0.0, np.round(change, 2))


def features_from_changes(change: np.ndarray) -> np.ndarray:
    """|change| clipped to [0.01, 1] (below 0.01 -> 0), scaled by (|c| - 0.01) / 0.99, signed, 6 decimals."""
    magnitude = np.minimum(np.abs(change), FEATURE_MAX_CHANGE)
    scaled = (magnitude - FEATURE_MIN_CHANGE) / (FEATURE_MAX_CHANGE - FEATURE_MIN_CHANGE)
    scaled = np.where(np.abs(change) < FEATURE_MIN_CHANGE, 0.0, scaled)
    return np.round(np.sign(change) * scaled, 6) + 0.0  # + 0.0 turns -0.0 into 0.0


def predicted_changes(x: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """pct_change(x[-1], pred[-1]) per window."""
    return pct_changes(x[:, -1], predictions[:, -1])


def real_outcomes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sign of pct_change(x[-1], y[-1]) per window: +1 increase, -1 decrease, 0 neutral."""
    return np.sign(pct_changes(x[:, -1], y[:, -1])).astype(np.int64)
