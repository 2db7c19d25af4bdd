"""`epoch-builder candlesticks import SRC... | --sample`."""

from __future__ import annotations

import argparse
from pathlib import Path

from epoch_builder.commands import workspace_of


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser("candlesticks", help="import and inspect candlestick bundles")
    sub = parser.add_subparsers(dest="candlesticks_command", metavar="ACTION", required=True)

    imp = sub.add_parser(
        "import", parents=[common], help="import 1m candles (Binance zip/csv, generic OHLCV, ot..v CSV)",
        description="Merge, validate and resample 1-minute candles into candlesticks/ (Parquet).",
    )
    imp.add_argument("sources", nargs="*", type=Path, metavar="SRC",
                     help="candle files (.csv, .zip, .csv.gz); with --sample, none")
    imp.add_argument("--sample", action="store_true", help="import the bundled 21-day BTCUSDT sample")
    imp.add_argument("--interval", type=int, default=30, metavar="MINUTES",
                     help="prediction candle interval in minutes (default 30)")
    imp.add_argument("--fill-gaps", action=argparse.BooleanOptionalAction, default=False,
                     help="fill missing minutes with a candle at the previous close and zero volume "
                          "(default: refuse and report the gaps)")
    imp.add_argument("--export-csv", action="store_true",
                     help="also write the original's candlesticks.csv / prediction_candlesticks.csv")
    imp.set_defaults(func=start_import)


def start_import(args: argparse.Namespace) -> int:
    from epoch_builder.errors import EpochBuilderError
    from epoch_builder.importer import bundled_sample, import_candlesticks

    sources = list(args.sources)
    if args.sample:
        sources.append(bundled_sample())
    if not sources:
        raise EpochBuilderError("no source files: give SRC... or --sample")
    import_candlesticks(workspace_of(args), sources, interval_minutes=args.interval,
                        fill_gaps=args.fill_gaps, export_csv=args.export_csv)
    return 0
