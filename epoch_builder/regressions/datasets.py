"""Regression datasets (SEMANTICS §3) by vectorised sliding windows.

For row index i from ``lookback`` while ``i < rows - predictions``: features
are rows ``[i - lookback, i)``, labels rows ``[i, i + predictions)``. The first
``int(rows * train_split)`` windows train, the rest test. Windows are views of
one array (``sliding_window_view``), copied once into contiguous float32
arrays for Keras; no Python loop over rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from epoch_builder.errors import EpochBuilderError


def window_count(rows: int, lookback: int, predictions: int) -> int:
    return max(rows - predictions - lookback, 0)


def windows(series: np.ndarray, lookback: int, predictions: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) views: ``x[w] = series[w:w+lookback]``, ``y[w] = series[w+lookback:w+lookback+predictions]``."""
    count = window_count(len(series), lookback, predictions)
    if count <= 0:
        raise EpochBuilderError(
            f"{len(series)} rows are too few for lookback {lookback} + predictions {predictions}: no window fits")
    view = sliding_window_view(series, lookback + predictions)[:count]
    return view[:, :lookback], view[:, lookback:]


def input_windows(series: np.ndarray, lookback: int, predictions: int) -> np.ndarray:
    """Only the features of every window (inference)."""
    return windows(series, lookback, predictions)[0]


@dataclass(frozen=True)
class RegressionDatasets:
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    test_last_x: np.ndarray  # float64 x[-1] / y[-1] of each test window, for §3 discovery
    test_last_y: np.ndarray
    start: int  # ot of the first prediction candle
    end: int  # ct of the last prediction candle
    summary: dict[str, float]  # of the normalised close

    @property
    def sizes(self) -> dict[str, int]:
        return {"train_size": int(len(self.train_x)), "test_size": int(len(self.test_x))}


def summarize(values: np.ndarray) -> dict[str, float]:
    """pandas' ``describe()`` of the series, as the platform's IRegressionDatasetSummary: count,
    mean, std (sample), min, 25%, 50%, 75% (linear interpolation), max."""
    q25, q50, q75 = (float(q) for q in np.quantile(values, [0.25, 0.5, 0.75]))
    return {
        "count": float(values.size),
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
        "min": float(values.min()),
        "25%": q25,
        "50%": q50,
        "75%": q75,
        "max": float(values.max()),
    }


def split(series: np.ndarray, lookback: int, predictions: int, train_split: float) -> tuple[np.ndarray, ...]:
    """(train_x, train_y, test_x, test_y) as contiguous float32 copies."""
    x, y = windows(series, lookback, predictions)
    cut = int(len(series) * train_split)
    if cut <= 0 or cut >= len(x):
        raise EpochBuilderError(
            f"train_split {train_split} of {len(series)} rows leaves {min(cut, len(x))} train and "
            f"{max(len(x) - cut, 0)} test windows; both must be non-empty")
    as32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    return as32(x[:cut]), as32(y[:cut]), as32(x[cut:]), as32(y[cut:])


def load_datasets(ws: Any, lookback: int, predictions: int) -> RegressionDatasets:
    """From the workspace's normalised prediction candles and epoch config (once per batch)."""
    from epoch_builder.candles import read_candles

    config = ws.load_epoch_config()
    frame = read_candles(ws.normalized_prediction_candlesticks_file)
    close = frame["c"].to_numpy(dtype=np.float64)
    if close.size == 0 or not np.all(np.isfinite(close)):
        raise EpochBuilderError(f"{ws.normalized_prediction_candlesticks_file}: column c must be finite numbers")
    train_x, train_y, test_x, test_y = split(close, lookback, predictions, config.train_split)
    x, y = windows(close, lookback, predictions)
    cut = len(train_x)
    return RegressionDatasets(train_x, train_y, test_x, test_y, test_last_x=x[cut:, -1].copy(),
                              test_last_y=y[cut:, -1].copy(), start=int(frame["ot"].iloc[0]),
                              end=int(frame["ct"].iloc[-1]), summary=summarize(close))
