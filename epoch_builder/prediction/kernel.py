"""Numba kernels of the prediction-model backtest (SEMANTICS §7).

Why it is fast yet exact:

* Exits: a position's take-profit and stop-loss depend only on its entry
  candle (``alter(open, ±pcr)``), so for each pcr the first later candle whose
  high/low touches either price is found once per entry candle (``touch.py``,
  the search the labels use too) and the backtest jumps straight to it
  (``entry_tables``: the exit's outcome and the first candle after the idle
  time). Long and short share that
  candle; the stop-loss-first rule only decides the outcome.
* Entries: the signal depends only on the lookback index ``k`` of the candle,
  so the entry search moves window by window (first candle of each window),
  evaluating a window's signal only when the model is free to enter there;
  windows spent inside a position or idle are never looked at. The trend
  tests (s5 > s4 > s3 > s2, "strongly" down to s0) are kept as running counts
  of consecutive increases / decreases, one comparison per window.
* Arithmetic mirrors NumPy exactly: ``round`` is ``rint(x * 10**d) / 10**d``
  (NumPy's algorithm), means use NumPy's pairwise summation, sums of the
  regressions' features add left to right in the configuration's order.
  Tests compare every helper with NumPy and the whole backtest with the
  per-candle oracle.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

PAIRWISE_BLOCK = 128  # NumPy's PW_BLOCKSIZE
FIRST_SIGNAL_WINDOW = 6  # §7.4: entries need k > 5 (six sums)


@njit(cache=True)
def round_scaled(value: float, scale: float) -> float:
    """NumPy's ``round(value, d)`` with ``scale = 10.0 ** d`` (d >= 0)."""
    return np.rint(value * scale) / scale


@njit(cache=True)
def alter2(value: float, percent: float) -> float:
    return round_scaled(value * (1.0 + percent / 100.0), 100.0)


@njit(cache=True)
def _pairwise_leaf(values: np.ndarray, start: int, count: int) -> float:
    """NumPy's pairwise summation for ``count <= 128`` (8 interleaved accumulators)."""
    if count < 8:
        total = 0.0
        for i in range(count):
            total += values[start + i]
        return total
    r0 = values[start]
    r1 = values[start + 1]
    r2 = values[start + 2]
    r3 = values[start + 3]
    r4 = values[start + 4]
    r5 = values[start + 5]
    r6 = values[start + 6]
    r7 = values[start + 7]
    i = 8
    limit = count - (count % 8)
    while i < limit:
        r0 += values[start + i]
        r1 += values[start + i + 1]
        r2 += values[start + i + 2]
        r3 += values[start + i + 3]
        r4 += values[start + i + 4]
        r5 += values[start + i + 5]
        r6 += values[start + i + 6]
        r7 += values[start + i + 7]
        i += 8
    total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < count:
        total += values[start + i]
        i += 1
    return total


@njit(cache=True)
def _pairwise_split(count: int) -> int:
    half = count // 2
    return half - half % 8


@njit(cache=True)
def pairwise_sum(values: np.ndarray, start: int, count: int) -> float:
    """NumPy's pairwise summation of ``values[start:start+count]``, bit-identical.

    NumPy recurses: sum(n) = sum(left half, a multiple of 8) + sum(rest) until
    n <= 128. The recursion runs here on an explicit stack because Numba's
    on-disk cache cannot reload self-recursive functions.
    """
    frame_start = np.empty(64, dtype=np.int64)
    frame_count = np.empty(64, dtype=np.int64)
    left_total = np.empty(64)
    has_left = np.zeros(64, dtype=np.bool_)
    top = 0
    frame_start[0] = start
    frame_count[0] = count
    has_left[0] = False
    while True:
        n = frame_count[top]
        if n > PAIRWISE_BLOCK:
            # descend into the left part first
            top += 1
            frame_start[top] = frame_start[top - 1]
            frame_count[top] = _pairwise_split(n)
            has_left[top] = False
            continue
        total = _pairwise_leaf(values, frame_start[top], n)
        top -= 1
        while top >= 0 and has_left[top]:
            total = left_total[top] + total
            top -= 1
        if top < 0:
            return total
        # the left part of frame `top` is done: keep it, then sum the right part
        left_total[top] = total
        has_left[top] = True
        half = _pairwise_split(frame_count[top])
        top += 1
        frame_start[top] = frame_start[top - 1] + half
        frame_count[top] = frame_count[top - 1] - half
        has_left[top] = False


