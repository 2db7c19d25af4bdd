"""Read the local workspace's artifacts for pickers and charts (stdlib JSON only).

Readers are tolerant of optional keys and name the file on failure; they
never import the pipeline's heavy modules.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from epoch_builder.errors import EpochBuilderError
from epoch_builder.workspace import Workspace


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EpochBuilderError(f"{path}: file not found") from None
    except (OSError, ValueError) as exc:
        raise EpochBuilderError(f"{path}: cannot read JSON ({exc})") from None


@dataclass(frozen=True)
class BatchFile:
    category: str
    path: Path  # absolute, local
    relative: str  # relative to the workspace root (same on every host)
    models: int


def natural_key(text: str) -> tuple:
    """Sort key that orders the numbers inside names as numbers: KR_CDNN_1_14 before KR_CDNN_10_14."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def list_batches(ws: Workspace, subdir: str = "regression_training_configs") -> list[BatchFile]:
    """Training-config batches (``subdir='regression_training_configs'``) or
    prediction-model config batches (``subdir='configs'``) of the active epoch."""
    epoch = ws.epoch()
    base = epoch.regression_training_configs_dir if subdir == "regression_training_configs" else epoch.configs_dir
    batches: list[BatchFile] = []
    for path in sorted(base.rglob("*.json"), key=lambda p: natural_key(str(p.relative_to(base)))) if base.exists() else []:
        try:
            data = _load(path)
            count = len(data) if isinstance(data, list) else len(data.get("models", data.get("configs", []))) if isinstance(data, dict) else 0
        except EpochBuilderError:
            count = -1
        category = path.parent.name if path.parent != base else ""
        batches.append(BatchFile(category, path, str(path.relative_to(ws.root)), count))
    return batches


@dataclass(frozen=True)
class RegressionSummary:
    id: str
    test_loss: float | None
    accuracy: float | None
    points: float | None
    epochs: int
    path: Path
    stopped_rung: int | None = None  # --search halving stopped it at this rung (None: trained to its end)


def _history(cert: dict[str, Any]) -> dict[str, list[float]]:
    for key in ("history", "training_history"):
        value = cert.get(key)
        if isinstance(value, dict):
            return {k: list(v) for k, v in value.items() if isinstance(v, list)}
    return {}


def _test_loss(cert: dict[str, Any]) -> float | None:
    evaluation = cert.get("test_evaluation") or cert.get("evaluation")
    if isinstance(evaluation, (list, tuple)) and evaluation:
        return float(evaluation[0])
    if isinstance(evaluation, dict):
        for key in ("loss", "test_loss"):
            if key in evaluation:
                return float(evaluation[key])
    return None


def _discovery_figure(cert: dict[str, Any], *keys: str) -> float | None:
    discovery = cert.get("discovery") or {}
    for key in keys:
        value = discovery.get(key)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, list) and value and isinstance(value[-1], (int, float)):
            return float(value[-1])  # points history: the last sample is the total
    return None


def _stopped_rung(cert: dict[str, Any]) -> int | None:
    """The rung at which ``--search halving`` stopped the model (``training_mode.search``; docs/training.md), or
    None: trained to its end (the pipeline's reader is ``epoch_builder.regressions.rank.stopped_by_search``)."""
    mode = cert.get("training_mode")
    search = mode.get("search") if isinstance(mode, dict) else None
    if not isinstance(search, dict) or search.get("stopped") is not True:
        return None
    rung = search.get("rung")
    return rung if isinstance(rung, int) and not isinstance(rung, bool) else None


def read_certificate(path: Path) -> dict[str, Any]:
    cert = _load(path)
    if not isinstance(cert, dict):
        raise EpochBuilderError(f"{path}: expected a certificate object")
    return cert


def training_history(path: Path) -> dict[str, list[float]]:
    """``{"loss": [...], "val_loss": [...], ...}`` of a regression certificate."""
    history = _history(read_certificate(path))
    if "loss" not in history:
        raise EpochBuilderError(f"{path}: certificate has no training history (key 'history' or 'training_history' with 'loss')")
    return history


