"""`create-epoch` (SEMANTICS §2): cut the bundle to the epoch width, SMA +
normalise the prediction close, store the config, lay out the epoch tree."""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from epoch_builder import candles, output
from epoch_builder.epoch import (
    DAY_MS, PARAMS, EpochConfig, param_default, validate_epoch_id, validate_param, width_days_bounds,
)
from epoch_builder.errors import EpochBuilderError, UsageError
from epoch_builder.bundle import commit_bundle, workspace_lock
from epoch_builder.storage import atomic_write_json, atomic_write_text, disk_full_message, is_disk_full, read_json
from epoch_builder.workspace import EpochPaths, Workspace


def set_seeds(seed: int) -> None:
    """Python, NumPy and (when loaded) TensorFlow/Keras from the epoch seed."""
    import os
    import sys

    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    if "keras" in sys.modules or "tensorflow" in sys.modules:
        import keras

        keras.utils.set_random_seed(seed)


def normalise(values: np.ndarray) -> np.ndarray:
    """Min-max to (0, 1]: the lowest value takes the second lowest's place so none is 0."""
    low, high = float(values.min()), float(values.max())
    if high == low:
        raise EpochBuilderError("the SMA is flat over the epoch: cannot normalise")
    scaled = (values - low) / (high - low)
    positive = scaled[scaled > 0]
    scaled[scaled == 0] = positive.min()
    return scaled


def normalise_expanding(values: np.ndarray) -> np.ndarray:
    """Leak-free variant: row i is scaled by the min/max of rows 0..i only, so a
    value never depends on later candles. A new minimum (0) takes the smallest
    positive value seen so far; the first row (no range yet) is 1."""
    low = np.minimum.accumulate(values)
    high = np.maximum.accumulate(values)
    span = high - low
    scaled = np.divide(values - low, span, out=np.ones_like(values), where=span > 0)
    positive = np.where(scaled > 0, scaled, np.inf)
    smallest_so_far = np.minimum.accumulate(positive)
    zero = scaled == 0
    scaled[zero] = np.where(np.isfinite(smallest_so_far[zero]), smallest_so_far[zero], 1.0)
    return scaled


NORMALIZATIONS = ("global", "expanding")


def resolve_params(raw: dict[str, Any], profile: str) -> dict[str, Any]:
    """Defaults for the profile, then every parameter validated (errors name it and its range)."""
    values = {}
    for param in PARAMS:
        value = raw.get(param.name)
        values[param.name] = validate_param(param.name, param_default(param, profile) if value is None else value, profile)
    return values


CUT_FOR_EPOCH = "cut_for_epoch"  # bundle.json key: the config of the epoch the bundle was cut for


def create_epoch(
    ws: Workspace,
    epoch_id: str,
    *,
    profile: str = "default",
    width_unit: str = "months",
    normalization: str = "global",
    oos_days: int = 0,
    log: Callable[[str], None] = output.info,
    **raw_params: Any,
) -> EpochConfig:
    validate_epoch_id(epoch_id, UsageError)
    if profile not in ("default", "small"):
        raise UsageError(f"profile {profile!r} is unknown: allowed default, small")
    if width_unit not in ("months", "days"):
        raise UsageError(f"epoch width unit {width_unit!r} is unknown: allowed months, days")
    if width_unit == "days" and raw_params.get("epoch_width") is None:
        raise UsageError("--width-days needs a value")
    if normalization not in NORMALIZATIONS:
        raise UsageError(f"normalization {normalization!r} is unknown: allowed {', '.join(NORMALIZATIONS)}")
    params = resolve_params(raw_params, profile)
    if width_unit == "days":  # the range in days is the months range x 30 (small profile: from 1 day)
        width = int(raw_params["epoch_width"])
        low, high = width_days_bounds(profile)
        if not (low <= width <= high):
            raise UsageError(f"parameter epoch_width={width} days is out of range: allowed {low}..{high}")
        params["epoch_width"] = width
    if params["validation_split"] >= params["train_split"]:
        raise UsageError("parameter validation_split must be smaller than train_split")

    if not ws.root.is_dir():
        raise EpochBuilderError(f"{ws.bundle_file}: no candlestick bundle in {ws.candlesticks_dir} "
                                "(run `epoch-builder candlesticks import`)")
    # From the check that no epoch is active to config/epoch.json written, the bundle read is the bundle cut:
    # an import cannot switch it in between.
    with workspace_lock(ws.root):
        return _create_locked(ws, epoch_id, profile, width_unit, normalization, oos_days, params, raw_params, log)


