"""Prediction-model evaluation engine (SEMANTICS §7): fast, and identical to the per-candle rules.

* ``BacktestData``: the 1-minute candles from the simulation start (§5 last
  bullet), the lookback index of each candle, features per regression and
  labels per pcr, plus the epoch's money parameters.
* ``evaluate(data, config)``: one configuration ``{"pcr", "msf", "msaf", "ri"}``
  -> ``Evaluation`` (the figures the sweep needs; no position list).
* ``evaluate_full(data, config)``: the payload for the build: discovery (§4),
  min sums, and the backtest performance with every position, the balance
  history and the max drawdown (§7.6).
* ``evaluate_many(data, configs, workers)`` / ``Evaluator``: all cores (forked
  processes share the arrays copy-on-write), results yielded in input order.

The work happens in ``kernel.py`` (Numba); see there why it is exact.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from epoch_builder.children import available_cores, die_with_parent
from epoch_builder.discovery import build_discovery
from epoch_builder.errors import EpochBuilderError
from epoch_builder.numbers import alter, pct_change, round_to
from epoch_builder.prediction import kernel as K

MINUTE_MS = 60_000
MIN_SUM_FUNCTIONS = ("mean", "median")
PROFITABLE_MIN_ACCURACY = 55.0


@dataclass(frozen=True)
class Money:
    """§7.4 per-position amounts for one pcr (same for every position)."""

    initial_balance: float
    equity: float
    net_profit: float
    net_loss: float
    fee_success: float
    fee_failure: float

    @classmethod
    def of(cls, position_size: float, leverage: float, exchange_fee: float, pcr: float) -> Money:
        equity = round_to(position_size * leverage, 2)
        open_fee = equity / 100 * exchange_fee
        gross_profit = alter(equity, pcr) - equity
        gross_loss = equity - alter(equity, -pcr)
        fee_success = open_fee + alter(equity, pcr) / 100 * exchange_fee
        fee_failure = open_fee + alter(equity, -pcr) / 100 * exchange_fee
        return cls(
            initial_balance=round_to(position_size * 1.5, 2),
            equity=equity,
            net_profit=gross_profit - fee_success,
            net_loss=gross_loss + fee_failure,
            fee_success=fee_success,
            fee_failure=fee_failure,
        )


@dataclass
class PcrTables:
    """Everything that depends on the pcr only: labels, exit prices, first exits, money."""

    pcr: float
    labels: np.ndarray  # int8
    upper: np.ndarray  # alter(open, +pcr) per candle
    lower: np.ndarray  # alter(open, -pcr) per candle
    exits: np.ndarray  # first candle touching upper/lower after each entry candle (< end), else end
    resume: np.ndarray  # first candle free to open again after that exit (-1: never closes)
    wins: np.ndarray  # bit 0: a long entered there wins; bit 1: a short wins
    money: Money


def _as_array(name: str, values: Any, dtype: type) -> np.ndarray:
    array = np.ascontiguousarray(np.asarray(values, dtype=dtype))
    if array.ndim != 1:
        raise EpochBuilderError(f"backtest data: {name} must be one-dimensional, got shape {array.shape}")
    return array


def simulation_candles(one_minute: Mapping[str, Any], prediction_ot: Any, lookback: int) -> dict[str, np.ndarray]:
    """§5: the 1-minute candles the backtest walks, with their lookback index ``k``.

    ``one_minute``: columns ot, ct, o, h, l (a DataFrame or a dict of arrays);
    ``prediction_ot``: open times of the test dataset's prediction candles, in
    order. The simulation starts at the ot of prediction candle ``lookback``;
    ``k`` = (index of the last prediction candle with ot <= the candle's ot) - lookback.
    Returns ``{ot, ct, o, h, l, k}`` for ``BacktestData.from_arrays``.
    """
    prediction_ot = np.asarray(prediction_ot, dtype=np.int64)
    if prediction_ot.size <= lookback:
        raise EpochBuilderError(
            f"test dataset: {prediction_ot.size} prediction candles, but the lookback needs more than {lookback}")
    ot = np.asarray(one_minute["ot"], dtype=np.int64)
    first = int(np.searchsorted(ot, prediction_ot[lookback], side="left"))
    arrays = {name: np.ascontiguousarray(np.asarray(one_minute[name])[first:]) for name in ("ot", "ct", "o", "h", "l")}
    arrays["k"] = np.searchsorted(prediction_ot, arrays["ot"], side="right").astype(np.int64) - 1 - lookback
    return arrays


@dataclass
class BacktestData:
    """Inputs of every backtest of one epoch's prediction models."""

    ot: np.ndarray
    ct: np.ndarray
    o: np.ndarray
    h: np.ndarray
    l: np.ndarray  # noqa: E741 - the candle field's name
    k: np.ndarray
    features: dict[str, np.ndarray]
    labels: dict[float, np.ndarray]
    position_size: float
    leverage: float
    exchange_fee: float
    idle_minutes: int
    regression_ids: list[str] = field(init=False)
    feature_matrix: np.ndarray = field(init=False, repr=False)
    row_of: dict[str, int] = field(init=False, repr=False)
    end: int = field(init=False)
    window_start: np.ndarray = field(init=False, repr=False)  # first candle with k >= w, w in 0..n_features
    window_k: np.ndarray = field(init=False, repr=False)  # k of that candle
    _tables: dict[float, PcrTables] = field(init=False, repr=False, default_factory=dict)

    @classmethod
    def from_arrays(
        cls,
        *,
        ot: Any,
        ct: Any,
        o: Any,
        h: Any,
        l: Any,  # noqa: E741
        k: Any,
        features: Mapping[str, Any],
        labels: Mapping[Any, Any],
        position_size: float,
        leverage: float,
        exchange_fee: float,
        idle_minutes: int,
    ) -> BacktestData:
        return cls(
            ot=ot, ct=ct, o=o, h=h, l=l, k=k,
            features=dict(features), labels={float(p): v for p, v in labels.items()},
            position_size=position_size, leverage=leverage, exchange_fee=exchange_fee, idle_minutes=idle_minutes,
        )

    def __post_init__(self) -> None:
        self.ot = _as_array("ot", self.ot, np.int64)
        self.ct = _as_array("ct", self.ct, np.int64)
        self.o = _as_array("o", self.o, np.float64)
        self.h = _as_array("h", self.h, np.float64)
        self.l = _as_array("l", self.l, np.float64)
        self.k = _as_array("k", self.k, np.int64)
        size = self.ot.size
        for name in ("ct", "o", "h", "l", "k"):
            if getattr(self, name).size != size:
                raise EpochBuilderError(f"backtest data: {name} has {getattr(self, name).size} rows, ot has {size}")
        if size > 1 and not (np.all(np.diff(self.ot) > 0) and np.all(np.diff(self.k) >= 0)):
            raise EpochBuilderError("backtest data: ot must be strictly increasing and the lookback index k non-decreasing")
        if size and (self.ot[0] < 0 or np.any(self.ct < self.ot)):
            raise EpochBuilderError("backtest data: times must be non-negative and every ct >= its ot")
        if not self.features:
            raise EpochBuilderError("backtest data: features is empty; at least one regression is required")
        self.regression_ids = list(self.features)
        self.features = {rid: _as_array(f"features[{rid}]", v, np.float64) for rid, v in self.features.items()}
        lengths = {v.size for v in self.features.values()}
        if len(lengths) != 1:
            raise EpochBuilderError(f"backtest data: every regression needs the same number of features, got {sorted(lengths)}")
        self.feature_matrix = np.ascontiguousarray(np.vstack([self.features[rid] for rid in self.regression_ids]))
        self.row_of = {rid: i for i, rid in enumerate(self.regression_ids)}
        labels: dict[float, np.ndarray] = {}
        for pcr, values in self.labels.items():
            array = _as_array(f"labels[{pcr}]", values, np.int8)
            if not np.all((array == 1) | (array == -1)):
                raise EpochBuilderError(f"backtest data: labels[{pcr}] must hold only 1 and -1")
            labels[float(pcr)] = array
        self.labels = labels
        self.position_size = float(self.position_size)
        self.leverage = float(self.leverage)
        self.exchange_fee = float(self.exchange_fee)
        self.idle_minutes = int(self.idle_minutes)
        # §7.4: stop at the first candle whose index is not below the number of features
        self.end = int(np.searchsorted(self.k, self.n_features, side="left"))
        self.window_start = np.searchsorted(self.k, np.arange(self.n_features + 1), side="left").astype(np.int64)
        # k of each window's first candle (a window with no candle yields a later one's k)
        self.window_k = (self.k[np.minimum(self.window_start, size - 1)] if size
                         else np.zeros(self.n_features + 1, dtype=np.int64))
        self.window_k = np.where(self.window_start < size, self.window_k, self.n_features).astype(np.int64)
        self._tables = {}

    @property
    def n_features(self) -> int:
        return int(self.feature_matrix.shape[1])

    def tables(self, pcr: float) -> PcrTables:
        """Per-pcr tables, computed once (the exit search costs one pass over the candles)."""
        pcr = float(pcr)
        cached = self._tables.get(pcr)
        if cached is not None:
            return cached
        if pcr not in self.labels:
            raise EpochBuilderError(f"config: pcr {pcr:g} has no labels; available: {sorted(self.labels)}")
        upper = np.round(self.o * (1 + pcr / 100), 2)
        lower = np.round(self.o * (1 + -pcr / 100), 2)
        exits = K.first_exits(self.h, self.l, upper, lower, self.end)
        resume, wins = K.entry_tables(self.ot, self.ct, self.h, self.l, upper, lower, exits, self.end,
                                      self.idle_minutes * MINUTE_MS)
        tables = PcrTables(pcr, self.labels[pcr], upper, lower, exits, resume, wins,
                           Money.of(self.position_size, self.leverage, self.exchange_fee, pcr))
        self._tables[pcr] = tables
        return tables


class Evaluation(NamedTuple):
    """The figures of one configuration's backtest (§7.4-7.5) and discovery (§7.2).

    A named tuple: immutable and cheap to build, which matters at ~10^5 per second."""

    profitable: bool
    initial_balance: float
    final_balance: float
    profit: float
    fees: float
    positions: int
    longs: int
    shorts: int
    successful: int
    unsuccessful: int
    increase_accuracy: float
    decrease_accuracy: float
    accuracy: float
    min_increase_sum: float
    min_decrease_sum: float
    discovery_increase_num: int
    discovery_decrease_num: int
    discovery_neutral_num: int
    discovery_accuracy: float

    def to_dict(self) -> dict[str, Any]:
        return self._asdict()


def _evaluation_from_row(row: Sequence[float], initial_balance: float) -> Evaluation:
    """An Evaluation from one kernel result row (a list: Python floats are cheaper than NumPy scalars).

    The unpacking follows the kernel's R_* column order (checked at import below)."""
    (final_balance, fees, longs, longs_ok, shorts, shorts_ok, min_inc, min_dec, d_inc, _d_inc_ok, d_dec, _d_dec_ok,
     d_neutral, accuracy, inc_accuracy, dec_accuracy, d_accuracy) = row
    positions = int(longs + shorts)
    successful = int(longs_ok + shorts_ok)
    profit = final_balance - initial_balance
    return Evaluation(
        profitable=accuracy >= PROFITABLE_MIN_ACCURACY and profit > 0,
        initial_balance=initial_balance,
        final_balance=final_balance,
        profit=profit,
        fees=fees,
        positions=positions,
        longs=int(longs),
        shorts=int(shorts),
        successful=successful,
        unsuccessful=positions - successful,
        increase_accuracy=inc_accuracy,
        decrease_accuracy=dec_accuracy,
        accuracy=accuracy,
        min_increase_sum=min_inc,
        min_decrease_sum=min_dec,
        discovery_increase_num=int(d_inc),
        discovery_decrease_num=int(d_dec),
        discovery_neutral_num=int(d_neutral),
        discovery_accuracy=d_accuracy,
    )


assert (K.R_FINAL_BALANCE, K.R_MIN_INC, K.R_DISC_NEUTRAL, K.R_DISC_ACCURACY, K.RESULT_WIDTH) == (0, 6, 12, 16, 17)


@dataclass
class _EncodedConfigs:
    rows: np.ndarray
    row_counts: np.ndarray
    pcr_slots: np.ndarray
    use_median: np.ndarray
    msaf: np.ndarray
    pcrs: list[float]


def _encode(data: BacktestData, configs: Sequence[Mapping[str, Any]]) -> _EncodedConfigs:
    """Validate configurations and turn them into kernel arrays; errors name the entry and key."""
    n = len(configs)
    width = max((len(c.get("ri") or ()) for c in configs if isinstance(c, Mapping)), default=1)
    rows = np.zeros((n, max(width, 1)), dtype=np.int64)
    row_counts = np.empty(n, dtype=np.int64)
    pcr_slots = np.empty(n, dtype=np.int64)
    use_median = np.empty(n, dtype=np.bool_)
    msaf = np.empty(n, dtype=np.float64)
    pcrs: list[float] = []
    slot_of: dict[float, int] = {}
    for i, config in enumerate(configs):
        if not isinstance(config, Mapping):
            raise EpochBuilderError(f"config #{i}: expected an object with pcr, msf, msaf, ri, got {type(config).__name__}")
        missing = [key for key in ("pcr", "msf", "msaf", "ri") if key not in config]
        if missing:
            raise EpochBuilderError(f"config #{i}: missing key(s) {', '.join(missing)} (required: pcr, msf, msaf, ri)")
        try:
            pcr = float(config["pcr"])
            factor = float(config["msaf"])
        except (TypeError, ValueError):
            raise EpochBuilderError(f"config #{i}: pcr and msaf must be numbers, got {config['pcr']!r}, {config['msaf']!r}") from None
        if pcr not in data.labels:
            raise EpochBuilderError(f"config #{i}: pcr {pcr:g} has no labels; allowed: {sorted(data.labels)}")
        if not math.isfinite(factor):
            raise EpochBuilderError(f"config #{i}: msaf must be a finite number, got {config['msaf']!r}")
        if config["msf"] not in MIN_SUM_FUNCTIONS:
            raise EpochBuilderError(f"config #{i}: msf {config['msf']!r} is not one of {', '.join(MIN_SUM_FUNCTIONS)}")
        ids = config["ri"]
        if isinstance(ids, str) or not isinstance(ids, Sequence) or not ids:
            raise EpochBuilderError(f"config #{i}: ri must be a non-empty list of regression ids")
        for j, rid in enumerate(ids):
            row = data.row_of.get(rid)
            if row is None:
                raise EpochBuilderError(f"config #{i}: regression {rid!r} has no features; known: {', '.join(data.regression_ids)}")
            rows[i, j] = row
        row_counts[i] = len(ids)
        if pcr not in slot_of:
            slot_of[pcr] = len(pcrs)
            pcrs.append(pcr)
        pcr_slots[i] = slot_of[pcr]
        use_median[i] = config["msf"] == "median"
        msaf[i] = factor
    return _EncodedConfigs(rows, row_counts, pcr_slots, use_median, msaf, pcrs)


def _stack(arrays: list[np.ndarray], dtype: type, fill: Any) -> tuple[np.ndarray, np.ndarray]:
    width = max((a.size for a in arrays), default=0)
    out = np.full((len(arrays), max(width, 1)), fill, dtype=dtype)
    for i, a in enumerate(arrays):
        out[i, : a.size] = a
    return out, np.array([a.size for a in arrays], dtype=np.int64)


def _run_kernel(data: BacktestData, encoded: _EncodedConfigs) -> np.ndarray:
    tables = [data.tables(p) for p in encoded.pcrs]
    labels, label_counts = _stack([t.labels for t in tables], np.int8, 0)
    if len(tables) == 1:  # the usual case: no copies
        exits, resume, wins = tables[0].exits[None, :], tables[0].resume[None, :], tables[0].wins[None, :]
    else:
        exits, _ = _stack([t.exits for t in tables], np.int64, data.end)
        resume, _ = _stack([t.resume for t in tables], np.int64, -1)
        wins, _ = _stack([t.wins for t in tables], np.int8, 0)
    money = np.array([[t.money.net_profit, t.money.net_loss, t.money.fee_success, t.money.fee_failure] for t in tables],
                     dtype=np.float64).reshape(len(tables), 4)
    initial = round_to(data.position_size * 1.5, 2)
    return K.evaluate_batch(
        data.feature_matrix, encoded.rows, encoded.row_counts, encoded.pcr_slots, encoded.use_median, encoded.msaf,
        labels, label_counts, data.k, data.window_start, data.window_k, data.end, exits, resume, wins,
        data.position_size, initial, money,
    )


def evaluate_rows(data: BacktestData, configs: Sequence[Mapping[str, Any]]) -> list[Evaluation]:
    """Evaluate configurations in this process (a batch per kernel call)."""
    if not configs:
        return []
    rows = _run_kernel(data, _encode(data, configs))
    initial = round_to(data.position_size * 1.5, 2)
    return [_evaluation_from_row(row, initial) for row in rows.tolist()]


def evaluate(data: BacktestData, config: Mapping[str, Any]) -> Evaluation:
    return evaluate_rows(data, [config])[0]


# --- the full payload for the build -------------------------------------------------

def max_drawdown(balances: Sequence[float]) -> float:
    """§7.6: most negative pct_change from any balance to the lowest later balance (0 when none)."""
    worst = 0.0
    lowest_later = math.inf
    for balance in reversed(balances):
        if lowest_later < math.inf:
            worst = min(worst, pct_change(balance, lowest_later))
        lowest_later = min(lowest_later, balance)
    return worst


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
    encoded = _encode(data, [config])
    pcr = encoded.pcrs[0]
    tables = data.tables(pcr)
    rows = encoded.rows[0, : encoded.row_counts[0]]
    n_features = data.n_features
    sums = np.empty(n_features)
    result = np.empty(K.RESULT_WIDTH)
    record = np.empty((max(data.end, 1), 4), dtype=np.int64)
    money = tables.money
    closed = K.evaluate_one(
        data.feature_matrix, rows, tables.labels, tables.labels.size, bool(encoded.use_median[0]), float(encoded.msaf[0]),
        data.k, data.window_start, data.window_k, data.end, tables.exits, tables.resume, tables.wins,
        data.position_size, money.initial_balance, money.net_profit, money.net_loss,
        money.fee_success, money.fee_failure, sums, np.empty(n_features), np.empty(n_features), result, record,
    )
    evaluation = _evaluation_from_row(result.tolist(), money.initial_balance)

    ids = list(config["ri"])
    positions: list[dict[str, Any]] = []
    balances = [money.initial_balance]
    balance = money.initial_balance
    for entry, exit_at, side, success in record[:closed].tolist():
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
    labels = tables.labels
    m = min(n_features, labels.size)
    longs_ok = sum(1 for p in positions if p["t"] == 1 and p["o"])
    shorts_ok = sum(1 for p in positions if p["t"] == -1 and p["o"])
    backtest = {
        "position_size": data.position_size,
        "initial_balance": money.initial_balance,
        "final_balance": evaluation.final_balance,
        "profit": evaluation.profit,
        "fees": evaluation.fees,
        "leverage": data.leverage,
        "exchange_fee": data.exchange_fee,
        "idle_minutes_on_position_close": data.idle_minutes,
        "positions": positions,
        "balance_history": balances,
        "increase_num": evaluation.longs,
        "decrease_num": evaluation.shorts,
        "increase_outcome_num": longs_ok + (evaluation.shorts - shorts_ok),
        "decrease_outcome_num": shorts_ok + (evaluation.longs - longs_ok),
        "increase_accuracy": evaluation.increase_accuracy,
        "decrease_accuracy": evaluation.decrease_accuracy,
        "accuracy": evaluation.accuracy,
        "max_drawdown": max_drawdown(balances),
    }
    return {
        "min_increase_sum": evaluation.min_increase_sum,
        "min_decrease_sum": evaluation.min_decrease_sum,
        "profitable": evaluation.profitable,
        "discovery": build_discovery(sums[:m], labels[:m]),
        "backtest": backtest,
    }


# --- many configurations on all cores ------------------------------------------------

# Data shared with forked workers: set before the fork, read copy-on-write by the children.
_SHARED: dict[int, BacktestData] = {}


def _kernel_task(task: tuple[int, _EncodedConfigs]) -> np.ndarray:
    token, encoded = task
    return _run_kernel(_SHARED[token], encoded)


def default_workers() -> int:
    return available_cores()


def _slice(encoded: _EncodedConfigs, start: int, stop: int) -> _EncodedConfigs:
    return _EncodedConfigs(encoded.rows[start:stop], encoded.row_counts[start:stop], encoded.pcr_slots[start:stop],
                           encoded.use_median[start:stop], encoded.msaf[start:stop], encoded.pcrs)


class Evaluator:
    """Evaluates configurations on ``workers`` forked processes that share ``data``.

    Create it once and call ``evaluate`` for each chunk of a sweep: the workers,
    the per-pcr tables and the compiled kernel are reused. ``workers=1`` (or a
    platform without fork) evaluates in this process.
    """

    def __init__(self, data: BacktestData, workers: int | None = None) -> None:
        self.data = data
        self.workers = default_workers() if workers is None else max(1, int(workers))
        for pcr in data.labels:
            data.tables(pcr)  # computed once here, inherited by the workers
        if data.regression_ids:
            any_pcr = next(iter(data.labels), None)
            if any_pcr is not None:  # compile (or load) the kernel before forking
                evaluate_rows(data, [{"pcr": any_pcr, "msf": "mean", "msaf": 1, "ri": data.regression_ids[:1]}])
        self._token = id(self)
        self._pool: Any = None
        if self.workers > 1 and "fork" in multiprocessing.get_all_start_methods():
            _SHARED[self._token] = data
            self._pool = multiprocessing.get_context("fork").Pool(
                self.workers, initializer=die_with_parent, initargs=(os.getpid(),))

    def evaluate(self, configs: Sequence[Mapping[str, Any]], chunk_size: int | None = None) -> Iterator[tuple[int, Evaluation]]:
        """Yield ``(index, Evaluation)`` for every configuration, in input order.

        Every configuration is validated first (an error names the entry), so
        nothing is evaluated from a malformed list.
        """
        encoded = _encode(self.data, configs)
        total = len(configs)
        if chunk_size is None:
            chunk_size = max(16, min(1000, math.ceil(total / (self.workers * 4)) if total else 1))
        starts = range(0, total, chunk_size)
        initial = round_to(self.data.position_size * 1.5, 2)
        if self._pool is None:
            results: Iterator[np.ndarray] = (_run_kernel(self.data, _slice(encoded, a, a + chunk_size)) for a in starts)
        else:
            results = self._pool.imap(_kernel_task, ((self._token, _slice(encoded, a, a + chunk_size)) for a in starts))
        index = 0
        for rows in results:
            for row in rows.tolist():
                yield index, _evaluation_from_row(row, initial)
                index += 1

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None
        _SHARED.pop(self._token, None)

    def __enter__(self) -> Evaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def evaluate_many(
    data: BacktestData,
    configs: Sequence[Mapping[str, Any]],
    workers: int | None = None,
    chunk_size: int | None = None,
) -> Iterator[tuple[int, Evaluation]]:
    """Yield ``(index, Evaluation)`` for every configuration, in input order, on
    ``workers`` processes (default: all cores). For repeated calls keep one
    ``Evaluator`` instead (it keeps its workers)."""
    workers = default_workers() if workers is None else max(1, int(workers))
    if len(configs) <= 1:
        workers = 1
    with Evaluator(data, workers) as evaluator:
        yield from evaluator.evaluate(configs, chunk_size)