def list_regressions(ws: Workspace) -> list[RegressionSummary]:
    """Trained regressions of the active epoch, best test loss first."""
    base = ws.epoch().regressions_dir
    found: list[RegressionSummary] = []
    for cert_path in sorted(base.glob("*/certificate.json")) if base.exists() else []:
        try:
            cert = read_certificate(cert_path)
        except EpochBuilderError:
            continue
        found.append(RegressionSummary(
            id=str(cert.get("id", cert_path.parent.name)),
            test_loss=_test_loss(cert),
            accuracy=_discovery_figure(cert, "accuracy", "general_accuracy"),
            points=_discovery_figure(cert, "points", "points_hist", "points_history"),
            epochs=len(_history(cert).get("loss", [])),
            path=cert_path,
            stopped_rung=_stopped_rung(cert),
        ))
    found.sort(key=lambda r: (r.test_loss is None, r.test_loss if r.test_loss is not None else 0.0))
    return found


@dataclass(frozen=True)
class ModelSummary:
    id: str
    profit: float | None
    accuracy: float | None
    positions: int
    drawdown: float | None
    balance_history: list[float] = field(default_factory=list)
    position_outcomes: list[bool] = field(default_factory=list)
    oos_profit: float | None = None  # traded on the out-of-sample window (create-epoch --oos-days)
    dsr: float | None = None  # deflated Sharpe ratio


def _first_number(mapping: dict[str, Any], *keys: str) -> float | None:
    for key in keys:
        value = mapping.get(key)
        if isinstance(value, (int, float)):
            return float(value)
    return None


def list_build_models(ws: Workspace) -> list[ModelSummary]:
    """Models of ``prediction_models/build.json`` in the build's order (best first).

    Each certificate keeps its backtest under ``backtest`` (profit, accuracy,
    max_drawdown, balance_history, positions with outcome ``o`` and balance ``b``)."""
    path = ws.epoch().build_file
    data = _load(path)
    models = data if isinstance(data, list) else data.get("models", data.get("certificates")) if isinstance(data, dict) else None
    if not isinstance(models, list):
        raise EpochBuilderError(f"{path}: expected a list of model certificates (or an object with 'models')")
    summaries: list[ModelSummary] = []
    for cert in models:
        if not isinstance(cert, dict) or "id" not in cert:
            raise EpochBuilderError(f"{path}: every model needs an 'id'")
        perf = next((cert[k] for k in ("backtest", "performance") if isinstance(cert.get(k), dict)), cert)
        positions = [p for p in perf.get("positions") or [] if isinstance(p, dict)]
        balances = perf.get("balance_history") or [p.get("b", p.get("balance")) for p in positions]
        drawdown = _first_number(perf, "max_drawdown", "drawdown")
        summaries.append(ModelSummary(
            id=str(cert["id"]),
            profit=_first_number(perf, "profit", "general_profit"),
            accuracy=_first_number(perf, "accuracy", "general_accuracy"),
            positions=len(positions),
            drawdown=drawdown if drawdown is not None else _first_number(cert, "max_drawdown", "drawdown"),
            balance_history=[float(b) for b in balances if isinstance(b, (int, float))],
            position_outcomes=[bool(p.get("o", p.get("outcome"))) for p in positions],
            oos_profit=_first_number(((cert.get("out_of_sample") or {}).get("out_of_sample") or {}), "profit"),
            dsr=_first_number(cert.get("deflated_sharpe") or {}, "dsr"),
        ))
    return summaries


def build_luck(ws: Workspace, models: list[ModelSummary]) -> str:
    """The build's probability-of-backtest-overfitting line (build_summary.json, when it is the build of
    ``models``, as list_build_models read them)."""
    from remote.build_figures import load_build_summary, luck_line

    return luck_line(load_build_summary(ws.epoch(), [m.id for m in models]))


@dataclass(frozen=True)
class EpochFile:
    relative: str  # <EPOCH>/<EPOCH>.zip, relative to the workspace root (the same on every host)
    bytes: int
    written: str  # local time, minutes


def list_epoch_files(ws: Workspace) -> list[EpochFile]:
    """The workspace's Epoch Files, newest first (``Workspace.epoch_files``), with their size and time."""
    import time

    return [EpochFile(ws.relative(path), path.stat().st_size,
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime)))
            for path in ws.epoch_files()]
