"""Successive halving's fidelity on real candles: `--search halving` against `--search full` on one grid.

``run`` (the default) makes two identical workspaces from the bundled 21-day BTC sample (30-minute candles,
``create-epoch --profile small --oos-days 2``) and a grid of ``--configs`` DNN and CDNN configs per family drawn
from the default grid with a seeded choice of its networks (all of its hyperparameters for each network, so
a multiple of its 6 combinations), cut into batches of ``--batch-size``. Every batch is trained in this
process, first fully (``--search full``), then with halving (``--eta``, ``--first-rung``, ``--rungs``; the
project's defaults unless given), with the configs' own 500 epochs unless ``--max-epochs``. Reported:

* epochs spent (the certificates' sum) and wall time of each run, and their ratios;
* how many of the full run's top 20 (ranked as ``initialize-prediction-models --top 20 --by test_loss``
  ranks: by default of the regressions trained to their end) the halving run keeps, and the best and
  median test loss of each run's top 20;
* downstream, on each workspace: ``initialize-prediction-models --top 6 --by test_loss --pcr 1
  --regressions-per-model 4`` -> ``find-profitable-configs`` on every batch -> ``build-prediction-models
  --top 5``: the best model's profit, out-of-sample profit and deflated Sharpe ratio side by side;
* the offline replay table (below) over the full run's histories, and what it predicted for this run.

``replay`` needs no training: it reads a workspace's active epoch (``--workspace``, e.g. a ``run --keep``
directory's ``full`` workspace, or any epoch whose batches were trained with ``--search full``) and replays
successive halving on each model's recorded val_loss per epoch with the project's own rules
(``epoch_builder/regressions/search.py``: rungs, ranking, who stops). A model the search would stop costs the
rung's epochs; a survivor is the model the full run trained (a promoted model goes on from its checkpoint), so
its test loss is the full run's. For each (eta, first rung, rungs) setting: the epochs as a share of the full
run's and how many of the top 20 are kept, with the rungs held per batch (the epoch's batches), per family
(every model of the family ranked together) and per batch of 10 (the recurrent families' batch size: the
models regrouped in seeded batches of 10), each against the family's own top 20 and the epoch's.

    .venv/bin/python bench/bench_search.py [run] [--configs 60] [--batch-size 30] [--families DNN,CDNN]
        [--max-epochs N] [--eta 2] [--first-rung 1] [--rungs 1] [--seed 7] [--keep DIR] [--json FILE]
        [--skip-downstream]
    .venv/bin/python bench/bench_search.py replay --workspace DIR [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from epoch_builder.errors import UsageError  # noqa: E402
from epoch_builder.regressions import search  # noqa: E402
from epoch_builder.regressions.architectures import FAMILIES  # noqa: E402
from epoch_builder.regressions.options import (  # noqa: E402
    DEFAULT_ETA, DEFAULT_FIRST_RUNG, DEFAULT_RUNGS, HALVING, TrainingOptions,
)
from epoch_builder.workspace import Workspace  # noqa: E402

EPOCH_ID = "_BENCH_SEARCH"
TOP = 20
RECURRENT_BATCH = 10  # LSTM, CLSTM and GRU batches of the default grid
OOS_DAYS = 2
# The replay's table: every combination (the defaults are chosen from it).
ETAS = (2, 3, 4)
FIRST_RUNGS = (1, 2, 4, 8)
RUNGS = (1, 2, 3)
DOWNSTREAM = ["--top", "6", "--by", "test_loss", "--allow-few-regressions", "--pcr", "1",
              "--regressions-per-model", "4"]


# --- the models, as the full run left them -------------------------------------------------------------------

@dataclass(frozen=True)
class Trained:
    """One regression of a full run: what the replay needs of it."""

    id: str
    family: str
    batch: str
    val_loss: tuple[float | None, ...]  # per epoch
    test_loss: float
    limit: int  # the epoch limit it trained under
    loss: str  # its loss function: test losses of different functions are on different scales
    accuracy: float | None  # the certificate's discovery accuracy (`--by accuracy` ranks by it)
    epoch_flop: float  # one epoch of its network at the default profile (cost model): compute-bound weight

    @property
    def epochs(self) -> int:
        return len(self.val_loss)


def read_trained(ws: Workspace) -> list[Trained]:
    """The active epoch's regressions trained to their end (one stopped by a search has no full history)."""
    from epoch_builder.regressions.rank import stopped_by_search
    from epoch_builder.storage import read_json

    paths = ws.epoch()
    batch_of, flop_of = {}, {}
    for batch_file in sorted(paths.dir.glob("regression_training_configs/*/*.json")):
        for config in read_json(batch_file)["configs"]:
            batch_of[config["id"]] = batch_file.stem
            flop_of[config["id"]] = default_epoch_flop(config["keras_model"])
    models = []
    for path in sorted(paths.regressions_dir.glob("*/certificate.json")):
        cert = read_json(path)
        loss = (cert.get("test_evaluation") or {}).get("loss")
        if stopped_by_search(cert) is not None or not isinstance(loss, (int, float)) or not math.isfinite(loss):
            continue
        history = cert["training_history"]["val_loss"]
        models.append(Trained(cert["id"], cert["category"], batch_of.get(cert["id"], cert["category"]),
                              tuple(v if isinstance(v, (int, float)) and math.isfinite(v) else None for v in history),
                              float(loss), int(cert["training_params"]["max_epochs"]), str(cert.get("loss")),
                              (cert.get("discovery") or {}).get("accuracy"), flop_of.get(cert["id"], 0.0)))
    return models


