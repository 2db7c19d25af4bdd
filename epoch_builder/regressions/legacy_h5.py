"""Write a trained regression as the platform's ``<id>.h5``: a legacy Keras 2 HDF5 model.

Why a writer of our own. The trading platform loads each regression with
TensorFlow 2.10 (``tensorflow.python.keras.saving.hdf5_format.load_model_from_hdf5``
on an open ``h5py.File``; docs/platform.md). Keras 3 can save ``.h5`` too, but
its layer configs carry Keras 3 keywords (``batch_shape``, ``optional`` on the
InputLayer, initializer dicts with ``module``/``registered_name``) that the 2.10
deserializer refuses. We keep training on Keras 3 and translate the *trained*
model at export time, without TensorFlow 2.10 installed:

* the architecture becomes a Keras 2 ``Sequential`` config (every regression of
  ours is a linear chain: InputLayer, optional Reshape, the family's layers, the
  ``Dense(predictions)`` head). Each layer class has a translator below that
  copies only the structural keys the 2.10 layer takes. Initializers,
  regularizers and constraints are left out: the weights are loaded anyway, and
  a layer that *uses* a regularizer or constraint is refused rather than
  silently changed;
* the weights go to ``model_weights/<layer>/<weight>`` in the order 2.10 expects
  (trainable then non-trainable, which for every supported layer is the order
  Keras 3 keeps: kernel, recurrent_kernel, bias). LSTM gates (i, f, c, o) and
  GRU gates (z, r, h, ``reset_after=True`` with a (2, 3 * units) bias) have the
  same layout in both versions;
* the root attributes the platform reads are written as the original wrote them
  with h5py: ``id`` and ``description`` as UTF-8 strings, ``lookback`` and
  ``predictions`` as 64-bit integers, beside Keras' ``model_config``,
  ``keras_version`` (``2.10.0``) and ``backend``.

Limits: only the layers the regression grid uses are translated (InputLayer,
Reshape, Dense, Conv1D, MaxPooling1D, Flatten, LSTM, GRU); any other layer, a
branching model or an unsupported option raises ``EpochBuilderError`` naming the
layer and the option. No training config is written, so the platform gets an
uncompiled model (it only predicts). Equality of predictions is checked twice:
at export with our own Keras on the written file (``verify_predictions``), and
in the test suite with the real TensorFlow 2.10 loader.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from epoch_builder.errors import EpochBuilderError
from epoch_builder.platform import H5_ATTRIBUTES

KERAS_VERSION = "2.10.0"  # the Keras the platform's TensorFlow 2.10 bundles
BACKEND = "tensorflow"
DTYPE = "float32"
# Keras 3 names its SiLU "silu"; TensorFlow 2.10 knows the same function as "swish".
ACTIVATION_NAMES = {"silu": "swish"}
KNOWN_ACTIVATIONS = {"relu", "tanh", "sigmoid", "elu", "selu", "gelu", "swish", "softplus", "linear"}
# Options a translated layer must leave unset: the 2.10 file would not carry them.
UNSET_OPTIONS = ("kernel_regularizer", "bias_regularizer", "activity_regularizer", "recurrent_regularizer",
                 "kernel_constraint", "bias_constraint", "recurrent_constraint")


def _activation(layer_name: str, value: Any, key: str = "activation") -> str:
    name = value if isinstance(value, str) else None
    name = ACTIVATION_NAMES.get(name, name) if name else None
    if name not in KNOWN_ACTIVATIONS:
        raise EpochBuilderError(
            f"layer {layer_name}: {key} {value!r} cannot be written for TensorFlow 2.10; "
            f"allowed {', '.join(sorted(KNOWN_ACTIVATIONS))}")
    return name


def _base(config: dict[str, Any]) -> dict[str, Any]:
    return {"name": config["name"], "trainable": bool(config.get("trainable", True)), "dtype": DTYPE}


def _dense(c: dict[str, Any]) -> dict[str, Any]:
    return {**_base(c), "units": int(c["units"]), "activation": _activation(c["name"], c["activation"]),
            "use_bias": bool(c["use_bias"])}


def _conv1d(c: dict[str, Any]) -> dict[str, Any]:
    return {**_base(c), "filters": int(c["filters"]), "kernel_size": list(c["kernel_size"]),
            "strides": list(c["strides"]), "padding": c["padding"], "data_format": c["data_format"],
            "dilation_rate": list(c["dilation_rate"]), "groups": int(c.get("groups", 1)),
            "activation": _activation(c["name"], c["activation"]), "use_bias": bool(c["use_bias"])}


def _max_pooling1d(c: dict[str, Any]) -> dict[str, Any]:
    pool = c["pool_size"]
    strides = c.get("strides") or pool  # Keras: strides default to the pool size
    as_list = lambda v: list(v) if isinstance(v, (list, tuple)) else [int(v)]  # noqa: E731
    return {**_base(c), "pool_size": as_list(pool), "strides": as_list(strides), "padding": c["padding"],
            "data_format": c["data_format"]}


def _flatten(c: dict[str, Any]) -> dict[str, Any]:
    return {**_base(c), "data_format": c.get("data_format") or "channels_last"}


def _reshape(c: dict[str, Any]) -> dict[str, Any]:
    return {**_base(c), "target_shape": list(c["target_shape"])}


def _recurrent(c: dict[str, Any]) -> dict[str, Any]:
    return {**_base(c), "units": int(c["units"]), "activation": _activation(c["name"], c["activation"]),
            "recurrent_activation": _activation(c["name"], c["recurrent_activation"], "recurrent_activation"),
            "use_bias": bool(c["use_bias"]), "dropout": float(c.get("dropout", 0.0)),
            "recurrent_dropout": float(c.get("recurrent_dropout", 0.0)),
            "return_sequences": bool(c["return_sequences"]), "return_state": bool(c.get("return_state", False)),
            "go_backwards": bool(c.get("go_backwards", False)), "stateful": bool(c.get("stateful", False)),
            "unroll": bool(c.get("unroll", False))}


def _lstm(c: dict[str, Any]) -> dict[str, Any]:
    return {**_recurrent(c), "unit_forget_bias": bool(c.get("unit_forget_bias", True))}


def _gru(c: dict[str, Any]) -> dict[str, Any]:
    if not c.get("reset_after", True):
        raise EpochBuilderError(f"layer {c['name']}: GRU with reset_after=False is not supported for TensorFlow 2.10")
    return {**_recurrent(c), "reset_after": True}


# Keras 3 class name -> (Keras 2 class name, config translator, weight names in 2.10's order).
TRANSLATORS: dict[str, tuple[str, Callable[[dict[str, Any]], dict[str, Any]], tuple[str, ...]]] = {
    "Reshape": ("Reshape", _reshape, ()),
    "Dense": ("Dense", _dense, ("kernel", "bias")),
    "Conv1D": ("Conv1D", _conv1d, ("kernel", "bias")),
    "MaxPooling1D": ("MaxPooling1D", _max_pooling1d, ()),
    "Flatten": ("Flatten", _flatten, ()),
    "LSTM": ("LSTM", _lstm, ("lstm_cell/kernel", "lstm_cell/recurrent_kernel", "lstm_cell/bias")),
    "GRU": ("GRU", _gru, ("gru_cell/kernel", "gru_cell/recurrent_kernel", "gru_cell/bias")),
}
SUPPORTED_LAYERS = ("InputLayer", *TRANSLATORS)


def _check_chain(model: Any) -> None:
    """Our regressions are linear chains; a branching model cannot become a Sequential config."""
    for previous, layer in zip(model.layers, model.layers[1:]):
        try:
            chained = layer.input is previous.output
        except (AttributeError, ValueError):  # a layer called more than once has no single input
            chained = False
        if not chained:
            raise EpochBuilderError(f"model {model.name}: layer {layer.name} does not follow {previous.name} "
                                    "alone; only linear models can be written for TensorFlow 2.10")
    if len(model.outputs) != 1 or model.outputs[0] is not model.layers[-1].output:
        raise EpochBuilderError(f"model {model.name}: only one output, from its last layer, can be written")


def legacy_model_config(model: Any) -> tuple[dict[str, Any], list[tuple[str, list[tuple[str, np.ndarray]]]]]:
    """(the Keras 2 ``Sequential`` config, [(layer name, [(weight name, value)])] for layers with weights)."""
    layers = list(model.layers)
    if not layers or type(layers[0]).__name__ != "InputLayer":
        raise EpochBuilderError(f"model {model.name}: expected a functional model that starts with its Input")
    _check_chain(model)
    input_shape = list(model.inputs[0].shape)
    configs: list[dict[str, Any]] = [{"class_name": "InputLayer", "config": {
        "batch_input_shape": [None, *input_shape[1:]], "dtype": DTYPE, "sparse": False, "ragged": False,
        "name": layers[0].name}}]
    weights: list[tuple[str, list[tuple[str, np.ndarray]]]] = []
    for layer in layers[1:]:
        class_name = type(layer).__name__
        if class_name not in TRANSLATORS:
            raise EpochBuilderError(f"layer {layer.name}: {class_name} cannot be written for TensorFlow 2.10; "
                                    f"supported {', '.join(SUPPORTED_LAYERS)}")
        legacy_class, translate, weight_names = TRANSLATORS[class_name]
        config = layer.get_config()
        used = [key for key in UNSET_OPTIONS if config.get(key) is not None]
        if used:
            raise EpochBuilderError(f"layer {layer.name}: option {used[0]} is not written for TensorFlow 2.10")
        configs.append({"class_name": legacy_class, "config": translate(config)})
        values = [np.asarray(v, dtype=np.float32) for v in layer.get_weights()]
        if values or weight_names:
            expected = weight_names if config.get("use_bias", True) else weight_names[:-1]
            if len(values) != len(expected):
                raise EpochBuilderError(f"layer {layer.name}: {len(values)} weights, expected {len(expected)} "
                                        f"({', '.join(expected)})")
            weights.append((layer.name, [(f"{layer.name}/{w}:0", v) for w, v in zip(expected, values)]))
    return {"class_name": "Sequential", "config": {"name": model.name, "layers": configs}}, weights


def _names(values: list[str]) -> np.ndarray:
    return np.array([v.encode("utf8") for v in values])


def write_legacy_h5(model: Any, target: Path, *, regression_id: str, description: str, lookback: int,
                    predictions: int) -> None:
    """Write ``model`` to ``target`` (a new file; the caller makes it atomic)."""
    import h5py

    config, weights = legacy_model_config(model)
    with h5py.File(target, "w") as f:
        f.attrs["backend"] = BACKEND
        f.attrs["keras_version"] = KERAS_VERSION
        f.attrs["model_config"] = json.dumps(config)
        group = f.create_group("model_weights")
        group.attrs["backend"] = BACKEND
        group.attrs["keras_version"] = KERAS_VERSION
        group.attrs["layer_names"] = _names([name for name, _ in weights])
        for layer_name, values in weights:
            layer_group = group.create_group(layer_name)
            layer_group.attrs["weight_names"] = _names([name for name, _ in values])
            for name, value in values:
                layer_group.create_dataset(name, data=value)
        # As the original: h5py's defaults for a Python str (UTF-8, variable length) and int (int64).
        f.attrs["id"] = str(regression_id)
        f.attrs["description"] = str(description)
        f.attrs["lookback"] = np.int64(lookback)
        f.attrs["predictions"] = np.int64(predictions)


def read_platform_attributes(path: Path) -> dict[str, Any]:
    """The four attributes the platform reads, checked as it checks them; errors name the attribute."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            attrs = {key: f.attrs[key] for key in H5_ATTRIBUTES if key in f.attrs}
            has_config = "model_config" in f.attrs and "model_weights" in f
    except OSError as exc:
        raise EpochBuilderError(f"{path.name}: not a readable HDF5 file ({str(exc).splitlines()[0]})") from None
    for key in H5_ATTRIBUTES:
        if key not in attrs:
            raise EpochBuilderError(f"{path.name}: attribute {key} is missing")
    for key in ("id", "description"):
        if not isinstance(attrs[key], str):
            raise EpochBuilderError(f"{path.name}: attribute {key} must be a UTF-8 string, "
                                    f"got {type(attrs[key]).__name__}")
    for key in ("lookback", "predictions"):
        value = attrs[key]
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or int(value) < 1:
            raise EpochBuilderError(f"{path.name}: attribute {key} must be a positive integer, got {value!r}")
        attrs[key] = int(value)
    if not has_config:
        raise EpochBuilderError(f"{path.name}: no Keras model (model_config and model_weights) in the file")
    return attrs


def load_legacy_h5(path: Path) -> Any:
    """Load a written file with our own Keras 3 (its legacy HDF5 reader)."""
    from epoch_builder.regressions.runtime import configure_tensorflow

    configure_tensorflow()
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a damaged file
        raise EpochBuilderError(f"{path.name}: the model does not load ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


def verify_predictions(original: Any, written: Any, inputs: np.ndarray, name: str, atol: float = 1e-5) -> float:
    """Largest absolute difference between the two models' predictions; raises past ``atol``
    (float32 round-off between two runtimes stays far below it)."""
    from epoch_builder.regressions.inference import predict

    a, b = (predict(model, inputs).astype(np.float64) for model in (original, written))
    if a.shape != b.shape:
        raise EpochBuilderError(f"{name}: the written model predicts shape {b.shape}, the trained one {a.shape}")
    difference = float(np.max(np.abs(a - b))) if a.size else 0.0
    if not difference <= atol:
        raise EpochBuilderError(f"{name}: the written model's predictions differ from the trained model's by "
                                f"{difference:.3g} (allowed {atol:g})")
    return difference
