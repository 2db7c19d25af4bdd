"""`epoch-builder create-epoch`."""

from __future__ import annotations

import argparse

from epoch_builder.commands import add_json_option, workspace_of
from epoch_builder.epoch import PARAMS, PROFILES


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "create-epoch", parents=[common], help="create a new epoch from the imported candlesticks",
        description="Cut the bundle to the epoch width, SMA + normalise, write config/epoch.json and the epoch tree. "
        "Parameters default to the original's values (profile default) or to small-data values (--profile small).",
    )
    parser.add_argument("--id", required=True, help="epoch id: starts with '_', 4..100 characters")
    parser.add_argument("--profile", choices=PROFILES, default="default",
                        help="'small' widens lookback/predictions/SMA/width ranges for small data (e.g. the 21-day sample)")
    parser.add_argument("--normalization", choices=("global", "expanding"), default="global",
                        help="global: min-max over the whole epoch, as the original (later candles shape earlier "
                        "values); expanding: leak-free, each row scaled by the min/max seen up to it")
    parser.add_argument("--oos-days", type=int, default=0, metavar="DAYS",
                        help="keep the last DAYS days of the test dataset out of find-profitable-configs; "
                        "build-prediction-models then trades every built model on them too (default 0: none, as the "
                        "original). See docs/prediction-models.md, How much is luck?")
    parser.add_argument("--width-days", type=int, metavar="DAYS", help="epoch width in days instead of --epoch-width months")
    for param in PARAMS:
        low, high = param.low, param.high
        parser.add_argument(
            f"--{param.name.replace('_', '-')}", dest=param.name, type=param.kind, metavar=param.kind.__name__.upper(),
            help=f"{param.help.replace('%', '%%')} (default {param.default}, {low}..{high}"
            + (f"; small: {param.small_default if param.small_default is not None else param.default}, from {param.small_low}"
               if param.small_low is not None else "") + ")",
        )
    add_json_option(parser, "the epoch's config (config/epoch.json)")
    parser.set_defaults(func=start_create_epoch)


def start_create_epoch(args: argparse.Namespace) -> int:
    from epoch_builder import output
    from epoch_builder.create_epoch import create_epoch

    raw = {p.name: getattr(args, p.name) for p in PARAMS}
    unit = "months"
    if args.width_days is not None:
        raw["epoch_width"], unit = args.width_days, "days"
    elif raw["epoch_width"] is None and args.profile == "small":
        raw["epoch_width"], unit = 20, "days"
    ws = workspace_of(args)
    config = create_epoch(ws, args.id, profile=args.profile, width_unit=unit, normalization=args.normalization,
                          oos_days=args.oos_days, **raw)
    if args.json:
        output.result_json(config.to_json())
    else:
        output.result(ws.epoch().receipt_file.read_text(encoding="utf-8").rstrip("\n"))
    return 0
