"""The engine's inputs: the candles the backtest walks, features, labels, money (SEMANTICS §5, §7.4).

* ``simulation_candles``: the 1-minute candles from the simulation start with
  their lookback index ``k``.
* ``BacktestData``: those candles, the features per regression, the labels per
  pcr and the epoch's money parameters, validated once; ``tables(pcr)`` gives
  what depends on the pcr only (exits, resume candles, wins, amounts),
  computed once per pcr.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from epoch_builder.errors import EpochBuilderError
from epoch_builder.numbers import alter, round_to
from epoch_builder.prediction import kernel as K
from epoch_builder.prediction.touch import first_touches

MINUTE_MS = 60_000
INITIAL_BALANCE_FACTOR = 1.5  # §7.4: the balance starts at 1.5 position sizes


def initial_balance(position_size: float) -> float:
    """§7.4 the backtest's starting balance (the one place it is computed)."""
    return round_to(position_size * INITIAL_BALANCE_FACTOR, 2)


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
            initial_balance=initial_balance(position_size),
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
    def initial_balance(self) -> float:
        return initial_balance(self.position_size)

    @property
    def market(self) -> K.Market:
        return K.Market(self.k, self.window_start, self.window_k, self.end)

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
        # a position entered at candle j exits at the first later candle touching either price
        exits = first_touches(self.h, self.l, np.arange(1, self.end + 1, dtype=np.int64), upper, lower, self.end)
        resume, wins = K.entry_tables(self.ot, self.ct, self.h, self.l, upper, lower, exits, self.end,
                                      self.idle_minutes * MINUTE_MS)
        tables = PcrTables(pcr, self.labels[pcr], upper, lower, exits, resume, wins,
                           Money.of(self.position_size, self.leverage, self.exchange_fee, pcr))
        self._tables[pcr] = tables
        return tables
