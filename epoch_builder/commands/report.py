"""`epoch-builder report`."""

from __future__ import annotations

import argparse

from epoch_builder.commands import add_json_option, workspace_of


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    report = subparsers.add_parser(
        "report", parents=[common], help="write one self-contained HTML page (and a PNG of the equity) of built models",
        description="One HTML file that opens without a network (plotly.js inlined): per model the equity and its "
        "drawdown, the positions on the prediction candles' price (longs, shorts, take-profit and stop-loss exits), "
        "accuracy and counts, the discovery, and each regression's loss and val_loss per epoch from its certificate "
        "in the workspace. A PNG of the equity is written beside it (same name, .png).",
    )
    which = report.add_mutually_exclusive_group()
    which.add_argument("--model-id", metavar="ID", help="a model id from build.json (`epoch-builder models list`)")
    which.add_argument("--best", action="store_true", help="the most profitable model of the build (the default)")
    which.add_argument("--top", type=int, metavar="N", help="the N most profitable models, one section each")
    report.add_argument("--out", metavar="FILE.html",
                        help="the HTML file (default: <epoch>/reports/<model id>.html, or top-N.html with --top)")
    add_json_option(report, "the written files and the models")
    report.set_defaults(func=start_report)


def start_report(args: argparse.Namespace) -> int:
    from epoch_builder import output
    from epoch_builder.report import write_report

    files = write_report(workspace_of(args), model_id=args.model_id, top=args.top, out=args.out)
    if args.json:
        output.result_json({"html": str(files.html), "png": str(files.png), "models": files.model_ids,
                            "bytes": files.html.stat().st_size})
    else:
        output.result(f"{files.html}: HTML report of {len(files.model_ids)} model(s), "
                      f"{files.html.stat().st_size:,} bytes")
        output.result(f"{files.png}: equity curve (PNG)")
    return 0
