"""Use a trained regression: load it and compute its §3 feature for every window.

``predict_features`` runs one batched ``model.predict`` over all windows (a
strided view of the series, no per-row loop).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from epoch_builder.errors import EpochBuilderError
from epoch_builder.regressions.datasets import input_windows
from epoch_builder.regressions.signals import features_from_changes, pct_changes
from epoch_builder.storage import read_json
from epoch_builder.workspace import CERTIFICATE_FILE

MODEL_FILE = "model.keras"
PREDICT_BATCH = 4096


@dataclass
class LoadedRegression:
    id: str
    description: str
    lookback: int
    predictions: int
    model: Any  # keras.Model
    certificate: dict[str, Any]


def load_regression(model_dir: Path) -> LoadedRegression:
    """``regressions/<id>/`` -> the model and its metadata (from certificate.json)."""
    model_dir = Path(model_dir)
    cert = read_json(model_dir / CERTIFICATE_FILE)
    if not isinstance(cert, dict):
        raise EpochBuilderError(f"{model_dir / CERTIFICATE_FILE}: expected a certificate object")
    missing = [k for k in ("id", "lookback", "predictions") if k not in cert]
    if missing:
        raise EpochBuilderError(f"{model_dir / CERTIFICATE_FILE}: missing key(s) {', '.join(missing)}")
    model_path = model_dir / str(cert.get("model_file", MODEL_FILE))
    if not model_path.is_file():
        raise EpochBuilderError(f"{model_path}: model file not found (pull the trained regressions first)")
    from epoch_builder.regressions.runtime import configure_tensorflow

    configure_tensorflow()
    import keras

    try:
        model = keras.models.load_model(model_path, compile=False)
    except Exception as exc:  # Keras raises many types for a damaged file
        raise EpochBuilderError(f"{model_path}: cannot load the model ({str(exc).splitlines()[0]})") from None
    return LoadedRegression(id=str(cert["id"]), description=str(cert.get("description", "")),
                            lookback=int(cert["lookback"]), predictions=int(cert["predictions"]),
                            model=model, certificate=cert)


def predict(model: Any, inputs: np.ndarray, batch_size: int = PREDICT_BATCH) -> np.ndarray:
    """The model's predictions (float32), by direct calls in chunks: ``model.predict`` traces a new
    tf.function for every model it meets, so a loop over many models made TensorFlow warn about
    retracing (and pay for it) on each one."""
    x = np.ascontiguousarray(inputs, dtype=np.float32)
    parts = [np.asarray(model(x[i:i + batch_size], training=False)) for i in range(0, len(x), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, *model.output_shape[1:]), dtype=np.float32)


def predict_windows(reg: LoadedRegression, normalized_close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(last input value x[-1] per window as float64, model predictions) for every §3 window."""
    series = np.asarray(normalized_close, dtype=np.float64)
    if series.ndim != 1:
        raise EpochBuilderError(f"regression {reg.id}: normalized close must be one-dimensional, got shape {series.shape}")
    x = input_windows(series, reg.lookback, reg.predictions)
    preds = predict(reg.model, x)
    return x[:, -1], np.asarray(preds, dtype=np.float64)


def predict_features(reg: LoadedRegression, normalized_close: np.ndarray) -> np.ndarray:
    """§3 feature (float64 in [-1, 1], 6 decimals) for every window i from lookback while
    i < len - predictions (x = rows [i - lookback, i))."""
    last_x, preds = predict_windows(reg, normalized_close)
    return features_from_changes(pct_changes(last_x, preds[:, -1]))