def default_epoch_flop(keras_model: dict[str, Any]) -> float:
    """FLOP of one epoch of ``keras_model`` at the default profile (lookback 128, predictions 32, 4 years):
    where training is compute-bound (the default profile: 81 steps an epoch), time follows this, not epochs."""
    from epoch_builder.regressions import cost

    shape = cost.default_profile_shape()
    return cost.epoch_flop(cost.forward_flop(keras_model, shape.lookback, shape.predictions), shape.windows())


def top_by_accuracy(models: Iterable[Trained], n: int = TOP) -> set[str]:
    """The best ``n`` by discovery accuracy (``--by accuracy``: highest first, ties by id)."""
    ranked = [m for m in models if m.accuracy is not None]
    return {m.id for m in sorted(ranked, key=lambda m: (-m.accuracy, m.id))[:n]}


def top_ids(models: Iterable[Trained], n: int = TOP) -> set[str]:
    """The best ``n`` by test loss (ties by id), as ``regressions rank`` orders them."""
    return {m.id for m in sorted(models, key=lambda m: (m.test_loss, m.id))[:n]}


# --- the offline replay ----------------------------------------------------------------------------------------

def replay_group(models: Sequence[Trained], eta: int, first_rung: int, rungs: int,
                 limit: int) -> tuple[dict[str, int], set[str]]:
    """Successive halving over one group with ``search.run_halving``'s rules: (each model's epochs, the ids
    trained to their end). A model whose own early stopping comes at or before a rung's epochs finishes there."""
    by_id = {m.id: m for m in models}
    entrants = [m.id for m in models]
    trained: dict[str, int] = {}  # id -> the epochs the search lets it train
    rung = 1
    while True:
        epochs = search.rung_epochs(rung, eta, first_rung)
        if not search.rung_held(rung, rungs, len(entrants), epochs, limit, eta):
            trained.update({i: by_id[i].epochs for i in entrants})
            return trained, {i for i in trained if trained[i] == by_id[i].epochs}
        done = [i for i in entrants if by_id[i].epochs <= epochs]
        trained.update({i: by_id[i].epochs for i in done})
        bests = {i: search.best_val_loss({"val_loss": list(by_id[i].val_loss)}, epochs)
                 for i in entrants if i not in trained}
        decision = search.decide(rung, epochs, entrants, bests, eta)
        trained.update({i: epochs for i in decision.stopped})
        entrants, rung = list(decision.promoted), rung + 1


