"""The trading platform's contract for an Epoch File, as data (docs/platform.md).

The platform's installer unzips the file and reads, at the zip root,
``epoch.json``, ``prediction_model_certificate.json`` and
``regression_certificates.json`` (a list), and collects every ``*.h5``. It then
requires the epoch id to be the one asked for and, for every regression of the
model (``model.regressions[].id``), a file ``<id>.h5`` and a certificate with
that id. Its runtime opens each ``<id>.h5`` and reads the attributes ``id``,
``description`` (strings), ``lookback`` and ``predictions`` (integers).

The field schemas below follow the platform's TypeScript interfaces
(IEpochConfig, IPredictionModelCertificate, IRegressionTrainingCertificate,
IDiscovery, IKerasModelSummary, ...): every declared field with its declared
type. A schema is a dict ``field -> type``; a type is one of the names in
``_SCALARS``, a nested schema, or a one-element list ``[type]`` (a list of it).
A field name ending in ``?`` is optional. Extra fields are allowed: the
platform ignores them.
"""

from __future__ import annotations

from typing import Any

from epoch_builder.errors import EpochBuilderError

EPOCH_CONFIG_MEMBER = "epoch.json"
MODEL_CERTIFICATE_MEMBER = "prediction_model_certificate.json"
REGRESSION_CERTIFICATES_MEMBER = "regression_certificates.json"
MODEL_FILE_SUFFIX = ".h5"
H5_ATTRIBUTES = ("id", "description", "lookback", "predictions")


def model_file_member(regression_id: str) -> str:
    return f"{regression_id}{MODEL_FILE_SUFFIX}"


EPOCH_CONFIG: dict[str, Any] = {
    "seed": "number", "id": "string", "sma_window_size": "number", "train_split": "number",
    "validation_split": "number", "start": "number", "end": "number", "test_ds_start": "number",
    "test_ds_end": "number", "highest_price_sma": "number", "lowest_price_sma": "number",
    "regression_lookback": "number", "regression_predictions": "number", "position_size": "number",
    "leverage": "number", "idle_minutes_on_position_close": "number",
}

DISCOVERY: dict[str, Any] = {
    "neutral_num": "number", "increase_num": "number", "decrease_num": "number",
    "neutral_outcome_num": "number", "increase_outcome_num": "number", "decrease_outcome_num": "number",
    "points_hist": ["number"], "points": "number",
    "increase_accuracy": "number", "decrease_accuracy": "number", "accuracy": "number",
    **{f"{side}_{stat}": "number" for side in ("increase", "decrease") for stat in ("min", "max", "mean", "median")},
    **{f"{side}_list": ["number"] for side in ("increase", "decrease")},
    **{f"{side}_{outcome}_{stat}": "number" for side in ("increase", "decrease")
       for outcome in ("successful", "unsuccessful") for stat in ("mean", "median")},
    **{f"{side}_{outcome}_list": ["number"] for side in ("increase", "decrease")
       for outcome in ("successful", "unsuccessful")},
}

KERAS_MODEL_SUMMARY: dict[str, Any] = {
    "model_class": "string",
    "optimizer_config": {"name": "string", "learning_rate": "string"},
    "loss_config": {"name": "string"},
    "metrics": ["string"],
    "input_shape": ["dimension"],
    "output_shape": ["dimension"],
    "layers": [{"name": "string", "params": "number", "input_shape": ["dimension"],
                "output_shape": ["dimension"], "trainable": "boolean"}],
    "total_params": "number", "trainable_params": "number", "non_trainable_params": "number",
}

REGRESSION_CONFIG: dict[str, Any] = {
    "id": "string", "description": "string", "lookback": "number", "predictions": "number",
    "summary": KERAS_MODEL_SUMMARY,
}

KERAS_MODEL_CONFIG: dict[str, Any] = {
    "name": "string", "units?": ["number"], "dropout_rates?": ["number"], "activations?": ["string"],
    "filters?": ["number"], "kernel_sizes?": ["number"], "pool_sizes?": ["number"],
}

REGRESSION_CERTIFICATE: dict[str, Any] = {
    "id": "string", "description": "string",
    "training_data_start": "number", "training_data_end": "number",
    "train_size": "number", "test_size": "number",
    "training_data_summary": {key: "number" for key in ("count", "mean", "std", "min", "25%", "50%", "75%", "max")},
    "learning_rate": "number", "optimizer": "string", "loss": "string", "metric": "string",
    "keras_model_config": KERAS_MODEL_CONFIG,
    "training_start": "number", "training_end": "number",
    "training_history": {"loss": ["number"], "val_loss": ["number"]},
    "test_ds_evaluation": {"mean_absolute_error": "number", "mean_squared_error": "number"},
    "discovery": DISCOVERY,
    "regression_config": REGRESSION_CONFIG,
}

