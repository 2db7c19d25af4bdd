"""`epoch-builder candlesticks import SRC... | --sample` and `candlesticks download`."""

from __future__ import annotations

import argparse
from pathlib import Path

from epoch_builder.commands import add_json_option, workspace_of
from epoch_builder.download import DEFAULT_BASE_URL, MARKETS  # light: httpx is imported only when downloading


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser("candlesticks", help="import and inspect candlestick bundles")
    sub = parser.add_subparsers(dest="candlesticks_command", metavar="ACTION", required=True)

    imp = sub.add_parser(
        "import", parents=[common], help="import 1m candles (Binance zip/csv, generic OHLCV, ot..v CSV)",
        description="Merge, validate and resample 1-minute candles into candlesticks/ (Parquet).",
    )
    imp.add_argument("sources", nargs="*", type=Path, metavar="SRC",
                     help="candle files (.csv, .zip, .csv.gz) or directories holding them (read recursively, in "
                          "time order); a zip with a .CHECKSUM beside it is checked against it; with --sample, none")
    imp.add_argument("--sample", action="store_true", help="import the bundled 21-day BTCUSDT sample")
    add_import_options(imp)
    add_json_option(imp, "the bundle's report (bundle.json)")
    imp.set_defaults(func=start_import)

    down = sub.add_parser(
        "download", parents=[common], help="download Binance public-data 1m klines, SHA-256 verified",
        description="Download the 1m klines of --from..--to from Binance's public data (monthly files, and daily "
                    "files for the current month up to yesterday), check each against its .CHECKSUM and resume "
                    "where an earlier run stopped; files already verified are skipped.",
    )
    down.add_argument("--symbol", required=True, metavar="SYMBOL", help="trading pair, e.g. BTCUSDT")
    down.add_argument("--from", dest="first", required=True, metavar="YYYY-MM", help="first month, e.g. 2019-01")
    down.add_argument("--to", dest="last", metavar="YYYY-MM",
                      help="last month, at most the current one (default: the current month)")
    down.add_argument("--market", choices=tuple(MARKETS), default="spot",
                      help="spot, or um (USD-M futures) (default spot)")
    down.add_argument("--dir", type=Path, metavar="DIR",
                      help="download folder (default: <workspace>/downloads/<market>/<SYMBOL>/)")
    down.add_argument("--base-url", default=DEFAULT_BASE_URL, metavar="URL",
                      help=f"public-data server (default {DEFAULT_BASE_URL})")
    down.add_argument("--import", dest="do_import", action="store_true",
                      help="then import the downloaded files of --from..--to (as `candlesticks import`)")
    add_import_options(down, " (with --import)")
    add_json_option(down, "the download's summary (with --import, the bundle's report too)")
    down.set_defaults(func=start_download)


def add_import_options(parser: argparse.ArgumentParser, when: str = "") -> None:
    """The import's options, the same on `import` and `download --import`."""
    parser.add_argument("--interval", type=int, default=30, metavar="MINUTES",
                        help=f"prediction candle interval in minutes (default 30){when}")
    parser.add_argument("--fill-gaps", action=argparse.BooleanOptionalAction, default=False,
                        help="fill missing minutes with a candle at the previous close and zero volume "
                             f"(default: refuse and report the gaps){when}")
    parser.add_argument("--export-csv", action="store_true",
                        help=f"also write the original's candlesticks.csv / prediction_candlesticks.csv{when}")


def start_import(args: argparse.Namespace) -> int:
    from epoch_builder import output
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
        output.result(_imported_line(summary, ws.candlesticks_dir))
    return 0


def start_download(args: argparse.Namespace) -> int:
    from epoch_builder import output
    from epoch_builder.download import default_directory, download, validate_symbol
    from epoch_builder.importer import import_candlesticks, validate_interval

    ws = workspace_of(args)
    symbol = validate_symbol(args.symbol)
    if args.do_import:
        validate_interval(args.interval)  # before the download, not after it
    directory = args.dir or default_directory(ws.root, args.market, symbol)
    summary = download(symbol, args.market, args.first, args.last, directory, base_url=args.base_url)
    report = None
    if args.do_import:
        report = import_candlesticks(ws, [Path(f) for f in summary["files"]], interval_minutes=args.interval,
                                     fill_gaps=args.fill_gaps, export_csv=args.export_csv)
    if args.json:
        output.result_json({**summary, "import": report} if args.do_import else summary)
        return 0
    output.result(f"{len(summary['files'])} file(s) verified in {summary['dir']}: {summary['downloaded']} downloaded, "
                  f"{summary['already_verified']} already there")
    if report is not None:
        output.result(_imported_line(report, ws.candlesticks_dir))
    return 0


def _imported_line(summary: dict, candlesticks_dir: Path) -> str:
    from epoch_builder.candles import iso

    return (f"imported {summary['candles']:,} 1m candles and {summary['prediction_candles']:,} "
            f"{summary['interval_minutes']}m candles ({iso(summary['first_ot'])} .. {iso(summary['last_ct'])}) "
            f"-> {candlesticks_dir}")