def _create_locked(ws: Workspace, epoch_id: str, profile: str, width_unit: str, normalization: str, oos_days: int,
                   params: dict[str, Any], raw_params: dict[str, Any], log: Callable[[str], None]) -> EpochConfig:
    import pandas as pd

    if ws.epoch_config_file.exists():
        previous = read_json(ws.epoch_config_file).get("id", "?")
        raise EpochBuilderError(
            f"{ws.epoch_config_file}: the previous epoch {previous} is still present; export it "
            "(export-epoch) or remove config/epoch.json first"
        )
    paths = EpochPaths(ws.root / epoch_id)
    if not ws.bundle_file.exists():
        raise EpochBuilderError(
            f"{ws.bundle_file}: no candlestick bundle in {ws.candlesticks_dir} (run `epoch-builder candlesticks import`)"
        )
    bundle = read_json(ws.bundle_file)
    cut_for = bundle.get(CUT_FOR_EPOCH)
    if isinstance(cut_for, dict):  # an earlier create-epoch was killed after cutting the bundle
        return _finish_interrupted(ws, paths, cut_for, log)
    if paths.dir.exists() and not _is_leftover(paths):
        raise EpochBuilderError(f"{paths.dir}: epoch directory already exists")
    interval = int(bundle["interval_minutes"])
    minute = candles.read_candles(ws.candlesticks_file)
    prediction = candles.read_candles(ws.prediction_candlesticks_file)

    config = EpochConfig(id=epoch_id, epoch_width_unit=width_unit, profile=profile,
                         prediction_interval_minutes=interval, normalization=normalization, **params)
    # The epoch: the last `width` of the data, on whole prediction candles.
    end = int(prediction["ct"].iloc[-1]) + 1
    start = end - config.width_ms
    available_days = (end - int(prediction["ot"].iloc[0])) / 86_400_000
    if start < int(prediction["ot"].iloc[0]):
        raise EpochBuilderError(
            f"not enough candles: the epoch width needs {config.width_ms / 86_400_000:.0f} days, the bundle has "
            f"{available_days:.1f} days (lower epoch_width{'' if profile == 'small' else ' or use --profile small --width-days N'})"
        )
    prediction = prediction[prediction["ot"] >= start].reset_index(drop=True)
    sma = prediction["c"].rolling(window=config.sma_window_size).mean().to_numpy()
    # Rows without a full SMA window are dropped from both series so row i of the
    # prediction and normalised series is the same candle.
    keep = config.sma_window_size - 1
    prediction = prediction.iloc[keep:].reset_index(drop=True)
    sma = sma[keep:]
    rows = len(prediction)
    need = config.regression_lookback + config.regression_predictions
    test_start = int(rows * config.train_split)
    if rows - test_start < need + 1 or test_start < need + 1:
        raise EpochBuilderError(
            f"not enough candles: {rows} prediction candles after the SMA window; train and test each need more than "
            f"lookback + predictions = {need} (widen the epoch or lower regression_lookback / regression_predictions)"
        )
    normalized = (normalise if normalization == "global" else normalise_expanding)(sma.astype(np.float64))
    minute = minute[(minute["ot"] >= int(prediction["ot"].iloc[0])) & (minute["ot"] <= int(prediction["ot"].iloc[-1]) + interval * 60_000 - 1)]
    minute = minute.reset_index(drop=True)

    config.start, config.end = int(minute["ot"].iloc[0]), int(minute["ct"].iloc[-1])
    config.highest_price_sma, config.lowest_price_sma = float(sma.max()), float(sma.min())
    config.prediction_candles = rows
    config.test_ds_start_index = test_start
    config.test_ds_start = int(prediction["ot"].iloc[test_start])
    config.test_ds_end = int(prediction["ct"].iloc[-1])
    config.oos_days, config.oos_start = out_of_sample_window(
        prediction["ot"].to_numpy(dtype=np.int64), test_start, config.test_ds_end, config.regression_lookback,
        config.regression_predictions, oos_days)
    config.created = int(time.time() * 1000)
    set_seeds(config.seed)

    # Directory tree and receipt, then the cut bundle as a whole (it records the config, so a kill
    # before the last step is finished by a rerun), then config/epoch.json: it marks the epoch created.
    def write(directory: Path) -> None:
        candles.write_candles(directory / ws.candlesticks_file.name, minute)
        candles.write_candles(directory / ws.prediction_candlesticks_file.name, prediction)
        candles.write_candles(directory / ws.normalized_prediction_candlesticks_file.name,
                              pd.DataFrame({"ot": prediction["ot"], "ct": prediction["ct"], "c": normalized}))
        atomic_write_json(directory / ws.bundle_file.name, {**bundle, CUT_FOR_EPOCH: config.to_json()}, indent=2)

    made_here = not paths.dir.exists()  # a leftover skeleton of an earlier attempt is reused, not removed
    try:
        for sub in paths.subdirs():
            sub.mkdir(parents=True, exist_ok=True)
        atomic_write_text(paths.receipt_file, render_receipt(config, len(minute)))
        commit_bundle(ws.root, write)
    except BaseException as exc:  # the bundle was not cut (its switch is all or nothing): no skeleton stays
        if made_here:
            shutil.rmtree(paths.dir, ignore_errors=True)
        if is_disk_full(exc):
            raise EpochBuilderError(disk_full_message(getattr(exc, "filename", None) or paths.dir)) from None
        raise
    config.save(ws.epoch_config_file)
    atomic_write_json(ws.bundle_file, bundle, indent=2)  # done: nothing left to finish
    log(f"epoch {config.id} created; receipt in {paths.receipt_file}")
    return config


