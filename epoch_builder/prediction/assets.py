"""Prediction-model assets on the test dataset (SEMANTICS §5).

Files under ``<EPOCH>/prediction_models/assets/``:

* ``features.json`` — ``{regression_id: [feature per test window]}`` (§3 windows
  over the test range: window ``w`` sees test rows ``[w, w + lookback)``).
* ``labels.json`` — ``{"<pcr>": [1 | -1, ...]}``; label ``w`` belongs to test
  prediction candle ``lookback + w`` (same index as feature ``w``). The key is
  the pcr written as ``f"{pcr:g}"`` ("3", "2.5"), as the original's ``str(pcr)``.
* ``lookback_indexer.parquet`` — the compact indexer: one row per 1-minute
  candle from the simulation start (the ot of test prediction candle
  ``lookback``) to the end of the epoch, columns ``ot`` (int64 ms) and ``k``
  (int32: index of the last test prediction candle with ot <= that ot, minus
  lookback). The original stored the same mapping as a ``{ot: k}`` JSON dict.
* ``assets.json`` — metadata: a random ``assets_id`` (journals of the sweep
  refer to it), regression ids, pcr list, sizes, times.

Everything is vectorised: labels come from the compiled first-touch search of
``touch.py`` (the same one the backtest's exits use).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from epoch_builder import events, output
from epoch_builder.errors import EpochBuilderError
from epoch_builder.prediction.touch import first_touches
from epoch_builder.storage import atomic_write_json, atomic_write_with, read_json
from epoch_builder.workspace import Workspace

if TYPE_CHECKING:  # pragma: no cover
    from epoch_builder.prediction.engine import BacktestData

FEATURES_FILE = "features.json"
LABELS_FILE = "labels.json"
INDEXER_FILE = "lookback_indexer.parquet"
META_FILE = "assets.json"


def pcr_key(pcr: float) -> str:
    """The labels.json key of a pcr: ``3`` -> "3", ``2.5`` -> "2.5"."""
    return f"{float(pcr):g}"


# --- labels -------------------------------------------------------------------------


def compute_labels(one_ot: np.ndarray, one_h: np.ndarray, one_l: np.ndarray,
                   pred_ot: np.ndarray, pred_o: np.ndarray, pcr: float) -> np.ndarray:
    """§5 labels for every given prediction candle (in order), int8 1 / -1.

    A candle's outcome is decided by the 1-minute candles with ot strictly after
    its ot; up/down prices are ``alter(open, ±pcr)`` (NumPy 2-decimal rounding).
    """
    pred_o = np.asarray(pred_o, dtype=np.float64)
    upper = np.round(pred_o * (1 + pcr / 100), 2)
    lower = np.round(pred_o * (1 + -pcr / 100), 2)
    starts = np.searchsorted(np.asarray(one_ot), np.asarray(pred_ot), side="right").astype(np.int64)
    high = np.ascontiguousarray(one_h, dtype=np.float64)
    low = np.ascontiguousarray(one_l, dtype=np.float64)
    touches = first_touches(high, low, starts, upper, lower, high.size)
    # labels stop at the first candle whose outcome the candles do not decide yet
    decided = int(np.argmax(touches == high.size)) if np.any(touches == high.size) else touches.size
    touched = touches[:decided]
    return np.where(high[touched] >= upper[:decided], 1, -1).astype(np.int8)  # the high is tested first


# --- the test range ------------------------------------------------------------------


@dataclass
class TestRange:
    """The candles the assets are computed from."""

    lookback: int
    predictions: int
    test_ot: np.ndarray  # test prediction candles
    test_o: np.ndarray
    normalized_close: np.ndarray  # normalised SMA close of the test rows
    one: dict[str, np.ndarray]  # 1m candles from the simulation start: ot, ct, o, h, l, k (§5 indexer)

    @property
    def n_windows(self) -> int:
        return max(len(self.test_ot) - self.predictions - self.lookback, 0)

    @property
    def simulation_start(self) -> int:
        return int(self.test_ot[self.lookback])


def load_test_range(ws: Workspace) -> TestRange:
    from epoch_builder.candles import read_candles
    from epoch_builder.prediction.engine import simulation_candles

    config = ws.load_epoch_config()
    pred = read_candles(ws.prediction_candlesticks_file)
    norm = read_candles(ws.normalized_prediction_candlesticks_file)
    if len(pred) != len(norm) or not np.array_equal(pred["ot"].to_numpy(), norm["ot"].to_numpy()):
        raise EpochBuilderError(
            f"{ws.normalized_prediction_candlesticks_file}: rows are not aligned with {ws.prediction_candlesticks_file} "
            "(recreate the epoch)")
    start = config.test_ds_start_index
    lookback, predictions = config.regression_lookback, config.regression_predictions
    if not 0 <= start < len(pred) or len(pred) - start <= lookback + predictions:
        raise EpochBuilderError(
            f"{ws.epoch_config_file}: test_ds_start_index {start} leaves {len(pred) - start} test prediction candles; "
            f"need more than lookback + predictions = {lookback + predictions}")
    test = pred.iloc[start:]
    test_ot = test["ot"].to_numpy(dtype=np.int64)
    one = simulation_candles(read_candles(ws.candlesticks_file), test_ot, lookback)
    return TestRange(
        lookback=lookback, predictions=predictions, test_ot=test_ot,
        test_o=test["o"].to_numpy(dtype=np.float64),
        normalized_close=norm["c"].to_numpy(dtype=np.float64)[start:],
        one=one,
    )


def range_labels(rng: TestRange, pcr: float) -> np.ndarray:
    """Labels of the test prediction candles from ``lookback`` on."""
    lb = rng.lookback
    return compute_labels(rng.one["ot"], rng.one["h"], rng.one["l"], rng.test_ot[lb:], rng.test_o[lb:], pcr)


def range_indexer(rng: TestRange) -> np.ndarray:
    """§5 lookback indexer of the simulation's 1-minute candles."""
    return rng.one["k"]