def groupings(models: Sequence[Trained], seed: int) -> dict[str, list[list[Trained]]]:
    """The ways the rungs can rank: per batch (as trained), per family, per seeded batch of 10."""
    families: dict[str, list[Trained]] = {}
    batches: dict[str, list[Trained]] = {}
    for model in models:
        families.setdefault(model.family, []).append(model)
        batches.setdefault(model.batch, []).append(model)
    tens = []
    for family_models in families.values():
        shuffled = sorted(family_models, key=lambda m: m.id)
        random.Random(seed).shuffle(shuffled)
        tens += [shuffled[i:i + RECURRENT_BATCH] for i in range(0, len(shuffled), RECURRENT_BATCH)]
    return {"batch": list(batches.values()), "family": list(families.values()), "batch of 10": tens}


def replay(models: Sequence[Trained], eta: int, first_rung: int, rungs: int, limit: int,
           groups: Sequence[Sequence[Trained]]) -> dict[str, Any]:
    """One setting over one grouping: epochs share, and the top 20 kept overall and per family."""
    trained: dict[str, int] = {}
    survivors: set[str] = set()
    for group in groups:
        group_trained, group_survivors = replay_group(group, eta, first_rung, rungs, limit)
        trained.update(group_trained)
        survivors |= group_survivors
    spent, full = sum(trained.values()), sum(m.epochs for m in models)
    flop = sum(m.epoch_flop * trained[m.id] for m in models)
    full_flop = sum(m.epoch_flop * m.epochs for m in models)
    kept = {"all": len(top_ids(models) & survivors), "by accuracy": len(top_by_accuracy(models) & survivors)}
    for family in sorted({m.family for m in models}):
        kept[family] = len(top_ids(m for m in models if m.family == family) & survivors)
    return {"eta": eta, "first_rung": first_rung, "rungs": rungs, "epochs": spent,
            "epochs_share": spent / full if full else 0.0, "flop_share": flop / full_flop if full_flop else 0.0,
            "kept": kept, "survivors": sorted(survivors)}


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    def ranks(values: Sequence[float]) -> list[float]:
        order = sorted(range(len(values)), key=lambda i: values[i])
        result = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                result[order[k]] = (i + j) / 2 + 1
            i = j + 1
        return result
    rx, ry = ranks(xs), ranks(ys)
    return statistics.correlation(rx, ry) if len(xs) > 2 else float("nan")


def replay_table(models: Sequence[Trained], limit: int, seed: int) -> dict[str, Any]:
    """Every (eta, first rung, rungs) setting under every grouping, and how well rung 1 ranks."""
    groups = groupings(models, seed)
    rows = []
    for eta in ETAS:
        for first_rung in FIRST_RUNGS:
            for rungs in RUNGS:
                row = {"eta": eta, "first_rung": first_rung, "rungs": rungs}
                for name, grouping in groups.items():
                    result = replay(models, eta, first_rung, rungs, limit, grouping)
                    row[name] = {"epochs_share": result["epochs_share"], "flop_share": result["flop_share"],
                                 "kept": result["kept"]}
                rows.append(row)
    correlations, within = {}, {}
    for first_rung in FIRST_RUNGS:
        correlations[first_rung] = rung_correlation(models, first_rung)
        for loss in sorted({m.loss for m in models}):
            within.setdefault(loss, {})[first_rung] = rung_correlation([m for m in models if m.loss == loss], first_rung)
    families = {f: sum(1 for m in models if m.family == f) for f in sorted({m.family for m in models})}
    return {"models": len(models), "families": families, "batches": len(groups["batch"]),
            "full_epochs": sum(m.epochs for m in models), "limit": limit,
            "mean_epochs": statistics.fmean(m.epochs for m in models) if models else 0.0,
            "at_limit": sum(1 for m in models if m.epochs >= limit),
            "losses": {loss: sum(1 for m in models if m.loss == loss) for loss in within},
            "top_losses": {loss: sum(1 for m in models if m.loss == loss and m.id in top_ids(models)) for loss in within},
            "spearman_rung_vs_test": correlations, "spearman_within_loss": within, "rows": rows}


