"""Keras 3 architectures of the six regression families.

A model config (``keras_model`` in a training config) names its template and
lists the layer parameters::

    {"name": "KR_CNN_MP_S3", "filters": [64, 64, 64], "kernel_sizes": [5, 3, 3],
     "pool_sizes": [2, 2, 2], "activations": ["relu", "relu", "relu"]}

Template names are ``KR_<FAMILY>[_MP]_S<n>`` with n = 2..5 layers in the stack;
``_MP`` (MaxPooling1D after each Conv1D) exists for the convolutional families.

Layers per family (n = stack size; every model takes ``lookback`` normalised
closes and ends with ``Dense(predictions)``):

    DNN    Dense x n                                   units n, activations n
    CNN    (Conv1D [+ MaxPooling1D]) x n, Flatten     filters n, kernel_sizes n, activations n [, pool_sizes n]
    CDNN   Conv1D [+ MaxPooling1D], Flatten, Dense x n filters 1, kernel_sizes 1, activations 1 + n [, pool_sizes 1]
    LSTM   LSTM x n                                    units n [, activations n]  (absent: Keras default tanh)
    CLSTM  Conv1D [+ MaxPooling1D], LSTM x n           filters 1, kernel_sizes 1, units n, activations 1 [, pool_sizes 1]
    GRU    GRU x n                                     units n [, activations n]

Convolutions and poolings use ``padding="same"`` so every stack depth works for
any lookback (a 5-deep pooled stack over a lookback of 16 would otherwise
shrink to nothing).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from epoch_builder.errors import EpochBuilderError

if TYPE_CHECKING:  # pragma: no cover
    import keras

FAMILIES = ("CNN", "DNN", "CDNN", "LSTM", "CLSTM", "GRU")
CONV_FAMILIES = ("CNN", "CDNN", "CLSTM")
RECURRENT_FAMILIES = ("LSTM", "GRU")
STACK_SIZES = range(2, 6)
LIST_KEYS = ("units", "filters", "kernel_sizes", "pool_sizes", "activations")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "elu", "selu", "gelu", "swish", "softplus", "linear")
TEMPLATE_RE = re.compile(r"^KR_(?P<family>[A-Z]+?)(?P<mp>_MP)?_S(?P<size>\d+)$")


@dataclass(frozen=True)
class Template:
    name: str
    family: str
    pooling: bool
    size: int

    def expected_counts(self, activations_given: bool) -> dict[str, int | None]:
        """How many values each list key needs (None: the key must be absent)."""
        n = self.size
        pools = 1 if self.pooling else None
        if self.family == "DNN":
            return {"units": n, "activations": n, "filters": None, "kernel_sizes": None, "pool_sizes": None}
        if self.family == "CNN":
            return {"filters": n, "kernel_sizes": n, "activations": n, "pool_sizes": n if self.pooling else None,
                    "units": None}
        if self.family == "CDNN":
            return {"filters": 1, "kernel_sizes": 1, "pool_sizes": pools, "units": n, "activations": 1 + n}
        if self.family == "CLSTM":
            return {"filters": 1, "kernel_sizes": 1, "pool_sizes": pools, "units": n, "activations": 1}
        # LSTM / GRU: activations optional (the recurrent layers' default tanh)
        return {"units": n, "activations": n if activations_given else None, "filters": None,
                "kernel_sizes": None, "pool_sizes": None}


def family_of_id(regression_id: str) -> str | None:
    """Regression ids are ``<template>_<uuid>`` (``KR_CNN_MP_S4_<uuid>`` -> CNN); None for other ids."""
    match = TEMPLATE_RE.match(str(regression_id).rsplit("_", 1)[0]) if "_" in str(regression_id) else None
    return match["family"] if match and match["family"] in FAMILIES else None


def all_template_names() -> list[str]:
    names = []
    for family in FAMILIES:
        for size in STACK_SIZES:
            names.append(f"KR_{family}_S{size}")
            if family in CONV_FAMILIES:
                names.append(f"KR_{family}_MP_S{size}")
    return names


def parse_template(name: Any) -> Template:
    match = TEMPLATE_RE.match(name) if isinstance(name, str) else None
    if not match or match["family"] not in FAMILIES or int(match["size"]) not in STACK_SIZES or (
        match["mp"] and match["family"] not in CONV_FAMILIES
    ):
        raise EpochBuilderError(
            f"keras_model.name {name!r} is not a template: allowed KR_<family>[_MP]_S<2..5> with family "
            f"{', '.join(FAMILIES)} (_MP only for {', '.join(CONV_FAMILIES)}), e.g. KR_DNN_S3, KR_CNN_MP_S4"
        )
    return Template(name, match["family"], bool(match["mp"]), int(match["size"]))


def validate_model_config(config: Any, where: str = "keras_model") -> Template:
    """Check keys, counts and values without building (fast); errors name the key and what is allowed."""
    if not isinstance(config, dict):
        raise EpochBuilderError(f"{where}: expected an object with name and layer lists")
    template = parse_template(config.get("name"))
    unknown = sorted(set(config) - {"name", *LIST_KEYS})
    if unknown:
        raise EpochBuilderError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed name, {', '.join(LIST_KEYS)}")
    counts = template.expected_counts(activations_given=config.get("activations") is not None)
    for key in LIST_KEYS:
        value = config.get(key)
        expected = counts[key]
        if expected is None:
            if value is not None:
                raise EpochBuilderError(f"{where}: {template.name} takes no {key} (got {value!r})")
            continue
        if not isinstance(value, list) or len(value) != expected:
            got = f"{len(value)}" if isinstance(value, list) else repr(value)
            raise EpochBuilderError(f"{where}: {template.name} needs {expected} {key}, got {got}")
        if key == "activations":
            bad = [a for a in value if a not in ACTIVATIONS]
            if bad:
                raise EpochBuilderError(f"{where}: activation {bad[0]!r} is unknown; allowed {', '.join(ACTIVATIONS)}")
        else:
            bad = [v for v in value if not isinstance(v, int) or isinstance(v, bool) or v < 1]
            if bad:
                raise EpochBuilderError(f"{where}: {key} must be positive integers, got {bad[0]!r}")
    return template


def architecture_key(config: dict[str, Any], lookback: int, predictions: int) -> str:
    """Identity of the network shape (hyperparameters like the learning rate excluded)."""
    parts = [config["name"], str(lookback), str(predictions)]
    parts += [f"{key}={config.get(key)}" for key in LIST_KEYS]
    return "|".join(parts)


def build_model(config: dict[str, Any], lookback: int, predictions: int, name: str | None = None) -> "keras.Model":
    """Build (uncompiled) the network of ``config``; raises EpochBuilderError when it cannot be built."""
    import keras
    from keras import layers

    template = validate_model_config(config)
    family, n = template.family, template.size
    act = list(config.get("activations") or [])
    inputs = keras.Input(shape=(lookback,), name="normalized_close")
    x = inputs
    try:
        if family != "DNN":
            x = layers.Reshape((lookback, 1))(x)  # one channel / one feature per step
        if family == "DNN":
            for i in range(n):
                x = layers.Dense(config["units"][i], activation=act[i])(x)
        elif family == "CNN":
            for i in range(n):
                x = layers.Conv1D(config["filters"][i], config["kernel_sizes"][i], activation=act[i], padding="same")(x)
                if template.pooling:
                    x = layers.MaxPooling1D(config["pool_sizes"][i], padding="same")(x)
            x = layers.Flatten()(x)
        else:  # CDNN, CLSTM, LSTM, GRU
            if family in ("CDNN", "CLSTM"):
                x = layers.Conv1D(config["filters"][0], config["kernel_sizes"][0], activation=act[0], padding="same")(x)
                if template.pooling:
                    x = layers.MaxPooling1D(config["pool_sizes"][0], padding="same")(x)
            if family == "CDNN":
                x = layers.Flatten()(x)
                for i in range(n):
                    x = layers.Dense(config["units"][i], activation=act[1 + i])(x)
            else:
                recurrent = layers.GRU if family == "GRU" else layers.LSTM
                for i in range(n):
                    kwargs = {"activation": act[i]} if family in RECURRENT_FAMILIES and act else {}
                    x = recurrent(config["units"][i], return_sequences=i < n - 1, **kwargs)(x)
        # float32 whatever the global policy: under --mixed-precision the predictions and the loss stay exact
        outputs = layers.Dense(predictions, name="predictions", dtype="float32")(x)
    except (ValueError, TypeError) as exc:
        raise EpochBuilderError(f"keras_model {template.name}: cannot be built ({str(exc).splitlines()[0]})") from None
    return keras.Model(inputs, outputs, name=name or template.name)


def _shape(tensor: Any) -> list[int | None] | None:
    try:
        return list(tensor.shape)
    except (AttributeError, ValueError):
        return None


def _stringified(config: dict[str, Any]) -> dict[str, str]:
    """The platform keeps optimizer and loss settings as strings (IKerasModelOptimizerConfig)."""
    import json

    return {key: json.dumps(value, sort_keys=True, default=str) if isinstance(value, (dict, list)) else str(value)
            for key, value in config.items()}


def model_summary(model: "keras.Model", training: dict[str, Any] | None = None) -> dict[str, Any]:
    """The platform's IKerasModelSummary (model_class, optimizer_config, loss_config, metrics, input and
    output shapes, layers with name/params/input_shape/output_shape/trainable, parameter counts) plus
    our ``name`` and each layer's ``type``. ``training`` (the training config: loss, metric) names the
    loss and metric; the optimizer settings are read from the compiled model.

    ``model_class`` is ``Sequential``: the class the platform loads (every regression is a linear
    chain and the Epoch File holds it as a Keras 2 Sequential model, see legacy_h5)."""
    import numpy as np

    def count(weights: list) -> int:
        return int(sum(int(np.prod(w.shape)) for w in weights))

    layers_info = []
    for layer in model.layers:
        layers_info.append({"name": layer.name, "type": type(layer).__name__,
                            "input_shape": _shape(getattr(layer, "input", None)) if type(layer).__name__ != "InputLayer"
                            else _shape(layer.output),
                            "output_shape": _shape(layer.output), "params": count(layer.weights),
                            "trainable": bool(layer.trainable)})
    optimizer = getattr(model, "optimizer", None)
    optimizer_config = {"name": "none", "learning_rate": "none"}
    if optimizer is not None:
        optimizer_config = _stringified({key: value for key, value in optimizer.get_config().items() if value is not None})
    loss = (training or {}).get("loss") or (model.loss if isinstance(getattr(model, "loss", None), str) else "none")
    metric = (training or {}).get("metric")
    return {
        "model_class": "Sequential",
        "name": model.name,
        "optimizer_config": optimizer_config,
        "loss_config": {"name": str(loss)},
        "metrics": ["loss", *([str(metric)] if metric else [])],
        "input_shape": _shape(model.inputs[0]),
        "output_shape": _shape(model.outputs[0]),
        "layers": layers_info,
        "total_params": count(model.weights),
        "trainable_params": count(model.trainable_weights),
        "non_trainable_params": count(model.non_trainable_weights),
    }
