"""The regression cost model (epoch_builder/regressions/cost.py): FLOPs per layer kind against hand-computed
figures, the epoch's windows, epochs observed from certificates vs assumed, batch and family sums, the
default grid priced fast without TensorFlow, and its layers checked once against the Keras models the
architectures build."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from epoch_builder.errors import EpochBuilderError
from epoch_builder.regressions import cost
from epoch_builder.regressions.cost import EpochShape, Windows

ROOT = Path(__file__).resolve().parents[1]
UUID = "0b7e1a52-5d1c-4a43-9a55-6f1f0d0c9a11"


def macs(model: dict, lookback: int, predictions: int) -> list[tuple[str, int]]:
    return [(layer.kind, layer.macs) for layer in cost.layers_of(model, lookback, predictions)]


# --- one config per layer kind, by hand ----------------------------------------------------

def test_dense_stack() -> None:
    model = {"name": "KR_DNN_S2", "units": [64, 32], "activations": ["relu", "relu"]}
    # 128 inputs -> 64 -> 32 -> 32 predictions
    assert macs(model, 128, 32) == [("Dense", 128 * 64), ("Dense", 64 * 32), ("Dense", 32 * 32)]
    assert cost.forward_macs(model, 128, 32) == 11_264
    assert cost.forward_flop(model, 128, 32) == 22_528
    # 3 x forward over the fit windows, 1 x over the validation windows
    assert cost.epoch_flop(22_528, Windows(fit=100, validation=20, test=30)) == 3 * 22_528 * 100 + 22_528 * 20


def test_conv1d_same_padding_keeps_the_length() -> None:
    model = {"name": "KR_CNN_S2", "filters": [32, 16], "kernel_sizes": [5, 3], "activations": ["relu", "relu"]}
    # steps x kernel x channels x filters; Flatten 16 steps x 16 filters -> Dense(4)
    assert macs(model, 16, 4) == [("Conv1D", 16 * 5 * 1 * 32), ("Conv1D", 16 * 3 * 32 * 16), ("Flatten", 0),
                                  ("Dense", 256 * 4)]
    assert cost.forward_macs(model, 16, 4) == 2_560 + 24_576 + 1_024


def test_conv1d_with_pooling_rounds_the_length_up() -> None:
    model = {"name": "KR_CNN_MP_S2", "filters": [32, 16], "kernel_sizes": [5, 3], "pool_sizes": [2, 2],
             "activations": ["relu", "relu"]}
    layers = cost.layers_of(model, 15, 4)
    # 15 steps -> conv -> pool ceil(15/2) = 8 -> conv -> pool 4 -> flatten 64 -> Dense(4)
    assert [(layer.kind, layer.output, layer.macs) for layer in layers] == [
        ("Conv1D", (15, 32), 15 * 5 * 1 * 32), ("MaxPooling1D", (8, 32), 0),
        ("Conv1D", (8, 16), 8 * 3 * 32 * 16), ("MaxPooling1D", (4, 16), 0),
        ("Flatten", (64,), 0), ("Dense", (4,), 64 * 4)]
    assert cost.forward_macs(model, 15, 4) == 2_400 + 12_288 + 256
    cdnn = {"name": "KR_CDNN_MP_S2", "filters": [8], "kernel_sizes": [3], "pool_sizes": [3], "units": [10, 6],
            "activations": ["relu", "relu", "relu"]}
    # conv 10 x 3 x 1 x 8, pool ceil(10/3) = 4 -> 32 features, Dense 32x10, 10x6, 6x4
    assert cost.forward_macs(cdnn, 10, 4) == 240 + 320 + 60 + 24


def test_lstm_stack() -> None:
    model = {"name": "KR_LSTM_S2", "units": [8, 4]}
    # steps x 4 gates x units x (inputs + units); the last layer returns one vector
    assert macs(model, 10, 3) == [("LSTM", 10 * 4 * 8 * (1 + 8)), ("LSTM", 10 * 4 * 4 * (8 + 4)), ("Dense", 4 * 3)]
    assert cost.forward_macs(model, 10, 3) == 2_880 + 1_920 + 12
    clstm = {"name": "KR_CLSTM_S2", "filters": [4], "kernel_sizes": [3], "units": [5, 2], "activations": ["relu"]}
    assert cost.forward_macs(clstm, 6, 2) == 6 * 3 * 1 * 4 + 6 * 4 * 5 * (4 + 5) + 6 * 4 * 2 * (5 + 2) + 2 * 2


def test_gru_stack() -> None:
    model = {"name": "KR_GRU_S2", "units": [8, 4], "activations": ["tanh", "tanh"]}
    # 3 gates (Keras 3 reset_after: the recurrent product is 3u x u like the input one)
    assert macs(model, 10, 3) == [("GRU", 10 * 3 * 8 * (1 + 8)), ("GRU", 10 * 3 * 4 * (8 + 4)), ("Dense", 4 * 3)]


def test_an_invalid_model_is_refused_as_the_architectures_refuse_it() -> None:
    with pytest.raises(EpochBuilderError, match="needs 2 units"):
        cost.layers_of({"name": "KR_DNN_S2", "units": [8], "activations": ["relu", "relu"]}, 16, 4)


# --- windows -------------------------------------------------------------------------------

def test_windows_follow_the_splits() -> None:
    shape = EpochShape(rows=1000, train_split=0.75, validation_split=0.2, lookback=16, predictions=4)
    # 1000 - 16 - 4 = 980 windows; int(1000 x 0.75) = 750 train, floor(750 x 0.8) = 600 fit, 150 validate
    assert shape.windows() == Windows(fit=600, validation=150, test=230)
    assert shape.windows(lookback=32) == Windows(fit=600, validation=150, test=214)
    with pytest.raises(EpochBuilderError, match="leave"):
        EpochShape(40, 0.75, 0.2, 16, 4).windows()


def test_default_profile_matches_the_training_bench() -> None:
    shape = cost.default_profile_shape()
    # bench_training.py: 51,822 train windows, 10,365 of them validate; 69,096 rows after the SMA window
    assert (shape.rows, shape.lookback, shape.predictions) == (69_096, 128, 32)
    assert shape.windows() == Windows(fit=41_457, validation=10_365, test=17_114)


# --- epochs per model ----------------------------------------------------------------------

def certificate(family_template: str, epochs: int, cap: int = 500, category: str | None = None) -> dict:
    family = family_template.split("_")[1]
    return {"id": f"{family_template}_{UUID}", "category": category or family, "epochs": epochs,
            "training_params": {"max_epochs": cap}}


def test_epochs_observed_per_family_else_assumed() -> None:
    certificates = [certificate("KR_LSTM_S2", 20), certificate("KR_LSTM_S3", 40), certificate("KR_LSTM_S3", 60),
                    certificate("KR_DNN_S2", 100, cap=100),
                    {"id": "KR_UNIT_TEST", "category": "DNN", "epochs": 30},  # the smoke test: not a grid model
                    {"id": "broken"}, certificate("KR_GRU_S2", 0)]
    observed = cost.observed_epochs(certificates)
    assert set(observed) == {"LSTM", "DNN"}
    assert (observed["LSTM"].epochs, observed["LSTM"].median, observed["LSTM"].models) == (40.0, 40.0, 3)
    assert observed["DNN"].capped == 1 and observed["DNN"].epochs == 100
    assert observed["LSTM"].observed and "mean of 3 certificates" in observed["LSTM"].describe()

    epochs = cost.epochs_per_family(observed)
    assert epochs["LSTM"] is observed["LSTM"]
    assert epochs["GRU"] == cost.DEFAULT_EPOCHS and not epochs["GRU"].observed
    assert epochs["GRU"].epochs == 109 and "120 DNN and CDNN configs" in epochs["GRU"].describe()
    own = cost.EpochsAssumption(12, "a guess")
    assert cost.epochs_per_family({}, own)["CNN"] == own


def test_a_batch_eta_expects_the_epochs_observed_in_the_epoch_else_the_stated_assumption(tmp_path: Path) -> None:
    """train-regression-batch's ETA (its log lines, its events, the Board's ETA) counts a model as done after
    the epochs its family took in this epoch's certificates, not after max_epochs."""
    from types import SimpleNamespace

    from epoch_builder.events import Eta
    from epoch_builder.regressions.batch import eta_line, expected_epochs

    paths = SimpleNamespace(regressions_dir=tmp_path)
    assert expected_epochs(paths, "GRU") == cost.DEFAULT_EPOCHS  # nothing trained yet: assumed, and it says so
    assert eta_line(cost.DEFAULT_EPOCHS, 30) == ("ETA: 109 epochs per model expected (assumed: none of the family is "
                                                 "trained in this epoch yet; the cost model's measured figure, capped "
                                                 "at --max-epochs 30)")
    for template, epochs in (("KR_GRU_S2", 40), ("KR_GRU_S3", 60)):
        cert = certificate(template, epochs)
        (tmp_path / cert["id"]).mkdir()
        (tmp_path / cert["id"] / "certificate.json").write_text(json.dumps(cert))
    assert len(cost.read_certificates(tmp_path, "GRU")) == 2 and cost.read_certificates(tmp_path, "DNN") == []
    observed = expected_epochs(paths, "GRU")
    assert observed.epochs == 50 and observed.observed and "observed" in observed.describe()
    assert eta_line(observed, None) == ("ETA: 50 epochs per model expected (observed: the mean of 2 certificates of "
                                        "the family in this epoch)")
    assert expected_epochs(paths, "UNIT_TEST") == cost.DEFAULT_EPOCHS  # its model is a DNN: none observed

    eta = Eta(4, per_unit=50)
    assert eta.fraction(25, 500) == 0.5  # half of the 50 observed, not 5% of the 500 allowed
    assert eta.fraction(80, 500) == 0.99  # past the estimate, still running: never a whole model
    assert eta.fraction(5, 10) == 0.5  # capped by the limit
    assert Eta(4).fraction(25, 500) == 0.05  # no estimate: the limit