@njit(cache=True)
def numpy_mean(values: np.ndarray, count: int) -> float:
    return pairwise_sum(values, 0, count) / count


@njit(cache=True)
def select_in_place(values: np.ndarray, count: int, kth: int) -> float:
    """Quickselect (Hoare partition, median-of-three pivot) on ``values[:count]``:
    returns the kth smallest and leaves every element before index kth <= it."""
    lo = 0
    hi = count - 1
    while hi > lo:
        mid = (lo + hi) // 2
        if values[mid] < values[lo]:
            values[mid], values[lo] = values[lo], values[mid]
        if values[hi] < values[lo]:
            values[hi], values[lo] = values[lo], values[hi]
        if values[hi] < values[mid]:
            values[hi], values[mid] = values[mid], values[hi]
        pivot = values[mid]
        i = lo
        j = hi
        while i <= j:
            while values[i] < pivot:
                i += 1
            while values[j] > pivot:
                j -= 1
            if i <= j:
                values[i], values[j] = values[j], values[i]
                i += 1
                j -= 1
        if kth <= j:
            hi = j
        elif kth >= i:
            lo = i
        else:
            break  # kth lies in the run equal to the pivot
    return values[kth]


@njit(cache=True)
def numpy_median(values: np.ndarray, count: int) -> float:
    """NumPy's median of ``values[:count]`` (reorders them): the middle element, or
    the mean of the two middle ones, found by selection rather than a sort."""
    middle = count // 2
    upper_middle = select_in_place(values, count, middle)
    if count % 2 == 1:
        return upper_middle
    return (values[:middle].max() + upper_middle) / 2.0


