"""Benchmark: what the selection-bias statistics of build-prediction-models cost next to the sweep.

Same synthetic 12-month inputs as bench_profitable_configs.py (SEMANTICS
defaults, the default grid of 755,820 configurations). In one process:

1. the sweep's rate on a slice of the grid (configs/s on all workers);
2. the same slice with the per-block profits on (the PBO's kernel run): the ratio;
3. the PBO stage of the build at the default sample (50,000 configurations, 16
   blocks): reservoir sampling left aside (it is a pass over the batch files),
   the backtest of the sample with blocks plus CSCV over the C(16, 8) = 12,870
   splits, and the per-position Sharpe ratios;
4. the reservoir sample drawn from the grid written as 100,000-config batch files
   (JSON parse and validation of every file: the rest of the stage);
5. that stage as a fraction of the full sweep (projected from 1.).

    .venv/bin/python bench/bench_selection.py [--months 12] [--configs 30000] [--sample 50000] [--blocks 16]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_profitable_configs import SWEEP_SIZE, sweep_configs, synthetic_data  # noqa: E402
from epoch_builder.prediction import luck  # noqa: E402
from epoch_builder.prediction.engine import Blocks, Evaluator, default_workers  # noqa: E402
from epoch_builder.prediction.selection import per_position_sharpes, sample_sweep  # noqa: E402
from epoch_builder.storage import atomic_write_json  # noqa: E402


def time_reservoir(configs: list[dict], data, size: int, batch_size: int = 100_000) -> tuple[float, int]:  # noqa: ANN001
    """Seconds to sample ``size`` configurations from the grid written as batch files."""
    import tempfile
    from types import SimpleNamespace

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for number, start in enumerate(range(0, len(configs), batch_size)):
            atomic_write_json(directory / f"batch_{number:02d}.json", configs[start:start + batch_size])
        started = time.perf_counter()
        drawn = sample_sweep(SimpleNamespace(configs_dir=directory), data.regression_ids, list(data.labels), size, 7)
        return time.perf_counter() - started, drawn.total


def timed_run(evaluator: Evaluator, configs: list[dict]) -> tuple[float, np.ndarray, np.ndarray]:
    started = time.perf_counter()
    rows, blocks = [], []
    for _, chunk_rows, chunk_blocks in evaluator.evaluate_chunks(configs):
        rows.append(chunk_rows)
        blocks.append(chunk_blocks)
    return time.perf_counter() - started, np.concatenate(rows), np.concatenate(blocks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--configs", type=int, default=30_000, help="slice of the grid timed with and without blocks")
    parser.add_argument("--sample", type=int, default=50_000)
    parser.add_argument("--blocks", type=int, default=16)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    workers = args.workers or default_workers()
    data, _ = synthetic_data(args.months)
    configs = sweep_configs(data)
    bounds = luck.block_bounds(int(data.ot[0]), int(data.ot[data.end - 1]) + 1, args.blocks)
    blocks = Blocks.by_time(data, bounds)
    print(f"data: {data.ot.size:,} 1m candles ({args.months} months), {len(configs):,} configs, {workers} worker(s)")
    with Evaluator(data, workers) as plain, Evaluator(data, workers, blocks) as blocked:
        timed_run(plain, configs[:2000])  # warm both pools
        timed_run(blocked, configs[:2000])
        slice_ = configs[: args.configs]
        plain_s, _, _ = timed_run(plain, slice_)
        blocked_s, _, _ = timed_run(blocked, slice_)
        rng = np.random.default_rng(0)
        sample = [configs[i] for i in np.sort(rng.choice(len(configs), size=min(args.sample, len(configs)), replace=False))]
        started = time.perf_counter()
        _, rows, performance = timed_run(blocked, sample)
        evaluated = time.perf_counter()
        result = luck.probability_of_backtest_overfitting(performance.T)
        cscv = time.perf_counter()
        sharpes = per_position_sharpes(rows, [c["pcr"] for c in sample], data)
        finished = time.perf_counter()
    reservoir_s, total = time_reservoir(configs, data, args.sample)
    sweep_rate = len(slice_) / plain_s
    stage = finished - started + reservoir_s
    full_sweep = SWEEP_SIZE / sweep_rate
    print(f"sweep:            {sweep_rate:,.0f} configs/s ({len(slice_):,} configs in {plain_s:.2f} s)")
    print(f"with blocks:      {len(slice_) / blocked_s:,.0f} configs/s: {blocked_s / plain_s:.2f}x the sweep's time")
    print(f"PBO stage:        {stage - reservoir_s:.2f} s for {len(sample):,} configs x {args.blocks} blocks "
          f"(backtest {evaluated - started:.2f} s, CSCV over {result.splits:,} splits {cscv - evaluated:.2f} s, "
          f"Sharpe ratios {finished - cscv:.3f} s); PBO {result.pbo:.3f}, "
          f"{int(np.isfinite(sharpes).sum()):,} defined Sharpe ratios")
    print(f"sampling:         {reservoir_s:.2f} s to draw {args.sample:,} of {total:,} configs from the batch files")
    print(f"full sweep:       {full_sweep:.1f} s projected ({SWEEP_SIZE:,} configs): the PBO stage adds "
          f"{stage / full_sweep:.2f}x the sweep's time")


if __name__ == "__main__":
    main()
