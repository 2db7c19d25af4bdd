"""Numeric helpers with the original's rounding rules (SEMANTICS.md notation).

Rounding is NumPy's ``round`` (scale, round-half-even, unscale) on float64, as
the original did, so the fast engine and the per-candle oracle agree bit for bit.
"""

from __future__ import annotations

import numpy as np


def round_to(value: float, decimals: int) -> float:
    return float(np.round(np.float64(value), decimals))


def pct_change(old: float, new: float) -> float:
    """``(new - old) / old * 100``; 0 when ``old == 0``; floored at -100; 2 decimals."""
    if old == 0:
        return 0.0
    change = (new - old) / old * 100
    return round_to(max(change, -100.0), 2)


def alter(value: float, percent: float) -> float:
    """``value * (1 + percent/100)`` rounded to 2 decimals (prices in cents)."""
    return round_to(value * (1 + percent / 100), 2)
