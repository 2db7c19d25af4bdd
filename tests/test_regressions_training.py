"""Batch training on the bundled sample: every family, certificates, inference, ranking,
determinism, and resume after a real kill -9."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from epoch_builder.candles import read_candles
from epoch_builder.children import available_cores
from epoch_builder.cli import main
from epoch_builder.discovery import build_discovery
from epoch_builder.errors import EpochBuilderError
from epoch_builder.numbers import pct_change
from epoch_builder.regressions.grid import load_grid, unit_test_config
from epoch_builder.regressions.inference import load_regression, predict_features
from epoch_builder.regressions.rank import rank_regressions
from epoch_builder.regressions.signals import features_from_changes
from epoch_builder.regressions.batch import train_batch
from epoch_builder.regressions.options import TrainingOptions
from epoch_builder.workspace import REGRESSION_CHECKPOINTS_DIR as CHECKPOINTS_DIR
from epoch_builder.storage import atomic_write_json, read_json
from epoch_builder.workspace import Workspace
from tests.test_regressions_architectures import tiny_config

# TensorFlow's default thread pools, which tests/conftest.py pins for every test process
POOLS = {"intra_op": available_cores(), "inter_op": available_cores()}
FAMILY_TEMPLATES = ("KR_DNN_S2", "KR_CNN_MP_S2", "KR_CDNN_S2", "KR_LSTM_S2", "KR_CLSTM_MP_S2", "KR_GRU_S2")
SECTION3_FIELDS = ("id", "description", "training_data_start", "training_data_end", "train_size", "test_size",
                   "training_data_summary", "learning_rate", "optimizer", "loss", "metric", "keras_model_config",
                   "training_start", "training_end", "training_history", "test_ds_evaluation", "discovery",
                   "regression_config")


def training_config(ws: Workspace, model_id: str, template: str, **overrides) -> dict:
    config = ws.load_epoch_config()
    return {"id": model_id, "description": f"test {template}", "lookback": config.regression_lookback,
            "predictions": config.regression_predictions, "learning_rate": -1, "optimizer": "adam",
            "loss": "mean_absolute_error", "metric": "mean_squared_error", "keras_model": tiny_config(template),
            **overrides}


def write_batch(ws: Workspace, category: str, name: str, configs: list[dict]) -> Path:
    path = ws.epoch().regression_training_configs_dir / category / f"{name}.json"
    atomic_write_json(path, {"name": name, "category": category, "configs": configs}, indent=2)
    return path


def quiet(*_: object) -> None:
    pass


def test_one_tiny_config_of_every_family_trains_and_is_usable(small_epoch: Workspace, capsys) -> None:
    configs = [training_config(small_epoch, f"T_{name}", name, optimizer="rmsprop" if i % 2 else "adam",
                               learning_rate=-1 if i % 3 else 0.001) for i, name in enumerate(FAMILY_TEMPLATES)]
    batch = write_batch(small_epoch, "UNIT_TEST", "KR_FAMILIES", configs)
    certificates = train_batch(small_epoch, "UNIT_TEST", batch, TrainingOptions(max_epochs=2), log=quiet)

    paths = small_epoch.epoch()
    assert [c["id"] for c in certificates] == [c["id"] for c in configs]
    assert read_json(paths.regression_batched_certificates_dir / "KR_FAMILIES.json") == certificates
    for cert, cfg in zip(certificates, configs):
        assert all(field in cert for field in SECTION3_FIELDS)
        assert cert["epochs"] == 2 and len(cert["training_history"]["val_loss"]) == 2
        assert cert["category"] == cfg["keras_model"]["name"].split("_")[1]
        assert (paths.regressions_dir / cfg["id"] / "model.keras").is_file()
        assert read_json(paths.regressions_dir / cfg["id"] / "certificate.json") == cert
    assert not (paths.dir / CHECKPOINTS_DIR).exists()

    # Rerun: every certificate exists, nothing trains again.
    lines: list[str] = []
    again = train_batch(small_epoch, "UNIT_TEST", batch, TrainingOptions(max_epochs=2), log=lines.append)
    assert again == certificates and sum("certificate exists, skipped" in line for line in lines) == len(configs)

    # Inference: one batched predict equals the §3 rule applied window by window.
    close = read_candles(small_epoch.normalized_prediction_candlesticks_file)["c"].to_numpy()
    reg = load_regression(paths.regressions_dir / "T_KR_CLSTM_MP_S2")
    assert (reg.id, reg.lookback, reg.predictions) == ("T_KR_CLSTM_MP_S2", 16, 4)
    features = predict_features(reg, close)
    assert features.dtype == np.float64 and len(features) == len(close) - 16 - 4
    for i in (16, 100, len(close) - 5):
        x = close[i - 16:i]
        pred = reg.model(x[None, :].astype(np.float32), training=False).numpy()[0]
        expected = features_from_changes(np.array([pct_change(x[-1], float(pred[-1]))]))[0]
        assert features[i - 16] == pytest.approx(expected, abs=2e-6)

    ranked = rank_regressions(small_epoch, by="accuracy", top=3)
    assert len(ranked) == 3
    accuracies = [r["accuracy"] for r in ranked]
    assert accuracies == sorted(accuracies, reverse=True)
    by_loss = rank_regressions(small_epoch)
    assert [r["test_loss"] for r in by_loss] == sorted(r["test_loss"] for r in by_loss)
    assert {"id", "category", "test_loss", "test_metric", "accuracy", "points", "epochs"} <= set(by_loss[0])

    capsys.readouterr()
    root = str(small_epoch.root)
    assert main(["regressions", "rank", "--workspace", root, "--by", "points", "--top", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == rank_regressions(small_epoch, by="points", top=2)
    assert main(["regressions", "rank", "--workspace", root]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["#", "id", "category"] and len(table) == 1 + len(configs)
    assert table[1].split()[1] == by_loss[0]["id"]
    with pytest.raises(SystemExit) as refused:
        main(["regressions", "rank", "--workspace", root, "--by", "speed"])
    assert refused.value.code == 2 and "invalid choice: 'speed'" in capsys.readouterr().err


def test_certificate_discovery_matches_the_section_3_rule(small_epoch: Workspace) -> None:
    batch = write_batch(small_epoch, "DNN", "KR_ONE", [training_config(small_epoch, "ONE", "KR_DNN_S2")])
    cert = train_batch(small_epoch, "DNN", batch, TrainingOptions(max_epochs=2), log=quiet)[0]
    config = small_epoch.load_epoch_config()
    close = read_candles(small_epoch.normalized_prediction_candlesticks_file)["c"].to_numpy()
    reg = load_regression(small_epoch.epoch().regressions_dir / "ONE")
    predicted, outcomes = [], []
    test_windows = range(16 + config.test_ds_start_index, len(close) - 4)
    preds = reg.model.predict(np.stack([close[i - 16:i] for i in test_windows]).astype(np.float32), verbose=0)
    for row, i in enumerate(test_windows):
        x_last, y_last = close[i - 1], close[i + 3]
        predicted.append(pct_change(x_last, float(preds[row, -1])))
        real = pct_change(x_last, y_last)
        outcomes.append(0 if real == 0 else (1 if real > 0 else -1))
    assert cert["test_size"] == len(predicted)
    assert cert["discovery"] == build_discovery(predicted, outcomes)
    # The test loss and metric come from these predictions: model.evaluate's figures, float32 rounding aside.
    windows = np.stack([close[i - 16:i] for i in test_windows]).astype(np.float32)
    labels = np.stack([close[i:i + 4] for i in test_windows]).astype(np.float32)
    reg.model.compile(loss=cert["loss"], metrics=[cert["metric"]])
    evaluated = reg.model.evaluate(windows, labels, batch_size=512, verbose=0, return_dict=True)
    assert cert["test_evaluation"]["loss"] == pytest.approx(evaluated["loss"], rel=1e-5)
    assert cert["test_evaluation"]["metric"] == pytest.approx(evaluated[cert["metric"]], rel=1e-5)


def test_unit_test_batch_trains_under_60s_with_every_certificate_field(small_epoch: Workspace) -> None:
    config = small_epoch.load_epoch_config()
    unit = unit_test_config(load_grid(None), config.id, config.regression_lookback, config.regression_predictions)
    batch = write_batch(small_epoch, "UNIT_TEST", "KR_UNIT_TEST", [unit])
    started = time.monotonic()
    cert = train_batch(small_epoch, "UNIT_TEST", batch, log=quiet)[0]
    assert time.monotonic() - started < 60
    assert all(field in cert for field in SECTION3_FIELDS)
    # pandas' describe(), as the platform's IRegressionDatasetSummary
    assert set(cert["training_data_summary"]) == {"count", "mean", "std", "min", "25%", "50%", "75%", "max"}
    from epoch_builder import candles

    close = candles.read_candles(small_epoch.normalized_prediction_candlesticks_file)["c"]
    described = close.describe()
    for key, value in cert["training_data_summary"].items():
        assert value == pytest.approx(float(described[key]), rel=1e-12), key
    # every field of the platform's certificate interfaces, with its type
    from epoch_builder import platform

    platform.check(cert, platform.REGRESSION_CERTIFICATE, "certificate")
    summary = cert["regression_config"]["summary"]
    assert summary["model_class"] == "Sequential" and summary["loss_config"] == {"name": unit["loss"]}
    assert summary["metrics"] == ["loss", unit["metric"]] and summary["optimizer_config"]["name"] == unit["optimizer"]
    assert summary["input_shape"] == [None, config.regression_lookback]
    assert summary["output_shape"] == [None, config.regression_predictions]
    assert summary["layers"][1]["input_shape"] == summary["layers"][0]["output_shape"]
    assert set(cert["training_history"]) == {"loss", "val_loss", "mean_squared_error", "val_mean_squared_error"}
    assert set(cert["test_ds_evaluation"]) == {"mean_absolute_error", "mean_squared_error"}
    for key in ("neutral_num", "increase_num", "decrease_num", "increase_outcome_num", "decrease_outcome_num",
                "points_hist", "points", "accuracy", "increase_accuracy", "decrease_accuracy",
                "increase_successful_list", "decrease_unsuccessful_median"):
        assert key in cert["discovery"]
    assert len(cert["discovery"]["points_hist"]) == 10
    assert cert["regression_config"]["summary"]["total_params"] > 0
    assert 1 <= cert["epochs"] <= unit["max_epochs"]


def test_same_seed_and_data_give_identical_results(small_epoch: Workspace, tmp_path: Path) -> None:
    twin = Workspace(tmp_path / "twin")
    shutil.copytree(small_epoch.root, twin.root)
    results = []
    for ws in (small_epoch, twin):
        batch = write_batch(ws, "GRU", "KR_DET", [training_config(ws, "DET", "KR_GRU_S2")])
        cert = train_batch(ws, "GRU", batch, TrainingOptions(max_epochs=3), log=quiet)[0]
        weights = load_regression(ws.epoch().regressions_dir / "DET").model.get_weights()
        results.append((cert, weights))
    (a, wa), (b, wb) = results
    assert a["training_history"] == b["training_history"]
    assert a["test_evaluation"] == b["test_evaluation"] and a["discovery"] == b["discovery"]
    assert all(np.array_equal(x, y) for x, y in zip(wa, wb))


def test_batch_errors_are_one_line_and_name_the_problem(small_epoch: Workspace) -> None:
    with pytest.raises(EpochBuilderError, match="batch 'KR_NOPE' not found"):
        train_batch(small_epoch, "DNN", "KR_NOPE", log=quiet)
    batch = write_batch(small_epoch, "DNN", "KR_BAD", [training_config(small_epoch, "BAD", "KR_GRU_S2")])
    with pytest.raises(EpochBuilderError, match="config BAD is a GRU model, not DNN"):
        train_batch(small_epoch, "DNN", batch, log=quiet)
    batch = write_batch(small_epoch, "DNN", "KR_BAD2", [training_config(small_epoch, "BAD2", "KR_DNN_S2", lookback=32)])
    with pytest.raises(EpochBuilderError, match="lookback 32 / predictions 4 but the epoch has 16 / 4"):
        train_batch(small_epoch, "DNN", batch, log=quiet)
    batch = write_batch(small_epoch, "DNN", "KR_BAD3", [training_config(small_epoch, "BAD3", "KR_DNN_S2", loss="hinge")])
    with pytest.raises(EpochBuilderError, match="KR_BAD3.json: configs\\[0\\] \\(BAD3\\): loss 'hinge' is unknown"):
        train_batch(small_epoch, "DNN", batch, log=quiet)
    # a hostile batch name would put the batched certificate outside the epoch
    outside = small_epoch.root.parent / "outside"
    path = small_epoch.epoch().regression_training_configs_dir / "DNN" / "KR_EVIL.json"
    atomic_write_json(path, {"name": f"../../../../{outside.name}/x", "category": "DNN",
                             "configs": [training_config(small_epoch, "EVIL", "KR_DNN_S2")]})
    with pytest.raises(EpochBuilderError, match="KR_EVIL.json: batch name '../../../../outside/x' must be 1..120"):
        train_batch(small_epoch, "DNN", path, log=quiet)
    assert not outside.exists() and not (small_epoch.epoch().regressions_dir / "EVIL").exists()


@pytest.mark.slow
@pytest.mark.parametrize("fast", [False, True], ids=["deterministic", "fast"])
def test_kill_9_resumes_from_the_last_completed_epoch_and_matches_an_uninterrupted_run(
        small_epoch: Workspace, tmp_path: Path, fast: bool, restores_op_determinism) -> None:
    """With --fast the resume must complete; matching the uninterrupted run is claimed only without it."""
    cfg = training_config(small_epoch, "RESUME", "KR_CNN_S2", keras_model={
        "name": "KR_CNN_S2", "filters": [16, 16], "kernel_sizes": [5, 3], "activations": ["relu", "relu"]})
    write_batch(small_epoch, "CNN", "KR_RESUME", [cfg])
    reference = Workspace(tmp_path / "reference")
    shutil.copytree(small_epoch.root, reference.root)

    command = [sys.executable, "-m", "epoch_builder.cli", "train-regression-batch", "--workspace",
               str(small_epoch.root), "--category", "CNN", "--batch", "KR_RESUME", "--max-epochs", "12",
               "--events", str(tmp_path / "events.jsonl")] + (["--fast"] if fast else [])
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    seen = []
    try:
        for line in proc.stderr:  # type: ignore[union-attr]  # the timestamped messages
            seen.append(line)
            if "epoch 3/12" in line:
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    certificate = small_epoch.epoch().regressions_dir / "RESUME" / "certificate.json"
    assert not certificate.exists()
    state = read_json(small_epoch.epoch().dir / CHECKPOINTS_DIR / "RESUME" / "state.json")
    assert state["epoch"] >= 3
    progress = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    # One event per completed epoch, in order, never ahead of the checkpoint; the kill lands right after the
    # "epoch 3/12" line, so epoch 3's event (emitted just after that line) may or may not be there.
    assert [e["epoch"] for e in progress] == list(range(1, len(progress) + 1))
    assert 2 <= len(progress) <= state["epoch"]
    assert all(e["stage"] == "train-regression-batch" and e["model"] == "RESUME" and e["done"] == 0 and e["number"] == 1
               and e["total"] == 1
               and e["loss"] > 0 and e["val_loss"] > 0 and "eta_s" in e for e in progress)

    lines: list[str] = []
    resumed = train_batch(small_epoch, "CNN", "KR_RESUME", TrainingOptions(max_epochs=12, fast=fast), log=lines.append)[0]
    resumed_at = [line for line in lines if "resumed at epoch" in line]
    assert resumed_at and int(resumed_at[0].split("resumed at epoch ")[1].split()[0]) == state["epoch"] > 0
    assert resumed["resumed_from_epochs"] == [state["epoch"]]
    assert resumed["epochs"] == 12 == len(resumed["training_history"]["loss"])
    assert read_json(certificate) == resumed
    assert resumed["training_mode"] == {"op_determinism": not fast, "deterministic_epochs": 0 if fast else 12, "pack_size": 1, "mixed_precision": False, "threads": POOLS}
    if fast:
        return

    uninterrupted = train_batch(reference, "CNN", "KR_RESUME", TrainingOptions(max_epochs=12), log=quiet)[0]
    assert resumed["training_history"] == uninterrupted["training_history"]
    assert resumed["test_evaluation"] == uninterrupted["test_evaluation"]
    assert resumed["discovery"] == uninterrupted["discovery"]
    # The histories exported for TensorBoard and as CSV are the same as the uninterrupted run's too.
    from tests.test_tensorboard import read_events

    resumed_paths, reference_paths = small_epoch.epoch(), reference.epoch()
    assert (resumed_paths.regression_history_file("RESUME").read_bytes()
            == reference_paths.regression_history_file("RESUME").read_bytes())
    assert (read_events(resumed_paths.regression_events_file("RESUME"))
            == read_events(reference_paths.regression_events_file("RESUME")))
    assert len(list(resumed_paths.regression_tensorboard_dir("RESUME").iterdir())) == 1


def test_a_truncated_checkpoint_names_the_file_and_what_to_do(tmp_path: Path) -> None:
    from epoch_builder.regressions.training import _read_npz, _write_npz

    path = tmp_path / "RESUME" / "weights_e3.npz"
    _write_npz(path, {"w0000": np.arange(1000.0), "o0000": np.ones(10)})
    assert set(_read_npz(path)) == {"w0000", "o0000"}
    data = path.read_bytes()
    for cut in (len(data) // 2, 40, len(data) - 8):
        path.write_bytes(data[:cut])
        with pytest.raises(EpochBuilderError, match=f"{path}: unreadable checkpoint .*; delete {path.parent} to "
                                                    "restart this model") as error:
            _read_npz(path)
        assert "\n" not in str(error.value)


def test_the_category_comes_from_the_batch_file(small_epoch: Workspace, capsys) -> None:
    """train-regression-batch without --category: the batch file says which; given, it is checked."""
    write_batch(small_epoch, "DNN", "KR_DNN_9_9", [training_config(small_epoch, "CAT0", "KR_DNN_S2")])
    assert main(["train-regression-batch", "--workspace", str(small_epoch.root), "--batch", "KR_DNN_9_9",
                 "--max-epochs", "1"]) == 0
    assert (small_epoch.epoch().regressions_dir / "CAT0" / "certificate.json").is_file()
    capsys.readouterr()
    assert main(["train-regression-batch", "--workspace", str(small_epoch.root), "--batch", "KR_DNN_9_9",
                 "--category", "GRU"]) == 2
    assert "batch 'KR_DNN_9_9' not found" in capsys.readouterr().err
    write_batch(small_epoch, "GRU", "KR_DNN_9_9", [training_config(small_epoch, "CAT1", "KR_GRU_S2")])
    assert main(["train-regression-batch", "--workspace", str(small_epoch.root), "--batch", "KR_DNN_9_9"]) == 2
    assert "exists in several categories (DNN, GRU); pass --category" in capsys.readouterr().err
    undeclared = small_epoch.root / "loose.json"
    undeclared.write_text(json.dumps({"name": "LOOSE", "configs": [training_config(small_epoch, "CAT2", "KR_DNN_S2")]}))
    assert main(["train-regression-batch", "--workspace", str(small_epoch.root), "--batch", str(undeclared),
                 "--max-epochs", "1"]) == 0  # no category in the file: its configs' family
    assert (small_epoch.epoch().regressions_dir / "CAT2" / "certificate.json").is_file()


# --- --fast: op determinism off ------------------------------------------------------------

class Interrupted(Exception):
    """Stands in for a kill between two epochs: raised from the log line of epoch ``at``."""


def interrupt_at(at: int):
    def log(line: str) -> None:
        if f" epoch {at}/" in line:
            raise Interrupted(line)
    return log


@pytest.fixture
def restores_op_determinism():
    """A --fast run switches the whole process; the tests after it in this worker expect the default."""
    yield
    from epoch_builder.regressions.runtime import configure_tensorflow

    configure_tensorflow(op_determinism=True)


def test_the_certificate_records_the_training_mode_and_the_log_says_it(
        small_epoch: Workspace, capsys, restores_op_determinism) -> None:
    from epoch_builder.regressions.training import op_determinism_enabled

    write_batch(small_epoch, "DNN", "KR_MODES", [training_config(small_epoch, "DETERMINISTIC", "KR_DNN_S2")])
    lines: list[str] = []
    normal = train_batch(small_epoch, "DNN", "KR_MODES", TrainingOptions(max_epochs=2), log=lines.append)[0]
    assert normal["training_mode"] == {"op_determinism": True, "deterministic_epochs": 2, "pack_size": 1, "mixed_precision": False, "threads": POOLS}
    assert "op determinism on (repeatable)" in lines[0]

    write_batch(small_epoch, "DNN", "KR_FAST", [training_config(small_epoch, "FAST", "KR_DNN_S2")])
    capsys.readouterr()
    assert main(["train-regression-batch", "--workspace", str(small_epoch.root), "--batch", "KR_FAST",
                 "--max-epochs", "2", "--fast", "--json"]) == 0
    printed = capsys.readouterr()
    assert json.loads(printed.out)[0]["id"] == "FAST"
    assert "batch KR_FAST (DNN): 1 model(s), device " in printed.err
    assert "op determinism off (--fast: not repeatable)" in printed.err
    fast = read_json(small_epoch.epoch().regressions_dir / "FAST" / "certificate.json")
    assert fast["training_mode"] == {"op_determinism": False, "deterministic_epochs": 0, "pack_size": 1, "mixed_precision": False, "threads": POOLS}
    assert not op_determinism_enabled()
    # a plain run switches it back on for the process, and its certificates say true again
    again = train_batch(small_epoch, "DNN", write_batch(small_epoch, "DNN", "KR_AGAIN", [
        training_config(small_epoch, "AGAIN", "KR_DNN_S2")]), TrainingOptions(max_epochs=1), log=quiet)[0]
    assert op_determinism_enabled() and again["training_mode"] == {"op_determinism": True, "deterministic_epochs": 1, "pack_size": 1, "mixed_precision": False, "threads": POOLS}


def test_a_fast_checkpoint_resumes_only_with_fast(small_epoch: Workspace, restores_op_determinism) -> None:
    write_batch(small_epoch, "DNN", "KR_RF", [training_config(small_epoch, "RF", "KR_DNN_S2")])
    with pytest.raises(Interrupted):
        train_batch(small_epoch, "DNN", "KR_RF", TrainingOptions(max_epochs=4, fast=True), log=interrupt_at(2))
    state_file = small_epoch.epoch().dir / CHECKPOINTS_DIR / "RF" / "state.json"
    assert read_json(state_file)["op_determinism"] is False and read_json(state_file)["epoch"] == 2

    with pytest.raises(EpochBuilderError) as refused:
        train_batch(small_epoch, "DNN", "KR_RF", TrainingOptions(max_epochs=4), log=quiet)
    message = str(refused.value)
    assert message == (f"{state_file}: checkpoint of RF was written with --fast (op determinism off); rerun with "
                       f"--fast to resume it, or delete {state_file.parent} to retrain it deterministically")
    assert read_json(state_file)["epoch"] == 2  # the refusal changed nothing

    lines: list[str] = []
    cert = train_batch(small_epoch, "DNN", "KR_RF", TrainingOptions(max_epochs=4, fast=True), log=lines.append)[0]
    assert any("RF: resumed at epoch 2 from checkpoint" in line for line in lines)
    assert cert["epochs"] == 4 and cert["resumed_from_epochs"] == [2]
    assert cert["training_mode"] == {"op_determinism": False, "deterministic_epochs": 0, "pack_size": 1, "mixed_precision": False, "threads": POOLS}


def test_a_deterministic_checkpoint_may_go_on_with_fast_and_is_then_certified_fast(
        small_epoch: Workspace, restores_op_determinism) -> None:
    write_batch(small_epoch, "DNN", "KR_DF", [training_config(small_epoch, "DF", "KR_DNN_S2")])
    with pytest.raises(Interrupted):
        train_batch(small_epoch, "DNN", "KR_DF", TrainingOptions(max_epochs=4), log=interrupt_at(2))
    # A checkpoint from before --fast existed has no mode: it was deterministic.
    state_file = small_epoch.epoch().dir / CHECKPOINTS_DIR / "DF" / "state.json"
    state = read_json(state_file)
    assert state.pop("op_determinism") is True
    del state["deterministic_epochs"]
    atomic_write_json(state_file, state)

    lines: list[str] = []
    with pytest.raises(Interrupted):  # resumed with --fast, interrupted again: the checkpoint is now a fast one
        train_batch(small_epoch, "DNN", "KR_DF", TrainingOptions(max_epochs=4, fast=True),
                    log=lambda line: (lines.append(line), interrupt_at(3)(line)))
    assert any("DF: resumed at epoch 2 from checkpoint; its 2 epoch(s) so far were deterministic, --fast from here on"
               in line for line in lines)
    with pytest.raises(EpochBuilderError, match="checkpoint of DF was written with --fast"):
        train_batch(small_epoch, "DNN", "KR_DF", TrainingOptions(max_epochs=4), log=quiet)
    cert = train_batch(small_epoch, "DNN", "KR_DF", TrainingOptions(max_epochs=4, fast=True), log=quiet)[0]
    assert cert["epochs"] == 4 and cert["resumed_from_epochs"] == [2, 3]
    assert cert["training_mode"] == {"op_determinism": False, "deterministic_epochs": 2, "pack_size": 1, "mixed_precision": False, "threads": POOLS}


def test_fast_is_in_the_help(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(["train-regression-batch", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--fast" in text and "op determinism off" in text
    assert "a resumed model no longer equals an uninterrupted one" in text
