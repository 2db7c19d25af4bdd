"""Configurations in, figures out: the fast path of the sweep and the build (SEMANTICS §7.2-7.5).

* ``encode(data, configs)``: validate ``{"pcr", "msf", "msaf", "ri"}`` objects
  (errors name the entry and the key) into the kernel's ``ConfigArrays``.
* ``run_kernel(data, encoded, blocks)``: one RESULT_DTYPE row per configuration,
  and with ``blocks`` each configuration's profit per block.
* ``evaluate_rows`` / ``evaluate``: ``Evaluation`` named tuples.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from epoch_builder.errors import EpochBuilderError
from epoch_builder.prediction import kernel as K
from epoch_builder.prediction.engine.data import BacktestData, PcrTables

MIN_SUM_FUNCTIONS = ("mean", "median")
PROFITABLE_MIN_ACCURACY = 55.0  # §7.5, with a profit above 0


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


_RESULT_FIELDS = ("final_balance", "fees", "longs", "longs_ok", "shorts", "shorts_ok", "min_increase_sum",
                  "min_decrease_sum", "discovery_increase", "discovery_increase_ok", "discovery_decrease",
                  "discovery_decrease_ok", "discovery_neutral", "accuracy", "increase_accuracy",
                  "decrease_accuracy", "discovery_accuracy")
assert K.RESULT_DTYPE.names == _RESULT_FIELDS  # the unpacking below follows this order


def evaluation_from_row(row: Sequence[Any], initial_balance: float) -> Evaluation:
    """An Evaluation from one RESULT_DTYPE row as a tuple (``tolist()``: Python numbers are
    cheaper than NumPy scalars)."""
    (final_balance, fees, longs, longs_ok, shorts, shorts_ok, min_inc, min_dec, d_inc, _d_inc_ok, d_dec, _d_dec_ok,
     d_neutral, accuracy, inc_accuracy, dec_accuracy, d_accuracy) = row
    positions = longs + shorts
    successful = longs_ok + shorts_ok
    profit = final_balance - initial_balance
    return Evaluation(
        profitable=accuracy >= PROFITABLE_MIN_ACCURACY and profit > 0,
        initial_balance=initial_balance,
        final_balance=final_balance,
        profit=profit,
        fees=fees,
        positions=positions,
        longs=longs,
        shorts=shorts,
        successful=successful,
        unsuccessful=positions - successful,
        increase_accuracy=inc_accuracy,
        decrease_accuracy=dec_accuracy,
        accuracy=accuracy,
        min_increase_sum=min_inc,
        min_decrease_sum=min_dec,
        discovery_increase_num=d_inc,
        discovery_decrease_num=d_dec,
        discovery_neutral_num=d_neutral,
        discovery_accuracy=d_accuracy,
    )


@dataclass
class EncodedConfigs:
    """Configurations as kernel arrays; ``pcrs[slot]`` is the pcr of slot ``arrays.pcr_slots[c]``."""

    arrays: K.ConfigArrays
    pcrs: list[float]

    def __len__(self) -> int:
        return int(self.arrays.rows.shape[0])

    def slice(self, start: int, stop: int) -> EncodedConfigs:
        return EncodedConfigs(K.ConfigArrays(*(column[start:stop] for column in self.arrays)), self.pcrs)


def encode(data: BacktestData, configs: Sequence[Mapping[str, Any]]) -> EncodedConfigs:
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
    return EncodedConfigs(K.ConfigArrays(rows, row_counts, pcr_slots, use_median, msaf), pcrs)


def _stack(arrays: list[np.ndarray], dtype: type, fill: Any) -> tuple[np.ndarray, np.ndarray]:
    width = max((a.size for a in arrays), default=0)
    out = np.full((len(arrays), max(width, 1)), fill, dtype=dtype)
    for i, a in enumerate(arrays):
        out[i, : a.size] = a
    return out, np.array([a.size for a in arrays], dtype=np.int64)


def money_row(tables: PcrTables) -> list[float]:
    """A pcr's amounts in the order of the kernel's ``PcrStack.money`` / ``Account``."""
    money = tables.money
    return [money.net_profit, money.net_loss, money.fee_success, money.fee_failure]


def pcr_stack(data: BacktestData, pcrs: Sequence[float]) -> K.PcrStack:
    """The per-pcr tables of ``pcrs`` as the kernel's stacked arrays (no copies for one pcr)."""
    tables = [data.tables(p) for p in pcrs]
    labels, label_counts = _stack([t.labels for t in tables], np.int8, 0)
    if len(tables) == 1:  # the usual case
        exits, resume, wins = tables[0].exits[None, :], tables[0].resume[None, :], tables[0].wins[None, :]
    else:
        exits, _ = _stack([t.exits for t in tables], np.int64, data.end)
        resume, _ = _stack([t.resume for t in tables], np.int64, -1)
        wins, _ = _stack([t.wins for t in tables], np.int8, 0)
    money = np.array([money_row(t) for t in tables], dtype=np.float64).reshape(len(tables), 4)
    return K.PcrStack(labels, label_counts, exits, resume, wins, money)


@dataclass(frozen=True)
class Blocks:
    """Per-block profit for the overfitting statistics: ``block_of[j]`` is the block of entry
    candle j (< data.end); a position's profit or loss counts in its entry's block."""

    block_of: np.ndarray
    count: int

    @classmethod
    def by_time(cls, data: BacktestData, bounds: Sequence[tuple[int, int]]) -> Blocks:
        """Blocks from half-open (start_ms, end_ms) time ranges covering the candles' open times."""
        starts = np.array([start for start, _ in bounds[1:]], dtype=np.int64)
        block_of = np.searchsorted(starts, data.ot[: data.end], side="right").astype(np.int64)
        return cls(block_of, len(bounds))


def run_kernel(data: BacktestData, encoded: EncodedConfigs,
               blocks: Blocks | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(RESULT_DTYPE rows, per-block profits (configs, blocks) -- 0 columns without ``blocks``)."""
    n = len(encoded)
    results = np.empty(n, dtype=K.RESULT_DTYPE)
    block_of = blocks.block_of if blocks is not None and data.end > 0 else K.NO_BLOCKS
    block_pnl = np.zeros((n, blocks.count if blocks is not None else 0))
    K.evaluate_batch(data.feature_matrix, encoded.arrays, data.market, pcr_stack(data, encoded.pcrs),
                     data.initial_balance, data.position_size, block_of, block_pnl, results)
    return results, block_pnl


def evaluate_rows(data: BacktestData, configs: Sequence[Mapping[str, Any]]) -> list[Evaluation]:
    """Evaluate configurations in this process (a batch per kernel call)."""
    if not configs:
        return []
    rows, _ = run_kernel(data, encode(data, configs))
    initial = data.initial_balance
    return [evaluation_from_row(row, initial) for row in rows.tolist()]


def evaluate(data: BacktestData, config: Mapping[str, Any]) -> Evaluation:
    return evaluate_rows(data, [config])[0]
