"""Regression training speed per family on a default-profile epoch, against baselines run in this process.

The bench makes its own epoch: 4 years of synthetic 1-minute BTC-like candles (Binance CSV), imported and
cut by the real pipeline with the ``default`` profile (48 months, 30-minute prediction candles, lookback 128,
predictions 32, validation split 0.2: ~41,000 train windows, 81 batches of 512 an epoch). Then, for each
family of the default grid (``--families`` to limit), one config drawn from that grid with a seeded choice
(printed) is trained ``--epochs`` times three ways, one after the other in this process (these machines are
noisy: only ratios against a run in the same process mean much):

* bare: ``model.fit`` on the same arrays (``validation_data``, batch 512, ``shuffle=True``), op determinism on;
* ours: ``train_model`` (the stateless per-epoch shuffle pipeline, early-stopping state, a checkpoint every
  epoch, log line, event, model, history and certificate), op determinism on (the default);
* fast: ``train_model`` with op determinism off (``train-regression-batch --fast``).

Reported per family: seconds per warm epoch (the first epoch, which traces the functions, is left out;
``--epochs 1`` reports the first), the overhead ratio ours / bare, the --fast factor ours / fast (> 1: --fast
is faster), and the projection of hours for the family's whole default grid = models x s/epoch x epochs per
model. The epochs per model are the cost model's (``epoch_builder/regressions/cost.py``): with ``--observed
WORKSPACE``, each family's mean ``epochs`` of the certificates in that workspace's active epoch; for a family
without any, the stated assumption ``DEFAULT_EPOCHS`` (measured on real candles), and the report says which
it used per family; ``--epochs-per-model N`` overrides both.

    .venv/bin/python bench/bench_training.py [--families DNN,CDNN] [--epochs 2] [--epochs-per-model 30]
        [--observed WORKSPACE] [--seed 60184] [--pack 8] [--skip-single] [--windows N] [--json]
        [--fast] [--mixed-precision] [--search halving [--eta 2] [--first-rung 1]]

The packing measurement's runs of ``train-regression-batch`` take the command's own options (those of
``epoch_builder/regressions/options.py`` that the bench does not set itself: it sets the epochs, the pack and
the processes); with ``--search halving`` the two-process run is left out (halving trains in one process).

LSTM, CLSTM and GRU are expected to take minutes per epoch at default size on a 2-core CPU: ``--windows N``
trains every run on the first N windows (the packing factors hold; per-epoch times are not the default's).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # the Keras array adapter's native NodeDef lines (bare runs)

from bench_import import synthetic_binance_csv  # noqa: E402  (4 years of 1m candles, the import bench's)
from epoch_builder.errors import UsageError  # noqa: E402
from epoch_builder.regressions.architectures import FAMILIES  # noqa: E402
from epoch_builder.regressions.options import TrainingOptions, add_arguments  # noqa: E402
from epoch_builder.workspace import Workspace  # noqa: E402

EPOCH_ID = "_BENCH_TRAINING"
EPOCH_LINE = re.compile(r" epoch (\d+)/\d+ .*\((\d+\.\d+)s\)")


# --- the epoch ------------------------------------------------------------------------------

def default_epoch(root: Path, log: Callable[[str], None]) -> Workspace:
    """Synthetic candles -> `candlesticks import` -> `create-epoch --profile default` (every default)."""
    from epoch_builder.create_epoch import create_epoch
    from epoch_builder.importer import import_candlesticks

    started = time.perf_counter()
    source = root / "BTCUSDT-1m-synthetic.csv"
    synthetic_binance_csv(source)
    ws = Workspace(root / "ws")
    import_candlesticks(ws, [source], log=lambda *_: None)
    source.unlink()
    create_epoch(ws, EPOCH_ID, profile="default", log=lambda *_: None)
    log(f"default-profile epoch made in {time.perf_counter() - started:.1f} s")
    return ws


def sampled_configs(ws: Workspace, families: list[str], seed: int) -> tuple[dict[str, dict], dict[str, int]]:
    """One default-grid config per family (``random.Random(seed).choice`` of the family's configs, each
    family drawn with its own generator so the pick does not depend on --families) and the grid's counts."""
    from epoch_builder.regressions.grid import load_grid, plan

    config = ws.load_epoch_config()
    per_family = plan(load_grid(None), config.id, config.seed, config.regression_lookback, config.regression_predictions)
    picks = {family: random.Random(f"{seed}:{family}").choice(per_family[family]) for family in families}
    return picks, {family: len(configs) for family, configs in per_family.items()}