PREDICTION = {"r": "number", "t": "number", "f": ["number"]}
BACKTEST_POSITION = {"t": "number", "p": PREDICTION, "ot": "number", "ct": "number", "op": "number",
                     "tpp": "number", "slp": "number", "cp": "number", "o": "boolean", "b": "number"}
BACKTEST_PERFORMANCE: dict[str, Any] = {
    "position_size": "number", "initial_balance": "number", "final_balance": "number", "profit": "number",
    "fees": "number", "leverage": "number", "exchange_fee": "number", "idle_minutes_on_position_close": "number",
    "positions": [BACKTEST_POSITION], "increase_num": "number", "decrease_num": "number",
    "increase_outcome_num": "number", "decrease_outcome_num": "number",
    "increase_accuracy": "number", "decrease_accuracy": "number", "accuracy": "number",
}

PREDICTION_MODEL_CERTIFICATE: dict[str, Any] = {
    "id": "string", "creation": "number", "test_ds_start": "number", "test_ds_end": "number",
    "model": {
        "id": "string", "price_change_requirement": "number", "min_sum_function": "min_sum_function",
        "min_sum_adjustment_factor": "number", "min_increase_sum": "number", "min_decrease_sum": "number",
        "regressions": [REGRESSION_CONFIG],
    },
    "discovery": DISCOVERY,
    "backtest": BACKTEST_PERFORMANCE,
}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_SCALARS = {
    "number": ("a number", _is_number),
    "string": ("a string", lambda v: isinstance(v, str)),
    "boolean": ("true or false", lambda v: isinstance(v, bool)),
    "dimension": ("a number or null", lambda v: v is None or _is_number(v)),
    "min_sum_function": ('"mean" or "median"', lambda v: v in ("mean", "median")),
}


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check(value: Any, schema: Any, where: str, path: str = "") -> None:
    """Raise EpochBuilderError naming ``where`` and the field path at the first field that is
    missing or has the wrong type."""
    label = path or "the document"
    if isinstance(schema, str):
        expected, ok = _SCALARS[schema]
        if not ok(value):
            raise EpochBuilderError(f"{where}: field {label} must be {expected}, got {_shown(value)}")
        return
    if isinstance(schema, list):
        if not isinstance(value, list):
            raise EpochBuilderError(f"{where}: field {label} must be a list, got {_shown(value)}")
        for index, item in enumerate(value):
            check(item, schema[0], where, f"{path}[{index}]")
        return
    if not isinstance(value, dict):
        raise EpochBuilderError(f"{where}: field {label} must be an object, got {_shown(value)}")
    for name, field_schema in schema.items():
        optional = name.endswith("?")
        key = name.rstrip("?")
        child = f"{path}.{key}" if path else key
        if key not in value:
            if optional:
                continue
            raise EpochBuilderError(f"{where}: field {child} is missing (the platform requires it)")
        if optional and value[key] is None:
            continue
        check(value[key], field_schema, where, child)


def check_installable(epoch_id: str, epoch_config: Any, model_certificate: Any, regression_certificates: Any,
                      model_file_names: list[str], where: str) -> list[str]:
    """The installer's checks (and the field schemas); returns the model's regression ids."""
    check(epoch_config, EPOCH_CONFIG, f"{where}: {EPOCH_CONFIG_MEMBER}")
    if epoch_config["id"] != epoch_id:
        raise EpochBuilderError(f"{where}: {EPOCH_CONFIG_MEMBER} has epoch id {epoch_config['id']!r}, "
                                f"the file is for {epoch_id!r}")
    check(model_certificate, PREDICTION_MODEL_CERTIFICATE, f"{where}: {MODEL_CERTIFICATE_MEMBER}")
    if not isinstance(regression_certificates, list) or not regression_certificates:
        raise EpochBuilderError(f"{where}: {REGRESSION_CERTIFICATES_MEMBER} must be a non-empty list")
    check(regression_certificates, [REGRESSION_CERTIFICATE], f"{where}: {REGRESSION_CERTIFICATES_MEMBER}")
    if not model_file_names:
        raise EpochBuilderError(f"{where}: no {MODEL_FILE_SUFFIX} model file in the Epoch File")
    certified = {c["id"] for c in regression_certificates}
    ids = [r["id"] for r in model_certificate["model"]["regressions"]]
    for rid in ids:
        if model_file_member(rid) not in model_file_names:
            raise EpochBuilderError(f"{where}: member {model_file_member(rid)} (the model file of regression "
                                    f"{rid}) is missing")
        if rid not in certified:
            raise EpochBuilderError(f"{where}: {REGRESSION_CERTIFICATES_MEMBER} has no certificate for "
                                    f"regression {rid}")
    return ids
