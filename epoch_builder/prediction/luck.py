"""Was the best configuration skill or luck? Two selection-bias statistics.

A sweep evaluates many configurations on one history and keeps the best. The
best of many noisy figures is high even when nothing works, so its backtest
overstates what it will do next. Two published corrections live here:

* **PBO by CSCV** -- D. H. Bailey, J. M. Borwein, M. López de Prado, Q. J. Zhu,
  "The Probability of Backtest Overfitting", *Journal of Computational
  Finance* 20(4), 2017. Split the history into S blocks; for every way of
  calling half of them in-sample, pick the in-sample best configuration and
  see where it ranks out-of-sample. PBO is how often it lands in the bottom
  half: about 0.5 when the selection is pure luck, near 0 when it is skill.
* **Deflated Sharpe Ratio** -- D. H. Bailey, M. López de Prado, "The Deflated
  Sharpe Ratio: Correcting for Selection Bias, Backtest Overfitting and
  Non-Normality", *Journal of Portfolio Management* 40(5), 2014. The
  probability that the selected Sharpe ratio beats the Sharpe ratio that the
  best of N skill-less trials would reach by chance, corrected for the length,
  skewness and kurtosis of the track record.

Only NumPy and the standard library (``statistics.NormalDist``) are used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

EULER_GAMMA = 0.5772156649015329  # Euler–Mascheroni constant
_NORMAL = NormalDist()
_CHUNK_CELLS = 400_000  # splits x configurations per chunk: ~3 MB per float64 array, near cache size
_ZERO_VARIANCE = 1e-12  # relative to the sum of squares: below it a block series is flat
LOGIT_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)

Statistic = Literal["sum", "sharpe"]


# --- CSCV splits ------------------------------------------------------------


def _check_blocks(blocks: int) -> None:
    if isinstance(blocks, bool) or not isinstance(blocks, (int, np.integer)) or blocks < 2 or blocks % 2:
        raise ValueError(f"S (blocks) must be an even integer >= 2 (2, 4, 6, ...); got {blocks!r}")


def combinations_count(blocks: int) -> int:
    """Number of CSCV splits for S blocks: C(S, S/2) (12,870 for S = 16).

    Every split has its complement among the others, which is what makes the
    procedure "combinatorially symmetric" (Bailey et al. 2017, §2).
    """
    _check_blocks(blocks)
    return math.comb(int(blocks), int(blocks) // 2)


def split_matrix(blocks: int) -> np.ndarray:
    """The (C(S, S/2), S) 0/1 matrix whose row j marks split j's in-sample blocks.

    Rows follow ``itertools.combinations(range(S), S // 2)``, so split 0 takes
    the first S/2 blocks in-sample. Multiplying it with the (S, N) block matrix
    gives every split's in-sample totals at once.
    """
    _check_blocks(blocks)
    half = int(blocks) // 2
    chosen = np.array(list(combinations(range(int(blocks)), half)), dtype=np.intp)
    indicator = np.zeros((len(chosen), int(blocks)), dtype=np.float64)
    np.put_along_axis(indicator, chosen, 1.0, axis=1)
    return indicator


def block_bounds(start_ms: int, end_ms: int, blocks: int) -> list[tuple[int, int]]:
    """Split the half-open range [start_ms, end_ms) into contiguous blocks.

    Blocks are half-open ``(start, end)`` pairs, each one's end the next one's
    start, the first starting at ``start_ms`` and the last ending at
    ``end_ms``; their lengths differ by at most one millisecond. CSCV needs
    blocks of equal length so that no half of the history weighs more than
    the other (Bailey et al. 2017, §2).
    """
    if isinstance(blocks, bool) or not isinstance(blocks, (int, np.integer)) or blocks < 1:
        raise ValueError(f"blocks must be a positive integer; got {blocks!r}")
    start, end, count = int(start_ms), int(end_ms), int(blocks)
    if end - start < count:
        raise ValueError(f"range [{start}, {end}) is too short for {count} non-empty blocks")
    edges = [start + (end - start) * i // count for i in range(count + 1)]
    return list(zip(edges[:-1], edges[1:]))


# --- PBO ----------------------------------------------------------------------


def _nan_to_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


@dataclass(frozen=True)
class PBOResult:
    """Outcome of CSCV (Bailey et al. 2017).

    ``pbo`` is the fraction of splits (with a defined winner) whose in-sample
    winner's logit is <= 0. ``logits``, ``relative_ranks`` (ω) and ``winners``
    (column index in the caller's matrix) have one entry per split, in
    :func:`split_matrix` order; a split where no configuration has a defined
    in-sample statistic has logit and ω NaN and winner -1 and is counted in
    ``undefined_splits``, not in ``pbo``. ``configurations`` is N as given,
    ``sampled_configurations`` how many of them entered the computation.
    ``prob_oos_loss`` is the fraction of splits whose winner's out-of-sample
    statistic is below zero (the paper's "probability of loss", §3); under
    ``"sharpe"`` a winner flat out-of-sample (ranked last) counts as a loss.
    """

    pbo: float
    splits: int
    blocks: int
    configurations: int
    logits: np.ndarray
    median_logit: float
    sampled_configurations: int
    statistic: str
    relative_ranks: np.ndarray
    winners: np.ndarray
    prob_oos_loss: float
    undefined_splits: int

    def to_json(self) -> dict[str, Any]:
        """Plain Python values (no arrays): the logits as quantiles, NaN as None."""
        defined = self.logits[np.isfinite(self.logits)]
        quantiles = {f"{q:g}": (_nan_to_none(float(np.quantile(defined, q))) if defined.size else None)
                     for q in LOGIT_QUANTILES}
        return {
            "pbo": _nan_to_none(self.pbo),
            "splits": int(self.splits),
            "blocks": int(self.blocks),
            "configurations": int(self.configurations),
            "sampled_configurations": int(self.sampled_configurations),
            "statistic": self.statistic,
            "median_logit": _nan_to_none(self.median_logit),
            "logit_quantiles": quantiles,
            "prob_oos_loss": _nan_to_none(self.prob_oos_loss),
            "undefined_splits": int(self.undefined_splits),
        }


def _validated_performance(performance: np.ndarray) -> np.ndarray:
    matrix = np.asarray(performance, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"performance must be a 2-D (S blocks, N configurations) matrix; got shape {matrix.shape}")
    _check_blocks(matrix.shape[0])
    if matrix.shape[1] < 2:
        raise ValueError(f"N (configurations) must be >= 2; got {matrix.shape[1]}")
    if not np.isfinite(matrix).all():
        raise ValueError("performance holds NaN or infinite values")
    return matrix


def _sample_columns(matrix: np.ndarray, max_configurations: int | None,
                    seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The columns that enter the computation and their original indices.

    Above ``max_configurations`` a uniform sample without replacement is drawn
    with ``numpy.random.default_rng(seed)`` (kept in column order), so the
    same seed always picks the same configurations.
    """
    n = matrix.shape[1]
    if max_configurations is None or n <= max_configurations:
        return matrix, np.arange(n)
    if max_configurations < 2:
        raise ValueError(f"max_configurations must be >= 2; got {max_configurations}")
    picked = np.sort(np.random.default_rng(seed).choice(n, size=int(max_configurations), replace=False))
    return matrix[:, picked], picked


class _SumScorer:
    """Per-split statistic = sum of the block values (the default).

    The paper leaves the performance statistic open (§2: any performance
    measure); summing block profits gives each half's profit.
    """

    def __init__(self, matrix: np.ndarray, rows: int) -> None:
        self._matrix = matrix
        self._total = matrix.sum(axis=0)
        self._chosen = np.empty((rows, matrix.shape[1]))
        self._rest = np.empty_like(self._chosen)

    def score(self, indicator: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(statistic over the marked blocks, statistic over the others), one row per split."""
        chosen, rest = self._chosen[: len(indicator)], self._rest[: len(indicator)]
        np.matmul(indicator, self._matrix, out=chosen)
        np.subtract(self._total, chosen, out=rest)  # same rounding for identical columns
        return chosen, rest


class _SharpeScorer:
    """Per-split statistic = mean / standard deviation (ddof=1) of the block values.

    Variances come from sums over the chosen blocks of column-centred values
    (variance does not depend on the centre, and centring avoids cancellation).
    A configuration whose values are flat over the chosen blocks (e.g. one that
    never trades) has no Sharpe ratio; it scores -inf, so it can never be the
    in-sample winner and ranks below every defined value out-of-sample.
    """

    def __init__(self, matrix: np.ndarray, rows: int) -> None:
        shape = (rows, matrix.shape[1])
        self._flags = np.empty(shape, dtype=bool)
        # preallocated: fresh chunk-sized arrays cost a page fault per page, every chunk
        self._buffers = [np.empty(shape) for _ in range(5)]
        self._half = matrix.shape[0] // 2
        self._matrix = matrix
        centre = matrix.mean(axis=0)
        self._shift = -self._half * centre  # sums + shift = the chosen blocks' centred sums
        centred = matrix - centre
        self._squares = centred * centred
        self._total = matrix.sum(axis=0)
        self._total_squares = self._squares.sum(axis=0)

    def _sharpe(self, sums: np.ndarray, squares: np.ndarray) -> np.ndarray:
        """A rank-equivalent of the Sharpe ratios of a chunk of splits, in place into ``sums``.

        mean / std = (sums / k) / sqrt(ss / (k − 1)) with ss = squares − (sums − k·centre)² / k.
        What is returned is sums·|sums| / ss = sign(SR)·SR²·k² / (k − 1): a strictly increasing
        function of the Sharpe ratio, the same for every configuration of a split, so every
        argmax, rank and sign is the Sharpe ratio's -- without a square root per cell.
        ``squares`` is overwritten too.
        """
        k = self._half
        ss = np.add(sums, self._shift, out=self._buffers[4][: len(sums)])
        np.multiply(ss, ss, out=ss)
        ss /= k
        np.subtract(squares, ss, out=ss)
        squares *= _ZERO_VARIANCE
        flat = np.less_equal(ss, squares, out=self._flags[: len(ss)])
        np.abs(sums, out=squares)
        np.multiply(sums, squares, out=sums)
        with np.errstate(invalid="ignore", divide="ignore"):
            np.divide(sums, ss, out=sums)
        if flat.any():
            sums[flat] = -np.inf
        return sums

    def score(self, indicator: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(statistic over the marked blocks, statistic over the others), one row per split."""
        sums, squares, rest, rest_squares = (buffer[: len(indicator)] for buffer in self._buffers[:4])
        np.matmul(indicator, self._matrix, out=sums)
        np.matmul(indicator, self._squares, out=squares)
        np.subtract(self._total, sums, out=rest)
        np.subtract(self._total_squares, squares, out=rest_squares)
        return self._sharpe(sums, squares), self._sharpe(rest, rest_squares)


def _rank_winners(in_sample: np.ndarray, out_sample: np.ndarray,
                  scratch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per split (row): the in-sample winner, its average out-of-sample rank, its OOS value.

    The winner is the first column holding the in-sample maximum. Its 1-based
    ascending rank among the N out-of-sample values, ties averaged, is
    ``#(oos < v) + (#(oos == v) + 1) / 2`` -- two counting passes, no sort.
    A row without a finite in-sample value has no winner (-1, rank NaN).
    """
    rows = np.arange(in_sample.shape[0])
    winners = np.argmax(in_sample, axis=1)
    defined = np.isfinite(in_sample[rows, winners])
    value = out_sample[rows, winners]
    flags = scratch[: len(rows)]
    np.less(out_sample, value[:, None], out=flags)
    below = np.array([np.count_nonzero(row) for row in flags], dtype=np.float64)
    np.equal(out_sample, value[:, None], out=flags)
    tied = np.array([np.count_nonzero(row) for row in flags], dtype=np.float64)
    rank = below + (tied + 1.0) / 2.0
    rank[~defined] = np.nan
    return np.where(defined, winners, -1), rank, value


def probability_of_backtest_overfitting(
    performance: np.ndarray,
    *,
    statistic: Statistic = "sum",
    max_configurations: int | None = None,
    seed: int | None = 0,
) -> PBOResult:
    """PBO by combinatorially symmetric cross-validation (Bailey et al. 2017, §2).

    ``performance`` is (S blocks, N configurations): each block's figure per
    configuration, e.g. the profit made inside that block. S must be even
    (>= 2) and N >= 2. For each of the C(S, S/2) splits:

    1. the statistic of every configuration over the in-sample blocks and over
       the others -- ``"sum"`` (default): the sum of the block values, i.e. the
       paper's performance statistic taken as the half's profit; ``"sharpe"``
       (S >= 4): mean / std (ddof=1) of the block values, a flat series never
       winning (see :class:`_SharpeScorer`);
    2. n* = the in-sample best (the first one on ties);
    3. ω = rank / (N + 1), rank = n*'s 1-based ascending out-of-sample rank
       (ties: average rank), so ω is in (0, 1);
    4. λ = ln(ω / (1 − ω)).

    PBO = the fraction of splits with λ <= 0, i.e. ω <= 0.5: the paper's
    convention, so a winner exactly at the out-of-sample median counts as
    overfit. ``max_configurations`` caps N by a seeded uniform sample (see
    :func:`_sample_columns`).

    Vectorised: the (splits, S) indicator matrix times the block matrix gives
    the in-sample statistics of a chunk of splits at once; the out-of-sample
    ones are the totals minus them; and since split C-1-j is split j's
    complement (lexicographic order), each chunk serves two splits with the
    roles swapped. Ranks are counts, not sorts. Chunks are sized to stay near
    cache size (``_CHUNK_CELLS`` splits x configurations), and their buffers are
    reused.
    """
    if statistic not in ("sum", "sharpe"):
        raise ValueError(f"statistic must be 'sum' or 'sharpe'; got {statistic!r}")
    matrix = _validated_performance(performance)
    if statistic == "sharpe" and matrix.shape[0] < 4:
        raise ValueError(f"statistic 'sharpe' needs S (blocks) >= 4 (a std over S/2 >= 2 blocks); "
                         f"got S = {matrix.shape[0]}")
    n_given = matrix.shape[1]
    matrix, columns = _sample_columns(matrix, max_configurations, seed)
    blocks, n = matrix.shape
    indicator = split_matrix(blocks)
    splits = indicator.shape[0]
    half = splits // 2  # rows [0, half) hold block 0 in-sample; row C-1-j is row j's complement
    chunk = max(1, min(half, _CHUNK_CELLS // n))
    scorer = _SumScorer(matrix, chunk) if statistic == "sum" else _SharpeScorer(matrix, chunk)
    scratch = np.empty((chunk, n), dtype=bool)
    winners = np.empty(splits, dtype=np.intp)
    ranks = np.empty(splits, dtype=np.float64)
    oos_values = np.empty(splits, dtype=np.float64)
    for first in range(0, half, chunk):
        rows = np.arange(first, min(first + chunk, half))
        marked, others = scorer.score(indicator[rows])
        winners[rows], ranks[rows], oos_values[rows] = _rank_winners(marked, others, scratch)
        mirror = splits - 1 - rows
        winners[mirror], ranks[mirror], oos_values[mirror] = _rank_winners(others, marked, scratch)
    return _pbo_result(ranks, winners, oos_values, columns, blocks, n_given, n, statistic)


def _pbo_result(ranks: np.ndarray, winners: np.ndarray, oos_values: np.ndarray, columns: np.ndarray,
                blocks: int, n_given: int, n: int, statistic: str) -> PBOResult:
    omega = ranks / (n + 1)
    with np.errstate(invalid="ignore"):
        logits = np.log(omega / (1.0 - omega))
    defined = np.isfinite(logits)
    count = int(defined.sum())
    pbo = float(np.count_nonzero(logits[defined] <= 0.0) / count) if count else math.nan
    median = float(np.median(logits[defined])) if count else math.nan
    loss = float(np.count_nonzero(oos_values[defined] < 0.0) / count) if count else math.nan
    original = np.where(winners >= 0, columns[np.maximum(winners, 0)], -1)
    return PBOResult(pbo=pbo, splits=len(logits), blocks=blocks, configurations=n_given, logits=logits,
                     median_logit=median, sampled_configurations=n, statistic=statistic,
                     relative_ranks=omega, winners=original, prob_oos_loss=loss,
                     undefined_splits=len(logits) - count)


# --- Deflated Sharpe Ratio ------------------------------------------------------


def expected_max_sharpe(n_trials: int, variance_of_sharpes: float) -> float:
    """SR0: the expected maximum Sharpe ratio of N skill-less trials.

    Bailey & López de Prado (2014), eq. for E[max SR_n] with true SR 0:
    sqrt(V) · ((1 − γ) Φ⁻¹(1 − 1/N) + γ Φ⁻¹(1 − 1/(N e))), γ the Euler–Mascheroni
    constant, V the variance of the trials' Sharpe ratios (same units as the
    Sharpe ratio being tested: per observation here). The approximation needs
    N >= 2 (Φ⁻¹(0) is -inf); a single trial involves no selection, so N = 1
    returns 0.
    """
    if isinstance(n_trials, bool) or int(n_trials) != n_trials or n_trials < 1:
        raise ValueError(f"n_trials must be a positive integer; got {n_trials!r}")
    if not math.isfinite(variance_of_sharpes) or variance_of_sharpes < 0:
        raise ValueError(f"variance_of_sharpes must be finite and >= 0; got {variance_of_sharpes!r}")
    if n_trials == 1:
        return 0.0
    n = float(n_trials)
    z = (1.0 - EULER_GAMMA) * _NORMAL.inv_cdf(1.0 - 1.0 / n) + EULER_GAMMA * _NORMAL.inv_cdf(1.0 - 1.0 / (n * math.e))
    return math.sqrt(variance_of_sharpes) * z


def probabilistic_sharpe_ratio(sr: float, sr_benchmark: float, observations: int,
                               skew: float = 0.0, kurtosis: float = 3.0) -> float:
    """PSR: P(true SR > sr_benchmark) given an estimate from T observations.

    Φ((SR − SR*) sqrt(T − 1) / sqrt(1 − γ3·SR + (γ4 − 1)/4 · SR²)), as used by
    Bailey & López de Prado (2014) for the DSR. SR and SR* are per observation
    (not annualised); ``kurtosis`` γ4 is the non-excess (Pearson) kurtosis, 3
    for normal returns, where the denominator becomes the iid-normal
    sqrt(1 + SR²/2).
    """
    if isinstance(observations, bool) or int(observations) != observations or observations < 2:
        raise ValueError(f"observations must be an integer >= 2; got {observations!r}")
    radicand = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr * sr
    if not radicand > 0.0:
        raise ValueError(f"inconsistent moments: 1 - skew*sr + (kurtosis-1)/4*sr^2 = {radicand!r} <= 0 "
                         f"(sr={sr!r}, skew={skew!r}, kurtosis={kurtosis!r})")
    return _NORMAL.cdf((sr - sr_benchmark) * math.sqrt(observations - 1) / math.sqrt(radicand))


@dataclass(frozen=True)
class DSRResult:
    """Deflated Sharpe Ratio of one return series (Bailey & López de Prado 2014).

    ``sr`` per observation, ``sr0`` the expected maximum of ``n_trials``
    skill-less trials, ``skew`` and non-excess ``kurtosis`` of the returns,
    ``dsr`` = PSR(sr0).
    """

    sr: float
    sr0: float
    skew: float
    kurtosis: float
    observations: int
    n_trials: int
    variance_of_sharpes: float
    dsr: float

    def to_json(self) -> dict[str, Any]:
        return {"sr": self.sr, "sr0": self.sr0, "skew": self.skew, "kurtosis": self.kurtosis,
                "observations": self.observations, "n_trials": self.n_trials,
                "variance_of_sharpes": self.variance_of_sharpes, "dsr": self.dsr}


def return_moments(returns: np.ndarray) -> tuple[float, float, float]:
    """(SR, skew, kurtosis) of a return series.

    SR = mean / std with ddof=1, per observation; skew and non-excess kurtosis
    are the moment estimators m3 / m2^1.5 and m4 / m2². A series whose variance
    is below 1e-12 of its mean square is taken as constant and refused.
    """
    values = np.asarray(returns, dtype=np.float64).ravel()
    if values.size < 2 or not np.isfinite(values).all():
        raise ValueError(f"returns must hold >= 2 finite values; got {values.size} value(s)")
    centred = values - values.mean()
    m2 = float(np.mean(centred ** 2))
    if not m2 > _ZERO_VARIANCE * float(np.mean(values ** 2)):  # rounding leaves a constant series a tiny m2
        raise ValueError("returns have zero variance: the Sharpe ratio is undefined")
    sr = float(values.mean() / values.std(ddof=1))
    return sr, float(np.mean(centred ** 3) / m2 ** 1.5), float(np.mean(centred ** 4) / m2 ** 2)


def deflated_sharpe_ratio(returns: np.ndarray, n_trials: int, variance_of_sharpes: float) -> DSRResult:
    """DSR = PSR(SR0) of the selected configuration's returns (Bailey & López de Prado 2014).

    ``variance_of_sharpes`` is the variance, across all ``n_trials`` tried, of
    their per-observation Sharpe ratios -- the losers included, or SR0 is too
    low.
    """
    sr, skew, kurtosis = return_moments(returns)
    observations = int(np.asarray(returns).size)
    sr0 = expected_max_sharpe(n_trials, variance_of_sharpes)
    dsr = probabilistic_sharpe_ratio(sr, sr0, observations, skew, kurtosis)
    return DSRResult(sr=sr, sr0=sr0, skew=skew, kurtosis=kurtosis, observations=observations,
                     n_trials=int(n_trials), variance_of_sharpes=float(variance_of_sharpes), dsr=dsr)
