"""`regressions rank`: trained regressions of the active epoch with their key figures."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from epoch_builder.errors import EpochBuilderError, UsageError
from epoch_builder.storage import read_json
from epoch_builder.workspace import Workspace

RANK_KEYS = ("test_loss", "accuracy", "points")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def stopped_by_search(cert: dict[str, Any]) -> int | None:
    """The rung at which ``train-regression-batch --search halving`` stopped this model (its certificate's
    ``training_mode.search``), or None: trained to its early stop or epoch limit."""
    search = (cert.get("training_mode") or {}).get("search") or {}
    rung = search.get("rung")
    return rung if search.get("stopped") is True and isinstance(rung, int) and not isinstance(rung, bool) else None


def stopped_regressions(ws: Workspace, regression_ids: Iterable[str]) -> dict[str, int]:
    """Of ``regression_ids``, those the search stopped early: id -> rung (their certificates; a missing or
    unreadable one counts as not stopped, since a table must still show)."""
    stopped = {}
    paths = ws.epoch()
    for regression_id in sorted(set(regression_ids)):
        try:
            cert = read_json(paths.regression_certificate_file(regression_id))
        except (OSError, EpochBuilderError):
            continue
        rung = stopped_by_search(cert) if isinstance(cert, dict) else None
        if rung is not None:
            stopped[regression_id] = rung
    return stopped


def stopped_mark(rung: int | None) -> str:
    """How a table marks a regression the search stopped: ``r2`` (at rung 2); ``-`` for a fully trained one."""
    return "-" if rung is None else f"r{rung}"


def summarize_certificate(cert: dict[str, Any]) -> dict[str, Any]:
    evaluation = cert.get("test_evaluation") or {}
    discovery = cert.get("discovery") or {}
    history = cert.get("training_history") or {}
    return {
        "id": cert.get("id"),
        "category": cert.get("category"),
        "template": (cert.get("keras_model_config") or {}).get("name"),
        "test_loss": _number(evaluation.get("loss")),
        "test_metric": _number(evaluation.get("metric")),
        "loss": cert.get("loss"),
        "metric": cert.get("metric"),
        "accuracy": _number(discovery.get("accuracy")),
        "increase_accuracy": _number(discovery.get("increase_accuracy")),
        "decrease_accuracy": _number(discovery.get("decrease_accuracy")),
        "points": _number(discovery.get("points")),
        "epochs": int(cert.get("epochs") or len(history.get("loss", []))),
        "learning_rate": cert.get("learning_rate"),
        "stopped_by_search": stopped_by_search(cert),  # the rung, or None: fully trained
    }


def rank_regressions(ws: Workspace, by: str = "test_loss", top: int | None = None) -> list[dict]:
    """Best first: lowest test loss, or highest discovery accuracy / points. Unreadable certificates are errors."""
    if by not in RANK_KEYS:
        raise UsageError(f"--by {by!r} is unknown; allowed {', '.join(RANK_KEYS)}")
    if top is not None and top < 1:
        raise UsageError(f"--top {top} must be a positive integer")
    base = ws.epoch().regressions_dir
    rows = []
    for path in sorted(base.glob("*/certificate.json")) if base.exists() else []:
        cert = read_json(path)
        if not isinstance(cert, dict):
            raise EpochBuilderError(f"{path}: expected a certificate object")
        rows.append(summarize_certificate(cert))
    ascending = by == "test_loss"

    def key(row: dict[str, Any]) -> tuple:
        value = row[by]
        if value is None:
            return (1, 0.0, row["id"] or "")
        return (0, value if ascending else -value, row["id"] or "")

    rows.sort(key=key)
    return rows[:top] if top else rows
