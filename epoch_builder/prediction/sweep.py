"""find-profitable-configs: evaluate every configuration of a batch, resumable exactly.

Output: ``prediction_models/profitable_configs/<batch>.json`` — the original's
structure, a JSON list of the profitable configurations (``{pcr, msf, msaf,
ri}``, unchanged) in batch order. Profitable = accuracy >= 55 and profit > 0
(SEMANTICS §7.5).

Exact resume (fixes SEMANTICS §8's journal, which stored only the index of the
last profitable config and restarted at 0 on a re-sliced list): a journal
``profitable_configs/<batch>.journal`` is appended as the sweep advances.

* line 1, the header: ``{"batch", "sha256" (of the batch file), "configs",
  "assets_id", "crc"}`` — a journal of other inputs is refused;
* then one line per evaluated range: ``{"start", "end", "p": [[index, profit,
  accuracy], ...], "crc"}`` with every profitable index in [start, end).
  Ranges are contiguous from 0.

Each line is written with a single ``write`` and fsynced before the sweep
moves on; ``crc`` is the CRC-32 of the line's other fields. On start, lines are
read while they are complete (newline-terminated), parse, have a valid CRC and
continue the previous range; the first one that does not (a kill -9 mid-write)
and everything after it are truncated away. So every configuration is counted
exactly once: results of a range exist on disk only as a whole line.
When the batch is done the output is written atomically, then the journal is
removed (a crash in between only rewrites the same output on rerun).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from epoch_builder import events, output
from epoch_builder.errors import EpochBuilderError
from epoch_builder.storage import atomic_write_json
from epoch_builder.workspace import Workspace

STAGE = "find-profitable-configs"
FLUSH_SECONDS = 1.0  # a journal line at least this often (and at every FLUSH_CONFIGS)
FLUSH_CONFIGS = 20_000


def _crc(payload: dict[str, Any]) -> int:
    return zlib.crc32(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode())


def _line(payload: dict[str, Any]) -> bytes:
    return (json.dumps({**payload, "crc": _crc(payload)}, separators=(",", ":")) + "\n").encode()


def _check(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or "crc" not in record:
        return None
    crc = record.pop("crc")
    return record if crc == _crc(record) else None


@dataclass
class Journal:
    """The durable progress of one batch (see the module docstring)."""

    path: Path
    header: dict[str, Any]
    done: int = 0
    profitable: list[list[Any]] = field(default_factory=list)  # [index, profit, accuracy]
    recovered_bytes: int = 0  # bytes of a torn tail dropped on open
    _fd: int = -1

    @classmethod
    def open(cls, path: Path, header: dict[str, Any]) -> Journal:
        journal = cls(path, header)
        data = path.read_bytes() if path.exists() else b""
        good = 0  # bytes of verified lines
        position = 0
        first = True
        while True:
            newline = data.find(b"\n", position)
            if newline < 0:
                break
            record = _check(data[position:newline + 1])
            if record is None:
                break
            if first:
                if record != header:
                    raise EpochBuilderError(
                        f"{path}: journal of other inputs (batch {record.get('batch')!r}, "
                        f"{record.get('configs')} configs, assets {record.get('assets_id')!r}); "
                        "rerun with --force to discard it")
                first = False
            else:
                if record.get("start") != journal.done or not record.get("end", -1) > journal.done:
                    break  # not a continuation: treat as torn
                journal.done = int(record["end"])
                journal.profitable.extend(record["p"])
            position = good = newline + 1
        journal.recovered_bytes = len(data) - good
        path.parent.mkdir(parents=True, exist_ok=True)
        journal._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        os.ftruncate(journal._fd, good)
        os.lseek(journal._fd, good, os.SEEK_SET)
        if good == 0:
            journal._append(_line(header))
        return journal

    def _append(self, line: bytes) -> None:
        written = os.write(self._fd, line)
        if written != len(line):  # a short write on a full disk: never leave a half line we would trust
            raise EpochBuilderError(f"{self.path}: short write ({written} of {len(line)} bytes); disk full?")
        os.fsync(self._fd)

    def record(self, start: int, end: int, profitable: list[list[Any]]) -> None:
        if start != self.done:
            raise AssertionError(f"journal range {start}..{end} does not continue at {self.done}")
        self._append(_line({"start": start, "end": end, "p": profitable}))
        self.done = end
        self.profitable.extend(profitable)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@dataclass
class SweepResult:
    batch: str
    configs: int
    profitable: int
    evaluated_now: int
    resumed_from: int
    seconds: float
    output: Path
    best: list[Any] | None  # [index, profit, accuracy] of the most profitable


def output_path(ws: Workspace, batch_file: Path) -> Path:
    return ws.epoch().profitable_configs_dir / batch_file.name


def journal_path(ws: Workspace, batch_file: Path) -> Path:
    return ws.epoch().sweep_journal_file(batch_file.stem)


def find_profitable_configs(ws: Workspace, batch: str, workers: int | None = None, restart: bool = False,
                            log: Callable[[str], None] = output.info,
                            flush_seconds: float = FLUSH_SECONDS, flush_configs: int = FLUSH_CONFIGS) -> SweepResult:
    from epoch_builder.prediction.assets import load_backtest_data
    from epoch_builder.prediction.configs import resolve_batch, validate_configs
    from epoch_builder.prediction.engine import Evaluator

    paths = ws.epoch()
    batch_file = resolve_batch(paths, batch)
    output_file = output_path(ws, batch_file)
    journal_file = journal_path(ws, batch_file)
    if restart:
        journal_file.unlink(missing_ok=True)
        output_file.unlink(missing_ok=True)
    data, meta = load_backtest_data(ws)
    raw = batch_file.read_bytes()
    try:
        parsed = json.loads(raw)
    except ValueError as exc:
        raise EpochBuilderError(f"{batch_file}: invalid JSON ({exc})") from None
    configs = validate_configs(batch_file, parsed, data.regression_ids, list(data.labels))
    total = len(configs)
    if output_file.exists() and not journal_file.exists():
        count = len(json.loads(output_file.read_bytes()))
        log(f"{output_file}: already complete ({count} profitable of {total}); use --force to evaluate again")
        return SweepResult(batch_file.name, total, count, 0, total, 0.0, output_file, None)

    header = {"batch": batch_file.name, "sha256": hashlib.sha256(raw).hexdigest(), "configs": total,
              "assets_id": meta["assets_id"]}
    started = time.monotonic()
    journal = Journal.open(journal_file, header)
    resumed_from = journal.done
    try:
        if journal.recovered_bytes:
            log(f"journal: dropped a torn tail of {journal.recovered_bytes} byte(s)")
        if resumed_from:
            log(f"resuming {batch_file.name} at configuration {resumed_from:,} of {total:,} "
                f"({len(journal.profitable)} profitable so far)")
        remaining = configs[resumed_from:]
        eta = events.Eta(len(remaining))
        events.emit(STAGE, resumed_from, total, profitable=len(journal.profitable), batch=batch_file.name)
        if remaining:
            with Evaluator(data, workers) as evaluator, output.progress_bars(unit="configs") as bars:
                bar = bars.add(batch_file.name, total, info=f"{len(journal.profitable):,} profitable")
                bar.update(resumed_from)
                log(f"evaluating {len(remaining):,} configurations of {batch_file.name} on {evaluator.workers} worker(s)")
                pending: list[list[Any]] = []
                chunk_start = resumed_from
                last_flush = time.monotonic()
                for offset, evaluation in evaluator.evaluate(remaining):
                    index = resumed_from + offset
                    if evaluation.profitable:
                        pending.append([index, evaluation.profit, evaluation.accuracy])
                    done = index + 1
                    now = time.monotonic()
                    if done == total or done - chunk_start >= flush_configs or now - last_flush >= flush_seconds:
                        journal.record(chunk_start, done, pending)
                        pending, chunk_start, last_flush = [], done, now
                        rate = (done - resumed_from) / max(now - started, 1e-9)
                        events.emit(STAGE, done, total, profitable=len(journal.profitable), batch=batch_file.name,
                                    eta_s=eta.seconds(done - resumed_from), configs_per_s=round(rate, 1))
                        bar.update(done, info=f"{len(journal.profitable):,} profitable, {rate:,.0f} configs/s")
        profitable_indices = sorted(int(entry[0]) for entry in journal.profitable)
        if len(set(profitable_indices)) != len(profitable_indices):
            raise AssertionError(f"{journal_file}: an index appears twice")
        atomic_write_json(output_file, [configs[i] for i in profitable_indices])
    finally:
        journal.close()
    journal_file.unlink(missing_ok=True)
    seconds = round(time.monotonic() - started, 2)
    best = max(journal.profitable, key=lambda entry: entry[1], default=None)
    events.emit(STAGE, total, total, profitable=len(profitable_indices), batch=batch_file.name, eta_s=0)
    return SweepResult(batch_file.name, total, len(profitable_indices), total - resumed_from, resumed_from, seconds,
                       output_file, best)
