"""The full payload of one configuration for the build (SEMANTICS §4, §7.4, §7.6): every
position, the balance history and the max drawdown -- and the same backtest on another
stretch of candles with the model's min sums kept (the out-of-sample window)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from epoch_builder.discovery import build_discovery
from epoch_builder.numbers import pct_change
from epoch_builder.prediction import kernel as K
from epoch_builder.prediction.engine.data import BacktestData
from epoch_builder.prediction.engine.evaluation import encode, evaluation_from_row


def max_drawdown(balances: Sequence[float]) -> float:
    """§7.6: most negative pct_change from any balance to the lowest later balance (0 when none)."""
    worst = 0.0
    lowest_later = math.inf
    for balance in reversed(balances):
        if lowest_later < math.inf:
            worst = min(worst, pct_change(balance, lowest_later))
        lowest_later = min(lowest_later, balance)
    return worst


def _run_one(data: BacktestData, config: Mapping[str, Any],
             min_sums: tuple[float, float] | None) -> tuple[np.ndarray, K.MinSums | None, K.Outcome, np.ndarray, Any]:
    """(feature sums, discovery (None with given min sums), outcome, the closed positions' records, tables)."""
    encoded = encode(data, [config])
    arrays = encoded.arrays
    tables = data.tables(encoded.pcrs[0])
    sums = np.empty(data.n_features)
    K.feature_sums(data.feature_matrix, arrays.rows[0, : arrays.row_counts[0]], sums)
    found = None
    if min_sums is None:
        found = K.discover(sums, tables.labels, tables.labels.size, bool(arrays.use_median[0]), float(arrays.msaf[0]),
                           np.empty(data.n_features), np.empty(data.n_features))
        min_sums = (found.min_increase_sum, found.min_decrease_sum)
    money = tables.money
    account = K.Account(money.initial_balance, data.position_size, money.net_profit, money.net_loss,
                        money.fee_success, money.fee_failure)
    record = np.empty((max(data.end, 1), 4), dtype=np.int64)
    outcome = K.backtest(sums, data.market, K.ExitTable(tables.exits, tables.resume, tables.wins), account,
                         float(min_sums[0]), float(min_sums[1]), record, K.NO_BLOCKS, np.empty(0))
    return sums, found, outcome, record[: outcome.closed], tables


def evaluate_full(data: BacktestData, config: Mapping[str, Any]) -> dict[str, Any]:
    """Payload of one configuration for the build:

    ``{"min_increase_sum", "min_decrease_sum", "discovery": <§4 payload over the
    feature sums and labels>, "backtest": {position_size, initial_balance,
    final_balance, profit, fees, leverage, exchange_fee,
    idle_minutes_on_position_close, positions, balance_history, increase_num,
    decrease_num, increase_outcome_num, decrease_outcome_num, increase_accuracy,
    decrease_accuracy, accuracy, max_drawdown}}``.

    A position (the original's keys): ``t`` 1 long / -1 short, ``p`` the
    prediction ``{r: type, t: open time, s: the six sums, f: each selected
    regression's feature}``, ``ot``/``op`` open time and price, ``tpp``/``slp``
    take-profit and stop-loss prices, ``ct``/``cp`` close candle's close time
    and close price, ``o`` successful, ``b`` balance after closing.
    ``balance_history`` starts with the initial balance, then one per close.
    """
    sums, found, outcome, records, tables = _run_one(data, config, None)
    assert found is not None
    result = np.empty(1, dtype=K.RESULT_DTYPE)
    K.write_result(result, 0, found, outcome)
    evaluation = evaluation_from_row(result.tolist()[0], data.initial_balance)
    m = min(data.n_features, tables.labels.size)
    return {
        "min_increase_sum": evaluation.min_increase_sum,
        "min_decrease_sum": evaluation.min_decrease_sum,
        "profitable": evaluation.profitable,
        "discovery": build_discovery(sums[:m], tables.labels[:m]),
        "backtest": _backtest_payload(data, config, sums, records, tables, outcome),
    }


def backtest_with_min_sums(data: BacktestData, config: Mapping[str, Any],
                           min_sums: tuple[float, float]) -> dict[str, Any]:
    """The §7.4 backtest payload (as ``evaluate_full``'s "backtest") with the given min sums
    instead of ones discovered on ``data``: a built model, whose min sums are part of it,
    traded on other candles."""
    sums, _, outcome, records, tables = _run_one(data, config, min_sums)
    return _backtest_payload(data, config, sums, records, tables, outcome)


def _backtest_payload(data: BacktestData, config: Mapping[str, Any], sums: np.ndarray, records: np.ndarray,
                      tables: Any, outcome: K.Outcome) -> dict[str, Any]:
    """The §7.4 backtest payload: the kernel's figures, and each closed position from its record."""
    money = tables.money
    ids = list(config["ri"])
    positions: list[dict[str, Any]] = []
    balances = [money.initial_balance]
    balance = money.initial_balance
    for entry, exit_at, side, success in records.tolist():
        index = int(data.k[entry])
        up, down = float(tables.upper[entry]), float(tables.lower[entry])
        tpp, slp = (up, down) if side == 1 else (down, up)
        balance = balance + money.net_profit if success else balance - money.net_loss
        balances.append(balance)
        ot = int(data.ot[entry])
        positions.append({
            "t": side,
            "p": {"r": side, "t": ot, "s": sums[index - 5: index + 1].tolist(),
                  "f": [float(data.features[rid][index]) for rid in ids]},
            "ot": ot,
            "op": float(data.o[entry]),
            "tpp": tpp,
            "slp": slp,
            "ct": int(data.ct[exit_at]),
            "cp": tpp if success else slp,
            "o": bool(success),
            "b": balance,
        })
    longs, shorts, longs_ok, shorts_ok = outcome.longs, outcome.shorts, outcome.longs_ok, outcome.shorts_ok
    return {
        "position_size": data.position_size,
        "initial_balance": money.initial_balance,
        "final_balance": outcome.final_balance,
        "profit": outcome.final_balance - money.initial_balance,
        "fees": outcome.fees,
        "leverage": data.leverage,
        "exchange_fee": data.exchange_fee,
        "idle_minutes_on_position_close": data.idle_minutes,
        "positions": positions,
        "balance_history": balances,
        "increase_num": longs,
        "decrease_num": shorts,
        "increase_outcome_num": longs_ok + (shorts - shorts_ok),
        "decrease_outcome_num": shorts_ok + (longs - longs_ok),
        "increase_accuracy": K.accuracy(longs_ok, longs),
        "decrease_accuracy": K.accuracy(shorts_ok, shorts),
        "accuracy": K.accuracy(longs_ok + shorts_ok, longs + shorts),
        "max_drawdown": max_drawdown(balances),
    }
