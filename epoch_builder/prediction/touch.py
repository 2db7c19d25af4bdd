"""The first-touch search shared by the labels (SEMANTICS §5) and the backtest's exits (§7.4).

Both ask the same question many times: from candle ``start`` on, which is the
first candle whose high reaches ``up`` or whose low reaches ``down``? A label
asks it once per prediction candle, the backtest once per entry candle, and
the answer is often days or months away. Scanning candle by candle would cost
O(distance) per query; here two levels of summaries -- the max high / min low
of each ``BLOCK`` of candles and of each ``SUPER`` blocks -- let a query skip
whole stretches that touch neither price, so a query costs about
BLOCK + SUPER + (distance / (BLOCK * SUPER)) comparisons.

The outcome at the touched candle (which side was reached, and which is
tested first) is the caller's rule, not this module's.
"""

from __future__ import annotations

import numpy as np
from numba import njit

BLOCK = 64  # candles per block
SUPER = 64  # blocks per super-block


@njit(inline="always")
def _scan(high: np.ndarray, low: np.ndarray, up: float, down: float, t: int, stop: int) -> int:
    """The first candle in [t, stop) whose high >= up or low <= down; ``stop`` when none."""
    while t < stop:
        if high[t] >= up or low[t] <= down:
            return t
        t += 1
    return stop


@njit(cache=True)
def first_touches(high: np.ndarray, low: np.ndarray, starts: np.ndarray, upper: np.ndarray,
                  lower: np.ndarray, stop: int) -> np.ndarray:
    """For each query q: the first candle t in [starts[q], stop) with high[t] >= upper[q] or
    low[t] <= lower[q]; ``stop`` when there is none (no outcome before ``stop``)."""
    n_blocks = (stop + BLOCK - 1) // BLOCK
    n_supers = (n_blocks + SUPER - 1) // SUPER
    block_high = np.empty(n_blocks)
    block_low = np.empty(n_blocks)
    for b in range(n_blocks):
        lo = b * BLOCK
        hi = min(lo + BLOCK, stop)
        block_high[b] = high[lo:hi].max()
        block_low[b] = low[lo:hi].min()
    super_high = np.empty(n_supers)
    super_low = np.empty(n_supers)
    for g in range(n_supers):
        lo = g * SUPER
        hi = min(lo + SUPER, n_blocks)
        super_high[g] = block_high[lo:hi].max()
        super_low[g] = block_low[lo:hi].min()
    touches = np.empty(starts.size, dtype=np.int64)
    for q in range(starts.size):
        up = upper[q]
        down = lower[q]
        t = min(starts[q], stop)
        # finish the query's own block candle by candle
        block_end = min((t // BLOCK + 1) * BLOCK, stop)
        t = _scan(high, low, up, down, t, block_end)
        if t == block_end and t < stop:
            # t is at a block boundary: skip blocks up to the next super-block boundary,
            b = t // BLOCK
            while b < n_blocks and b % SUPER != 0 and block_high[b] < up and block_low[b] > down:
                b += 1
            if b < n_blocks and b % SUPER == 0 and block_high[b] < up and block_low[b] > down:
                # then whole super-blocks, then blocks inside the one that is touched
                g = b // SUPER
                while g < n_supers and super_high[g] < up and super_low[g] > down:
                    g += 1
                b = g * SUPER
                while b < n_blocks and block_high[b] < up and block_low[b] > down:
                    b += 1
            t = _scan(high, low, up, down, b * BLOCK, stop)
        touches[q] = t
    return touches
