"""§3 windows (vectorised vs the rule row by row) and the vectorised signals vs numbers.pct_change."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from epoch_builder.errors import EpochBuilderError
from epoch_builder.numbers import pct_change, round_to
from epoch_builder.regressions.datasets import load_datasets, split, windows
from epoch_builder.regressions.signals import features_from_changes, pct_changes


def naive_windows(series: np.ndarray, lookback: int, predictions: int) -> tuple[list, list]:
    """SEMANTICS §3 as written: i from lookback while i < rows - predictions."""
    xs, ys = [], []
    i = lookback
    while i < len(series) - predictions:
        xs.append(series[i - lookback:i])
        ys.append(series[i:i + predictions])
        i += 1
    return xs, ys


@pytest.mark.parametrize("rows, lookback, predictions", [(40, 16, 4), (21, 16, 4), (100, 1, 1), (7, 3, 3)])
def test_windows_equal_the_row_by_row_rule(rows: int, lookback: int, predictions: int) -> None:
    series = np.random.default_rng(rows).random(rows)
    x, y = windows(series, lookback, predictions)
    nx, ny = naive_windows(series, lookback, predictions)
    assert len(x) == len(nx) == rows - lookback - predictions
    np.testing.assert_array_equal(x, np.array(nx))
    np.testing.assert_array_equal(y, np.array(ny))


def test_too_few_rows_is_a_clear_error() -> None:
    with pytest.raises(EpochBuilderError, match="too few for lookback 16 \\+ predictions 4"):
        windows(np.ones(20), 16, 4)


def test_split_first_int_rows_times_train_split_windows_train() -> None:
    series = np.arange(1, 101, dtype=np.float64)
    train_x, train_y, test_x, test_y = split(series, 10, 5, 0.75)
    assert len(train_x) == int(100 * 0.75) and len(test_x) == (100 - 15) - 75
    assert train_x.dtype == np.float32 and train_x.flags.c_contiguous
    assert test_x[0, 0] == series[75] and test_y[-1, -1] == series[100 - 2]


def test_load_datasets_on_the_small_epoch(small_epoch) -> None:
    from epoch_builder.candles import read_candles

    config = small_epoch.load_epoch_config()
    data = load_datasets(small_epoch, config.regression_lookback, config.regression_predictions)
    close = read_candles(small_epoch.normalized_prediction_candlesticks_file)["c"].to_numpy()
    rows = len(close)
    assert data.sizes["train_size"] == int(rows * config.train_split) == config.test_ds_start_index
    assert data.sizes["train_size"] + data.sizes["test_size"] == rows - 16 - 4
    assert data.summary["count"] == rows and 0 < data.summary["min"] <= data.summary["max"] == 1.0
    np.testing.assert_array_equal(data.test_last_x, close[config.test_ds_start_index + 15:rows - 5])


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).filter(lambda v: v == 0 or abs(v) > 1e-6)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(finite, finite), min_size=1, max_size=20))
def test_pct_changes_equal_scalar_pct_change(pairs: list[tuple[float, float]]) -> None:
    old = np.array([p[0] for p in pairs] + [0.0])
    new = np.array([p[1] for p in pairs] + [5.0])
    expected = [pct_change(a, b) for a, b in zip(old, new)]
    assert pct_changes(old, new).tolist() == expected


def scalar_feature(change: float) -> float:
    """SEMANTICS §3 last bullet, one value at a time."""
    magnitude = abs(change)
    if magnitude < 0.01:
        return 0.0
    magnitude = min(magnitude, 1.0)
    scaled = (magnitude - 0.01) / 0.99
    return round_to(scaled if change > 0 else -scaled, 6)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(min_value=-150, max_value=150, allow_nan=False), min_size=1, max_size=30))
def test_features_equal_the_scalar_rule_and_stay_in_bounds(raw: list[float]) -> None:
    changes = np.round(np.array(raw), 2)
    got = features_from_changes(changes)
    assert got.tolist() == [scalar_feature(c) for c in changes]
    assert np.all(np.abs(got) <= 1)


def test_feature_edges() -> None:
    got = features_from_changes(np.array([0.0, 0.009, 0.01, -0.01, 0.5, 1.0, 2.5, -7.0]))
    assert got.tolist() == [0.0, 0.0, 0.0, 0.0, round_to(0.49 / 0.99, 6), 1.0, 1.0, -1.0]


def test_checkpoint_keeps_the_best_weights_of_an_earlier_epoch(tmp_path) -> None:
    from epoch_builder.regressions.training import Checkpoint, _read_npz, _unpack

    checkpoint = Checkpoint(tmp_path / "ckpt")
    checkpoint.lock()
    state = {"id": "M", "epoch": 1, "history": {"loss": [0.5]}, "best": 0.4, "wait": 0}
    best = [np.full((2, 2), 1.0, np.float32)]
    checkpoint.save(state, best, [np.array(1)], best)
    state.update(epoch=2, history={"loss": [0.5, float("nan")]}, best=float("inf"), wait=1)
    checkpoint.save(state, [np.zeros((2, 2), np.float32)], [np.array(2)], None)  # no new best this epoch
    saved = checkpoint.load()
    assert saved["epoch"] == 2 and saved["best_file"] == "best_e1.npz" and saved["weights_file"] == "weights_e2.npz"
    assert saved["history"]["loss"] == [0.5, None] and saved["best"] is None
    assert sorted(p.name for p in checkpoint.dir.iterdir() if not p.name.startswith(".")) == [
        "best_e1.npz", "state.json", "weights_e2.npz"]
    np.testing.assert_array_equal(_unpack("w", _read_npz(checkpoint.dir / "best_e1.npz"))[0], best[0])
    with pytest.raises(EpochBuilderError, match="being trained by another process"):
        Checkpoint(tmp_path / "ckpt").lock()
    checkpoint.remove()
    assert not (tmp_path / "ckpt").exists()