def rung_correlation(models: Sequence[Trained], epochs: int) -> float:
    """Spearman of the best val_loss in the first ``epochs`` epochs (a rung's ranking) with the final test loss."""
    pairs = [(search.best_val_loss({"val_loss": list(m.val_loss)}, epochs), m.test_loss) for m in models]
    pairs = [(v, t) for v, t in pairs if v is not None]
    return spearman([v for v, _ in pairs], [t for _, t in pairs])


def choose(rows: Sequence[dict[str, Any]], keep: int = 18, grouping: str = "batch") -> dict[str, Any] | None:
    """The cheapest setting (epochs share) that keeps at least ``keep`` of the top 20, per batch."""
    fit = [r for r in rows if r[grouping]["kept"]["all"] >= keep]
    return min(fit, key=lambda r: (r[grouping]["epochs_share"], -r[grouping]["kept"]["all"]), default=None)


def best_within(rows: Sequence[dict[str, Any]], share: float, grouping: str = "batch") -> dict[str, Any] | None:
    """The setting that keeps the most of the top 20 at no more than ``share`` of the epochs."""
    fit = [r for r in rows if r[grouping]["epochs_share"] <= share]
    return max(fit, key=lambda r: (r[grouping]["kept"]["all"], -r[grouping]["epochs_share"]), default=None)


def setting(row: dict[str, Any]) -> str:
    return f"--eta {row['eta']} --first-rung {row['first_rung']} --rungs {row['rungs']}"


def format_table(table: dict[str, Any], families: Sequence[str]) -> list[str]:
    """The replay table, one line per setting: per grouping the epochs' share (per batch also the share of the
    default profile's FLOP) and the top 20 kept: of the epoch's, then of each family's own."""
    groups = ("batch", "family", "batch of 10")
    kept_head = "kept " + "/".join(["all", *families])
    head = f"{'eta':>3} {'rung1':>5} {'rungs':>5} | {'per batch: epochs':>17} {'FLOP':>5} {kept_head:>16}"
    for name in groups[1:]:
        head += f" | {'per ' + name + ': epochs':>22} {kept_head:>16}"
    lines = [head]
    for row in table["rows"]:
        line = f"{row['eta']:>3} {row['first_rung']:>5} {row['rungs']:>5}"
        for name in groups:
            cell = row[name]
            kept = "/".join(str(cell["kept"][k]) for k in ("all", *families))
            if name == "batch":
                line += f" | {cell['epochs_share']:>17.0%} {cell['flop_share']:>5.0%} {kept:>16}"
            else:
                line += f" | {cell['epochs_share']:>22.0%} {kept:>16}"
        lines.append(line)
    return lines


# --- the real runs -------------------------------------------------------------------------------------------

def cli(ws: Workspace, *argv: str) -> str:
    """An ``epoch-builder`` command in this process on ``ws``; its standard output (errors raise)."""
    from epoch_builder.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*argv, "--workspace", str(ws.root)])
    if code != 0:
        raise SystemExit(f"epoch-builder {' '.join(argv)} failed ({code}): {out.getvalue()[-2000:]}")
    return out.getvalue()


def bench_grid(path: Path, families: Sequence[str], configs: int, batch_size: int, seed: int) -> dict[str, int]:
    """The default grid cut to a seeded choice of networks per family (each with all the family's hyperparameter
    combinations), in batches of ``batch_size``; returns the configs per family."""
    from epoch_builder.regressions.grid import default_grid_path
    from epoch_builder.storage import atomic_write_json, read_json

    grid = read_json(default_grid_path())
    counts = {}
    for family in families:
        hp = grid["hyperparams"][family]
        combos = len(hp["learning_rates"]) * len(hp["optimizers"]) * len(hp["losses"]) * len(hp["activations"])
        networks = [(template, variation) for template, variations in grid["networks"][family].items()
                    for variation in variations]
        chosen = random.Random(f"{seed}-{family}").sample(networks, math.ceil(configs / combos))
        kept: dict[str, list] = {}
        for template, variation in chosen:
            kept.setdefault(template, []).append(variation)
        grid["networks"][family] = kept
        grid["batch_sizes"][family] = batch_size
        counts[family] = len(chosen) * combos
    for family in list(grid["networks"]):
        if family not in families:
            del grid["networks"][family]
    grid["description"] = f"bench/bench_search.py: {counts} configs of the default grid (seed {seed})"
    atomic_write_json(path, grid, indent=1)
    return counts


