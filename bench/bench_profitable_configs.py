"""Benchmark: prediction-model engine vs the per-candle oracle on 12 months of 1-minute candles.

Synthetic but realistic inputs (a BTC-like random walk, 20 regressions'
features that share a common trend, random labels), SEMANTICS defaults
(pcr 3, position size 10,000, leverage 3, fee 0.065, idle 180 min, lookback
128, predictions 32, 30-minute prediction candles).

Prints, in one process: oracle and engine configs per CPU-second (one core), the
ratio, engine configs/s on all cores, and the projection (or, with --full, the
measured time) of the default sweep C(20,8) x 2 x 3 = 755,820 configurations.

    .venv/bin/python bench/bench_profitable_configs.py [--months 12] [--oracle-configs 2]
        [--engine-configs 3000] [--parallel-configs 30000] [--workers N] [--full]
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import random
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from epoch_builder.prediction.engine import BacktestData, default_workers, evaluate_many, evaluate_rows  # noqa: E402
from tests.oracle import oracle_simulate  # noqa: E402

MINUTE_MS = 60_000
INTERVAL = 30
LOOKBACK, PREDICTIONS = 128, 32
REGRESSIONS, PER_MODEL = 20, 8
SWEEP_SIZE = math.comb(REGRESSIONS, PER_MODEL) * 2 * 3


def synthetic_data(months: int, seed: int = 60184) -> tuple[BacktestData, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    n = months * 30 * 24 * 60
    ot = 1_600_000_000_000 + np.arange(n, dtype=np.int64) * MINUTE_MS
    close = 30_000 * np.exp(np.cumsum(rng.normal(0, 0.0008, n)))
    open_ = np.concatenate(([30_000.0], close[:-1]))
    high = np.maximum(open_, close) * (1 + rng.exponential(0.0004, n))
    low = np.minimum(open_, close) * (1 - rng.exponential(0.0004, n))
    candles = {"ot": ot, "ct": ot + MINUTE_MS - 1, "o": np.round(open_, 2), "h": np.round(high, 2),
               "l": np.round(low, 2)}
    n_prediction = n // INTERVAL
    k = np.arange(n, dtype=np.int64) // INTERVAL  # the simulation starts at prediction candle `lookback`
    n_features = n_prediction - LOOKBACK - PREDICTIONS
    trend = np.convolve(rng.normal(0, 1, n_features + 50), np.ones(50) / 50, mode="valid")[:n_features]
    features = {}
    for i in range(REGRESSIONS):
        raw = 0.6 * trend * 7 + rng.normal(0, 0.25, n_features)
        features[f"KR_{i:02d}"] = np.round(np.clip(raw, -1, 1), 6)
    labels = {3.0: rng.choice(np.array([1, -1], dtype=np.int8), n_features - 20)}
    data = BacktestData.from_arrays(**candles, k=k, features=features, labels=labels, position_size=10_000,
                                    leverage=3, exchange_fee=0.065, idle_minutes=180)
    return data, candles


def sweep_configs(data: BacktestData, limit: int | None = None, seed: int = 60184) -> list[dict]:
    combos = itertools.combinations(data.regression_ids, PER_MODEL)
    configs = [{"pcr": 3, "msf": msf, "msaf": msaf, "ri": list(ri)}
               for ri in combos for msf in ("mean", "median") for msaf in (1, 1.5, 2)]
    random.Random(seed).shuffle(configs)
    return configs if limit is None else configs[:limit]


def _cpu_seconds() -> float:
    """CPU time of this process and its reaped children (the pool's workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--oracle-configs", type=int, default=3)
    parser.add_argument("--engine-configs", type=int, default=3000)
    parser.add_argument("--parallel-configs", type=int, default=30_000)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--full", action="store_true", help="run the whole 755,820-config sweep")
    args = parser.parse_args()
    workers = args.workers or default_workers()

    started = time.perf_counter()
    data, candles = synthetic_data(args.months)
    configs = sweep_configs(data)
    print(f"data: {data.ot.size:,} 1m candles ({args.months} months), {data.n_features:,} feature windows, "
          f"{len(data.regression_ids)} regressions; {len(configs):,} configs; built in {time.perf_counter() - started:.1f} s")

    started = time.perf_counter()
    data.tables(3.0)
    evaluate_rows(data, configs[:1])
    print(f"engine setup (exit table for pcr 3 + kernel compile/load): {time.perf_counter() - started:.2f} s")

    # One-core rates use this process's CPU time: the machine is shared, and wall time
    # would charge other processes' load to whichever side ran during it.
    started = time.process_time()
    oracle_results = [oracle_simulate(candles, data.k, data.features, data.labels, c, data.position_size,
                                      data.leverage, data.exchange_fee, data.idle_minutes)
                      for c in configs[: args.oracle_configs]]
    oracle_rate = args.oracle_configs / (time.process_time() - started)
    per_candle_us = 1e6 / oracle_rate / data.ot.size
    print(f"oracle:  {oracle_rate:10.3f} configs/s per CPU-second ({per_candle_us:.2f} µs per 1m candle per config)")

    engine_sample = configs[: args.engine_configs]
    started = time.process_time()
    evaluations = evaluate_rows(data, engine_sample)
    engine_rate = len(engine_sample) / (time.process_time() - started)
    for expected, got in zip(oracle_results, evaluations):
        assert (expected["final_balance"], len(expected["positions"])) == (got.final_balance, got.positions)
    positions = np.mean([e.positions for e in evaluations])
    print(f"engine:  {engine_rate:10.1f} configs/s per CPU-second (mean {positions:.1f} positions per config; "
          f"results equal the oracle's)")
    print(f"ratio engine/oracle (1 core each): {engine_rate / oracle_rate:,.0f}x")

    parallel_sample = configs if args.full else configs[: args.parallel_configs]
    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    profitable = sum(e.profitable for _, e in evaluate_many(data, parallel_sample, workers=workers))
    elapsed = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu_before
    rate = len(parallel_sample) / elapsed
    print(f"engine:  {rate:10.1f} configs/s wall-clock on {workers} workers ({len(parallel_sample):,} configs, "
          f"{profitable:,} profitable, {elapsed:.1f} s wall, {cpu:.1f} CPU-s in parent + workers, "
          f"load average now {os.getloadavg()[0]:.1f})")
    if args.full:
        print(f"full default sweep ({SWEEP_SIZE:,} configs): {elapsed / 60:.2f} min measured on {workers} workers")
    else:
        print(f"full default sweep ({SWEEP_SIZE:,} configs): {SWEEP_SIZE / rate / 60:.2f} min projected on {workers} workers; "
              f"the original at {per_candle_us:.2f} µs/candle: {SWEEP_SIZE / oracle_rate / 3600:,.0f} core-hours")


if __name__ == "__main__":
    main()
