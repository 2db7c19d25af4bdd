"""How much of the best backtest is selection luck? (docs/prediction-models.md, "How much is luck?")

``build-prediction-models`` keeps the most profitable of every configuration the
sweep tried, all backtested on the same candles, and the best of many noisy
backtests overstates what it will earn. Besides the out-of-sample window
(``create-epoch --oos-days``), the build measures that bias with the two
statistics of ``luck.py``:

* **PBO by CSCV** over a seeded uniform sample of the sweep's configurations
  (at most ``--pbo-sample``; every one with 0): the kernel backtests each once
  and sums its profit per block of the in-sample test range (S contiguous
  blocks of equal time, a position counted in the block of its entry candle),
  then CSCV ranks, for each of the C(S, S/2) halvings, the in-sample best out
  of sample. The sample is drawn in one pass over the batch files (reservoir
  sampling with ``random.Random(seed)``, the epoch seed), so the same epoch
  always gives the same figure.
* **Deflated Sharpe ratio** of each built model: the Sharpe ratio of its
  per-position returns (profit or loss / position size, the backtest's
  positions in order), against the expected best of N skill-less trials, N =
  every configuration of the sweep and V = the variance of the sampled
  configurations' per-position Sharpe ratios (those with at least two
  positions and both wins and losses; with two outcomes per pcr these come
  from the counts alone).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from epoch_builder import output
from epoch_builder.errors import EpochBuilderError, UsageError
from epoch_builder.storage import read_json
from epoch_builder.workspace import EpochPaths

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from epoch_builder.prediction.engine import BacktestData

# The options' defaults live here and the CLI reads them, so this module stays light (NumPy and
# the statistics are imported inside the functions that use them).

DEFAULT_BLOCKS = 16
DEFAULT_SAMPLE = 50_000
MIN_SAMPLE = 2
RETURNS = "per position: profit or loss / position size"
PERFORMANCE = "profit per block of the in-sample test range (a position counts in its entry candle's block)"


def check_options(blocks: int, sample: int) -> None:
    if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 2 or blocks % 2:
        raise UsageError(f"parameter --pbo-blocks={blocks!r} must be an even integer >= 2 (default {DEFAULT_BLOCKS})")
    if isinstance(sample, bool) or not isinstance(sample, int) or not (sample == 0 or sample >= MIN_SAMPLE):
        raise UsageError(f"parameter --pbo-sample={sample!r} must be 0 (every configuration) or >= {MIN_SAMPLE} "
                         f"(default {DEFAULT_SAMPLE:,})")


@dataclass
class SweepSample:
    """A seeded uniform sample of every configuration in the epoch's batch files."""

    total: int
    indices: list[int]  # global positions (batch files in name order), ascending
    configs: list[dict[str, Any]]
    seed: int


def sample_sweep(paths: EpochPaths, known_ids: Sequence[str], pcrs: Sequence[float], size: int,
                 seed: int) -> SweepSample:
    """Reservoir-sample ``size`` configurations (0: all) of the batch files, one file in memory at a time."""
    from epoch_builder.prediction.configs import validate_configs

    files = sorted(paths.configs_dir.glob("*.json")) if paths.configs_dir.is_dir() else []
    if not files:
        raise EpochBuilderError(f"{paths.configs_dir}: no configuration batches (run initialize-prediction-models)")
    draw = random.Random(seed)
    reservoir: list[tuple[int, dict[str, Any]]] = []
    seen = 0
    for path in files:
        configs = validate_configs(path, read_json(path), known_ids, pcrs)
        if size == 0:
            reservoir.extend((seen + i, c) for i, c in enumerate(configs))
            seen += len(configs)
            continue
        for config in configs:
            if seen < size:
                reservoir.append((seen, config))
            else:
                slot = draw.randrange(seen + 1)
                if slot < size:
                    reservoir[slot] = (seen, config)
            seen += 1
    reservoir.sort(key=lambda item: item[0])
    return SweepSample(seen, [i for i, _ in reservoir], [c for _, c in reservoir], seed)


def per_position_sharpes(rows: np.ndarray, pcr_of: Sequence[float], data: BacktestData) -> np.ndarray:
    """Per-position Sharpe ratios (ddof 1) from the kernel's counts; NaN where undefined.

    Every position of a pcr wins ``a`` = net profit or loses ``b`` = net loss (both / position size),
    so with W wins of n: mean = (W a - L b) / n, variance = (W (a - mean)^2 + L (b + mean)^2) / (n - 1)."""
    import numpy as np

    n = (rows["longs"] + rows["shorts"]).astype(np.float64)
    wins = (rows["longs_ok"] + rows["shorts_ok"]).astype(np.float64)
    losses = n - wins
    size = data.position_size
    win = np.array([data.tables(p).money.net_profit / size for p in pcr_of])
    loss = np.array([data.tables(p).money.net_loss / size for p in pcr_of])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (wins * win - losses * loss) / n
        variance = (wins * (win - mean) ** 2 + losses * (loss + mean) ** 2) / (n - 1)
        sharpe = mean / np.sqrt(variance)
    return np.where((n >= 2) & (wins > 0) & (losses > 0), sharpe, np.nan)


