"""`generate-regression-training-configs`, `train-regression-batch`, `regressions rank`."""

from __future__ import annotations

import argparse
from pathlib import Path

from epoch_builder.commands import add_group, add_json_option, add_wide_option, print_rows, workspace_of
from epoch_builder.regressions.configs import DEFAULT_PACK_SIZES, MAX_PACK_SIZE, MAX_PROCESSES

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
        "TensorFlow sees one (memory growth on).",
    )
    train.add_argument("--category", choices=CATEGORIES,
                       help="category of the batch (default: the one the batch file declares; given, it is checked)")
    train.add_argument("--batch", required=True, metavar="FILE",
                       help="batch file (path, or name under regression_training_configs/<category>/)")
    train.add_argument("--max-epochs", type=int, metavar="N",
                       help="cap on epochs per model (default: the config's max_epochs, else 500)")
    train.add_argument("--fast", action="store_true",
                       help="TensorFlow op determinism off for this run: can be faster on GPUs (no deterministic "
                       "kernels; on CPUs bench/bench_training.py measured no gain), but the same seed no longer gives "
                       "the same model and a resumed model no longer equals an uninterrupted one (resuming still "
                       "works); each certificate records it (training_mode.op_determinism false). A checkpoint "
                       "written with --fast resumes only with --fast; a deterministic one may go on with --fast")
    train.add_argument("--pack", type=int, metavar="K",
                       help=f"train up to K models of the batch together, one compiled step updating all of them "
                       f"(1 to {MAX_PACK_SIZE}; 1: one at a time). Each keeps its own optimizer, early stopping, "
                       f"checkpoint and certificate (training_mode.pack_size). Default per family: "
                       + ", ".join(f"{family} {size}" for family, size in DEFAULT_PACK_SIZES.items())
                       + ", the others 1")
    train.add_argument("--processes", type=int, metavar="N",
                       help=f"train the batch's models in N processes (1 to {MAX_PROCESSES}), the host's cores split "
                       "between them; each trains its share in packs and resumes like one process (default 1)")
    train.add_argument("--mixed-precision", action="store_true",
                       help="compute in float16 with float32 weights and outputs (Keras mixed_float16, loss scaling): "
                       "for GPUs with tensor cores; slower on a CPU. Recorded in the certificate "
                       "(training_mode.mixed_precision); a checkpoint resumes only in the mode it was written in. "
                       "The Epoch File's models compute in float32 on the platform")
    add_json_option(train, "each model's id, epochs, test loss and accuracy")
    train.set_defaults(func=start_train)

    sub = add_group(subparsers, "regressions", "inspect trained regressions")
    rank = sub.add_parser("rank", parents=[common], help="table of trained regressions, best first",
                          description="Rank the active epoch's trained regressions: by test loss (lowest first; "
                          "compare models trained with the same loss function), or by discovery accuracy or "
                          "points (highest first).")
    rank.add_argument("--by", choices=RANK_KEYS, default="test_loss", help="ranking key (default test_loss)")
    rank.add_argument("--top", type=int, metavar="N", help="show only the best N")
    add_json_option(rank, "the ranking")
    add_wide_option(rank)
    rank.set_defaults(func=start_rank)


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

    certificates = train_batch(workspace_of(args), args.category, args.batch, max_epochs=args.max_epochs,
                               fast=args.fast, pack=args.pack, mixed_precision=args.mixed_precision,
                               processes=args.processes)
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


def start_rank(args: argparse.Namespace) -> int:
    from epoch_builder.regressions.rank import rank_regressions

    rows = rank_regressions(workspace_of(args), by=args.by, top=args.top)
    header = ("#", "id", "category", "loss fn", "test_loss", "test_metric", "accuracy", "points", "epochs")
    print_rows(rows, args.json, "no trained regressions yet", header, lambda i, r: (
        str(i), r["id"], r["category"] or "-", r["loss"] or "-", _fmt(r["test_loss"]), _fmt(r["test_metric"]),
        _fmt(r["accuracy"], 2), _fmt(r["points"], 0), str(r["epochs"])), left=(0, 1, 2, 3), id_column=1, wide=args.wide,
        aliases={2: {"category": "family"}, 3: LOSS_ALIASES, 5: {"test_metric": "metric"}})
    return 0
