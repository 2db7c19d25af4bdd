"""`epoch-builder initialize-prediction-models | find-profitable-configs | build-prediction-models`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from epoch_builder.commands import add_group, add_hidden_alias, add_json_option, add_wide_option, print_rows, workspace_of
from epoch_builder.errors import UsageError
from epoch_builder.prediction import selection
from epoch_builder.storage import read_json

if TYPE_CHECKING:
    from epoch_builder.workspace import Workspace

MIN_REGRESSIONS = 16  # as the original


def _csv(kind: type):  # noqa: ANN202 - argparse type factory
    def parse(text: str) -> list:
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items:
            raise argparse.ArgumentTypeError("expected a comma-separated list")
        try:
            return [kind(item) for item in items]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected {kind.__name__} values separated by commas") from None
    return parse


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    init = subparsers.add_parser(
        "initialize-prediction-models", parents=[common],
        help="select regressions, compute the test-range assets and write the configuration batches",
        description="Features per regression, labels per pcr and the lookback indexer on the test dataset, then every "
        "configuration (pcr x msf x msaf x C(regressions, per model)) shuffled with the epoch seed, in batches.",
    )
    chosen = init.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--regressions", type=_csv(str), metavar="ID,...", help="regression ids, comma-separated")
    chosen.add_argument("--top", type=int, metavar="N", help="the N best regressions by --by")
    init.add_argument("--by", metavar="METRIC", help="ranking metric for --top (see `epoch-builder regressions rank --help`)")
    init.add_argument("--include-search-stopped", action="store_true",
                      help="--top: rank the regressions that train-regression-batch --search halving stopped early too "
                      "(default: only those trained to their end; a line says how many were left out)")
    init.add_argument("--allow-few-regressions", action="store_true",
                      help=f"accept fewer than {MIN_REGRESSIONS} regressions (small data and tests)")
    init.add_argument("--pcr", type=_csv(float), default=[3.0], metavar="P,...", help="price change requirements in %% (default 3)")
    init.add_argument("--msf", type=_csv(str), default=["mean", "median"], metavar="F,...",
                      help="min sum functions: mean, median (default both)")
    init.add_argument("--msaf", type=_csv(float), default=[1.0, 1.5, 2.0], metavar="A,...",
                      help="min sum adjustment factors (default 1,1.5,2)")
    init.add_argument("--regressions-per-model", type=int, default=8, metavar="N", help="regressions per model (default 8)")
    init.add_argument("--batch-size", type=int, default=100_000, metavar="N", help="configurations per batch file (default 100000)")
    init.add_argument("--force", action="store_true",
                      help="replace the batches, sweep results and build of an earlier initialization")
    add_json_option(init, "the regressions, assets and batch files")
    init.set_defaults(func=start_initialize)

    sweep = subparsers.add_parser(
        "find-profitable-configs", parents=[common],
        help="evaluate every configuration of a batch; resumable (kill and rerun continues exactly)",
        description="Backtest every configuration of a batch (SEMANTICS §7) on all cores and write "
        "prediction_models/profitable_configs/<batch>.json. Progress is journaled; a rerun resumes exactly.",
    )
    sweep.add_argument("--batch", required=True, metavar="FILE", help="batch file (path or name in prediction_models/configs)")
    sweep.add_argument("--workers", type=int, metavar="N", help="processes (default: all cores)")
    sweep.add_argument("--journal-every", type=int, default=20_000, metavar="N",
                       help="journal progress after at most N configurations (and at least every second; default 20000)")
    sweep.add_argument("--force", action="store_true", help="discard the journal and output of this batch and start over")
    add_hidden_alias(sweep, "--restart", "force", action="store_true")
    add_json_option(sweep, "the sweep's counts and output file")
    sweep.set_defaults(func=start_find_profitable_configs)

    build = subparsers.add_parser(
        "build-prediction-models", parents=[common],
        help="re-evaluate the profitable configurations and write build.json (best by profit)",
    )
    build.add_argument("--top", type=int, default=100, metavar="N", help="models to keep, most profitable first (default 100)")
    add_hidden_alias(build, "--limit", "top", type=int)
    build.add_argument("--workers", type=int, metavar="N", help="processes for the re-evaluation (default: all cores)")
    build.add_argument("--pbo-blocks", type=int, default=selection.DEFAULT_BLOCKS, metavar="S",
                       help="blocks of the in-sample test range for the probability of backtest overfitting "
                       f"(CSCV; even, >= 2; default {selection.DEFAULT_BLOCKS})")
    build.add_argument("--pbo-sample", type=int, default=selection.DEFAULT_SAMPLE, metavar="N",
                       help="configurations of the sweep sampled (seeded by the epoch seed) for the PBO and the "
                       f"deflated Sharpe ratios' variance; 0: every one (default {selection.DEFAULT_SAMPLE:,})")
    add_json_option(build, "the built models (as `models list --json`)")
    build.set_defaults(func=start_build)

    listing = add_group(subparsers, "models", "inspect built prediction models").add_parser("list", parents=[common], help="the built models, most profitable first",
                                    description="The active epoch's build.json as a table: id, profit, accuracy, "
                                    "positions, max drawdown, pcr / msf / msaf and the regressions' families. "
                                    "`export-epoch --best` exports the first.")
    listing.add_argument("--top", type=int, metavar="N", help="show only the first N")
    add_json_option(listing, "the models")
    add_wide_option(listing)
    listing.set_defaults(func=start_models_list)


def start_initialize(args: argparse.Namespace) -> int:
    from epoch_builder import output
    from epoch_builder.prediction.configs import initialize_prediction_models

    if args.top is not None and not args.by:
        raise UsageError("parameter --by is required with --top (the ranking metric)")
    if args.by and args.top is None:
        raise UsageError("parameter --by is only used with --top N")
    if args.include_search_stopped and args.top is None:
        raise UsageError("parameter --include-search-stopped is only used with --top N")
    ws = workspace_of(args)
    batches = initialize_prediction_models(
        ws, regression_ids=args.regressions, top=args.top, by=args.by, include_search_stopped=args.include_search_stopped,
        allow_few=args.allow_few_regressions, min_regressions=MIN_REGRESSIONS, pcrs=args.pcr, msfs=args.msf,
        msafs=args.msaf, per_model=args.regressions_per_model, batch_size=args.batch_size, force=args.force,
    )
    paths = ws.epoch()
    meta = read_json(paths.assets_dir / "assets.json")
    document = {"regressions": meta["regression_ids"], "features_per_regression": meta["features"],
                "labels": meta["labels"],
                "batches": [str(path) for path in batches]}
    if args.json:
        output.result_json(document)
    else:
        output.result(f"{len(batches)} batch file(s) in {paths.configs_dir}: "
                      + ", ".join(path.name for path in batches))
    return 0


def start_find_profitable_configs(args: argparse.Namespace) -> int:
    from epoch_builder.prediction.sweep import find_profitable_configs

    if args.workers is not None and args.workers < 1:
        raise UsageError(f"parameter --workers={args.workers} must be >= 1")
    if args.journal_every < 1:
        raise UsageError(f"parameter --journal-every={args.journal_every} must be >= 1")
    from epoch_builder import output

    result = find_profitable_configs(workspace_of(args), args.batch, workers=args.workers, restart=args.force,
                                     flush_configs=args.journal_every)
    if args.json:
        output.result_json({"batch": result.batch, "configurations": result.configs, "profitable": result.profitable,
                            "evaluated_now": result.evaluated_now, "resumed_from": result.resumed_from,
                            "seconds": result.seconds, "output": str(result.output), "best": result.best})
    else:
        output.result(f"{result.batch}: {result.profitable:,} profitable of {result.configs:,} configurations "
                      f"({result.evaluated_now:,} evaluated in {result.seconds}s) -> {result.output}")
    return 0


def start_models_list(args: argparse.Namespace) -> int:
    from epoch_builder.prediction.build import load_build, load_summary, model_ids, summary_rows

    if args.top is not None and args.top < 1:
        raise UsageError(f"parameter --top={args.top} must be >= 1")
    ws = workspace_of(args)
    paths = ws.epoch()
    certificates = load_build(paths)
    _print_models(summary_rows(certificates, _stopped(ws, certificates))[: args.top], args.json, wide=args.wide)
    if not args.json:
        _print_luck(load_summary(paths, model_ids(certificates)))
    return 0


def _stopped(ws: Workspace, certificates: list[dict]) -> dict[str, int]:
    """The built models' regressions that --search halving stopped early (marked in the table)."""
    from epoch_builder.regressions.rank import stopped_regressions

    return stopped_regressions(ws, [r["id"] for cert in certificates for r in cert["model"]["regressions"]])