def make_workspaces(root: Path, families: Sequence[str], configs: int, batch_size: int, seed: int,
                    log: Callable[[str], None]) -> tuple[Workspace, Workspace, dict[str, int]]:
    """The sample imported, the small epoch and the grid's batches; then copied, so both runs start equal. A
    ``--keep`` directory that holds them already is reused: the runs resume (the batches train what is left)."""
    full, halving = Workspace(root / "full"), Workspace(root / "halving")
    if halving.root.is_dir():
        log(f"workspaces reused: {root}")
        return full, halving, config_counts(halving, families)
    cli(full, "candlesticks", "import", "--sample", "--interval", "30")
    cli(full, "create-epoch", "--id", EPOCH_ID, "--profile", "small", "--oos-days", str(OOS_DAYS))
    counts = bench_grid(root / "grid.json", families, configs, batch_size, seed)
    cli(full, "generate-regression-training-configs", "--grid", str(root / "grid.json"))
    shutil.copytree(full.root, halving.root)
    log(f"workspaces made: {counts} configs in batches of {batch_size} ({root})")
    return full, halving, counts


def config_counts(ws: Workspace, families: Sequence[str]) -> dict[str, int]:
    from epoch_builder.storage import read_json

    return {family: sum(len(read_json(ws.epoch().dir / "regression_training_configs" / family / batch)["configs"])
                        for _, batch in batches(ws, [family])) for family in families}


def batches(ws: Workspace, families: Sequence[str]) -> list[tuple[str, str]]:
    paths = ws.epoch()
    return [(family, path.name) for family in families
            for path in sorted((paths.dir / "regression_training_configs" / family).glob("*.json"))]


def train_all(ws: Workspace, families: Sequence[str], options: TrainingOptions,
              log: Callable[[str], None]) -> dict[str, Any]:
    """Every batch trained with ``options`` in this process: wall seconds and the certificates. The seconds
    are kept beside the workspace (``<workspace>.seconds``) and added up when a ``--keep`` run resumes."""
    from epoch_builder.regressions.batch import train_batch

    timing = ws.root.with_suffix(".seconds")
    before = float(timing.read_text()) if timing.is_file() else 0.0
    certificates: list[dict[str, Any]] = []
    started = time.perf_counter()
    for family, batch in batches(ws, families):
        batch_started = time.perf_counter()
        certificates += train_batch(ws, family, batch, options, log=lambda _line: None)
        log(f"  {batch}: {time.perf_counter() - batch_started:.0f} s")
        timing.write_text(str(before + time.perf_counter() - started))
    return {"seconds": before + time.perf_counter() - started, "certificates": certificates}


def top_figures(ws: Workspace) -> dict[str, Any]:
    """The top 20 as ``initialize-prediction-models --top 20 --by test_loss`` selects them, with test losses."""
    from epoch_builder.prediction.configs import select_regressions
    from epoch_builder.regressions.rank import rank_regressions

    ids = select_regressions(ws, None, TOP, "test_loss", log=lambda _line: None)
    losses = {r["id"]: r["test_loss"] for r in rank_regressions(ws, "test_loss")}
    values = [losses[i] for i in ids]
    return {"ids": ids, "best_test_loss": min(values), "median_test_loss": statistics.median(values)}


def downstream(ws: Workspace) -> dict[str, Any]:
    """initialize -> sweep every batch -> build; the best built model's figures."""
    cli(ws, "initialize-prediction-models", *DOWNSTREAM, "--force")
    for batch in sorted((ws.epoch().dir / "prediction_models" / "configs").glob("*.json")):
        cli(ws, "find-profitable-configs", "--batch", batch.name)
    cli(ws, "build-prediction-models", "--top", "5")
    models = json.loads(cli(ws, "models", "list", "--json"))  # most profitable first
    keys = ("id", "profit", "oos_profit", "dsr", "accuracy", "positions")
    built = [{key: model.get(key) for key in keys} for model in models]
    return {**(built[0] if built else {}), "built": built}