def test_read_certificates_keeps_the_keys_it_needs(tmp_path: Path) -> None:
    for index, cert in enumerate([certificate("KR_GRU_S2", 33), certificate("KR_GRU_S4", 11)]):
        directory = tmp_path / f"model{index}"
        directory.mkdir()
        (directory / "certificate.json").write_text(json.dumps({**cert, "training_history": {"loss": [1.0] * 5}}))
    (tmp_path / "torn").mkdir()
    (tmp_path / "torn" / "certificate.json").write_text('{"id": "KR_GRU_S2_')  # a pull in progress
    found = cost.read_certificates(tmp_path)
    assert [c["epochs"] for c in found] == [33, 11] and "training_history" not in found[0]
    assert cost.observed_epochs(found)["GRU"].epochs == 22


def config(model: dict, model_id: str, max_epochs: int | None = None) -> dict:
    cfg = {"id": model_id, "lookback": 16, "predictions": 4, "keras_model": model}
    return {**cfg, "max_epochs": max_epochs} if max_epochs else cfg


def test_config_and_batch_cost() -> None:
    shape = EpochShape(rows=1000, train_split=0.75, validation_split=0.2, lookback=16, predictions=4)
    dense = {"name": "KR_DNN_S2", "units": [8, 8], "activations": ["relu", "relu"]}
    forward = 2 * (16 * 8 + 8 * 8 + 8 * 4)  # 448 FLOP
    epoch = 3 * forward * 600 + forward * 150
    epochs = cost.epochs_per_family({"DNN": cost.EpochsAssumption(10, "test")})
    one = cost.config_cost(config(dense, "a"), shape, epochs)
    assert (one.family, one.forward_flop, one.epoch_flop, one.epochs) == ("DNN", forward, epoch, 10)
    assert one.flop == 10 * epoch + forward * 230  # + one prediction pass over the 230 test windows
    # the config's max_epochs caps the estimate, the run's --max-epochs wins over it
    assert cost.config_cost(config(dense, "b", max_epochs=4), shape, epochs).epochs == 4
    assert cost.config_cost(config(dense, "b", max_epochs=4), shape, epochs, max_epochs=7).epochs == 7

    batch = cost.batch_cost({"name": "KR_DNN_1_1", "category": "DNN",
                             "configs": [config(dense, "a"), config(dense, "b", max_epochs=4)]}, shape, epochs)
    assert (batch.family, batch.models) == ("DNN", 2)
    assert batch.flop == one.flop + 4 * epoch + forward * 230
    assert batch.epoch_flop == 2 * epoch
    lstm = {"name": "KR_LSTM_S2", "units": [4, 4]}
    with pytest.raises(EpochBuilderError, match="mixes families DNN, LSTM"):
        cost.batch_cost({"name": "mixed", "configs": [config(dense, "a"), config(lstm, "c")]}, shape, epochs)


