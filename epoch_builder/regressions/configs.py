"""Training configurations: validation of one config and of a batch file.

A training config (one model), as the original's::

    {"id": "KR_DNN_S3_<uuid4>", "description": "...", "lookback": 128, "predictions": 32,
     "learning_rate": -1, "optimizer": "adam", "loss": "mean_absolute_error",
     "metric": "mean_squared_error", "keras_model": {"name": "KR_DNN_S3", ...}}

plus an optional ``max_epochs`` (default 500; the UNIT_TEST config uses fewer).
A batch file is ``{"name": "KR_DNN_1_2", "category": "DNN", "configs": [...]}``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from epoch_builder.errors import EpochBuilderError
from epoch_builder.regressions.architectures import FAMILIES, validate_model_config
from epoch_builder.storage import read_json

OPTIMIZERS = ("adam", "rmsprop")
LOSSES = ("mean_absolute_error", "mean_squared_error")
UNIT_TEST = "UNIT_TEST"
BATCH_CATEGORIES = (*FAMILIES, UNIT_TEST)
DEFAULT_MAX_EPOCHS = 500
# Models trained together in one compiled step (train-regression-batch --pack) when --pack is not given,
# by family: measured with bench/bench_training.py --pack (docs/benchmarks.md "Training throughput"; recurrent packs of
# 4 on 2 cores: LSTM 1.23x, CLSTM 1.38x, GRU 1.61x). CNN is left out and trains one at a time: a CNN alone
# already runs at ~92% of the machine's rate on its layer shapes (a pack of 4: 1.01x).
DEFAULT_PACK_SIZES = {"DNN": 8, "CDNN": 8, "LSTM": 4, "CLSTM": 4, "GRU": 4}
MAX_PACK_SIZE = 64
MAX_PROCESSES = 64  # train-regression-batch --processes: training processes sharing the host's cores
ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,120}$")  # ids name directories


def validate_training_config(cfg: Any, where: str) -> dict[str, Any]:
    """Every key checked; the error names the config and the key with its allowed values."""
    if not isinstance(cfg, dict):
        raise EpochBuilderError(f"{where}: expected a training config object")
    required = ("id", "lookback", "predictions", "learning_rate", "optimizer", "loss", "metric", "keras_model")
    missing = [k for k in required if k not in cfg]
    if missing:
        raise EpochBuilderError(f"{where}: missing key(s) {', '.join(missing)}")
    if not isinstance(cfg["id"], str) or not ID_RE.match(cfg["id"]):
        raise EpochBuilderError(f"{where}: id {cfg['id']!r} must be 1..120 letters, digits, '_' or '-'")
    where = f"{where} ({cfg['id']})"
    for key in ("lookback", "predictions"):
        if not isinstance(cfg[key], int) or isinstance(cfg[key], bool) or cfg[key] < 1:
            raise EpochBuilderError(f"{where}: {key} must be a positive integer, got {cfg[key]!r}")
    lr = cfg["learning_rate"]
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (lr == -1 or 0 < lr < 1):
        raise EpochBuilderError(f"{where}: learning_rate {lr!r} must be -1 (InverseTimeDecay) or in (0, 1)")
    if cfg["optimizer"] not in OPTIMIZERS:
        raise EpochBuilderError(f"{where}: optimizer {cfg['optimizer']!r} is unknown; allowed {', '.join(OPTIMIZERS)}")
    for key in ("loss", "metric"):
        if cfg[key] not in LOSSES:
            raise EpochBuilderError(f"{where}: {key} {cfg[key]!r} is unknown; allowed {', '.join(LOSSES)}")
    max_epochs = cfg.get("max_epochs", DEFAULT_MAX_EPOCHS)
    if isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < 1:
        raise EpochBuilderError(f"{where}: max_epochs must be a positive integer, got {max_epochs!r}")
    validate_model_config(cfg["keras_model"], f"{where}: keras_model")
    return cfg


def category_of(cfg: dict[str, Any]) -> str:
    """The family of a config's template (KR_CNN_MP_S3 -> CNN)."""
    from epoch_builder.regressions.architectures import parse_template

    return parse_template(cfg["keras_model"]["name"]).family


def read_batch(path: Path) -> dict[str, Any]:
    """A batch file, every config validated; ids must be unique."""
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("configs"), list) or not data["configs"]:
        raise EpochBuilderError(f"{path}: expected {{\"name\": ..., \"configs\": [training configs]}} with at least one config")
    seen: set[str] = set()
    for index, cfg in enumerate(data["configs"]):
        validate_training_config(cfg, f"{path}: configs[{index}]")
        if cfg["id"] in seen:
            raise EpochBuilderError(f"{path}: configs[{index}]: id {cfg['id']!r} appears twice")
        seen.add(cfg["id"])
    data.setdefault("name", path.stem)
    # The name becomes regression_batched_certificates/<name>.json: the same rule as ids, so a batch
    # file cannot make training write outside the epoch.
    if not isinstance(data["name"], str) or not ID_RE.match(data["name"]):
        raise EpochBuilderError(f"{path}: batch name {data['name']!r} must be 1..120 letters, digits, '_' or '-'")
    return data