def run(args: argparse.Namespace, halving: TrainingOptions, log: Callable[[str], None]) -> dict[str, Any]:
    families = args.families.split(",")
    full_options = TrainingOptions(max_epochs=args.max_epochs)
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-search-"))
    try:
        reused = (root / "halving").is_dir()
        full_ws, halving_ws, counts = make_workspaces(root, families, args.configs, args.batch_size, args.seed, log)
        log("full run (--search full):")
        full = train_all(full_ws, families, full_options, log)
        log(f"halving run ({setting(vars(args))}):")
        halved = train_all(halving_ws, families, halving, log)
        models = read_trained(full_ws)
        limit = max(m.limit for m in models)
        table = replay_table(models, limit, args.seed)
        predicted = replay(models, args.eta, args.first_rung, args.rungs, limit, groupings(models, args.seed)["batch"])
        tops = {"full": top_figures(full_ws), "halving": top_figures(halving_ws)}
        survivors = {c["id"] for c in halved["certificates"] if not (c["training_mode"].get("search") or {}).get("stopped")}
        flop = {m.id: m.epoch_flop for m in models}
        flop_share = (sum(flop.get(c["id"], 0.0) * c["epochs"] for c in halved["certificates"])
                      / sum(flop.get(c["id"], 0.0) * c["epochs"] for c in full["certificates"]))
        result = {
            "configs": counts, "batch_size": args.batch_size, "seed": args.seed, "limit": limit,
            "setting": setting(vars(args)), "root": str(root) if args.keep else None,
            "resumed": reused,
            "full": {"epochs": sum(c["epochs"] for c in full["certificates"]), "seconds": full["seconds"]},
            "halving": {"epochs": sum(c["epochs"] for c in halved["certificates"]), "seconds": halved["seconds"],
                        "survivors": len(survivors), "flop_share": flop_share},
            "top": tops, "kept": len(set(tops["full"]["ids"]) & set(tops["halving"]["ids"])),
            "replay_predicted": {"epochs": predicted["epochs"], "kept": predicted["kept"]["all"],
                                 "same_survivors": set(predicted["survivors"]) == survivors},
            "replay": table,
        }
        if not args.skip_downstream:
            result["downstream"] = {"full": downstream(full_ws), "halving": downstream(halving_ws)}
        return result
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


def number(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}"


def report_run(result: dict[str, Any], families: Sequence[str]) -> list[str]:
    full, halved = result["full"], result["halving"]
    lines = [f"grid: {result['configs']} configs, batches of {result['batch_size']}, max {result['limit']} epochs; "
             f"halving {result['setting']}",
             f"epochs: full {full['epochs']:,}, halving {halved['epochs']:,} ({halved['epochs'] / full['epochs']:.0%}); "
             f"wall: full {full['seconds']:.0f} s, halving {halved['seconds']:.0f} s "
             f"({halved['seconds'] / full['seconds']:.0%}{'; resumed: the sessions added up' if result['resumed'] else ''}); "
             f"{halved['survivors']} trained to their end; default-profile FLOP (cost model): {halved['flop_share']:.0%}",
             f"top {TOP} kept: {result['kept']} of {TOP} (replay predicted {result['replay_predicted']['kept']}, "
             f"{result['replay_predicted']['epochs']:,} epochs; same survivors: "
             f"{result['replay_predicted']['same_survivors']})"]
    for name in ("full", "halving"):
        top = result["top"][name]
        lines.append(f"top {TOP} test loss, {name}: best {top['best_test_loss']:.6f}, median {top['median_test_loss']:.6f}")
    if "downstream" in result:
        lines.append("downstream best model (initialize " + " ".join(DOWNSTREAM) + " -> sweep -> build --top 5):")
        for name in ("full", "halving"):
            best = result["downstream"][name]
            lines.append(f"  {name:>7}: best: profit {number(best['profit'])}, out-of-sample profit "
                         f"{number(best['oos_profit'])}, DSR {number(best['dsr'])}, accuracy {number(best['accuracy'])}, "
                         f"positions {best['positions']}; the {len(best['built'])} built: profits "
                         + ", ".join(number(m["profit"]) for m in best["built"]) + "; out-of-sample "
                         + ", ".join(number(m["oos_profit"]) for m in best["built"]) + "; DSR "
                         + ", ".join(number(m["dsr"]) for m in best["built"]))
    return lines + report_replay(result["replay"], families)