def out_of_sample_window(prediction_ot: np.ndarray, test_start: int, test_end_ms: int, lookback: int,
                         predictions: int, days: int) -> tuple[int, int]:
    """(oos_days, oos_start): the last ``days`` days of the test dataset, from the first prediction
    candle that opens inside them; (0, 0) for none.

    The in-sample part keeps more than lookback + predictions prediction candles (so it has
    windows to sweep); the window holds at least one prediction candle with a feature (the
    last ``predictions`` candles have none)."""
    if isinstance(days, bool) or not isinstance(days, int) or days < 0:
        raise UsageError(f"parameter oos_days={days!r} must be an integer >= 0 (0: no out-of-sample window)")
    if days == 0:
        return 0, 0
    rows = len(prediction_ot)
    in_sample_rows = lookback + predictions + 1
    last_with_feature = rows - predictions - 1
    most = 0
    if test_start + in_sample_rows <= last_with_feature:
        most = (test_end_ms + 1 - int(prediction_ot[test_start + in_sample_rows])) // DAY_MS
    first = int(np.searchsorted(prediction_ot, test_end_ms + 1 - days * DAY_MS, side="left"))
    if days > most or first < test_start + in_sample_rows or first > last_with_feature:
        test_days = (test_end_ms + 1 - int(prediction_ot[test_start])) / DAY_MS
        allowed = f"allowed 1..{most} for this epoch" if most >= 1 else "this epoch's test dataset is too short for one"
        raise UsageError(f"parameter oos_days={days}: the test dataset has {test_days:.1f} days and its in-sample part "
                         f"needs more than lookback + predictions = {lookback + predictions} prediction candles; "
                         f"{allowed}")
    return days, int(prediction_ot[first])


def _is_leftover(paths: EpochPaths) -> bool:
    """An epoch directory of a create-epoch killed before it cut the bundle: empty folders and the receipt."""
    return all(p.is_dir() or p == paths.receipt_file for p in paths.dir.rglob("*"))


def _finish_interrupted(ws: Workspace, paths: EpochPaths, cut_for: dict[str, Any],
                        log: Callable[[str], None]) -> EpochConfig:
    if cut_for.get("id") != paths.id:
        raise EpochBuilderError(
            f"{ws.bundle_file}: the bundle was cut for epoch {cut_for.get('id')} by an interrupted create-epoch; "
            f"rerun `create-epoch --id {cut_for.get('id')}` to finish it, or import the candles again")
    config = EpochConfig.from_json(cut_for, str(ws.bundle_file))
    for sub in paths.subdirs():
        sub.mkdir(parents=True, exist_ok=True)
    if not paths.receipt_file.exists():
        atomic_write_text(paths.receipt_file, render_receipt(config, len(candles.read_candles(ws.candlesticks_file))))
    config.save(ws.epoch_config_file)
    atomic_write_json(ws.bundle_file, {k: v for k, v in read_json(ws.bundle_file).items() if k != CUT_FOR_EPOCH},
                      indent=2)
    log(f"epoch {config.id}: finished an interrupted create-epoch (the bundle was already cut); "
        "its parameters are the interrupted run's")
    return config


def render_receipt(config: EpochConfig, minute_rows: int) -> str:
    iso = candles.iso
    lines = [
        f"{config.id} receipt",
        f"created          {iso(config.created)}",
        f"profile          {config.profile}",
        f"range            {iso(config.start)} .. {iso(config.end)} ({config.epoch_width} {config.epoch_width_unit})",
        f"1m candles       {minute_rows}",
        f"{config.prediction_interval_minutes}m candles      {config.prediction_candles}",
        f"test dataset     {iso(config.test_ds_start)} .. {iso(config.test_ds_end)} (from row {config.test_ds_start_index})",
        f"price SMA        {config.lowest_price_sma:.2f} .. {config.highest_price_sma:.2f} (window {config.sma_window_size})",
        f"normalization    {config.normalization}",
        "out-of-sample    " + (f"{iso(config.oos_start)} .. {iso(config.test_ds_end)} (last {config.oos_days} day(s) of the "
                                "test dataset, never seen by find-profitable-configs)" if config.has_oos else "none"),
        "",
    ]
    for param in PARAMS:
        lines.append(f"{param.name:<32}{getattr(config, param.name)}")
    return "\n".join(lines) + "\n"