@njit(cache=True)
def entry_tables(
    ot: np.ndarray, ct: np.ndarray, high: np.ndarray, low: np.ndarray, upper: np.ndarray, lower: np.ndarray,
    exits: np.ndarray, end: int, idle_ms: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per entry candle j < end: ``resume[j]``, the first candle after the exit whose
    open time reaches close time + idle minutes (-1 when the position never closes),
    and ``wins[j]``: bit 0 a long wins (its stop-loss, tested first, is not touched
    on the exit candle), bit 1 a short wins (likewise with the high)."""
    resume = np.full(end, -1, dtype=np.int64)
    wins = np.zeros(end, dtype=np.int8)
    for j in range(end):
        x = exits[j]
        if x >= end:
            continue
        resume[j] = max(x + 1, np.searchsorted(ot, ct[x] + idle_ms))
        bits = 0
        if not (low[x] <= lower[j]):
            bits |= 1
        if not (high[x] >= upper[j]):
            bits |= 2
        wins[j] = bits
    return resume, wins


@njit(cache=True)
def feature_sums(features: np.ndarray, rows: np.ndarray, out: np.ndarray) -> None:
    """Left-to-right sum of the selected regressions' features per window (as Python's sum)."""
    n = out.shape[0]
    for i in range(n):
        out[i] = features[rows[0], i]
    for r in range(1, rows.shape[0]):
        row = rows[r]
        for i in range(n):
            out[i] += features[row, i]


@njit(cache=True)
def intensity(s0: float, s5: float) -> int:
    if s0 > 0.0:
        if s5 > s0:
            if s5 >= alter2(s0, 8.0):
                return 2
            if s5 >= alter2(s0, 4.0):
                return 1
        elif s5 < s0:
            if s5 <= alter2(s0, -8.0):
                return -2
            if s5 <= alter2(s0, -4.0):
                return -1
    elif s0 < 0.0:
        if s5 < s0:
            if s5 <= alter2(s0, 8.0):
                return -2
            if s5 <= alter2(s0, 4.0):
                return -1
        elif s5 > s0:
            if s5 >= alter2(s0, -8.0):
                return 2
            if s5 >= alter2(s0, -4.0):
                return 1
    return 0


@njit(cache=True)
def signal_at(sums: np.ndarray, index: int, min_inc: float, min_dec: float) -> int:
    """§7.4 entry rule on sums[index-5..index] (index > 5), written out literally;
    the backtest uses the equivalent ``signal_from_runs`` (a test checks they agree)."""
    s0 = sums[index - 5]
    s1 = sums[index - 4]
    s2 = sums[index - 3]
    s3 = sums[index - 2]
    s4 = sums[index - 1]
    s5 = sums[index]
    increasing = s5 > s4 and s4 > s3 and s3 > s2
    decreasing = s5 < s4 and s4 < s3 and s3 < s2
    if not increasing and not decreasing:
        return 0
    strongly_increasing = increasing and s2 > s1 and s1 > s0
    strongly_decreasing = decreasing and s2 < s1 and s1 < s0
    level = intensity(s0, s5)
    if (s5 >= min_inc and increasing and level >= 1) or (s5 <= min_dec and strongly_increasing and level >= 2):
        return 1
    if (s5 <= min_dec and decreasing and level <= -1) or (s5 >= min_inc and strongly_decreasing and level <= -2):
        return -1
    return 0


@njit(cache=True)
def runs_at(sums: np.ndarray, index: int) -> tuple[int, int]:
    """Consecutive strict increases / decreases of the sums ending at ``index``, capped
    at 5: "increasing" (s5 > s4 > s3 > s2) is a run >= 3, "strongly" a run >= 5."""
    up = 0
    while up < 5 and sums[index - up] > sums[index - up - 1]:
        up += 1
    down = 0
    while down < 5 and sums[index - down] < sums[index - down - 1]:
        down += 1
    return up, down


@njit(cache=True)
def signal_from_runs(sums: np.ndarray, index: int, up_run: int, down_run: int, min_inc: float, min_dec: float) -> int:
    """``signal_at`` with the trend already known from the runs (same decisions)."""
    s0 = sums[index - 5]
    s5 = sums[index]
    increasing = up_run >= 3
    decreasing = down_run >= 3
    level = intensity(s0, s5)
    if (s5 >= min_inc and increasing and level >= 1) or (s5 <= min_dec and up_run >= 5 and level >= 2):
        return 1
    if (s5 <= min_dec and decreasing and level <= -1) or (s5 >= min_inc and down_run >= 5 and level <= -2):
        return -1
    return 0


@njit(cache=True)
def accuracy(successful: int, total: int) -> float:
    """``round(successful * 100 / total, 2)``, 0 when total is 0 (as numbers.round_to)."""
    if total <= 0:
        return 0.0
    return round_scaled(successful * 100 / total, 100.0)


# --- one configuration, in steps ------------------------------------------------------
#
# The inputs travel as named tuples (Numba compiles attribute access away), the
# results as one structured row per configuration (RESULT_DTYPE).


class Market(NamedTuple):
    """The candles' window structure, the same for every configuration.

    ``k[j]``: candle j's lookback index; ``window_start[w]``: the first candle
    with k >= w; ``window_k[w]``: that candle's k (a window without candles
    yields a later one's); ``end``: the first candle whose k reaches the number
    of features (the backtest stops there)."""

    k: np.ndarray
    window_start: np.ndarray
    window_k: np.ndarray
    end: int


class ExitTable(NamedTuple):
    """Per entry candle j < end, for one pcr (see ``entry_tables``)."""

    exits: np.ndarray  # the exit candle (end: still open when the backtest stops)
    resume: np.ndarray  # the first candle free to open the next position (-1: never closes)
    wins: np.ndarray  # bit 0 a long wins, bit 1 a short wins


class Account(NamedTuple):
    """§7.4 amounts of one pcr: every position has the same size, so the same profit or loss."""

    initial_balance: float
    position_size: float
    net_profit: float
    net_loss: float
    fee_success: float
    fee_failure: float


class PcrStack(NamedTuple):
    """Everything per pcr, stacked: row p belongs to pcr slot p."""

    labels: np.ndarray  # int8 (slots, labels)
    label_counts: np.ndarray
    exits: np.ndarray  # (slots, end)
    resume: np.ndarray
    wins: np.ndarray
    money: np.ndarray  # (slots, 4): net_profit, net_loss, fee_success, fee_failure


class ConfigArrays(NamedTuple):
    """Configuration c: its regressions' feature rows ``rows[c, :row_counts[c]]`` (in the
    configuration's order), its pcr slot, ``use_median`` (msf) and msaf."""

    rows: np.ndarray
    row_counts: np.ndarray
    pcr_slots: np.ndarray
    use_median: np.ndarray
    msaf: np.ndarray


class MinSums(NamedTuple):
    """§7.2-7.3: the discovery counts over the feature sums and the min sums derived from them."""

    min_increase_sum: float
    min_decrease_sum: float
    increase: int
    increase_ok: int
    decrease: int
    decrease_ok: int
    neutral: int


class Outcome(NamedTuple):
    """§7.4: what the backtest of one configuration did."""

    final_balance: float
    fees: float
    longs: int
    longs_ok: int
    shorts: int
    shorts_ok: int
    closed: int