def report_replay(table: dict[str, Any], families: Sequence[str]) -> list[str]:
    lines = [f"replay over {table['models']} full histories {table['families']} in {table['batches']} batches: "
             f"{table['full_epochs']:,} epochs, {table['mean_epochs']:.1f} a model, {table['at_limit']} at the "
             f"{table['limit']}-epoch limit",
             "Spearman(best val_loss at epoch N, final test loss): "
             + ", ".join(f"N={n} {r:.2f}" for n, r in table["spearman_rung_vs_test"].items())]
    for loss, correlations in table["spearman_within_loss"].items():
        lines.append(f"  within {loss} ({table['losses'][loss]} models, {table['top_losses'][loss]} of the top {TOP}): "
                     + ", ".join(f"N={n} {r:.2f}" for n, r in correlations.items()))
    lines += format_table(table, families)
    chosen, cheap = choose(table["rows"]), best_within(table["rows"], 0.35)
    for label, row in (("cheapest keeping >= 18 of 20 (per batch)", chosen), ("most kept at <= 35% of the epochs", cheap)):
        if row is None:
            lines.append(f"{label}: none")
        else:
            cell = row["batch"]
            lines.append(f"{label}: {setting(row)}: {cell['epochs_share']:.0%} of the epochs, keeps "
                         f"{cell['kept']['all']} of {TOP} (per family {row['family']['kept']['all']} at "
                         f"{row['family']['epochs_share']:.0%}; of the top {TOP} by accuracy "
                         f"{cell['kept']['by accuracy']})")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", choices=("run", "replay"), default="run")
    parser.add_argument("--workspace", help="replay: the workspace whose active epoch was trained fully")
    parser.add_argument("--configs", type=int, default=60, help="configs per family (default 60)")
    parser.add_argument("--batch-size", type=int, default=30, help="models per batch (default 30)")
    parser.add_argument("--families", default="DNN,CDNN")
    parser.add_argument("--max-epochs", type=int, default=None, help="default: the configs' own (500)")
    parser.add_argument("--eta", type=int, default=DEFAULT_ETA)
    parser.add_argument("--first-rung", type=int, default=DEFAULT_FIRST_RUNG)
    parser.add_argument("--rungs", type=int, default=DEFAULT_RUNGS)
    parser.add_argument("--seed", type=int, default=7, help="the grid's networks and the replay's batches of 10")
    parser.add_argument("--keep", metavar="DIR", help="keep the workspaces in DIR (default: a temporary directory)")
    parser.add_argument("--skip-downstream", action="store_true")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    for name in ("configs", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} {getattr(args, name)}: allowed 1 and more")
    unknown = [f for f in args.families.split(",") if f not in FAMILIES]
    if unknown:
        parser.error(f"--families {unknown[0]!r} is unknown; allowed {', '.join(FAMILIES)}")
    try:  # the halving options' ranges are the command's own
        halving = TrainingOptions(max_epochs=args.max_epochs, search=HALVING, eta=args.eta,
                                  first_rung=args.first_rung, rungs=args.rungs)
    except UsageError as exc:
        parser.error(str(exc))

    def log(line: str) -> None:
        print(line, flush=True)

    if args.mode == "replay":
        if not args.workspace:
            parser.error("replay needs --workspace")
        ws = Workspace(Path(args.workspace))
        models = read_trained(ws)
        if not models:
            parser.error(f"{args.workspace}: no fully trained regressions in the active epoch")
        limit = max(m.limit for m in models)
        result = replay_table(models, limit, args.seed)
        lines = report_replay(result, sorted(result["families"]))
    else:
        result = run(args, halving, log)
        lines = report_run(result, args.families.split(","))
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
