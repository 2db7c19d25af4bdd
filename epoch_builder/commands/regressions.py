"""`generate-regression-training-configs`, `train-regression-batch`, `regressions rank|calibrate|plan`."""

from __future__ import annotations

import argparse
from pathlib import Path

from epoch_builder.commands import add_group, add_json_option, add_wide_option, print_rows, workspace_of
from epoch_builder.regressions.calibrate import FAMILY_ORDER as CALIBRATED_FAMILIES, DEFAULT_WORK, WORK_RANGE
from epoch_builder.regressions.options import TrainingOptions, add_arguments

CATEGORIES = ("CNN", "DNN", "CDNN", "LSTM", "CLSTM", "GRU", "UNIT_TEST")
RANK_KEYS = ("test_loss", "accuracy", "points")


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    gen = subparsers.add_parser(
        "generate-regression-training-configs", parents=[common],
        help="write the regression hyperparameter grid as training-config batches",
        description="Expand the grid (default: the bundled 1,220-model grid), validate every config by building its "
        "network, shuffle with the epoch seed and write KR_<CAT>_<n>_<N>.json batches, the UNIT_TEST batch and a "
        "receipt under <epoch>/regression_training_configs/.",
    )
    gen.add_argument("--grid", type=Path, metavar="FILE",
                     help="grid JSON (copy epoch_builder/data/regression_grid.json and edit it)")
    gen.add_argument("--force", action="store_true", help="replace existing training-config batches")
    add_json_option(gen, "the batches per category")
    gen.set_defaults(func=start_generate)

    train = subparsers.add_parser(
        "train-regression-batch", parents=[common], help="train one batch of regressions (resumable)",
        description="Train every config of a batch that has no certificate yet. Each epoch is checkpointed; rerun "
        "the same command after an interruption to resume from the last completed epoch. Uses a GPU when "
        "TensorFlow sees one (memory growth on). --search halving trains on only the models that rank best by "
        "val_loss at each rung (successive halving; docs/training.md).",
    )
    train.add_argument("--category", choices=CATEGORIES,
                       help="category of the batch (default: the one the batch file declares; given, it is checked)")
    train.add_argument("--batch", required=True, metavar="FILE",
                       help="batch file (path, or name under regression_training_configs/<category>/)")
    add_arguments(train)  # --max-epochs, --fast, --pack, --mixed-precision, --processes, --search, ...
    add_json_option(train, "each model's id, epochs, test loss and accuracy")
    train.set_defaults(func=start_train)

    sub = add_group(subparsers, "regressions", "inspect trained regressions")
    rank = sub.add_parser("rank", parents=[common], help="table of trained regressions, best first",
                          description="Rank the active epoch's trained regressions: by test loss (lowest first; "
                          "compare models trained with the same loss function), or by discovery accuracy or "
                          "points (highest first). Epochs \"2 r1\": a regression that --search halving stopped at "
                          "rung 1 (certified from its best weights then; stopped_by_search in --json).")
    rank.add_argument("--by", choices=RANK_KEYS, default="test_loss", help="ranking key (default test_loss)")
    rank.add_argument("--top", type=int, metavar="N", help="show only the best N")
    add_json_option(rank, "the ranking")
    add_wide_option(rank)
    rank.set_defaults(func=start_rank)

    calibrate = sub.add_parser(
        "calibrate", parents=[common], help="measure this machine's training rate per family (FLOP/s)",
        description="Train one representative default-grid network per family for a fixed amount of work on this "
        "machine's TensorFlow and devices (about a minute on 2 cores) and record its rates in "
        "config/training_rates.json as 'local' (`regressions plan` reads them; `epoch-cluster calibrate` runs this "
        "on every server). The record notes TensorFlow's version, the cores and the GPUs: a change makes it stale.")
    calibrate.add_argument("--family", action="append", choices=CALIBRATED_FAMILIES, metavar="FAMILY",
                           help=f"measure only this family (repeatable; default all: {', '.join(CALIBRATED_FAMILIES)})")
    calibrate.add_argument("--work", type=float, default=DEFAULT_WORK / 1e9, metavar="GFLOP",
                           help=f"work of one timed epoch per family, {WORK_RANGE[0] / 1e9:g} to {WORK_RANGE[1] / 1e9:g} "
                           f"GFLOP (default {DEFAULT_WORK / 1e9:g}: 1-3 s on 2 cores)")
    calibrate.add_argument("--no-save", action="store_true", help="print the record only (epoch-cluster keeps it)")
    calibrate.add_argument("--fingerprint", action="store_true",
                           help="print only what the rates depend on (TensorFlow, cores, GPUs); measures nothing")
    add_json_option(calibrate, "the record")
    calibrate.set_defaults(func=start_calibrate)

    plan = sub.add_parser(
        "plan", parents=[common], help="what the epoch's regression grid costs and how long it takes here",
        description="Price every batch of the active epoch with the cost model (FLOP per config from its layers, "
        "epochs per model observed in the epoch's certificates per family, else an assumption the output states) "
        "and project the hours left on this machine at its calibrated rates (`regressions calibrate`; the "
        "reference machine's when never calibrated, said so). For a cluster: epoch-cluster plan.")
    add_arguments(plan, prefix="caps the estimate as train-regression-batch's: ", only=("max_epochs",))
    add_json_option(plan, "the plan")
    plan.set_defaults(func=start_plan)


