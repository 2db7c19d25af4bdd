"""Architectures: every template builds; configs with wrong counts are refused by name."""

from __future__ import annotations

import pytest

from epoch_builder.errors import EpochBuilderError
from epoch_builder.regressions.architectures import (
    all_template_names, build_model, parse_template, validate_model_config,
)

LOOKBACK, PREDICTIONS = 16, 4


def tiny_config(name: str) -> dict:
    """The smallest valid config of a template (units/filters 4, kernels 3, pools 2, relu)."""
    template = parse_template(name)
    counts = template.expected_counts(activations_given=template.family not in ("LSTM", "GRU"))
    values = {"units": 4, "filters": 4, "kernel_sizes": 3, "pool_sizes": 2, "activations": "relu"}
    config = {"name": name}
    for key, count in counts.items():
        if count is not None:
            config[key] = [values[key]] * count
    return config


def test_template_names_cover_six_families_and_stacks_2_to_5() -> None:
    names = all_template_names()
    assert len(names) == 6 * 4 + 3 * 4  # + MaxPooling variants of CNN, CDNN, CLSTM
    assert {"KR_DNN_S2", "KR_CNN_MP_S4", "KR_CDNN_MP_S5", "KR_LSTM_S3", "KR_CLSTM_MP_S2", "KR_GRU_S5"} <= set(names)


@pytest.mark.parametrize("name", all_template_names())
def test_every_template_builds_with_lookback_input_and_prediction_output(name: str) -> None:
    model = build_model(tiny_config(name), LOOKBACK, PREDICTIONS)
    assert tuple(model.input_shape) == (None, LOOKBACK)
    assert tuple(model.output_shape) == (None, PREDICTIONS)
    layer_types = [type(layer).__name__ for layer in model.layers]
    template = parse_template(name)
    stack_layer = {"DNN": "Dense", "CNN": "Conv1D", "CDNN": "Dense", "LSTM": "LSTM", "CLSTM": "LSTM", "GRU": "GRU"}
    # the stack (+ the Dense output for Dense stacks)
    expected = template.size + (1 if stack_layer[template.family] == "Dense" else 0)
    assert layer_types.count(stack_layer[template.family]) == expected
    assert ("MaxPooling1D" in layer_types) == template.pooling


@pytest.mark.parametrize("name, key, wrong", [
    ("KR_DNN_S3", "units", [4, 4]),
    ("KR_DNN_S3", "activations", ["relu"] * 4),
    ("KR_CNN_S2", "filters", [4]),
    ("KR_CNN_S2", "kernel_sizes", [3, 3, 3]),
    ("KR_CNN_MP_S3", "pool_sizes", [2, 2]),
    ("KR_CDNN_S2", "activations", ["relu", "relu"]),  # needs 1 (conv) + 2 (dense)
    ("KR_CLSTM_MP_S2", "filters", [4, 4]),
    ("KR_GRU_S4", "units", [4, 4, 4]),
])
def test_wrong_count_is_refused_naming_key_and_expected_count(name: str, key: str, wrong: list) -> None:
    config = {**tiny_config(name), key: wrong}
    with pytest.raises(EpochBuilderError, match=rf"{name} needs \d+ {key}, got {len(wrong)}"):
        validate_model_config(config)
    with pytest.raises(EpochBuilderError):
        build_model(config, LOOKBACK, PREDICTIONS)


def test_keys_that_do_not_belong_and_bad_values_are_refused() -> None:
    with pytest.raises(EpochBuilderError, match="KR_CNN_S2 takes no pool_sizes"):
        validate_model_config({**tiny_config("KR_CNN_S2"), "pool_sizes": [2, 2]})
    with pytest.raises(EpochBuilderError, match="unknown key"):
        validate_model_config({**tiny_config("KR_DNN_S2"), "dropout": [0.1]})
    with pytest.raises(EpochBuilderError, match="activation 'relux' is unknown"):
        validate_model_config({**tiny_config("KR_DNN_S2"), "activations": ["relu", "relux"]})
    with pytest.raises(EpochBuilderError, match="positive integers"):
        validate_model_config({**tiny_config("KR_DNN_S2"), "units": [4, 0]})
    for bad in ("KR_DNN_MP_S2", "KR_DNN_S6", "KR_RNN_S2", "DNN_S2", None):
        with pytest.raises(EpochBuilderError, match="is not a template"):
            parse_template(bad)


def test_recurrent_activations_are_optional_but_counted_when_given() -> None:
    validate_model_config({"name": "KR_LSTM_S2", "units": [4, 4]})
    validate_model_config({"name": "KR_LSTM_S2", "units": [4, 4], "activations": ["tanh", "tanh"]})
    with pytest.raises(EpochBuilderError, match="needs 2 activations, got 1"):
        validate_model_config({"name": "KR_LSTM_S2", "units": [4, 4], "activations": ["tanh"]})
