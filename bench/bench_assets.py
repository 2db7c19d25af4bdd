"""Benchmark: prediction-model labels + lookback indexer on 12 months of 1-minute candles.

Synthetic BTC-like random walk (SEMANTICS defaults: 30-minute prediction
candles, lookback 128). Times, in one process:

* the assets path (``compute_labels`` for pcr 1, 2, 3 and ``simulation_candles``'s
  indexer) on the whole range — target <= 5 s;
* the plain per-candle label scan (§5 read literally, Python loop) on the first
  ``--baseline-candles`` prediction candles, extrapolated to all, for the ratio.

    .venv/bin/python bench/bench_assets.py [--months 12] [--baseline-candles 300]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from epoch_builder.numbers import alter  # noqa: E402
from epoch_builder.prediction.assets import compute_labels  # noqa: E402
from epoch_builder.prediction.engine import simulation_candles  # noqa: E402

MINUTE_MS = 60_000
INTERVAL = 30
LOOKBACK = 128
PCRS = (1.0, 2.0, 3.0)


def synthetic(months: int, seed: int = 60184) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = months * 30 * 24 * 60
    ot = 1_600_000_000_000 + np.arange(n, dtype=np.int64) * MINUTE_MS
    close = 30_000 * np.exp(np.cumsum(rng.normal(0, 0.0008, n)))
    open_ = np.concatenate(([30_000.0], close[:-1]))
    high = np.round(np.maximum(open_, close) * (1 + rng.exponential(0.0004, n)), 2)
    low = np.round(np.minimum(open_, close) * (1 - rng.exponential(0.0004, n)), 2)
    one = {"ot": ot, "ct": ot + MINUTE_MS - 1, "o": np.round(open_, 2), "h": high, "l": low}
    pred_ot = ot[::INTERVAL]
    pred_o = one["o"][::INTERVAL]
    return one, pred_ot, pred_o


def plain_labels(one: dict[str, np.ndarray], pred_ot: np.ndarray, pred_o: np.ndarray, pcr: float) -> list[int]:
    ot, high, low = one["ot"].tolist(), one["h"].tolist(), one["l"].tolist()
    labels = []
    for i in range(len(pred_ot)):
        up, down = alter(float(pred_o[i]), pcr), alter(float(pred_o[i]), -pcr)
        outcome = 0
        j = int(np.searchsorted(one["ot"], pred_ot[i], side="right"))
        while j < len(ot):
            if high[j] >= up:
                outcome = 1
                break
            if low[j] <= down:
                outcome = -1
                break
            j += 1
        if outcome == 0:
            break
        labels.append(outcome)
    return labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--baseline-candles", type=int, default=300)
    args = parser.parse_args()
    one, pred_ot, pred_o = synthetic(args.months)
    print(f"{len(one['ot']):,} 1-minute candles, {len(pred_ot):,} prediction candles, pcr {PCRS}")

    compute_labels(one["ot"][:1000], one["h"][:1000], one["l"][:1000], pred_ot[:10], pred_o[:10], 3.0)  # compile/load
    started = time.perf_counter()
    sim = simulation_candles(one, pred_ot, LOOKBACK)
    labels = {pcr: compute_labels(sim["ot"], sim["h"], sim["l"], pred_ot[LOOKBACK:], pred_o[LOOKBACK:], pcr)
              for pcr in PCRS}
    fast = time.perf_counter() - started
    print(f"assets path: labels {[len(v) for v in labels.values()]} + indexer {len(sim['k']):,} rows in {fast:.3f} s "
          f"(target <= 5 s)")

    count = min(args.baseline_candles, len(pred_ot) - LOOKBACK)
    started = time.perf_counter()
    reference = {pcr: plain_labels(sim, pred_ot[LOOKBACK:LOOKBACK + count], pred_o[LOOKBACK:LOOKBACK + count], pcr)
                 for pcr in PCRS}
    plain = time.perf_counter() - started
    for pcr in PCRS:
        assert reference[pcr] == labels[pcr][: len(reference[pcr])].tolist(), f"labels differ for pcr {pcr}"
    projected = plain / count * (len(pred_ot) - LOOKBACK)
    print(f"plain per-candle scan: {count} candles x {len(PCRS)} pcr in {plain:.3f} s -> {projected:.1f} s projected "
          f"for all; ratio {projected / fast:,.0f}x (labels identical on the compared candles)")


if __name__ == "__main__":
    main()