def observed_epochs(root: Path) -> dict[str, Any]:
    """Each family's epochs per model in ``root``'s active epoch (the cost model's: the mean of its
    certificates), for the families that have any."""
    from epoch_builder.regressions import cost

    return cost.observed_epochs(cost.read_certificates(Workspace(root).epoch().regressions_dir))


# --- the three runs -------------------------------------------------------------------------

def warm_seconds(per_epoch: list[float]) -> float:
    """Mean of the epochs after the first (which traces the train and test functions)."""
    warm = per_epoch[1:] or per_epoch
    return sum(warm) / len(warm)


def bare_fit(cfg: dict[str, Any], data: Any, validation_split: float, seed: int, epochs: int) -> list[float]:
    """Keras alone on the same arrays and network; seconds of each epoch, end to end like train_model's."""
    import keras

    from epoch_builder.regressions.architectures import build_model
    from epoch_builder.regressions.runtime import seed_everything
    from epoch_builder.regressions.training import BATCH_SIZE, validation_cut, compile_model

    keras.backend.clear_session()
    seed_everything(seed)
    model = build_model(cfg["keras_model"], cfg["lookback"], cfg["predictions"])
    compile_model(model, cfg)
    cut = validation_cut(len(data.train_x), validation_split)
    times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_train_begin(self, logs: Any = None) -> None:
            self.mark = time.monotonic()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            times.append(time.monotonic() - self.mark)
            self.mark = time.monotonic()

    model.fit(data.train_x[:cut], data.train_y[:cut], batch_size=BATCH_SIZE, epochs=epochs, shuffle=True,
              validation_data=(data.train_x[cut:], data.train_y[cut:]), callbacks=[Timer()], verbose=0)
    return times


def ours(ws: Workspace, cfg: dict[str, Any], data: Any, epochs: int, *, deterministic: bool) -> list[float]:
    """train_model as train-regression-batch runs it; seconds of each epoch from its epoch log lines."""
    import shutil

    from epoch_builder.regressions.runtime import configure_tensorflow
    from epoch_builder.regressions.training import train_model

    configure_tensorflow(op_determinism=deterministic)
    config = ws.load_epoch_config()
    times: list[float] = []

    def log(line: str) -> None:
        found = EPOCH_LINE.search(line)
        if found:
            times.append(float(found.group(2)))

    train_model(ws, cfg, data, seed=config.seed, validation_split=config.validation_split, max_epochs=epochs,
                position=(1, 1), eta=None, log=log)
    # the next run must train again, not find a certificate
    shutil.rmtree(ws.epoch().regressions_dir / cfg["id"])
    shutil.rmtree(ws.epoch().regression_checkpoint_dir(cfg["id"]), ignore_errors=True)
    return times


def bench_family(ws: Workspace, family: str, cfg: dict[str, Any], data: Any, epochs: int) -> dict[str, Any]:
    from epoch_builder.regressions.runtime import configure_tensorflow

    config = ws.load_epoch_config()
    configure_tensorflow(op_determinism=True)
    bare = bare_fit(cfg, data, config.validation_split, config.seed, epochs)
    deterministic = ours(ws, cfg, data, epochs, deterministic=True)
    fast = ours(ws, cfg, data, epochs, deterministic=False)
    configure_tensorflow(op_determinism=True)
    s_bare, s_ours, s_fast = warm_seconds(bare), warm_seconds(deterministic), warm_seconds(fast)
    return {"family": family, "config": cfg["id"], "keras_model": cfg["keras_model"],
            "learning_rate": cfg["learning_rate"], "loss": cfg["loss"],
            "epoch_seconds": {"bare": bare, "ours": deterministic, "fast": fast},
            "s_per_epoch": s_ours, "s_per_epoch_bare": s_bare, "s_per_epoch_fast": s_fast,
            "overhead_ratio": s_ours / s_bare, "fast_factor": s_ours / s_fast}


# --- packing: K models one at a time vs together ----------------------------------------------