# --- the default grid ----------------------------------------------------------------------

def test_default_grid_batches_and_family_summary() -> None:
    shape = cost.default_profile_shape()
    started = time.perf_counter()
    costs = cost.batch_costs(cost.grid_batches(), shape)
    seconds = time.perf_counter() - started
    assert seconds < 1.0, f"the default grid took {seconds:.2f} s to price"
    summary = cost.family_summary(costs)
    assert {f: (s.batches, s.models) for f, s in summary.items()} == {
        "CNN": (12, 240), "DNN": (2, 252), "CDNN": (14, 480), "LSTM": (9, 84), "CLSTM": (8, 80), "GRU": (9, 84)}
    assert abs(sum(s.share for s in summary.values()) - 1) < 1e-9
    # A large recurrent stack is tens of TFLOP an epoch; a batch of small DNNs is ~1000x less than an LSTM batch.
    assert 50e12 < summary["LSTM"].epoch_flop_max < 150e12
    assert summary["LSTM"].batch_flop_max > 100 * summary["DNN"].batch_flop_max
    assert any("109 epochs/model assumed" in line for line in cost.format_family_summary(summary))


def test_pricing_imports_no_tensorflow() -> None:
    code = ("import sys; from epoch_builder.regressions import cost; "
            "cost.batch_costs(cost.grid_batches(), cost.default_profile_shape()); "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]"


