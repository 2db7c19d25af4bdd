"""Prediction-model configurations (SEMANTICS §6): generation, batch files, receipt.

A configuration is ``{"pcr": number, "msf": "mean" | "median", "msaf": number,
"ri": [regression ids]}``. Every combination of pcr x msf x msaf x
C(regressions, per model) is generated, shuffled with the epoch seed (NumPy
``default_rng(seed).permutation``) and written in batches of ``batch_size`` to
``prediction_models/configs/<EPOCH>_<n>_<N>.json`` (n = 1..N), each a JSON list
of configurations, as the original. The combinations are never held as Python
objects all at once: a configuration is decoded from its index when its batch
is written.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from epoch_builder import output
from epoch_builder.errors import EpochBuilderError, UsageError
from epoch_builder.storage import atomic_write_text, read_json
from epoch_builder.workspace import EpochPaths, Workspace

MIN_SUM_FUNCTIONS = ("mean", "median")
DEFAULT_PCR = (3.0,)
DEFAULT_MSF = MIN_SUM_FUNCTIONS
DEFAULT_MSAF = (1.0, 1.5, 2.0)
DEFAULT_PER_MODEL = 8
DEFAULT_BATCH_SIZE = 100_000
MAX_CONFIGS = 50_000_000  # beyond this the batches would not fit a disk sensibly
RECEIPT_FILE = "configs_receipt.txt"


def json_number(value: float) -> int | float:
    """Integral values as ints (``3`` not ``3.0``), as the original's files."""
    value = float(value)
    return int(value) if value.is_integer() else value


@dataclass(frozen=True)
class Grid:
    regression_ids: tuple[str, ...]
    pcrs: tuple[float, ...] = DEFAULT_PCR
    msfs: tuple[str, ...] = DEFAULT_MSF
    msafs: tuple[float, ...] = DEFAULT_MSAF
    per_model: int = DEFAULT_PER_MODEL

    def __post_init__(self) -> None:
        if len(set(self.regression_ids)) != len(self.regression_ids):
            raise EpochBuilderError("regression ids must be unique")
        if not 1 <= self.per_model <= len(self.regression_ids):
            raise EpochBuilderError(
                f"parameter regressions-per-model={self.per_model} must be in 1..{len(self.regression_ids)} "
                "(the number of selected regressions)")
        for name, values in (("pcr", self.pcrs), ("msaf", self.msafs)):
            if not values or any(not math.isfinite(v) or v <= 0 for v in values) or len(set(values)) != len(values):
                raise UsageError(f"parameter {name}={list(values)} must be distinct positive numbers")
        if any(p >= 100 for p in self.pcrs):
            raise UsageError(f"parameter pcr={list(self.pcrs)} must be below 100 (%)")
        if not self.msfs or any(m not in MIN_SUM_FUNCTIONS for m in self.msfs) or len(set(self.msfs)) != len(self.msfs):
            raise UsageError(f"parameter msf={list(self.msfs)}: allowed values are {', '.join(MIN_SUM_FUNCTIONS)}")

    @property
    def combinations(self) -> int:
        return math.comb(len(self.regression_ids), self.per_model)

    @property
    def total(self) -> int:
        return len(self.pcrs) * len(self.msfs) * len(self.msafs) * self.combinations


def batch_name(epoch_id: str, number: int, count: int) -> str:
    return f"{epoch_id}_{number}_{count}.json"


def write_batches(paths: EpochPaths, grid: Grid, seed: int, batch_size: int = DEFAULT_BATCH_SIZE,
                  log: Callable[[str], None] = output.info) -> list[Path]:
    """Write every configuration, shuffled with ``seed``, in batches; returns the batch paths."""
    if batch_size < 1:
        raise UsageError(f"parameter batch-size={batch_size} must be >= 1")
    total = grid.total
    if total > MAX_CONFIGS:
        raise EpochBuilderError(f"{total:,} configurations exceed the limit of {MAX_CONFIGS:,}: select fewer regressions "
                                "or fewer pcr/msf/msaf values")
    started = time.monotonic()
    combos = np.array(list(itertools.combinations(range(len(grid.regression_ids)), grid.per_model)), dtype=np.int32)
    order = np.random.default_rng(seed).permutation(total)
    # mixed radix: index = ((combo * P + pcr) * M + msf) * A + msaf
    n_pcr, n_msf, n_msaf = len(grid.pcrs), len(grid.msfs), len(grid.msafs)
    id_json = [json.dumps(rid) for rid in grid.regression_ids]
    pcr_json = [json.dumps(json_number(p)) for p in grid.pcrs]
    msf_json = [json.dumps(m) for m in grid.msfs]
    msaf_json = [json.dumps(json_number(a)) for a in grid.msafs]
    count = math.ceil(total / batch_size)
    paths.configs_dir.mkdir(parents=True, exist_ok=True)
    for old in paths.configs_dir.glob(f"{paths.id}_*_*.json"):
        old.unlink()  # a new grid replaces the old batches entirely
    written: list[Path] = []
    for number in range(1, count + 1):
        chunk = order[(number - 1) * batch_size: number * batch_size]
        msaf_i = chunk % n_msaf
        rest = chunk // n_msaf
        msf_i = rest % n_msf
        rest //= n_msf
        pcr_i = rest % n_pcr
        combo_i = rest // n_pcr
        parts = []
        for combo, p, m, a in zip(combos[combo_i].tolist(), pcr_i.tolist(), msf_i.tolist(), msaf_i.tolist()):
            ri = ",".join(id_json[r] for r in combo)
            parts.append(f'{{"pcr":{pcr_json[p]},"msf":{msf_json[m]},"msaf":{msaf_json[a]},"ri":[{ri}]}}')
        path = paths.configs_dir / batch_name(paths.id, number, count)
        atomic_write_text(path, "[" + ",".join(parts) + "]")
        written.append(path)
        log(f"batch {number}/{count}: {path.name} ({len(chunk):,} configurations)")
    write_receipt(paths, grid, seed, batch_size, written, round(time.monotonic() - started, 2))
    return written