def start_generate(args: argparse.Namespace) -> int:
    from epoch_builder import output
    from epoch_builder.regressions.configs import UNIT_TEST
    from epoch_builder.regressions.grid import generate

    ws = workspace_of(args)
    summary = generate(ws, args.grid, force=args.force)
    if args.json:
        output.result_json(summary)
        return 0
    trained = {c: s for c, s in summary.items() if c != UNIT_TEST}
    output.result(f"{sum(s['models'] for s in trained.values())} training configs in "
                  f"{sum(s['batches'] for s in trained.values())} batches (+ {UNIT_TEST}) -> "
                  f"{ws.epoch().regression_training_configs_dir}: "
                  + ", ".join(f"{c} {s['models']}" for c, s in trained.items()))
    return 0


def start_train(args: argparse.Namespace) -> int:
    from epoch_builder.regressions.batch import train_batch

    certificates = train_batch(workspace_of(args), args.category, args.batch, TrainingOptions.from_args(args))
    rows = [{"id": c["id"], "epochs": c["epochs"], "test_loss": c["test_evaluation"]["loss"],
             "accuracy": c["discovery"]["accuracy"]} for c in certificates]
    print_rows(rows, args.json, "the batch holds no model", ("#", "id", "epochs", "test_loss", "accuracy"),
               lambda i, r: (str(i), r["id"], str(r["epochs"]), _fmt(r["test_loss"]), f"{_fmt(r['accuracy'], 2)}%"),
               left=(0, 1))
    return 0


def _fmt(value: object, digits: int = 6) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


# Keras's own short names of the losses, for a table that must fit the terminal.
LOSS_ALIASES = {"mean_absolute_error": "mae", "mean_squared_error": "mse", "mean_absolute_percentage_error": "mape",
                "mean_squared_logarithmic_error": "msle"}


def _epochs(row: dict) -> str:
    """``30``, or ``2 r1`` for a regression --search halving stopped at rung 1 (in the epochs column: a column of
    its own would not leave the table within 80 columns)."""
    from epoch_builder.regressions.rank import stopped_mark

    rung = row["stopped_by_search"]
    return str(row["epochs"]) + ("" if rung is None else f" {stopped_mark(rung)}")


def start_rank(args: argparse.Namespace) -> int:
    from epoch_builder.regressions.rank import rank_regressions

    rows = rank_regressions(workspace_of(args), by=args.by, top=args.top)
    header = ("#", "id", "category", "loss fn", "test_loss", "test_metric", "accuracy", "points", "epochs")
    print_rows(rows, args.json, "no trained regressions yet", header, lambda i, r: (
        str(i), r["id"], r["category"] or "-", r["loss"] or "-", _fmt(r["test_loss"]), _fmt(r["test_metric"]),
        _fmt(r["accuracy"], 2), _fmt(r["points"], 0), _epochs(r)), left=(0, 1, 2, 3), id_column=1, wide=args.wide,
        aliases={2: {"category": "family"}, 3: LOSS_ALIASES, 5: {"test_metric": "metric"}})
    return 0

def start_calibrate(args: argparse.Namespace) -> int:
    from epoch_builder import output
    from epoch_builder.errors import UsageError
    from epoch_builder.regressions import calibrate
    from epoch_builder.regressions.plan import LOCAL

    if args.fingerprint:
        found = calibrate.fingerprint()
        if args.json:
            output.result_json(found)
        else:
            output.result(", ".join(f"{k} {v}" for k, v in found.items()))
        return 0
    low, high = WORK_RANGE
    if not low <= args.work * 1e9 <= high:
        raise UsageError(f"--work {args.work:g} out of range; allowed {low / 1e9:g} to {high / 1e9:g} GFLOP")
    ws = workspace_of(args)
    record = calibrate.calibrate(work=args.work * 1e9, families=args.family or calibrate.FAMILY_ORDER,
                                 log=output.info)
    if not args.no_save:
        calibrate.save_record(ws.root, ws.training_rates_file, LOCAL, record)
    if args.json:
        output.result_json(record)
    else:
        output.result(", ".join(f"{family} {rate / 1e9:.1f}" for family, rate in record["rates"].items())
                      + f" GFLOP/s ({record['seconds']:g} s)" + ("" if args.no_save else f" -> {ws.training_rates_file}"))
    return 0


def start_plan(args: argparse.Namespace) -> int:
    from epoch_builder import output
    from epoch_builder.regressions import calibrate
    from epoch_builder.regressions.plan import LOCAL, format_machine_plan, machine_plan

    ws = workspace_of(args)
    rates, source = calibrate.rates_of(calibrate.read_records(ws.training_rates_file), LOCAL)
    plan = machine_plan(ws, rates, source, max_epochs=args.max_epochs)
    if args.json:
        output.result_json(plan)
    else:
        output.result("\n".join(format_machine_plan(plan)))
    return 0
