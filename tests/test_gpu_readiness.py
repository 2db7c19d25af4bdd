"""What a GPU server relies on that a CPU run cannot show: every recurrent layer the default grid builds
keeps the arguments under which Keras runs it with the fused cuDNN kernel (on a CPU the same layer runs the
generic kernel and trains the same model, only slower on a GPU if one of these drifted)."""

from __future__ import annotations

import pytest

from epoch_builder.regressions.architectures import build_model
from epoch_builder.regressions.grid import load_grid, plan

CUDNN_ARGUMENTS = {"activation": "tanh", "recurrent_activation": "sigmoid", "recurrent_dropout": 0.0,
                   "unroll": False, "use_bias": True}


@pytest.mark.parametrize("family", ["LSTM", "CLSTM", "GRU"])
def test_default_grid_recurrent_layers_are_cudnn_eligible(family: str) -> None:
    import keras

    configs = plan(load_grid(None), "_GPU", 1, 128, 32)[family]
    templates = {}
    for cfg in configs:  # one config per template: the layers' arguments come from the template and its values
        templates.setdefault(cfg["keras_model"]["name"], cfg)
    assert templates
    for name, cfg in templates.items():
        keras.backend.clear_session()
        model = build_model(cfg["keras_model"], 128, 32)
        recurrent = [layer for layer in model.layers if isinstance(layer, (keras.layers.LSTM, keras.layers.GRU))]
        assert recurrent, name
        for layer in recurrent:
            config = layer.get_config()
            for key, wanted in CUDNN_ARGUMENTS.items():
                assert config[key] == wanted, f"{name}/{layer.name}: {key}={config[key]!r}, cuDNN needs {wanted!r}"
            if isinstance(layer, keras.layers.GRU):
                assert config["reset_after"] is True, f"{name}/{layer.name}: cuDNN needs reset_after=True"
