"""Many configurations on all cores: forked workers that share the engine's data copy-on-write."""

from __future__ import annotations

import math
import multiprocessing
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from epoch_builder.children import available_cores, die_with_parent
from epoch_builder.prediction.engine.data import BacktestData
from epoch_builder.prediction.engine.evaluation import (
    Blocks, EncodedConfigs, Evaluation, encode, evaluate_rows, evaluation_from_row, run_kernel,
)

# Set before the fork, read copy-on-write by the children: (data, blocks) per evaluator.
_SHARED: dict[int, tuple[BacktestData, Blocks | None]] = {}


def _kernel_task(task: tuple[int, EncodedConfigs]) -> tuple[np.ndarray, np.ndarray]:
    token, encoded = task
    data, blocks = _SHARED[token]
    return run_kernel(data, encoded, blocks)


def default_workers() -> int:
    return available_cores()


class Evaluator:
    """Evaluates configurations on ``workers`` forked processes that share ``data``.

    Create it once and call ``evaluate`` for each chunk of a sweep: the workers,
    the per-pcr tables and the compiled kernel are reused. ``workers=1`` (or a
    platform without fork) evaluates in this process. With ``blocks``, the
    kernel also sums each configuration's profit per block (``evaluate_chunks``).
    """

    def __init__(self, data: BacktestData, workers: int | None = None, blocks: Blocks | None = None) -> None:
        self.data = data
        self.blocks = blocks
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
            _SHARED[self._token] = (data, blocks)
            self._pool = multiprocessing.get_context("fork").Pool(
                self.workers, initializer=die_with_parent, initargs=(os.getpid(),))

    def evaluate_chunks(self, configs: Sequence[Mapping[str, Any]],
                        chunk_size: int | None = None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield ``(first index, RESULT_DTYPE rows, per-block profits)`` per chunk, in input order.

        Every configuration is validated first (an error names the entry), so
        nothing is evaluated from a malformed list.
        """
        encoded = encode(self.data, configs)
        total = len(configs)
        if chunk_size is None:
            chunk_size = max(16, min(1000, math.ceil(total / (self.workers * 4)) if total else 1))
        starts = range(0, total, chunk_size)
        if self._pool is None:
            results: Iterator[tuple[np.ndarray, np.ndarray]] = (
                run_kernel(self.data, encoded.slice(a, a + chunk_size), self.blocks) for a in starts)
        else:
            results = self._pool.imap(_kernel_task, ((self._token, encoded.slice(a, a + chunk_size)) for a in starts))
        for start, (rows, block_pnl) in zip(starts, results):
            yield start, rows, block_pnl

    def evaluate(self, configs: Sequence[Mapping[str, Any]], chunk_size: int | None = None) -> Iterator[tuple[int, Evaluation]]:
        """Yield ``(index, Evaluation)`` for every configuration, in input order."""
        initial = self.data.initial_balance
        for start, rows, _ in self.evaluate_chunks(configs, chunk_size):
            for offset, row in enumerate(rows.tolist()):
                yield start + offset, evaluation_from_row(row, initial)

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
