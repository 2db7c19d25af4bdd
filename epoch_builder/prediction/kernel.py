"""Numba kernels of the prediction-model backtest (SEMANTICS §7).

Why it is fast yet exact:

* Exits: a position's take-profit and stop-loss depend only on its entry
  candle (``alter(open, ±pcr)``), so for each pcr the first later candle whose
  high/low touches either price is found once per entry candle (``first_exits``,
  skipping 64-candle blocks and 4096-candle super-blocks by their max high /
  min low) and the backtest jumps straight to it (``entry_tables``: the exit's
  outcome and the first candle after the idle time). Long and short share that
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

import numpy as np
from numba import njit

BLOCK = 64  # candles per block of the exit search
SUPER = 64  # blocks per super-block
PAIRWISE_BLOCK = 128  # NumPy's PW_BLOCKSIZE

# Columns of the per-configuration result row.
R_FINAL_BALANCE = 0
R_FEES = 1
R_LONGS = 2
R_LONGS_OK = 3
R_SHORTS = 4
R_SHORTS_OK = 5
R_MIN_INC = 6
R_MIN_DEC = 7
R_DISC_INC = 8
R_DISC_INC_OK = 9
R_DISC_DEC = 10
R_DISC_DEC_OK = 11
R_DISC_NEUTRAL = 12
R_ACCURACY = 13
R_INC_ACCURACY = 14
R_DEC_ACCURACY = 15
R_DISC_ACCURACY = 16
RESULT_WIDTH = 17
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


@njit(inline="always")
def _first_touch(high: np.ndarray, low: np.ndarray, up: float, down: float, t: int, stop: int) -> int:
    """The first candle in [t, stop) whose high >= up or low <= down; ``stop`` when none."""
    while t < stop:
        if high[t] >= up or low[t] <= down:
            return t
        t += 1
    return stop


@njit(cache=True)
def first_exits(high: np.ndarray, low: np.ndarray, upper: np.ndarray, lower: np.ndarray, end: int) -> np.ndarray:
    """For each entry candle j < end: the first t in (j, end) with high >= upper[j] or
    low <= lower[j]; ``end`` when none (the position is still open when the backtest stops).

    Two levels of skipping (blocks of 64 candles, super-blocks of 64 blocks, by their
    max high / min low) bound the work per entry even when the exit is months away."""
    n_blocks = (end + BLOCK - 1) // BLOCK
    n_supers = (n_blocks + SUPER - 1) // SUPER
    block_high = np.empty(n_blocks)
    block_low = np.empty(n_blocks)
    for b in range(n_blocks):
        lo = b * BLOCK
        hi = min(lo + BLOCK, end)
        block_high[b] = high[lo:hi].max()
        block_low[b] = low[lo:hi].min()
    super_high = np.empty(n_supers)
    super_low = np.empty(n_supers)
    for g in range(n_supers):
        lo = g * SUPER
        hi = min(lo + SUPER, n_blocks)
        super_high[g] = block_high[lo:hi].max()
        super_low[g] = block_low[lo:hi].min()
    exits = np.full(end, end, dtype=np.int64)
    for j in range(end):
        up = upper[j]
        down = lower[j]
        t = j + 1
        # finish the entry's own block candle by candle
        block_end = min((t // BLOCK + 1) * BLOCK, end)
        t = _first_touch(high, low, up, down, t, block_end)
        if t == block_end and t < end:
            # t is at a block boundary: skip blocks up to the next super-block boundary,
            b = t // BLOCK
            while b < n_blocks and b % SUPER != 0 and block_high[b] < up and block_low[b] > down:
                b += 1
            if b < n_blocks and b % SUPER == 0 and block_high[b] < up and block_low[b] > down:
                # then whole super-blocks, then blocks inside the one that is touched
                g = b // SUPER
                while g < n_supers and super_high[g] < up and super_low[g] > down:
                    g += 1
                b = g * SUPER
                while b < n_blocks and block_high[b] < up and block_low[b] > down:
                    b += 1
            t = _first_touch(high, low, up, down, b * BLOCK, end)
        exits[j] = t
    return exits


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


@njit(cache=True)
def evaluate_one(
    features: np.ndarray,
    rows: np.ndarray,
    labels: np.ndarray,
    n_labels: int,
    use_median: bool,
    msaf: float,
    k: np.ndarray,
    window_start: np.ndarray,
    window_k: np.ndarray,
    end: int,
    exits: np.ndarray,
    resume: np.ndarray,
    wins: np.ndarray,
    position_size: float,
    initial_balance: float,
    net_profit: float,
    net_loss: float,
    fee_success: float,
    fee_failure: float,
    sums: np.ndarray,
    scratch_inc: np.ndarray,
    scratch_dec: np.ndarray,
    result: np.ndarray,
    record: np.ndarray,
) -> int:
    """One configuration: fills ``result`` (R_* columns) and ``sums`` (feature sums);
    with a non-empty ``record`` (rows: entry index, exit index, type, success) also
    lists the positions. Returns the number of closed positions.

    Per entry candle j < end (see ``entry_tables``): ``exits[j]`` the exit candle,
    ``resume[j]`` the first candle allowed to open the next position (-1: the
    position is still open when the backtest stops), ``wins[j]`` bit 0 a long
    wins, bit 1 a short wins. ``window_start[w]``: first candle with k >= w;
    ``window_k[w]``: that candle's k.
    """
    n_features = sums.shape[0]
    feature_sums(features, rows, sums)

    # §7.2-7.3 discovery counts and min sums
    m = min(n_features, n_labels)
    n_inc = 0
    n_inc_ok = 0
    n_dec = 0
    n_dec_ok = 0
    n_neutral = 0
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
    n_neutral = m - n_inc - n_dec
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
    min_inc = round_scaled(stat_inc * msaf, 1e6)
    min_dec = round_scaled(stat_dec * msaf, 1e6)

    # §7.4 backtest. The signal depends only on the candle's window k, so the search
    # moves window by window (evaluating each window's signal lazily, once per visit)
    # and each position jumps straight to its precomputed exit and resume candles.
    balance = initial_balance
    fees = 0.0
    longs = 0
    longs_ok = 0
    shorts = 0
    shorts_ok = 0
    closed = 0
    recording = record.shape[0] > 0
    j = 0
    while j < end:
        index = k[j]
        side = 0
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
                        break
                index += 1
            else:
                index = FIRST_SIGNAL_WINDOW
                runs_valid = False
            if index >= n_features:
                break
            # index > k[j], so this moves forward; window_k avoids touching the big k array
            j = window_start[index]
            if j >= end:
                break
            if window_k[index] != index:  # windows without candles were skipped
                index = window_k[index]
                runs_valid = False
            elif runs_valid:  # next window: extend or reset the runs by one comparison each
                up_run = up_run + 1 if sums[index] > sums[index - 1] else 0
                down_run = down_run + 1 if sums[index] < sums[index - 1] else 0
        if side == 0:
            break
        next_j = resume[j]
        if next_j < 0:
            break  # still open when the features run out
        if side == 1:
            success = (wins[j] & 1) != 0
            longs += 1
            if success:
                longs_ok += 1
        else:
            success = (wins[j] & 2) != 0
            shorts += 1
            if success:
                shorts_ok += 1
        if success:
            balance += net_profit
            fees += fee_success
        else:
            balance -= net_loss
            fees += fee_failure
        if recording:
            record[closed, 0] = j
            record[closed, 1] = exits[j]
            record[closed, 2] = side
            record[closed, 3] = 1 if success else 0
        closed += 1
        if balance < position_size:
            break
        j = next_j

    result[R_FINAL_BALANCE] = balance
    result[R_FEES] = fees
    result[R_LONGS] = longs
    result[R_LONGS_OK] = longs_ok
    result[R_SHORTS] = shorts
    result[R_SHORTS_OK] = shorts_ok
    result[R_MIN_INC] = min_inc
    result[R_MIN_DEC] = min_dec
    result[R_DISC_INC] = n_inc
    result[R_DISC_INC_OK] = n_inc_ok
    result[R_DISC_DEC] = n_dec
    result[R_DISC_DEC_OK] = n_dec_ok
    result[R_DISC_NEUTRAL] = n_neutral
    result[R_ACCURACY] = accuracy(longs_ok + shorts_ok, longs + shorts)
    result[R_INC_ACCURACY] = accuracy(longs_ok, longs)
    result[R_DEC_ACCURACY] = accuracy(shorts_ok, shorts)
    result[R_DISC_ACCURACY] = accuracy(n_inc_ok + n_dec_ok, n_inc + n_dec)
    return closed


@njit(cache=True)
def evaluate_batch(
    features: np.ndarray,
    rows: np.ndarray,
    row_counts: np.ndarray,
    pcr_slots: np.ndarray,
    use_median: np.ndarray,
    msaf: np.ndarray,
    labels: np.ndarray,
    label_counts: np.ndarray,
    k: np.ndarray,
    window_start: np.ndarray,
    window_k: np.ndarray,
    end: int,
    exits: np.ndarray,
    resume: np.ndarray,
    wins: np.ndarray,
    position_size: float,
    initial_balance: float,
    money: np.ndarray,
) -> np.ndarray:
    """Evaluate many configurations; per pcr slot p: ``labels[p]``, ``exits[p]``,
    ``resume[p]``, ``wins[p]`` and ``money[p] = (net_profit, net_loss, fee_success,
    fee_failure)``. Returns one R_* row per configuration."""
    n_configs = rows.shape[0]
    n_features = features.shape[1]
    results = np.empty((n_configs, RESULT_WIDTH))
    sums = np.empty(n_features)
    scratch_inc = np.empty(n_features)
    scratch_dec = np.empty(n_features)
    no_record = np.empty((0, 4), dtype=np.int64)
    for c in range(n_configs):
        p = pcr_slots[c]
        evaluate_one(
            features, rows[c, : row_counts[c]], labels[p], label_counts[p], use_median[c], msaf[c],
            k, window_start, window_k, end, exits[p], resume[p], wins[p],
            position_size, initial_balance, money[p, 0], money[p, 1], money[p, 2], money[p, 3],
            sums, scratch_inc, scratch_dec, results[c], no_record,
        )
    return results