def test_board_order_is_the_boards(tmp_path: Path) -> None:
    from epoch_builder.workspace import Workspace
    from remote.board import regression_batches

    documents = cost.grid_batches()
    configs_dir = Workspace(tmp_path).epoch_paths("_ORDER").regression_training_configs_dir
    for document in documents:
        path = configs_dir / document["category"] / f"{document['name']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"configs": [{"id": c["id"]} for c in document["configs"]]}))
    ordered = [d["name"] for d in cost.board_order(documents)]
    assert ordered == [spec.name for spec in regression_batches(tmp_path, "_ORDER")]
    assert ordered.index("KR_CNN_10_12") < ordered.index("KR_CNN_1_12")


# --- against the networks Keras builds -----------------------------------------------------

def test_layers_match_the_built_keras_models() -> None:
    """Shapes and MACs against build_model's layers: output shapes equal, and each weighted layer's MACs
    follow from its parameter count (Dense in x out + out biases; Conv1D steps x (k c f); LSTM steps x
    (4u(d+u)); GRU steps x (3u(d+u)), Keras 3 keeps two bias vectors of 3u)."""
    pytest.importorskip("keras")
    from epoch_builder.regressions.runtime import configure_tensorflow

    configure_tensorflow()
    from epoch_builder.regressions.architectures import build_model

    models = [
        {"name": "KR_DNN_S3", "units": [16, 8, 8], "activations": ["relu"] * 3},
        {"name": "KR_CNN_MP_S3", "filters": [8, 8, 4], "kernel_sizes": [5, 3, 3], "pool_sizes": [2, 2, 2],
         "activations": ["relu"] * 3},
        {"name": "KR_CDNN_S2", "filters": [8], "kernel_sizes": [3], "units": [16, 8], "activations": ["relu"] * 3},
        {"name": "KR_LSTM_S2", "units": [8, 4]},
        {"name": "KR_CLSTM_MP_S2", "filters": [4], "kernel_sizes": [3], "pool_sizes": [2], "units": [8, 4],
         "activations": ["relu"]},
        {"name": "KR_GRU_S3", "units": [8, 8, 4]},
    ]
    lookback, predictions = 15, 4
    for model_config in models:
        built = [layer for layer in build_model(model_config, lookback, predictions).layers
                 if type(layer).__name__ not in ("InputLayer", "Reshape")]
        ours = cost.layers_of(model_config, lookback, predictions)
        assert [type(layer).__name__ for layer in built] == [layer.kind for layer in ours], model_config["name"]
        for index, (layer, mine) in enumerate(zip(built, ours)):
            before = ours[index - 1].output if index else (lookback, 1)
            steps = before[0]  # the sequence a recurrent layer runs over
            assert tuple(layer.output.shape[1:]) == mine.output, (model_config["name"], layer.name)
            params = sum(int(w.numpy().size) for w in layer.weights)
            kind = mine.kind
            if kind == "Dense":
                expected = params - layer.units
            elif kind == "Conv1D":
                expected = int(layer.output.shape[1]) * (params - layer.filters)
            elif kind == "LSTM":
                expected = steps * (params - 4 * layer.units)
            elif kind == "GRU":
                expected = steps * (params - 6 * layer.units)
            else:
                expected = 0
            assert mine.macs == expected, (model_config["name"], layer.name, mine.macs, expected)