def write_receipt(paths: EpochPaths, grid: Grid, seed: int, batch_size: int, batches: Sequence[Path],
                  seconds: float) -> None:
    lines = [
        f"{paths.id} prediction model configurations",
        f"created          {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"regressions      {len(grid.regression_ids)}",
        *[f"  {rid}" for rid in grid.regression_ids],
        f"per model        {grid.per_model}  (C({len(grid.regression_ids)},{grid.per_model}) = {grid.combinations:,})",
        f"pcr              {', '.join(f'{p:g}' for p in grid.pcrs)}",
        f"msf              {', '.join(grid.msfs)}",
        f"msaf             {', '.join(f'{a:g}' for a in grid.msafs)}",
        f"configurations   {grid.total:,}  (shuffled with seed {seed})",
        f"batch size       {batch_size:,}",
        f"batches          {len(batches)}",
        *[f"  {p.name}" for p in batches],
        f"seconds          {seconds}",
    ]
    atomic_write_text(paths.configs_dir / RECEIPT_FILE, "\n".join(lines) + "\n")


# --- reading a batch --------------------------------------------------------------------


def resolve_batch(paths: EpochPaths, batch: str) -> Path:
    """A batch given as a path, or as a file name in the epoch's configs dir."""
    given = Path(batch)
    for candidate in (given, paths.configs_dir / given.name):
        if candidate.is_file():
            return candidate
    available = sorted(p.name for p in paths.configs_dir.glob("*.json")) if paths.configs_dir.is_dir() else []
    raise UsageError(f"{batch}: batch file not found; available in {paths.configs_dir}: "
                            f"{', '.join(available) if available else 'none (run initialize-prediction-models)'}")


def validate_configs(path: Path, configs: Any, known_ids: Sequence[str], pcrs: Sequence[float]) -> list[dict[str, Any]]:
    """Check a batch's structure; the error names the file, the entry and the key."""
    if not isinstance(configs, list):
        raise EpochBuilderError(f"{path}: expected a JSON list of configurations, got {type(configs).__name__}")
    known = set(known_ids)
    known_pcrs = {float(p) for p in pcrs}
    for i, config in enumerate(configs):
        where = f"{path}: entry {i}"
        if not isinstance(config, Mapping):
            raise EpochBuilderError(f"{where}: expected an object with pcr, msf, msaf, ri")
        missing = [key for key in ("pcr", "msf", "msaf", "ri") if key not in config]
        if missing:
            raise EpochBuilderError(f"{where}: missing key(s) {', '.join(missing)} (required: pcr, msf, msaf, ri)")
        pcr, msaf, msf, ri = config["pcr"], config["msaf"], config["msf"], config["ri"]
        if isinstance(pcr, bool) or not isinstance(pcr, (int, float)) or float(pcr) not in known_pcrs:
            raise EpochBuilderError(f"{where}: pcr {pcr!r} has no labels; allowed: {', '.join(f'{p:g}' for p in sorted(known_pcrs))}")
        if isinstance(msaf, bool) or not isinstance(msaf, (int, float)) or not math.isfinite(msaf):
            raise EpochBuilderError(f"{where}: msaf {msaf!r} must be a finite number")
        if msf not in MIN_SUM_FUNCTIONS:
            raise EpochBuilderError(f"{where}: msf {msf!r} must be one of {', '.join(MIN_SUM_FUNCTIONS)}")
        if not isinstance(ri, list) or not ri:
            raise EpochBuilderError(f"{where}: ri must be a non-empty list of regression ids")
        unknown = [rid for rid in ri if rid not in known]
        if unknown:
            raise EpochBuilderError(f"{where}: regression {unknown[0]!r} is not in the assets; known: {', '.join(known_ids)}")
    return configs