RESULT_DTYPE = np.dtype([
    ("final_balance", np.float64), ("fees", np.float64),
    ("longs", np.int64), ("longs_ok", np.int64), ("shorts", np.int64), ("shorts_ok", np.int64),
    ("min_increase_sum", np.float64), ("min_decrease_sum", np.float64),
    ("discovery_increase", np.int64), ("discovery_increase_ok", np.int64),
    ("discovery_decrease", np.int64), ("discovery_decrease_ok", np.int64), ("discovery_neutral", np.int64),
    ("accuracy", np.float64), ("increase_accuracy", np.float64), ("decrease_accuracy", np.float64),
    ("discovery_accuracy", np.float64),
])
NO_BLOCKS = np.empty(0, dtype=np.int64)


@njit(cache=True)
def account_of(pcrs: PcrStack, slot: int, initial_balance: float, position_size: float) -> Account:
    money = pcrs.money[slot]
    return Account(initial_balance, position_size, money[0], money[1], money[2], money[3])


@njit(cache=True)
def discover(sums: np.ndarray, labels: np.ndarray, n_labels: int, use_median: bool, msaf: float,
             scratch_inc: np.ndarray, scratch_dec: np.ndarray) -> MinSums:
    """§7.2-7.3 discovery counts and min sums over the first min(features, labels) sums."""
    m = min(sums.shape[0], n_labels)
    n_inc = 0
    n_inc_ok = 0
    n_dec = 0
    n_dec_ok = 0
    for i in range(m):
        # branch-free: always write, advance only on a match (signs are coin flips)
        s = sums[i]
        positive = s > 0.0
        negative = s < 0.0
        n_inc += positive
        n_dec += negative
        scratch_inc[n_inc_ok] = s
        n_inc_ok += positive & (labels[i] == 1)
        scratch_dec[n_dec_ok] = s
        n_dec_ok += negative & (labels[i] == -1)
    stat_inc = 0.0
    stat_dec = 0.0
    if use_median:
        if n_inc_ok > 0:
            stat_inc = numpy_median(scratch_inc, n_inc_ok)
        if n_dec_ok > 0:
            stat_dec = numpy_median(scratch_dec, n_dec_ok)
    else:
        if n_inc_ok > 0:
            stat_inc = numpy_mean(scratch_inc, n_inc_ok)
        if n_dec_ok > 0:
            stat_dec = numpy_mean(scratch_dec, n_dec_ok)
    return MinSums(round_scaled(stat_inc * msaf, 1e6), round_scaled(stat_dec * msaf, 1e6),
                   n_inc, n_inc_ok, n_dec, n_dec_ok, m - n_inc - n_dec)


@njit(cache=True)
def next_entry(sums: np.ndarray, market: Market, j: int, min_inc: float, min_dec: float) -> tuple[int, int]:
    """§7.4 entry search from candle j: (the first candle at or after j whose window signals,
    its side 1 long / -1 short), or (-, 0) when none does before the features run out.

    The signal depends only on the candle's window k, so the search moves window by
    window, evaluating each window's signal once per visit; the trend runs are extended
    by one comparison per window rather than recounted."""
    n_features = sums.shape[0]
    index = market.k[j]
    runs_valid = False  # up/down runs below belong to `index`
    up_run = 0
    down_run = 0
    while True:
        if index >= FIRST_SIGNAL_WINDOW:
            if not runs_valid:
                up_run, down_run = runs_at(sums, index)
                runs_valid = True
            if up_run >= 3 or down_run >= 3:
                side = signal_from_runs(sums, index, up_run, down_run, min_inc, min_dec)
                if side != 0:
                    return j, side
            index += 1
        else:
            index = FIRST_SIGNAL_WINDOW
            runs_valid = False
        if index >= n_features:
            return j, 0
        # index > k[j], so this moves forward; window_k avoids touching the big k array
        j = market.window_start[index]
        if j >= market.end:
            return j, 0
        if market.window_k[index] != index:  # windows without candles were skipped
            index = market.window_k[index]
            runs_valid = False
        elif runs_valid:  # next window: extend or reset the runs by one comparison each
            up_run = up_run + 1 if sums[index] > sums[index - 1] else 0
            down_run = down_run + 1 if sums[index] < sums[index - 1] else 0


