"""`candlesticks import`: sources -> validated bundle in ``candlesticks/``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from epoch_builder import candles
from epoch_builder.errors import EpochBuilderError
from epoch_builder.storage import atomic_write_json
from epoch_builder.workspace import Workspace

INTERVAL_RANGE = (2, 1440)


def import_candlesticks(
    ws: Workspace,
    sources: list[Path],
    *,
    interval_minutes: int = 30,
    fill_gaps: bool = False,
    export_csv: bool = False,
    log=print,
) -> dict[str, Any]:
    low, high = INTERVAL_RANGE
    if not (low <= interval_minutes <= high) or 1440 % interval_minutes and interval_minutes % 60:
        raise EpochBuilderError(
            f"parameter interval={interval_minutes} is invalid: allowed {low}..{high} minutes dividing a day"
        )
    if ws.epoch_config_file.exists():
        raise EpochBuilderError(
            f"{ws.epoch_config_file}: an epoch is active; importing would replace its candlesticks "
            "(export it or remove config/epoch.json first)"
        )
    started = time.perf_counter()
    df = candles.merge_sources(sources)
    candles.validate_prices(df, sources)
    gaps = candles.find_gaps(df["ot"].to_numpy())
    if gaps.count:
        if not fill_gaps:
            raise EpochBuilderError(
                f"{len(df)} candles have {gaps.describe()}; rerun with --fill-gaps to fill them "
                "(a candle at the previous close, zero volume)"
            )
        log(f"filling {gaps.describe()}")
        df = candles.fill_gaps(df)
    minute, prediction = candles.resample(df, interval_minutes)
    candles.check_series(minute, 1, "1m candles")
    candles.check_series(prediction, interval_minutes, f"{interval_minutes}m candles")

    candles.write_candles(ws.candlesticks_file, minute)
    candles.write_candles(ws.prediction_candlesticks_file, prediction)
    ws.normalized_prediction_candlesticks_file.unlink(missing_ok=True)  # belongs to an epoch, not to an import
    if export_csv:
        candles.export_csv(ws.candlesticks_dir / "candlesticks.csv", minute)
        candles.export_csv(ws.candlesticks_dir / "prediction_candlesticks.csv", prediction)
    summary = {
        "sources": [str(Path(s).resolve()) for s in sources],
        "interval_minutes": interval_minutes,
        "candles": len(minute),
        "prediction_candles": len(prediction),
        "first_ot": int(minute["ot"].iloc[0]),
        "last_ct": int(minute["ct"].iloc[-1]),
        "gaps": gaps.to_json(),
        "gaps_filled": bool(gaps.count and fill_gaps),
        "imported": int(time.time() * 1000),
    }
    atomic_write_json(ws.bundle_file, summary, indent=2)
    log(
        f"imported {len(minute)} 1m candles and {len(prediction)} {interval_minutes}m candles "
        f"({candles.iso(summary['first_ot'])} .. {candles.iso(summary['last_ct'])}); {gaps.describe()}; "
        f"{time.perf_counter() - started:.2f}s -> {ws.candlesticks_dir}"
    )
    return summary


def bundled_sample() -> Path:
    """The 21-day BTCUSDT 1m sample shipped in the package."""
    return Path(__file__).parent / "data" / "BTCUSDT_1m_20230301_20230321.csv.gz"
