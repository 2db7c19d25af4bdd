"""`epoch-builder candlesticks import SRC... | --sample`."""

from __future__ import annotations

import argparse
from pathlib import Path

from epoch_builder.commands import add_json_option, workspace_of


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
    add_json_option(imp, "the bundle's report (bundle.json)")
    imp.set_defaults(func=start_import)


def start_import(args: argparse.Namespace) -> int:
    from epoch_builder import output
    from epoch_builder.candles import iso
    from epoch_builder.errors import UsageError
    from epoch_builder.importer import bundled_sample, import_candlesticks

    sources = list(args.sources)
    if args.sample:
        sources.append(bundled_sample())
    if not sources:
        raise UsageError("no source files: give SRC... or --sample")
    ws = workspace_of(args)
    summary = import_candlesticks(ws, sources, interval_minutes=args.interval, fill_gaps=args.fill_gaps,
                                  export_csv=args.export_csv)
    if args.json:
        output.result_json(summary)
    else:
        output.result(f"imported {summary['candles']:,} 1m candles and {summary['prediction_candles']:,} "
                      f"{summary['interval_minutes']}m candles ({iso(summary['first_ot'])} .. {iso(summary['last_ct'])}) "
                      f"-> {ws.candlesticks_dir}")
    return 0