def load_batch(path: Path, known_ids: Sequence[str], pcrs: Sequence[float]) -> list[dict[str, Any]]:
    return validate_configs(path, read_json(path), known_ids, pcrs)


# --- initialize-prediction-models ---------------------------------------------------------


def select_regressions(ws: Workspace, regression_ids: Sequence[str] | None, top: int | None,
                       by: str | None, include_search_stopped: bool = False,
                       log: Callable[[str], None] = output.info) -> list[str]:
    """The explicit ids (each must be a trained regression of the epoch) or the top N by a metric: of the
    regressions trained to their end, unless ``include_search_stopped`` (those ``--search halving`` stopped
    early were certified from fewer epochs; ``log`` gets one line saying how many were left out)."""
    paths = ws.epoch()
    if regression_ids is None:
        from epoch_builder.regressions.rank import rank_regressions

        if top is None or top < 1:
            raise UsageError(f"parameter --top={top} must be >= 1")
        ranked = rank_regressions(ws, by)
        stopped = [r for r in ranked if r["stopped_by_search"] is not None]
        if stopped and not include_search_stopped:
            would = sum(1 for r in ranked[:top] if r["stopped_by_search"] is not None)
            ranked = [r for r in ranked if r["stopped_by_search"] is None]
            log(f"--top {top}: {len(stopped)} regression(s) stopped early by --search halving left out ({would} of "
                f"them would rank in the top {top}); --include-search-stopped ranks them too")
        regression_ids = [r["id"] for r in ranked[:top]]
    trained = sorted(p.parent.name for p in paths.regressions_dir.glob("*/certificate.json"))
    for rid in regression_ids:
        if rid not in trained:
            shown = ", ".join(trained[:8]) + (f" (+{len(trained) - 8} more)" if len(trained) > 8 else "")
            raise UsageError(f"unknown regression id {rid!r}: no {paths.regressions_dir / rid / 'certificate.json'}; "
                                    f"trained: {shown or 'none'}")
    if len(set(regression_ids)) != len(regression_ids):
        raise UsageError("parameter --regressions lists a regression twice")
    return list(regression_ids)


def initialize_prediction_models(ws: Workspace, *, regression_ids: Sequence[str] | None = None,
                                 top: int | None = None, by: str | None = None, include_search_stopped: bool = False,
                                 allow_few: bool = False,
                                 min_regressions: int = 16, pcrs: Sequence[float] = DEFAULT_PCR,
                                 msfs: Sequence[str] = DEFAULT_MSF, msafs: Sequence[float] = DEFAULT_MSAF,
                                 per_model: int = DEFAULT_PER_MODEL, batch_size: int = DEFAULT_BATCH_SIZE,
                                 force: bool = False, log: Callable[[str], None] = output.info) -> list[Path]:
    """Select regressions, write the assets (features, labels, indexer), then the configuration batches.

    Earlier batches, sweep results and build belong to the earlier assets: they are
    replaced only with ``force``.
    """
    from epoch_builder.prediction.assets import write_assets

    config = ws.load_epoch_config()
    paths = ws.epoch()
    earlier = [*sorted(paths.configs_dir.glob("*.json")), *sorted(paths.profitable_configs_dir.glob("*")),
               *([paths.build_file] if paths.build_file.exists() else [])]
    if earlier and not force:
        raise EpochBuilderError(f"{paths.prediction_models_dir}: configurations or results of an earlier "
                                f"initialization exist ({len(earlier)} file(s)); pass --force to replace them")
    ids = select_regressions(ws, regression_ids, top, by, include_search_stopped, log)
    if len(ids) < min_regressions and not allow_few:
        raise UsageError(f"{len(ids)} regression(s) selected; at least {min_regressions} are required "
                                "(as the original), or pass --allow-few-regressions for small data")
    grid = Grid(tuple(ids), tuple(float(p) for p in pcrs), tuple(msfs), tuple(float(a) for a in msafs), per_model)
    if batch_size < 1:
        raise UsageError(f"parameter batch-size={batch_size} must be >= 1")
    if grid.total > MAX_CONFIGS:
        raise EpochBuilderError(f"{grid.total:,} configurations exceed the limit of {MAX_CONFIGS:,}")

    from epoch_builder.regressions.inference import load_regression, predict_features

    def feature_of(rid: str, normalized_close: np.ndarray) -> Sequence[float]:
        return predict_features(load_regression(paths.regressions_dir / rid), normalized_close)

    for path in earlier:
        path.unlink()
    meta = write_assets(ws, ids, grid.pcrs, feature_of, log=log)
    log(f"assets: {meta['features']} features per regression, labels {meta['labels']}, "
        f"{meta['lookback_indexer_rows']:,} indexed 1-minute candles ({meta['seconds']}s)")
    batches = write_batches(paths, grid, config.seed, batch_size, log=log)
    log(f"{grid.total:,} configurations in {len(batches)} batch(es) -> {paths.configs_dir}")
    return batches
