"""Regression factory speed, each against a baseline run in this process.

1. Dataset windowing (SEMANTICS §3) of a default-size epoch (48 months of
   30-minute candles, lookback 128, predictions 32): the vectorised
   ``sliding_window_view`` split vs a per-row Python loop. Prints the speed-up.
2. Training-loop overhead: ``train_model`` (stateless per-epoch shuffle
   pipeline, early-stopping state, a checkpoint every epoch, log line, event,
   model file and certificate) vs bare Keras on the same arrays
   (``model.fit(validation_split, shuffle=True)``, evaluate, predict, save).
   Same network, batch 512, same number of epochs (below the patience, so early
   stopping does not cut either run). Target: ratio <= 1.15.

Run: .venv/bin/python bench/bench_regression_datasets.py [--epochs N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from epoch_builder.regressions.datasets import RegressionDatasets, split, summarize, windows  # noqa: E402

ROWS = 48 * 30 * 48  # 48 months of 30-minute candles
LOOKBACK, PREDICTIONS, TRAIN_SPLIT, VALIDATION_SPLIT = 128, 32, 0.75, 0.2


def series() -> np.ndarray:
    walk = np.cumsum(np.random.default_rng(3).normal(0, 1, ROWS))
    return (walk - walk.min()) / (walk.max() - walk.min()) * 0.999 + 0.001


def naive_split(values: np.ndarray) -> tuple[np.ndarray, ...]:
    xs, ys = [], []
    i = LOOKBACK
    while i < len(values) - PREDICTIONS:
        xs.append(values[i - LOOKBACK:i])
        ys.append(values[i:i + PREDICTIONS])
        i += 1
    cut = int(len(values) * TRAIN_SPLIT)
    x, y = np.array(xs, dtype=np.float32), np.array(ys, dtype=np.float32)
    return x[:cut], y[:cut], x[cut:], y[cut:]


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def bench_windows(values: np.ndarray) -> None:
    fast = split(values, LOOKBACK, PREDICTIONS, TRAIN_SPLIT)
    slow = naive_split(values)
    assert all(np.array_equal(a, b) for a, b in zip(fast, slow))
    t_fast = best_of(lambda: split(values, LOOKBACK, PREDICTIONS, TRAIN_SPLIT))
    t_slow = best_of(lambda: naive_split(values))
    print(f"windows: {len(fast[0]) + len(fast[2]):,} windows of {LOOKBACK}+{PREDICTIONS} over {ROWS:,} rows")
    print(f"  per-row loop (baseline) {t_slow * 1000:8.1f} ms")
    print(f"  sliding_window_view      {t_fast * 1000:8.1f} ms   speed-up x{t_slow / t_fast:.1f}")


def workspace_with_epoch(root: Path):
    from epoch_builder.epoch import EpochConfig
    from epoch_builder.workspace import Workspace

    config = EpochConfig(id="_BENCH", seed=60184, epoch_width=48, epoch_width_unit="months", sma_window_size=25,
                         train_split=TRAIN_SPLIT, validation_split=VALIDATION_SPLIT, regression_lookback=LOOKBACK,
                         regression_predictions=PREDICTIONS, exchange_fee=0.065, position_size=10000, leverage=3,
                         idle_minutes_on_position_close=180)
    ws = Workspace(root)
    config.save(ws.epoch_config_file)
    return ws


def bench_training(values: np.ndarray, epochs: int) -> None:
    import keras

    from epoch_builder.regressions.architectures import build_model
    from epoch_builder.regressions.runtime import seed_everything
    from epoch_builder.regressions.training import BATCH_SIZE, compile_model, train_model

    train_x, train_y, test_x, test_y = split(values, LOOKBACK, PREDICTIONS, TRAIN_SPLIT)
    x, y = windows(values, LOOKBACK, PREDICTIONS)
    cut = len(train_x)
    data = RegressionDatasets(train_x, train_y, test_x, test_y, x[cut:, -1].copy(), y[cut:, -1].copy(),
                              start=0, end=1, summary=summarize(values))
    cfg = {"id": "BENCH", "description": "bench", "lookback": LOOKBACK, "predictions": PREDICTIONS,
           "learning_rate": -1, "optimizer": "adam", "loss": "mean_absolute_error", "metric": "mean_squared_error",
           "keras_model": {"name": "KR_DNN_S3", "units": [256, 128, 64], "activations": ["relu"] * 3}}

    def bare(out: Path) -> None:
        keras.backend.clear_session()
        seed_everything(60184)
        model = build_model(cfg["keras_model"], LOOKBACK, PREDICTIONS)
        compile_model(model, cfg)
        model.fit(train_x, train_y, batch_size=BATCH_SIZE, epochs=epochs, validation_split=VALIDATION_SPLIT,
                  shuffle=True, verbose=0)
        model.evaluate(test_x, test_y, batch_size=BATCH_SIZE, verbose=0)
        model.predict(test_x, batch_size=4096, verbose=0)
        model.save(out / "bare.keras")

    def ours(root: Path) -> None:
        ws = workspace_with_epoch(root)
        train_model(ws, cfg, data, seed=60184, validation_split=VALIDATION_SPLIT, max_epochs=epochs,
                    position=(1, 1), eta=None, log=lambda *_: None)

    with tempfile.TemporaryDirectory() as tmp:
        bare(Path(tmp))  # warm-up: TensorFlow start, kernels
        ours(Path(tmp) / "warm")
        t_bare = min(best_of(lambda: bare(Path(tmp)), 1) for _ in range(2))
        runs = []
        for n in range(2):
            root = Path(tmp) / f"run{n}"
            runs.append(best_of(lambda: ours(root), 1))
        t_ours = min(runs)
    print(f"training: KR_DNN_S3 [256,128,64], {len(train_x):,} train windows, {epochs} epochs, batch {BATCH_SIZE}")
    print(f"  bare model.fit (baseline) {t_bare:7.2f} s")
    print(f"  train_model               {t_ours:7.2f} s   ratio {t_ours / t_bare:.3f} (target <= 1.15)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    values = series()
    bench_windows(values)
    from epoch_builder.regressions.runtime import configure_tensorflow

    configure_tensorflow()
    bench_training(values, args.epochs)


if __name__ == "__main__":
    main()