@njit(cache=True)
def backtest(sums: np.ndarray, market: Market, table: ExitTable, account: Account, min_inc: float, min_dec: float,
             record: np.ndarray, block_of: np.ndarray, block_pnl: np.ndarray) -> Outcome:
    """§7.4 backtest over the feature sums with the given min sums.

    Each position jumps straight to its precomputed exit and resume candles. With a
    non-empty ``record`` the closed positions are listed (entry, exit, side, success);
    with a non-empty ``block_of`` (the block of each entry candle) each position's
    profit or loss is added to ``block_pnl[block_of[entry]]`` (the per-block figures of
    the overfitting statistics)."""
    balance = account.initial_balance
    fees = 0.0
    longs = 0
    longs_ok = 0
    shorts = 0
    shorts_ok = 0
    closed = 0
    recording = record.shape[0] > 0
    blocking = block_of.shape[0] > 0
    j = 0
    while j < market.end:
        j, side = next_entry(sums, market, j, min_inc, min_dec)
        if side == 0:
            break
        next_j = table.resume[j]
        if next_j < 0:
            break  # still open when the features run out
        if side == 1:
            success = (table.wins[j] & 1) != 0
            longs += 1
            longs_ok += success
        else:
            success = (table.wins[j] & 2) != 0
            shorts += 1
            shorts_ok += success
        pnl = account.net_profit if success else -account.net_loss
        balance += pnl
        fees += account.fee_success if success else account.fee_failure
        if recording:
            record[closed, 0] = j
            record[closed, 1] = table.exits[j]
            record[closed, 2] = side
            record[closed, 3] = 1 if success else 0
        if blocking:
            block_pnl[block_of[j]] += pnl
        closed += 1
        if balance < account.position_size:
            break
        j = next_j
    return Outcome(balance, fees, longs, longs_ok, shorts, shorts_ok, closed)


@njit(cache=True)
def write_result(out: np.ndarray, c: int, found: MinSums, outcome: Outcome) -> None:
    """Row c of a RESULT_DTYPE array from the two steps' figures."""
    row = out[c]
    row.final_balance = outcome.final_balance
    row.fees = outcome.fees
    row.longs = outcome.longs
    row.longs_ok = outcome.longs_ok
    row.shorts = outcome.shorts
    row.shorts_ok = outcome.shorts_ok
    row.min_increase_sum = found.min_increase_sum
    row.min_decrease_sum = found.min_decrease_sum
    row.discovery_increase = found.increase
    row.discovery_increase_ok = found.increase_ok
    row.discovery_decrease = found.decrease
    row.discovery_decrease_ok = found.decrease_ok
    row.discovery_neutral = found.neutral
    row.accuracy = accuracy(outcome.longs_ok + outcome.shorts_ok, outcome.longs + outcome.shorts)
    row.increase_accuracy = accuracy(outcome.longs_ok, outcome.longs)
    row.decrease_accuracy = accuracy(outcome.shorts_ok, outcome.shorts)
    row.discovery_accuracy = accuracy(found.increase_ok + found.decrease_ok, found.increase + found.decrease)


@njit(cache=True)
def evaluate_batch(features: np.ndarray, configs: ConfigArrays, market: Market, pcrs: PcrStack,
                   initial_balance: float, position_size: float, block_of: np.ndarray,
                   block_pnl: np.ndarray, results: np.ndarray) -> None:
    """Evaluate many configurations into ``results`` (RESULT_DTYPE, one row each).

    ``block_of`` empty: no per-block figures; else ``block_pnl[c]`` receives
    configuration c's profit per block (see ``backtest``)."""
    n_features = features.shape[1]
    sums = np.empty(n_features)
    scratch_inc = np.empty(n_features)
    scratch_dec = np.empty(n_features)
    blocking = block_of.shape[0] > 0
    no_pnl = np.empty(0)
    no_record = np.empty((0, 4), dtype=np.int64)  # a global array would be a read-only constant here
    for c in range(configs.rows.shape[0]):
        p = configs.pcr_slots[c]
        feature_sums(features, configs.rows[c, : configs.row_counts[c]], sums)
        found = discover(sums, pcrs.labels[p], pcrs.label_counts[p], configs.use_median[c], configs.msaf[c],
                         scratch_inc, scratch_dec)
        table = ExitTable(pcrs.exits[p], pcrs.resume[p], pcrs.wins[p])
        outcome = backtest(sums, market, table, account_of(pcrs, p, initial_balance, position_size),
                           found.min_increase_sum, found.min_decrease_sum, no_record, block_of,
                           block_pnl[c] if blocking else no_pnl)
        write_result(results, c, found, outcome)
