"""Candlestick import speed on 4 years of synthetic 1m candles (~2.1 M rows).

Prints the time of a full `candlesticks import` (parse + validate + gap check +
resample + write Parquet), of reading the bundle back, and the ratio against a
plain `pandas.read_csv` of the same file run in this process (baseline).
Target from the foundation issue: loading 4 years in under 2 s.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from epoch_builder.candles import read_candles  # noqa: E402
from epoch_builder.importer import import_candlesticks  # noqa: E402
from epoch_builder.workspace import Workspace  # noqa: E402

ROWS = 4 * 365 * 1440  # 2,102,400


def synthetic_binance_csv(path: Path) -> None:
    rng = np.random.default_rng(7)
    close = 30000 + np.cumsum(rng.normal(0, 5, ROWS)).round(2)
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) + rng.uniform(0, 3, ROWS).round(2)
    low = np.minimum(open_, close) - rng.uniform(0, 3, ROWS).round(2)
    ot = 1_600_000_000_000 - 1_600_000_000_000 % 1_800_000 + np.arange(ROWS, dtype=np.int64) * 60_000
    vol = rng.uniform(1, 9, ROWS).round(4)
    pd.DataFrame({0: ot, 1: open_, 2: high, 3: low, 4: close, 5: vol, 6: ot + 59_999, 7: (vol * close).round(4),
                  8: 10, 9: 0.5, 10: 0.5, 11: 0}).to_csv(path, index=False, header=False)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "BTCUSDT-1m-4y.csv"
        synthetic_binance_csv(src)
        ws = Workspace(Path(tmp) / "ws")
        baseline = timed(lambda: pd.read_csv(src, header=None))
        full = timed(lambda: import_candlesticks(ws, [src], log=lambda *_: None))
        load = timed(lambda: read_candles(ws.candlesticks_file))
        print(f"rows: {ROWS:,}")
        print(f"baseline pandas.read_csv (default engine): {baseline:.2f} s")
        print(f"full import (parse+validate+resample+write): {full:.2f} s  ratio vs baseline: {baseline / full:.2f}x")
        print(f"bundle load (Parquet -> DataFrame): {load:.3f} s  ratio vs baseline: {baseline / load:.1f}x")
        print(f"target: full import < 2 s -> {'OK' if full < 2 else 'MISSED'}")


if __name__ == "__main__":
    main()
