"""A machine's training rate per family (FLOP/s), measured by a short fixed benchmark, and its record.

``measure`` trains, per family, one representative config of the default grid (the one of median forward
work: a network the grid really trains, small enough to time in seconds) with plain Keras on random
windows for a fixed amount of work, on this machine's own TensorFlow and devices, and divides the cost
model's FLOP of an epoch (``cost``) by the fastest timed epoch.  ``epoch-builder regressions calibrate``
runs it on one machine; ``epoch-cluster calibrate`` runs that command on every server and keeps each
answer, checked by ``check_record``, in the controller's ``config/training_rates.json``
(``Workspace.training_rates_file``), which ``epoch-builder regressions plan``, ``epoch-cluster plan`` and
cost-aware dispatch read.

A record notes what the rates depend on (``fingerprint``: TensorFlow's version, the cores, the GPUs):
a rate measured before an upgrade or a hardware change is stale, and the plan says so.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from epoch_builder.errors import EpochBuilderError

FAMILY_ORDER = ("DNN", "CNN", "CDNN", "LSTM", "CLSTM", "GRU")
# What a timed epoch costs per family (FLOP): ~1-3 s on a 2-core machine, at least 2 steps of 512 windows.
DEFAULT_WORK = 1.6e11
WORK_RANGE = (1e8, 1e14)  # --work: from a smoke test's instant to minutes per family on a big server
TIMED_EPOCHS = 2  # after the first (which traces the step); the fastest counts: machines are shared
# Plausible training rates: a record outside this range is garbled or lying (a 1 MFLOP/s machine does not
# train anything; 10 PFLOP/s is beyond any one server), refused by key.
RATE_RANGE = (1e6, 1e16)
# The rates of the 2-core build machine (bench/bench_dispatch.py, one run; plain Keras, one model at a
# time, op determinism on): the assumption for a server that was never calibrated, stated wherever used.
REFERENCE_RATES = {"DNN": 55.2e9, "CNN": 163.0e9, "CDNN": 52.4e9, "LSTM": 72.1e9, "CLSTM": 70.9e9, "GRU": 58.6e9}
REFERENCE_SOURCE = "not calibrated: the 2-core build machine's rates assumed"
RECORD_VERSION = 1


class Measured(NamedTuple):
    family: str
    model: str  # the representative network, described
    windows: int
    seconds: float  # the fastest timed epoch
    rate: float  # FLOP/s


def fingerprint() -> dict[str, Any]:
    """What a rate depends on, read without importing TensorFlow (fast: run by the plan on every server)."""
    from importlib import metadata

    try:
        tensorflow = metadata.version("tensorflow")
    except metadata.PackageNotFoundError:
        try:
            tensorflow = metadata.version("tensorflow-cpu")
        except metadata.PackageNotFoundError:
            tensorflow = None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return {"tensorflow": tensorflow, "cores": cores, "gpus": _gpu_names(), "machine": platform.machine()}


def _gpu_names() -> list[str]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted(line.strip() for line in out.splitlines() if line.strip())


def stale_reasons(recorded: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """What changed since a record was measured: ``["tensorflow 2.15.0 -> 2.16.1", "cores 2 -> 16"]``."""
    return [f"{key} {_show(recorded.get(key))} -> {_show(now.get(key))}" for key in ("tensorflow", "cores", "gpus", "machine")
            if key in now and recorded.get(key) != now.get(key)]


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "+".join(value) or "no GPU"
    return str(value)


def representative_configs(documents: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per family, the config of median forward FLOP among the distinct networks of these batches."""
    from epoch_builder.regressions.cost import forward_flop

    networks: dict[str, dict[str, tuple[int, dict[str, Any]]]] = {}
    for document in documents:
        for cfg in document["configs"]:
            model = cfg["keras_model"]
            key = json.dumps(model, sort_keys=True)
            networks.setdefault(document["category"], {})[key] = (forward_flop(model, cfg["lookback"], cfg["predictions"]), cfg)
    picks = {}
    for family, found in networks.items():
        ordered = sorted(found.values(), key=lambda pair: (pair[0], json.dumps(pair[1]["keras_model"], sort_keys=True)))
        picks[family] = ordered[len(ordered) // 2][1]
    return picks


def default_grid_picks(families: Sequence[str] = FAMILY_ORDER) -> dict[str, dict[str, Any]]:
    """The representative configs of the bundled default grid (the same on every server: a fixed benchmark)."""
    from epoch_builder.regressions.cost import grid_batches

    picks = representative_configs(grid_batches())
    return {family: picks[family] for family in families if family in picks}


def measure(configs: Mapping[str, Mapping[str, Any]], *, work: float = DEFAULT_WORK,
            log: Callable[[str], None] = lambda _line: None) -> list[Measured]:
    """Per family, ``fit`` its config on random windows (about ``work`` FLOP an epoch, whole batches of 512, no
    validation) for 1 + TIMED_EPOCHS epochs; rate = the cost model's FLOP of an epoch / the fastest timed
    epoch (the first traces the step and is not timed).  TensorFlow as training configures it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from epoch_builder.regressions.runtime import configure_tensorflow, seed_everything

    configure_tensorflow()
    import keras
    import numpy as np
    import tensorflow as tf

    from epoch_builder.regressions.architectures import build_model
    from epoch_builder.regressions.cost import TRAIN_FACTOR, forward_flop
    from epoch_builder.regressions.training import BATCH_SIZE

    results = []
    for family in [f for f in FAMILY_ORDER if f in configs] + [f for f in configs if f not in FAMILY_ORDER]:
        cfg = configs[family]
        lookback, predictions = cfg["lookback"], cfg["predictions"]
        forward = forward_flop(cfg["keras_model"], lookback, predictions)
        steps = max(2, min(96, round(work / (TRAIN_FACTOR * forward * BATCH_SIZE))))
        windows = steps * BATCH_SIZE
        rng = np.random.default_rng(7)
        x = rng.random((windows, lookback), dtype=np.float32)
        y = rng.random((windows, predictions), dtype=np.float32)
        keras.backend.clear_session()
        seed_everything(60184)
        model = build_model(cfg["keras_model"], lookback, predictions)
        model.compile(optimizer="adam", loss="mean_absolute_error")
        seconds: list[float] = []

        class Timer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                self.mark = time.perf_counter()

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                seconds.append(time.perf_counter() - self.mark)

        # A tf.data dataset, not arrays: Keras' array adapter logs a native error line per model under op
        # determinism (training.py does the same).
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH_SIZE)
        model.fit(data, epochs=1 + TIMED_EPOCHS, shuffle=False, verbose=0, callbacks=[Timer()])
        fastest = min(seconds[1:])
        rate = TRAIN_FACTOR * forward * windows / fastest
        results.append(Measured(family, describe(cfg["keras_model"]), windows, fastest, rate))
        log(f"{family:<5} {results[-1].model:<44} {windows:>6} windows {fastest:6.2f} s {rate / 1e9:7.1f} GFLOP/s")
    return results


def describe(model: Mapping[str, Any]) -> str:
    parts = [str(model["name"])] + [f"{key} {model[key]}" for key in ("filters", "kernel_sizes", "pool_sizes", "units")
                                    if key in model]
    return " ".join(parts)


def calibrate(*, work: float = DEFAULT_WORK, families: Sequence[str] = FAMILY_ORDER,
              log: Callable[[str], None] = lambda _line: None) -> dict[str, Any]:
    """Measure this machine and return its record (what ``config/training_rates.json`` keeps per server)."""
    started = time.monotonic()
    measured = measure(default_grid_picks(families), work=work, log=log)
    return {"version": RECORD_VERSION, "rates": {m.family: m.rate for m in measured},
            "models": {m.family: m.model for m in measured}, "work": work, "measured_at": time.time(),
            "seconds": round(time.monotonic() - started, 1), **fingerprint()}


def check_record(record: Any, origin: str) -> dict[str, Any]:
    """A record as read from a server's answer or the rates file, or a one-line error naming ``origin`` and
    the key: only known families, finite rates within ``RATE_RANGE``; a fingerprint of plain values."""
    if not isinstance(record, dict):
        raise EpochBuilderError(f"{origin}: a calibration record must be a JSON object, got {type(record).__name__}")
    rates = record.get("rates")
    if not isinstance(rates, dict) or not rates:
        raise EpochBuilderError(f"{origin}: key rates must be an object of FLOP/s per family ({', '.join(FAMILY_ORDER)})")
    low, high = RATE_RANGE
    checked: dict[str, float] = {}
    for family, rate in rates.items():
        if family not in FAMILY_ORDER:
            raise EpochBuilderError(f"{origin}: rates.{family}: unknown family; allowed {', '.join(FAMILY_ORDER)}")
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or not low <= rate <= high:
            raise EpochBuilderError(f"{origin}: rates.{family} = {str(rate)[:40]!r}: not a rate; allowed {low:.0e} to "
                                    f"{high:.0e} FLOP/s")
        checked[family] = float(rate)
    measured_at = record.get("measured_at")
    if isinstance(measured_at, bool) or not isinstance(measured_at, (int, float)) or not math.isfinite(measured_at) \
            or measured_at < 0:
        raise EpochBuilderError(f"{origin}: key measured_at must be a time in seconds since 1970")
    cores = record.get("cores")
    if isinstance(cores, bool) or not isinstance(cores, int) or not 1 <= cores <= 4096:
        raise EpochBuilderError(f"{origin}: key cores = {str(cores)[:20]!r}; allowed 1 to 4096")
    gpus = record.get("gpus", [])
    if not isinstance(gpus, list) or not all(isinstance(g, str) and len(g) <= 200 for g in gpus) or len(gpus) > 64:
        raise EpochBuilderError(f"{origin}: key gpus must be a list of GPU names")
    for key in ("tensorflow", "machine"):
        value = record.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > 100):
            raise EpochBuilderError(f"{origin}: key {key} must be a short string")
    models = record.get("models", {})
    return {"version": RECORD_VERSION, "rates": checked,
            "models": {k: str(v)[:200] for k, v in models.items() if k in checked} if isinstance(models, dict) else {},
            "measured_at": float(measured_at), "cores": cores, "gpus": list(gpus),
            "tensorflow": record.get("tensorflow"), "machine": record.get("machine")}


# --- the record in the workspace ----------------------------------------------------------

def read_records(path: Path) -> dict[str, dict[str, Any]]:
    """Every server's record (``{}`` before the first calibration); a garbled file is a one-line error."""
    from epoch_builder.storage import read_json

    if not path.exists():
        return {}
    document = read_json(path)
    if not isinstance(document, dict) or not isinstance(document.get("servers"), dict):
        raise EpochBuilderError(f"{path}: expected {{\"servers\": {{name: record}}}}; rerun `epoch-cluster calibrate`")
    return {name: check_record(record, f"{path}: servers.{name}") for name, record in document["servers"].items()}


def save_record(root: Path, path: Path, server: str, record: Mapping[str, Any]) -> None:
    """Add or replace one server's record, atomically, under the workspace lock (calibrations of several
    servers finish at once: each reads, changes and writes the file in turn)."""
    from epoch_builder.bundle import workspace_lock
    from epoch_builder.storage import atomic_write_json

    checked = check_record(dict(record), f"calibration of {server}")
    with workspace_lock(root):
        records = read_records(path)
        records[server] = checked
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, {"servers": dict(sorted(records.items()))}, indent=1)


def rates_of(records: Mapping[str, Mapping[str, Any]], server: str) -> tuple[dict[str, float], str]:
    """A server's rates and where they come from (its calibration, or the stated assumption)."""
    record = records.get(server)
    if record is None:
        return dict(REFERENCE_RATES), REFERENCE_SOURCE
    rates = {**REFERENCE_RATES, **record["rates"]}
    when = time.strftime("%Y-%m-%d", time.gmtime(record["measured_at"]))
    missing = sorted(set(REFERENCE_RATES) - set(record["rates"]))
    return rates, f"calibrated {when}" + (f" (assumed for {', '.join(missing)})" if missing else "")