def packed_configs(ws: Workspace, family: str, count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` default-grid configs of ``family`` (a seeded sample, its own generator per family)."""
    from epoch_builder.regressions.grid import load_grid, plan

    config = ws.load_epoch_config()
    configs = plan(load_grid(None), config.id, config.seed, config.regression_lookback,
                   config.regression_predictions)[family]
    return random.Random(f"{seed}:{family}:pack").sample(configs, min(count, len(configs)))


def _forget(ws: Workspace, ids: list[str], batch: str) -> None:
    """Remove what a run trained, so the next run trains the same models again."""
    import shutil

    paths = ws.epoch()
    for model_id in ids:
        shutil.rmtree(paths.regressions_dir / model_id, ignore_errors=True)
        shutil.rmtree(paths.regression_checkpoint_dir(model_id), ignore_errors=True)
        shutil.rmtree(paths.regression_tensorboard_dir(model_id), ignore_errors=True)
    paths.batched_certificates_file(batch).unlink(missing_ok=True)


def layer_matmuls(cfg: dict[str, Any]) -> list[tuple[int, int, int]] | None:
    """The model's weighted layers as the matmuls of one forward pass of one window, (rows, inner, columns):
    a Dense layer (1, inputs, units), a Conv1D (output steps, kernel x channels, filters), im2col's view.
    None when the model has a layer of another kind (the recurrent families: no such simple count)."""
    import keras

    from epoch_builder.regressions.architectures import build_model

    model = build_model(cfg["keras_model"], cfg["lookback"], cfg["predictions"])
    shapes = []
    for layer in model.layers:
        if not layer.weights:
            continue
        if isinstance(layer, keras.layers.Dense):
            inputs, units = layer.kernel.shape
            shapes.append((1, int(inputs), int(units)))
        elif isinstance(layer, keras.layers.Conv1D):
            kernel, channels, filters = layer.kernel.shape
            shapes.append((int(layer.output.shape[1]), int(kernel * channels), int(filters)))
        else:
            return None
    return shapes


def epoch_flops(shapes: list[tuple[int, int, int]], train_rows: int, validation_rows: int) -> float:
    """Multiply-add FLOPs of one training epoch: forward, the two backward matmuls (gradients of the inputs
    and of the weights: twice the forward's) over the train windows, the forward over the validation ones."""
    forward = sum(2 * rows * inner * columns for rows, inner, columns in shapes)
    return forward * (3 * train_rows + validation_rows)


def matmul_rate(shapes: list[tuple[int, int, int]], batch: int, seconds: float = 1.5) -> float:
    """FLOP/s of this machine on exactly these matmuls, a batch of ``batch`` windows each, as one compiled
    function run repeatedly: the rate a pack of models made only of them could reach at best."""
    import tensorflow as tf

    pairs = [(tf.random.normal((batch * rows, inner)), tf.random.normal((inner, columns)))
             for rows, inner, columns in shapes]

    @tf.function
    def run() -> Any:
        return [tf.matmul(a, b) for a, b in pairs]

    run()
    flops = sum(2 * batch * rows * inner * columns for rows, inner, columns in shapes)
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        out = run()
        calls += 1
    float(out[0][0, 0])  # wait for the last call
    return flops * calls / (time.perf_counter() - started)


def compute_ceiling(configs: list[dict[str, Any]], train_rows: int, validation_rows: int,
                    warm: dict[str, float]) -> dict[str, Any] | None:
    """How close each way came to the machine's arithmetic: FLOP/s of a warm epoch alone and packed, against
    the rate of the models' own layer shapes as bare matmuls. ``warm_factor_ceiling``: the warm-epoch factor
    a pack would reach running at that rate (alone's warm time / the FLOPs at the rate): packing removes
    per-step overhead, not arithmetic."""
    from epoch_builder.regressions.training import BATCH_SIZE

    per_model = [layer_matmuls(cfg) for cfg in configs]
    if any(shapes is None for shapes in per_model):
        return None
    shapes = [shape for model in per_model for shape in model]
    flops = sum(epoch_flops(model, train_rows, validation_rows) for model in per_model)
    rate = matmul_rate(shapes, BATCH_SIZE)
    return {"epoch_gflop": flops / 1e9, "matmul_gflops": rate / 1e9,
            "alone_gflops": flops / warm["alone"] / 1e9, "packed_gflops": flops / warm["packed"] / 1e9,
            "packed_share_of_rate": flops / warm["packed"] / rate,
            "warm_factor_ceiling": warm["alone"] / (flops / rate)}


def limit_windows(data: Any, windows: int) -> Any:
    """The datasets with only the first ``windows`` train windows and test windows (``--windows``): an
    epoch of fewer steps of the same batch size and the same models, for the families whose full epoch takes
    minutes here. Per-step costs, hence the warm-epoch factors, are what such a run measures."""
    import dataclasses

    return dataclasses.replace(data, train_x=data.train_x[:windows], train_y=data.train_y[:windows],
                               test_x=data.test_x[:windows], test_y=data.test_y[:windows],
                               test_last_x=data.test_last_x[:windows], test_last_y=data.test_last_y[:windows])


def use_limited_windows(windows: int) -> None:
    """Every ``train_batch`` of this process loads the limited datasets (its processes load their own:
    the two-process run is skipped then)."""
    from epoch_builder.regressions import training

    load = training.load_datasets
    training.load_datasets = lambda *args, **kwargs: limit_windows(load(*args, **kwargs), windows)


PACK_EPOCH_LINE = re.compile(r" epoch (\d+)/\d+ .*\((\d+\.\d+)s for the pack\)")


def train_command(ws: Workspace, family: str, batch: str, training: TrainingOptions, log: Callable[[str], None],
                  windows: int) -> None:
    """`epoch-builder train-regression-batch` in its own process, as a server runs it (TensorFlow's thread
    pools are sized per process, for its pack size, so the environment's sizes are left out), with the flags
    of ``training``; ``log`` gets its log lines. ``windows`` (--windows, 0: all): that process trains on the
    limited datasets."""
    import subprocess

    from epoch_builder.regressions.runtime import THREAD_POOL_VARIABLES

    argv = ["train-regression-batch", "--workspace", str(ws.root), "--category", family, "--batch", batch,
            *training.argv()]
    options = training.argv()
    code = ("import sys; sys.argv[1:] = {argv!r}; sys.path.insert(0, {bench!r}); import bench_training; "
            "bench_training.use_limited_windows({windows}) if {windows} else None; "
            "from epoch_builder.cli import main; sys.exit(main(sys.argv[1:]))").format(
                argv=argv, bench=str(Path(__file__).resolve().parent), windows=windows)
    env = {k: v for k, v in os.environ.items() if k not in THREAD_POOL_VARIABLES}
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, env=env, cwd=Path(__file__).resolve().parents[1]) as proc:
        tail: list[str] = []
        for line in proc.stderr:  # type: ignore[union-attr]
            log(line.rstrip("\n"))
            tail = (tail + [line])[-20:]
    if proc.returncode != 0:
        raise SystemExit(f"train-regression-batch {' '.join(options)} failed (exit {proc.returncode}):\n" + "".join(tail))


def bench_packing(ws: Workspace, family: str, configs: list[dict[str, Any]], epochs: int,
                  epochs_per_model: float, rows: tuple[int, int], batch_models: int, windows: int = 0,
                  training: TrainingOptions | None = None) -> dict[str, Any]:
    """The same batch of K = len(configs) models trained with --pack 1 and with --pack K.

    Reported: the whole batch's wall time each way (build, tracing, every epoch, evaluation, files) and its
    models per hour; the warm-epoch factor (K x a model's warm epoch alone / the pack's warm epoch); and the
    factor projected to a default batch of ``batch_models`` models trained ``epochs_per_model`` epochs each:
    each way's time split into the process's start (TensorFlow, the datasets: until its "datasets:" line,
    once per batch), its warm epochs and the rest (per pack or model: build, tracing, certificates), the
    start kept, the rest scaled by the batch's size and the warm epochs by the epochs; and, for the
    families made of Dense and Conv1D layers, the compute ceiling (``compute_ceiling``) of ``rows``
    (train, validation windows)."""
    from epoch_builder.children import available_cores
    from epoch_builder.storage import atomic_write_json

    base = replace(training or TrainingOptions(), max_epochs=epochs)  # the command's options, the bench's epochs
    name = f"KR_BENCH_PACK_{family}"
    path = ws.epoch().regression_training_configs_dir / family / f"{name}.json"
    atomic_write_json(path, {"name": name, "category": family, "configs": configs}, indent=2)
    ids = [c["id"] for c in configs]
    count = len(configs)
    seconds: dict[str, float] = {}
    startup: dict[str, float] = {}
    epoch_seconds: dict[str, list[tuple[int, float]]] = {"alone": [], "packed": []}
    for mode, size in (("alone", 1), ("packed", count)):
        _forget(ws, ids, name)
        pattern = EPOCH_LINE if size == 1 else PACK_EPOCH_LINE

        def log(line: str, mode: str = mode, pattern: re.Pattern[str] = pattern) -> None:
            if " datasets: " in line and mode not in startup:
                startup[mode] = time.monotonic() - started
            found = pattern.search(line)
            if found:
                epoch_seconds[mode].append((int(found.group(1)), float(found.group(2))))

        started = time.monotonic()
        train_command(ws, family, name, replace(base, pack=size), log, windows)
        seconds[mode] = time.monotonic() - started
    processes = min(2, available_cores())
    if processes > 1 and not windows and not base.halving:  # packs of K/2 in 2 processes, the cores split
        _forget(ws, ids, name)
        started = time.monotonic()
        train_command(ws, family, name, replace(base, pack=max(1, count // processes), processes=processes),
                      lambda _line: None, windows)
        seconds["packed_processes"] = time.monotonic() - started
    _forget(ws, ids, name)
    path.unlink()
    # A pack logs one line per model and epoch with the pack's time: one figure per epoch.
    pack_epochs = sorted(set(epoch_seconds["packed"]))
    warm_alone = [s for e, s in epoch_seconds["alone"] if e > 1] or [s for _, s in epoch_seconds["alone"]]
    warm_pack = [s for e, s in pack_epochs if e > 1] or [s for _, s in pack_epochs]
    warm = {"alone": count * sum(warm_alone) / len(warm_alone), "packed": sum(warm_pack) / len(warm_pack)}
    fixed = {mode: seconds[mode] - startup[mode] - epochs * warm[mode] for mode in warm}
    scale = batch_models / count
    projected = {mode: startup[mode] + scale * (fixed[mode] + epochs_per_model * warm[mode]) for mode in warm}
    hour = 3600.0
    return {"family": family, "models": count, "configs": ids, "epochs": epochs, "seconds": seconds,
            "models_per_hour": {mode: count * hour / s for mode, s in seconds.items()},
            "factor": seconds["alone"] / seconds["packed"],
            "factor_processes": (seconds["alone"] / seconds["packed_processes"] if "packed_processes" in seconds
                                 else None),
            "warm_epoch_seconds_all_models": warm, "warm_factor": warm["alone"] / warm["packed"],
            "startup_seconds": startup, "fixed_seconds": fixed, "projected_epochs_per_model": epochs_per_model,
            "projected_batch_models": batch_models, "windows": windows or None,
            "projected_models_per_hour": {mode: batch_models * hour / s for mode, s in projected.items()},
            "projected_factor": projected["alone"] / projected["packed"],
            "compute": compute_ceiling(configs, *rows, warm)}


# --- projection and output --------------------------------------------------------------------

def projection(results: list[dict[str, Any]], models: dict[str, int], epochs_per_model: dict[str, float]) -> dict[str, Any]:
    rows = {}
    for r in results:
        family = r["family"]
        per_model = epochs_per_model[family]
        rows[family] = {"models": models[family], "epochs_per_model": per_model,
                        "hours": models[family] * r["s_per_epoch"] * per_model / 3600,
                        "hours_fast": models[family] * r["s_per_epoch_fast"] * per_model / 3600}
    return {"families": rows, "hours": sum(row["hours"] for row in rows.values()),
            "hours_fast": sum(row["hours_fast"] for row in rows.values()),
            "not_measured": [f for f in models if f not in rows]}


def print_packing(packing: list[dict[str, Any]]) -> None:
    if not packing:
        return
    print(f"{'family':7} {'models':>6} {'epochs':>6} {'alone s':>8} {'packed s':>8} {'factor':>6} {'warm x':>6} "
          f"{'proj. models/h alone':>20} {'packed':>7} {'proj. x':>7} {'2 proc. s':>9} {'x':>5}")
    for p in packing:
        both = p["seconds"].get("packed_processes")
        print(f"{p['family']:7} {p['models']:6} {p['epochs']:6} {p['seconds']['alone']:8.1f} {p['seconds']['packed']:8.1f} "
              f"{p['factor']:6.2f} {p['warm_factor']:6.2f} {p['projected_models_per_hour']['alone']:20.0f} "
              f"{p['projected_models_per_hour']['packed']:7.0f} {p['projected_factor']:7.2f} "
              + (f"{both:9.1f} {p['factor_processes']:5.2f}" if both else f"{'-':>9} {'-':>5}"))
    for p in packing:
        if p["compute"]:
            c = p["compute"]
            print(f"{p['family']}: a warm epoch is {c['epoch_gflop']:.0f} GFLOP: alone {c['alone_gflops']:.0f} GFLOP/s, "
                  f"packed {c['packed_gflops']:.0f} GFLOP/s = {100 * c['packed_share_of_rate']:.0f}% of "
                  f"{c['matmul_gflops']:.0f} GFLOP/s (the models' layer shapes as bare matmuls, batch 512); "
                  f"warm factor at that rate: {c['warm_factor_ceiling']:.2f}x")
    batches = ", ".join(f"{p['family']} {p['projected_batch_models']}" for p in packing)
    print(f"factor = whole-batch wall time with --pack 1 / with --pack K (same models and epochs, each run its own "
          f"train-regression-batch process); warm x = the same for a warm epoch of all K models; proj. = a default "
          f"batch of the family ({batches} models, the process started once) at "
          f"{packing[0]['projected_epochs_per_model']:g} epochs per model; "
          f"2 proc. = packs of K/2 in 2 processes (--processes 2), the cores split, whole batch"
          + (f"; every run on the first {packing[0]['windows']:,} windows (--windows): the factors hold, the "
             "models/h are not the default profile's" if packing[0]["windows"] else ""))


def print_report(report: dict[str, Any]) -> None:
    print_packing(report["packing"])
    if not report["results"]:
        return
    setup = report["setup"]
    print(f"default profile: {setup['candles']:,} 1m candles -> {setup['train_windows']:,} train windows, "
          f"{setup['validation_windows']:,} of them validate (lookback {setup['lookback']}, predictions "
          f"{setup['predictions']}); {setup['epochs']} epoch(s) a run; config choice seed {setup['seed']}")
    print(f"epochs per model: {setup['epochs_per_model_source']}")
    print(f"{'family':7} {'config (seeded choice)':50} {'bare s/ep':>9} {'ours s/ep':>9} {'overhead':>8} "
          f"{'fast s/ep':>9} {'fast x':>6} {'models':>6} {'hours':>7}")
    for r in report["results"]:
        row = report["projection"]["families"][r["family"]]
        print(f"{r['family']:7} {r['config']:50} {r['s_per_epoch_bare']:9.2f} {r['s_per_epoch']:9.2f} "
              f"{r['overhead_ratio']:8.3f} {r['s_per_epoch_fast']:9.2f} {r['fast_factor']:6.3f} {row['models']:6} "
              f"{row['hours']:7.2f}")
        print(f"        {json.dumps(r['keras_model'])}, learning_rate {r['learning_rate']}, loss {r['loss']}")
    total = report["projection"]
    print(f"projection for the measured families' whole default grid on this machine: {total['hours']:.1f} h "
          f"({total['hours_fast']:.1f} h with --fast)"
          + (f"; not measured: {', '.join(total['not_measured'])}" if total["not_measured"] else ""))
    print("overhead = ours / bare model.fit; fast x = ours / --fast (> 1: --fast is faster); both measured in this "
          "process, " + ("warm epochs only (the first left out)" if setup["epochs"] > 1
                         else "from the first epoch (with tracing): --epochs 2 or more for warm figures"))


def parse_families(text: str) -> list[str]:
    families = [f.strip().upper() for f in text.split(",") if f.strip()]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        raise argparse.ArgumentTypeError(f"{text!r}: allowed {', '.join(FAMILIES)}, comma-separated")
    return families


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", type=parse_families, default=list(FAMILIES), metavar="F,...",
                        help=f"families to measure (default: all, {','.join(FAMILIES)})")
    parser.add_argument("--epochs", type=int, default=2, metavar="N", help="epochs of each run (default 2)")
    parser.add_argument("--epochs-per-model", type=float, metavar="N",
                        help="epochs a model trains before early stopping, for the projection (default: each "
                        "family's mean in --observed, else the cost model's stated assumption, "
                        "epoch_builder/regressions/cost.py DEFAULT_EPOCHS)")
    parser.add_argument("--observed", type=Path, metavar="WORKSPACE",
                        help="a workspace with trained regressions: each family's mean epochs in its active epoch")
    parser.add_argument("--seed", type=int, default=60184, help="seed of the config choice (default 60184)")
    parser.add_argument("--pack", type=int, default=8, metavar="K",
                        help="also train K seeded configs of each family one at a time and packed together "
                        "(--pack 1 vs --pack K, whole-batch wall time); 0 skips it (default 8)")
    parser.add_argument("--skip-single", action="store_true",
                        help="only the packing measurement (no bare / ours / --fast runs)")
    parser.add_argument("--windows", type=int, metavar="N",
                        help="train and test on the first N windows only (fewer steps an epoch, same batch size; "
                        "for the recurrent families' packing factors; skips the two-process run)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    # train-regression-batch's own options for the packing runs, from its table; the bench sets these three
    add_arguments(parser, prefix="packing runs: ", exclude=("max_epochs", "pack", "processes"))
    args = parser.parse_args()
    try:
        training = TrainingOptions.from_args(args, max_epochs=None, pack=None, processes=None)
    except UsageError as exc:
        parser.error(str(exc))
    if args.epochs < 1:
        parser.error(f"--epochs {args.epochs} must be a positive integer")
    if args.windows is not None and args.windows < 1024:
        parser.error(f"--windows {args.windows}: at least 1024 (two batches of 512 to train, some to validate)")
    log = (lambda line: print(line, file=sys.stderr)) if args.json else print

    from epoch_builder.regressions.datasets import load_datasets
    from epoch_builder.regressions.grid import load_grid
    from epoch_builder.regressions.runtime import configure_tensorflow
    from epoch_builder.regressions.training import validation_cut

    from epoch_builder.regressions import cost

    configure_tensorflow()
    observed = observed_epochs(args.observed) if args.observed else {}
    estimates = cost.epochs_per_family(observed, families=args.families)
    if args.epochs_per_model is not None:
        per_model = {f: args.epochs_per_model for f in args.families}
        source = f"{args.epochs_per_model:g} (--epochs-per-model)"
    else:
        per_model = {f: float(e.epochs) for f, e in estimates.items()}
        source = "; ".join(f"{f}: {e.describe()}" for f, e in estimates.items())
    with tempfile.TemporaryDirectory() as tmp:
        ws = default_epoch(Path(tmp), log)
        config = ws.load_epoch_config()
        data = load_datasets(ws, config.regression_lookback, config.regression_predictions)
        if args.windows:
            data = limit_windows(data, args.windows)
            use_limited_windows(args.windows)
            log(f"--windows {args.windows}: {len(data.train_x):,} train / {len(data.test_x):,} test windows")
        picks, models = sampled_configs(ws, args.families, args.seed)
        batch_sizes = load_grid(None)["batch_sizes"]
        cut = validation_cut(len(data.train_x), config.validation_split)
        results, packing = [], []
        for family in args.families:
            if not args.skip_single:
                log(f"{family}: {picks[family]['id']} ...")
                results.append(bench_family(ws, family, picks[family], data, args.epochs))
                log(f"{family}: ours {results[-1]['s_per_epoch']:.2f} s/epoch")
            if args.pack > 1:
                configs = packed_configs(ws, family, args.pack, args.seed)
                log(f"{family}: {len(configs)} models alone, then packed: {', '.join(c['id'] for c in configs)}")
                packing.append(bench_packing(ws, family, configs, args.epochs, per_model[family],
                                             (cut, len(data.train_x) - cut), batch_sizes[family],
                                             windows=args.windows or 0, training=training))
                log(f"{family}: packing factor {packing[-1]['factor']:.2f}x")
        candles = int(json.loads(ws.bundle_file.read_text())["candles"])
    validation = len(data.train_x) - validation_cut(len(data.train_x), config.validation_split)
    report = {"setup": {"candles": candles, "train_windows": len(data.train_x), "validation_windows": validation,
                        "lookback": config.regression_lookback,
                        "predictions": config.regression_predictions, "epochs": args.epochs, "seed": args.seed,
                        "epochs_per_model_source": source},
              "results": results, "projection": projection(results, models, per_model), "packing": packing}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)


if __name__ == "__main__":
    main()