# --- writing and reading -------------------------------------------------------------

FeatureSource = Callable[[str, np.ndarray], Sequence[float]]


def write_assets(ws: Workspace, regression_ids: Sequence[str], pcrs: Sequence[float],
                 feature_of: FeatureSource, log: Callable[[str], None] = output.info) -> dict[str, Any]:
    """Compute and write every asset; ``feature_of(regression_id, normalized_close)``
    returns that regression's features for the test windows. Returns the metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = ws.epoch()
    rng = load_test_range(ws)
    started = time.monotonic()
    features: dict[str, list[float]] = {}
    with output.progress_bars() as bars:
        bar = bars.add("features per regression", len(regression_ids))
        for number, rid in enumerate(regression_ids, 1):
            values = np.asarray(feature_of(rid, rng.normalized_close), dtype=np.float64)
            if values.ndim != 1 or values.size != rng.n_windows:
                raise EpochBuilderError(
                    f"regression {rid}: produced {values.size} features for the test range, expected {rng.n_windows} "
                    "(test windows per SEMANTICS §3)")
            if not np.all(np.isfinite(values)) or np.any(np.abs(values) > 1):
                raise EpochBuilderError(f"regression {rid}: features must be finite numbers in [-1, 1]")
            features[rid] = values.tolist()
            log(f"features {number}/{len(regression_ids)}: {rid}")
            bar.advance(info=rid)
            events.emit("initialize-prediction-models", number, len(regression_ids), regression=rid)
    labels = {pcr_key(pcr): range_labels(rng, pcr).tolist() for pcr in pcrs}
    k = range_indexer(rng)
    assets_dir = paths.assets_dir
    atomic_write_json(assets_dir / FEATURES_FILE, features)
    atomic_write_json(assets_dir / LABELS_FILE, labels)
    table = pa.table({"ot": pa.array(rng.one["ot"], pa.int64()), "k": pa.array(k, pa.int32())})
    atomic_write_with(assets_dir / INDEXER_FILE, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
    meta = {
        "assets_id": uuid.uuid4().hex,
        "created": int(time.time() * 1000),
        "regression_ids": list(regression_ids),
        "pcr": [float(p) for p in pcrs],
        "features": rng.n_windows,
        "labels": {key: len(v) for key, v in labels.items()},
        "lookback_indexer_rows": int(k.size),
        "simulation_start": rng.simulation_start,
        "seconds": round(time.monotonic() - started, 2),
    }
    atomic_write_json(assets_dir / META_FILE, meta, indent=2)  # last: marks the assets complete
    return meta


def read_meta(ws: Workspace) -> dict[str, Any]:
    path = ws.epoch().assets_dir / META_FILE
    if not path.exists():
        raise EpochBuilderError(f"{path}: prediction-model assets are missing (run `epoch-builder initialize-prediction-models`)")
    return read_json(path)


IN_SAMPLE = "in-sample"
OUT_OF_SAMPLE = "out-of-sample"


def load_backtest_data(ws: Workspace, part: str = IN_SAMPLE) -> tuple[BacktestData, dict[str, Any]]:
    """The engine's inputs from the assets and the 1-minute candles; checks they still match.

    With an out-of-sample window (``create-epoch --oos-days``), ``part`` picks a side of it:

    * ``IN_SAMPLE`` (what the sweep and the build rank on): the candles before the window,
      the features of the windows whose prediction candle opens before it, and labels
      recomputed from those candles alone (a label decided inside the window is not
      known yet). Nothing at or after ``oos_start`` is read into it.
    * ``OUT_OF_SAMPLE``: the candles of the window, every feature (the first windows'
      signals look back at earlier sums, as they would live).

    Without a window both are the whole test range."""
    if part not in (IN_SAMPLE, OUT_OF_SAMPLE):
        raise ValueError(f"part must be {IN_SAMPLE!r} or {OUT_OF_SAMPLE!r}, got {part!r}")
    import pyarrow as pa
    import pyarrow.parquet as pq

    from epoch_builder.candles import read_candles
    from epoch_builder.prediction.engine import BacktestData

    config = ws.load_epoch_config()
    assets_dir = ws.epoch().assets_dir
    meta = read_meta(ws)
    features = read_json(assets_dir / FEATURES_FILE)
    raw_labels = read_json(assets_dir / LABELS_FILE)
    if not isinstance(features, dict) or not features:
        raise EpochBuilderError(f"{assets_dir / FEATURES_FILE}: expected a non-empty object {{regression_id: [floats]}}")
    if not isinstance(raw_labels, dict) or not raw_labels:
        raise EpochBuilderError(f"{assets_dir / LABELS_FILE}: expected a non-empty object {{pcr: [1|-1]}}")
    try:
        labels = {float(key): values for key, values in raw_labels.items()}
    except ValueError:
        raise EpochBuilderError(f"{assets_dir / LABELS_FILE}: keys must be pcr numbers, got {sorted(raw_labels)}") from None
    _check_against_meta(assets_dir, meta, features, raw_labels)
    indexer_path = assets_dir / INDEXER_FILE
    try:
        indexer = pq.read_table(indexer_path)
        ot, k = indexer.column("ot").to_numpy(), indexer.column("k").to_numpy()
    except (OSError, ValueError, KeyError, pa.ArrowException) as exc:  # missing, truncated, garbled
        raise EpochBuilderError(f"{indexer_path}: cannot read the lookback indexer ({str(exc).splitlines()[0]}); "
                                "rerun initialize-prediction-models --force") from None
    if ot.size != meta.get("lookback_indexer_rows", ot.size):
        raise EpochBuilderError(f"{indexer_path}: {ot.size} rows, {META_FILE} says {meta['lookback_indexer_rows']}; "
                                "rerun initialize-prediction-models --force")
    one = read_candles(ws.candlesticks_file)
    one = one[one["ot"].to_numpy() >= (int(ot[0]) if ot.size else 0)]
    if len(one) != ot.size or not np.array_equal(one["ot"].to_numpy(), ot):
        raise EpochBuilderError(
            f"{indexer_path}: does not match {ws.candlesticks_file} (the candles changed; rerun initialize-prediction-models)")
    columns = {name: one[name].to_numpy() for name in ("ct", "o", "h", "l")}
    columns["ot"], columns["k"] = ot, k.astype(np.int64)
    if config.has_oos:
        columns, features, labels = _one_side(ws, config, columns, features, labels, part)
    data = BacktestData.from_arrays(
        ot=columns["ot"], ct=columns["ct"], o=columns["o"], h=columns["h"], l=columns["l"],
        k=columns["k"], features=features, labels=labels,
        position_size=config.position_size, leverage=config.leverage, exchange_fee=config.exchange_fee,
        idle_minutes=config.idle_minutes_on_position_close,
    )
    return data, meta


def _one_side(ws: Workspace, config: Any, columns: dict[str, np.ndarray], features: dict[str, list[float]],
              labels: dict[float, Any], part: str) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[float, Any]]:
    """The candles, features and labels of one side of the out-of-sample window (see load_backtest_data)."""
    from epoch_builder.candles import read_candles

    cut = int(np.searchsorted(columns["ot"], config.oos_start, side="left"))
    if part == OUT_OF_SAMPLE:
        return {name: values[cut:] for name, values in columns.items()}, features, labels
    inside = {name: values[:cut] for name, values in columns.items()}
    windows = int(inside["k"][-1]) + 1 if cut else 0  # k: the last prediction candle opened at or before each candle
    pred = read_candles(ws.prediction_candlesticks_file)
    first = config.test_ds_start_index + config.regression_lookback  # label w: test prediction candle lookback + w
    pred_ot = pred["ot"].to_numpy(dtype=np.int64)[first:first + windows]
    pred_o = pred["o"].to_numpy(dtype=np.float64)[first:first + windows]
    in_labels = {pcr: compute_labels(inside["ot"], inside["h"], inside["l"], pred_ot, pred_o, pcr) for pcr in labels}
    return inside, {rid: values[:windows] for rid, values in features.items()}, in_labels


def _check_against_meta(assets_dir: Any, meta: dict[str, Any], features: dict[str, Any],
                        labels: dict[str, Any]) -> None:
    """features.json and labels.json must be the ones assets.json describes (a cut or swapped file
    would silently change every backtest)."""
    rerun = "rerun initialize-prediction-models --force"
    expected_ids = meta.get("regression_ids")
    if expected_ids is not None and list(features) != list(expected_ids):
        raise EpochBuilderError(f"{assets_dir / FEATURES_FILE}: regressions differ from {META_FILE}'s; {rerun}")
    for rid, values in features.items():
        if not isinstance(values, list) or len(values) != meta.get("features", len(values)):
            count = len(values) if isinstance(values, list) else "no"
            raise EpochBuilderError(f"{assets_dir / FEATURES_FILE}: regression {rid} has {count} features, "
                                    f"{META_FILE} says {meta.get('features')}; {rerun}")
    for key, count in (meta.get("labels") or {}).items():
        if not isinstance(labels.get(key), list) or len(labels[key]) != count:
            got = len(labels[key]) if isinstance(labels.get(key), list) else "no"
            raise EpochBuilderError(f"{assets_dir / LABELS_FILE}: pcr {key} has {got} labels, {META_FILE} says "
                                    f"{count}; {rerun}")


def assets_ready(ws: Workspace) -> bool:
    return (ws.epoch().assets_dir / META_FILE).exists()