def _print_luck(summary: dict | None) -> None:
    """The sweep-wide selection-bias line under the table (docs/prediction-models.md, How much is luck?)."""
    from epoch_builder import output
    from epoch_builder.prediction.build import luck_line

    (output.result if summary is not None else output.info)(luck_line(summary))


def _print_models(rows: list[dict], as_json: bool, *, wide: bool = True) -> None:
    with_oos = any(r["oos_profit"] is not None for r in rows)
    oos_header = ("oos profit", "oos acc.") if with_oos else ()
    header = ("#", "id", "profit", "accuracy", "positions", "drawdown", *oos_header, "dsr", "pcr", "msf", "msaf",
              "families")

    def cells(i: int, r: dict) -> tuple[str, ...]:
        oos = ((f"{r['oos_profit']:.2f}" if r["oos_profit"] is not None else "-",
                f"{r['oos_accuracy']:.2f}%" if r["oos_accuracy"] is not None else "-") if with_oos else ())
        return (str(i), r["id"], f"{r['profit']:.2f}", f"{r['accuracy']:.2f}%", str(r["positions"]),
                f"{r['max_drawdown']:.2f}%", *oos, f"{r['dsr']:.2f}" if r["dsr"] is not None else "-",
                f"{r['pcr']:g}", r["msf"], f"{r['msaf']:g}",
                (",".join(r["families"]) or "-") + ("*" if r["search_stopped"] else ""))

    names = len(header)
    # Narrow terminals: the headers' short forms (their cells are narrower than the words).
    short = {"accuracy": "acc.", "positions": "pos.", "drawdown": "dd", "oos profit": "oos", "oos acc.": "oos%"}
    print_rows(rows, as_json, "the build holds no model", header, cells, left=(1, names - 3, names - 1), id_column=1,
               wide=wide, aliases={c: {name: short[name]} for c, name in enumerate(header) if name in short})
    marked = sum(1 for r in rows if r["search_stopped"])
    if marked and not as_json:
        from epoch_builder import output

        output.info(f"* {marked} model(s) use regressions that --search halving stopped early (certified from fewer "
                    "epochs; --json: search_stopped)")


def start_build(args: argparse.Namespace) -> int:
    from epoch_builder.prediction.build import build_prediction_models, load_summary, model_ids, summary_rows

    ws = workspace_of(args)
    certificates = build_prediction_models(ws, args.top, workers=args.workers, pbo_blocks=args.pbo_blocks,
                                           pbo_sample=args.pbo_sample)
    rows = summary_rows(certificates, _stopped(ws, certificates))
    _print_models(rows if args.json else rows[:10], args.json)
    if not args.json:
        _print_luck(load_summary(ws.epoch(), model_ids(certificates)))
    return 0
