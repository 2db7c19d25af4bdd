"""`candlesticks import`: sources -> validated bundle in ``candlesticks/``.

The new bundle is committed as a whole, under the workspace lock, by ``epoch_builder.bundle`` (which also
finishes a switch a crash cut short). This module stays light to import (no numpy/pandas at module level).
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable

from epoch_builder import output
from epoch_builder.errors import EpochBuilderError, UsageError
from epoch_builder.bundle import commit_bundle, workspace_lock
from epoch_builder.storage import atomic_write_json
from epoch_builder.workspace import BUNDLE_FILE, CANDLESTICKS_DIR, Workspace

INTERVAL_RANGE = (2, 1440)
CANDLE_SUFFIXES = (".csv", ".csv.gz", ".zip")  # what a directory given as a source contributes
CHECKSUM_SUFFIX = ".checksum"  # Binance's <zip>.CHECKSUM beside a zip: checked, never read as candles


def validate_interval(interval_minutes: int) -> int:
    """The prediction candle interval: 2..1440 minutes, dividing a day (the CLI and the console check it here)."""
    low, high = INTERVAL_RANGE
    if not (low <= interval_minutes <= high) or 1440 % interval_minutes and interval_minutes % 60:
        raise UsageError(
            f"parameter interval={interval_minutes} is invalid: allowed {low}..{high} minutes dividing a day"
        )
    return interval_minutes


def import_candlesticks(
    ws: Workspace,
    sources: list[Path],
    *,
    interval_minutes: int = 30,
    fill_gaps: bool = False,
    export_csv: bool = False,
    log: Callable[[str], None] = output.info,
) -> dict[str, Any]:
    validate_interval(interval_minutes)
    _refuse_if_epoch_active(ws)  # early, before minutes of reading; checked again under the lock below
    from epoch_builder import candles  # heavy (numpy, pandas): only when importing

    sources = expand_sources(sources)
    verified = verify_checksums(sources)
    if verified:
        log(f"{verified} file(s) match the SHA-256 of the .CHECKSUM beside them")
    with output.progress_bars() as bars:
        bar = bars.add("reading candles", len(sources) + 1)
        started = time.perf_counter()
        df = candles.merge_sources(sources, on_read=lambda path, rows: bar.advance(info=f"{rows:,} rows from {path.name}"))
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

        summary = {
            "sources": [str(Path(s).resolve()) for s in sources],
            "interval_minutes": interval_minutes,
            "candles": len(minute),
            "prediction_candles": len(prediction),
            "first_ot": int(minute["ot"].iloc[0]),
            "last_ct": int(minute["ct"].iloc[-1]),
            "gaps": gaps.to_json(),
            "gaps_filled": bool(gaps.count and fill_gaps),
            "export_csv": export_csv,
            "imported": int(time.time() * 1000),
        }

        def write(directory: Path) -> None:
            # The new bundle holds no normalized_prediction_candlesticks.parquet: that file belongs to an epoch.
            candles.write_candles(directory / ws.candlesticks_file.name, minute)
            candles.write_candles(directory / ws.prediction_candlesticks_file.name, prediction)
            if export_csv:
                candles.export_csv(directory / "candlesticks.csv", minute)
                candles.export_csv(directory / "prediction_candlesticks.csv", prediction)
            atomic_write_json(directory / BUNDLE_FILE, summary, indent=2)

        bar.update(description="writing the bundle")
        ws.root.mkdir(parents=True, exist_ok=True)
        with workspace_lock(ws.root):  # a create-epoch that began meanwhile has finished, or not started
            _refuse_if_epoch_active(ws)
            commit_bundle(ws.root, write)
        bar.advance()
    log(f"bundle written in {time.perf_counter() - started:.2f}s; {gaps.describe()}")
    return summary


def _refuse_if_epoch_active(ws: Workspace) -> None:
    if ws.epoch_config_file.exists():
        raise EpochBuilderError(
            f"{ws.epoch_config_file}: an epoch is active; importing would replace its candlesticks "
            "(export it or remove config/epoch.json first)"
        )


def expand_sources(sources: list[Path]) -> list[Path]:
    """The files to read: a directory stands for the candle files below it (.csv, .csv.gz, .zip, in
    time order, hidden ones and ``.part`` downloads left out); ``.CHECKSUM`` files are dropped."""
    files: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            found = sorted((path for path in source.rglob("*") if _is_candle_file(path, source)), key=_time_order)
            if not found:
                raise UsageError(f"{source}: no candle files ({', '.join(CANDLE_SUFFIXES)}) in the directory")
            files.extend(found)
        elif not source.name.lower().endswith(CHECKSUM_SUFFIX):
            files.append(source)
    return files


def _is_candle_file(path: Path, top: Path) -> bool:
    return (path.name.lower().endswith(CANDLE_SUFFIXES) and path.is_file()
            and not any(part.startswith(".") for part in path.relative_to(top).parts))


def _time_order(path: Path) -> tuple:
    """Binance names end in the period (``-2024-01.zip``, ``-2024-01-31.zip``): a month before its days."""
    periods = re.findall(r"(\d{4})-(\d{2})(?:-(\d{2}))?", path.name)
    if not periods:
        return (1, 0, 0, 0, str(path))
    year, month, day = periods[-1]
    return (0, int(year), int(month), int(day or 0), str(path))


def verify_checksums(files: list[Path]) -> int:
    """Check every file that has a ``.CHECKSUM`` beside it (a mismatch names the file); how many had one."""
    from epoch_builder.download import verify_beside

    return sum(verify_beside(Path(path)) for path in files)


def bundled_sample() -> Path:
    """The 21-day BTCUSDT 1m sample shipped in the package."""
    return Path(__file__).parent / "data" / "BTCUSDT_1m_20230301_20230321.csv.gz"