@dataclass
class SelectionBias:
    """The sweep-wide figures: the PBO and what every model's deflated Sharpe ratio is measured against."""

    pbo: dict[str, Any]
    trials: int
    sampled: int
    defined_sharpes: int
    variance_of_sharpes: float | None
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"pbo": self.pbo, "sharpe_ratios": {
            "returns": RETURNS, "trials": self.trials, "sampled": self.sampled, "defined": self.defined_sharpes,
            "variance": self.variance_of_sharpes}, "seconds": self.seconds}

    def deflated_sharpe(self, backtest: dict[str, Any]) -> dict[str, Any]:
        """A built model's deflated Sharpe ratio (its per-position returns), or why there is none."""
        import numpy as np

        from epoch_builder.prediction import luck

        balances = np.asarray(backtest["balance_history"], dtype=np.float64)
        returns = np.diff(balances) / float(backtest["position_size"])
        base = {"returns": RETURNS}
        if self.variance_of_sharpes is None:
            return {**base, "dsr": None, "reason": "no sampled configuration has a defined Sharpe ratio"}
        try:
            result = luck.deflated_sharpe_ratio(returns, self.trials, self.variance_of_sharpes)
        except ValueError as exc:  # fewer than two positions, or only wins / only losses
            return {**base, "dsr": None, "reason": f"{len(returns)} position(s): {exc}"}
        return {**base, **result.to_json()}


def measure(data: BacktestData, paths: EpochPaths, *, blocks: int, sample: int, seed: int,
            workers: int | None, log: Callable[[str], None] = output.info) -> SelectionBias:
    """Sample the sweep, backtest the sample with per-block profits, and compute PBO and V."""
    import numpy as np

    from epoch_builder.prediction import luck
    from epoch_builder.prediction.engine import Blocks, Evaluator

    started = time.monotonic()
    drawn = sample_sweep(paths, data.regression_ids, list(data.labels), sample, seed)
    if len(drawn.configs) < MIN_SAMPLE:
        raise EpochBuilderError(f"{paths.configs_dir}: {len(drawn.configs)} configuration(s); the overfitting "
                                f"statistics need at least {MIN_SAMPLE}")
    if data.end < blocks:
        raise EpochBuilderError(f"the in-sample test range has {data.end} candle(s) to trade, fewer than "
                                f"--pbo-blocks={blocks}")
    first, last = int(data.ot[0]), int(data.ot[data.end - 1]) + 1
    bounds = luck.block_bounds(first, last, blocks)
    log(f"selection bias: backtesting {len(drawn.configs):,} of {drawn.total:,} configurations "
        f"(seed {seed}) over {blocks} blocks")
    parts: list[np.ndarray] = []
    block_parts: list[np.ndarray] = []
    with Evaluator(data, workers, Blocks.by_time(data, bounds)) as evaluator:
        for _, chunk_rows, chunk_blocks in evaluator.evaluate_chunks(drawn.configs):
            parts.append(chunk_rows)
            block_parts.append(chunk_blocks)
    rows = np.concatenate(parts)
    performance = np.concatenate(block_parts).T  # (S blocks, N configurations)
    pbo = luck.probability_of_backtest_overfitting(performance, statistic="sum")
    sharpes = per_position_sharpes(rows, [float(c["pcr"]) for c in drawn.configs], data)
    defined = sharpes[np.isfinite(sharpes)]
    variance = float(np.var(defined, ddof=1)) if defined.size >= 2 else None
    pbo_json = {**pbo.to_json(), "seed": seed, "performance": PERFORMANCE, "from": first, "to": last}
    seconds = round(time.monotonic() - started, 2)
    log(f"selection bias: PBO {pbo.pbo:.3f} over {pbo.splits:,} splits, {defined.size:,} defined Sharpe ratios "
        f"in {seconds:.1f}s")
    return SelectionBias(pbo_json, drawn.total, len(drawn.configs), int(defined.size), variance, seconds)


def performance_figures(backtest: dict[str, Any]) -> dict[str, Any]:
    """The figures an in-sample / out-of-sample comparison shows side by side."""
    return {"profit": backtest["profit"], "accuracy": backtest["accuracy"], "positions": len(backtest["positions"]),
            "max_drawdown": backtest["max_drawdown"], "fees": backtest["fees"],
            "final_balance": backtest["final_balance"]}
