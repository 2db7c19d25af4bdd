"""Prediction-model evaluation engine (SEMANTICS §7): fast, and identical to the per-candle rules.

By job:

* ``data``: ``BacktestData`` -- the 1-minute candles from the simulation start
  (§5), their lookback index, features per regression, labels per pcr and the
  money parameters; ``simulation_candles`` cuts the candles.
* ``evaluation``: ``evaluate(data, config)`` / ``evaluate_rows`` -- a
  configuration ``{"pcr", "msf", "msaf", "ri"}`` -> ``Evaluation`` (the
  figures the sweep needs; no position list).
* ``payload``: ``evaluate_full(data, config)`` -- the build's payload:
  discovery (§4), min sums, every position, the balance history and the max
  drawdown (§7.6); ``backtest_with_min_sums`` trades a built model on other
  candles.
* ``pool``: ``Evaluator`` / ``evaluate_many`` -- all cores (forked processes
  share the arrays copy-on-write), results in input order.

The work happens in ``kernel.py`` and ``touch.py`` (Numba); see there why it is exact.
"""

from epoch_builder.prediction.engine.data import (
    MINUTE_MS, BacktestData, Money, PcrTables, initial_balance, simulation_candles,
)
from epoch_builder.prediction.engine.evaluation import (
    MIN_SUM_FUNCTIONS, PROFITABLE_MIN_ACCURACY, Blocks, EncodedConfigs, Evaluation, encode, evaluate,
    evaluate_rows, run_kernel,
)
from epoch_builder.prediction.engine.payload import backtest_with_min_sums, evaluate_full, max_drawdown
from epoch_builder.prediction.engine.pool import Evaluator, default_workers, evaluate_many

__all__ = [
    "MINUTE_MS", "MIN_SUM_FUNCTIONS", "PROFITABLE_MIN_ACCURACY", "BacktestData", "Blocks", "EncodedConfigs",
    "Evaluation", "Evaluator", "Money", "PcrTables", "backtest_with_min_sums", "default_workers", "encode",
    "evaluate", "evaluate_full", "evaluate_many", "evaluate_rows", "initial_balance", "max_drawdown", "run_kernel",
    "simulation_candles",
]
