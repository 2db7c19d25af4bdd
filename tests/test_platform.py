"""The Epoch File against the trading platform's contract (docs/platform.md).

* The installer's checks, restated here independently of epoch_builder.platform: unzip,
  read the three JSON members at the root, list the ``*.h5`` files, epoch id, one ``.h5``
  and one certificate per model regression.
* The real loader: TensorFlow 2.10 in its own Python 3.10 environment (.venv-tf210, made by
  ``make platform-env``) loads every family's ``.h5`` with ``load_model_from_hdf5``, reads its
  attributes, and predicts what our Keras 3 model predicts.
* Live parity: the platform's feature computation from raw closes, in TensorFlow 2.10, equals
  our ``features.json`` for every test window the platform accepts.
* verify-epoch refuses a missing ``.h5``, a wrong attribute, a truncated member; a model that
  fails its check stops export before the workspace is archived.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from epoch_builder.cli import main as cli_main
from epoch_builder.errors import EpochBuilderError
from epoch_builder.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
TF210_PYTHON = REPO / ".venv-tf210" / "bin" / "python"
RUNTIME = REPO / "tests" / "epoca_runtime" / "platform_runtime.py"
FEATURE_STEP = 0.01 / 0.99  # one 0.01 rounding step of the percentage change, as a feature


def _tf210_ready() -> bool:
    return TF210_PYTHON.is_file() and any(TF210_PYTHON.parent.parent.glob(".installed-*"))


needs_tf210 = pytest.mark.skipif(
    not _tf210_ready(),
    reason="no TensorFlow 2.10 environment in .venv-tf210: run `make platform-env` (needs python3.10 on PATH or "
           "under pyenv)")


def run_platform(command: str, job: dict[str, Any], tmp: Path) -> dict[str, Any]:
    job_file, out_file = tmp / f"{command}-job.json", tmp / f"{command}-out.json"
    job_file.write_text(json.dumps(job))
    done = subprocess.run([str(TF210_PYTHON), str(RUNTIME), command, str(job_file), str(out_file)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out_file.read_text())


def cli(ws: Workspace, *args: str) -> int:
    return cli_main([*args[:1], "--workspace", str(ws.root), *args[1:]])


# --- a real export of a model that mixes families ----------------------------------------


@pytest.fixture(scope="module")
def exported(_small_epoch_template: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The demo's pipeline on the small epoch: 8 regressions of all six families, top 6 into
    4-regression models (pcr 1), sweep, build, export the best."""
    root = tmp_path_factory.mktemp("platform") / "workspace"
    shutil.copytree(_small_epoch_template, root)
    ws = Workspace(root)
    grid = Path(str(resources.files("epoch_builder") / "data" / "demo_grid.json"))
    assert cli(ws, "generate-regression-training-configs", "--grid", str(grid)) == 0
    paths = ws.epoch()
    for category_dir in sorted(p for p in paths.regression_training_configs_dir.iterdir() if p.name != "UNIT_TEST"):
        for batch in sorted(category_dir.glob("*.json")):
            assert cli(ws, "train-regression-batch", "--category", category_dir.name, "--batch", batch.name,
                       "--max-epochs", "30") == 0
    assert cli(ws, "initialize-prediction-models", "--top", "6", "--by", "test_loss", "--allow-few-regressions",
               "--pcr", "1", "--regressions-per-model", "4") == 0
    for batch in sorted(paths.configs_dir.glob("_SMALL_*.json")):
        assert cli(ws, "find-profitable-configs", "--batch", batch.name) == 0
    assert cli(ws, "build-prediction-models", "--top", "3", "--no-progress") == 0
    build = json.loads(paths.build_file.read_text())
    assert build, "the demo grid gives profitable models on the sample"
    config = ws.load_epoch_config()
    listed = models_list(ws)
    assert [row["id"] for row in listed] == [c["id"] for c in build]
    assert listed[0]["profit"] == round(build[0]["backtest"]["profit"], 2) and len(listed[0]["families"]) >= 2
    assert cli(ws, "export-epoch", "--best") == 0  # the first of build.json: the most profitable
    return {"ws": ws, "paths": paths, "file": paths.epoch_file, "model": build[0], "config": config}


def models_list(ws: Workspace) -> list[dict[str, Any]]:
    import contextlib

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(["models", "list", "--workspace", str(ws.root), "--json"]) == 0
    table = io.StringIO()
    with contextlib.redirect_stdout(table):
        assert cli_main(["models", "list", "--workspace", str(ws.root), "--top", "1"]) == 0
    lines = table.getvalue().splitlines()
    assert len(lines) == 3 and "families" in lines[0] and "probability of backtest overfitting" in lines[2]
    return json.loads(out.getvalue())


def unzip(epoch_file: Path, target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(epoch_file) as archive:
        archive.extractall(target)
    return target


def installer_accepts(directory: Path, epoch_id: str) -> list[str]:
    """The platform installer's rules on an unzipped Epoch File; returns the regression ids."""
    epoch_config = json.loads((directory / "epoch.json").read_text())
    certificate = json.loads((directory / "prediction_model_certificate.json").read_text())
    regression_certificates = json.loads((directory / "regression_certificates.json").read_text())
    model_files = [p.name for p in directory.iterdir() if p.is_file() and p.suffix == ".h5"]
    assert isinstance(epoch_config, dict) and isinstance(certificate, dict)
    assert isinstance(regression_certificates, list) and regression_certificates
    assert model_files
    assert epoch_config["id"] == epoch_id
    ids = [r["id"] for r in certificate["model"]["regressions"]]
    for rid in ids:
        assert f"{rid}.h5" in model_files
        assert [c for c in regression_certificates if c["id"] == rid]
    return ids


@pytest.mark.slow
def test_exported_file_passes_the_installer_checks(exported: dict[str, Any], tmp_path: Path) -> None:
    directory = unzip(exported["file"], tmp_path / "epoch")
    ids = installer_accepts(directory, exported["config"].id)
    families = {c["category"] for c in json.loads((directory / "regression_certificates.json").read_text())}
    assert len(families) >= 2, f"the exported model should mix families, got {families}"
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        ["epoch.json", "prediction_model_certificate.json", "regression_certificates.json", "manifest.json",
         *(f"{rid}.h5" for rid in ids)])
    # every key the platform's prediction service reads from the epoch config
    epoch_config = json.loads((directory / "epoch.json").read_text())
    for key in ("id", "seed", "sma_window_size", "highest_price_sma", "lowest_price_sma", "regression_lookback",
                "regression_predictions"):
        assert key in epoch_config
    model = json.loads((directory / "prediction_model_certificate.json").read_text())["model"]
    for key in ("id", "price_change_requirement", "min_sum_function", "min_sum_adjustment_factor",
                "min_increase_sum", "min_decrease_sum", "regressions"):
        assert key in model


@pytest.mark.slow
@needs_tf210
def test_live_features_in_tensorflow_2_10_equal_ours(exported: dict[str, Any], tmp_path: Path) -> None:
    from epoch_builder import candles

    paths, config = exported["paths"], exported["config"]
    directory = unzip(exported["file"], tmp_path / "epoch")
    ours = json.loads((paths.assets_dir / "features.json").read_text())
    closes = candles.read_candles(paths.dir / "candlesticks" / "prediction_candlesticks.parquet")["c"].to_numpy()
    np.save(tmp_path / "closes.npy", closes)
    lookback, sma = config.regression_lookback, config.sma_window_size
    ids = [r["id"] for r in exported["model"]["model"]["regressions"]]
    windows_count = len(ours[ids[0]])
    # feature w sees SMA rows [T + w, T + w + lookback); the platform needs the sma - 1 closes before them
    start = config.test_ds_start_index
    windows = [[start + w - (sma - 1), start + w + lookback] for w in range(windows_count)]
    live = run_platform("features", {"dir": str(directory), "closes": str(tmp_path / "closes.npy"),
                                     "windows": windows}, tmp_path)
    accepted = [w for w in range(windows_count) if live["features"][ids[0]][w] is not None]
    assert len(accepted) >= windows_count * 0.5, "most test windows lie inside the epoch's SMA range"
    compared = off_by_a_step = 0
    for rid in ids:
        for w in accepted:
            theirs, mine = live["features"][rid][w], ours[rid][w]
            compared += 1
            if theirs != mine:
                assert abs(theirs - mine) <= FEATURE_STEP + 1e-6, (rid, w, theirs, mine)
                off_by_a_step += 1
    print(f"live parity: {compared} features ({len(accepted)} of {windows_count} windows accepted, "
          f"{len(live['refused'])} refused at the SMA bounds, {len(ids)} regressions): "
          f"{off_by_a_step} differ by one rounding step")
    assert off_by_a_step <= 0.01 * compared


LAYER_CASES = [
    ({"name": "KR_DNN_S5", "units": [16, 12, 8, 8, 6], "activations": ["relu", "tanh", "sigmoid", "elu", "selu"]}),
    ({"name": "KR_DNN_S4", "units": [16, 8, 8, 6], "activations": ["gelu", "swish", "softplus", "linear"]}),
    ({"name": "KR_CNN_S2", "filters": [6, 4], "kernel_sizes": [5, 3], "activations": ["relu", "tanh"]}),
    ({"name": "KR_CNN_MP_S3", "filters": [6, 4, 4], "kernel_sizes": [3, 3, 3], "pool_sizes": [2, 2, 2],
      "activations": ["relu", "relu", "elu"]}),
    ({"name": "KR_CDNN_S2", "filters": [6], "kernel_sizes": [3], "units": [12, 8], "activations": ["relu", "relu", "tanh"]}),
    ({"name": "KR_CDNN_MP_S3", "filters": [6], "kernel_sizes": [3], "pool_sizes": [2], "units": [12, 8, 8],
      "activations": ["relu", "selu", "relu", "linear"]}),
    ({"name": "KR_LSTM_S2", "units": [8, 6]}),
    ({"name": "KR_LSTM_S3", "units": [8, 6, 4], "activations": ["tanh", "relu", "sigmoid"]}),
    ({"name": "KR_CLSTM_S2", "filters": [6], "kernel_sizes": [3], "units": [8, 6], "activations": ["relu"]}),
    ({"name": "KR_CLSTM_MP_S2", "filters": [6], "kernel_sizes": [5], "pool_sizes": [2], "units": [8, 6],
      "activations": ["tanh"]}),
    ({"name": "KR_GRU_S2", "units": [8, 6]}),
    ({"name": "KR_GRU_S3", "units": [8, 6, 4], "activations": ["tanh", "elu", "relu"]}),
]


@needs_tf210
def test_every_family_loads_and_predicts_in_tensorflow_2_10(tmp_path: Path) -> None:
    from epoch_builder.regressions.architectures import build_model
    from epoch_builder.regressions.legacy_h5 import write_legacy_h5

    lookback, predictions = 32, 8
    rng = np.random.default_rng(7)
    inputs = rng.uniform(0.01, 1.0, (64, lookback))
    np.save(tmp_path / "inputs.npy", inputs)
    expected, jobs = {}, []
    for config in LAYER_CASES:
        model = build_model(config, lookback, predictions, name=config["name"])
        model.set_weights([rng.normal(0, 0.4, w.shape).astype(np.float32) for w in model.get_weights()])
        path = tmp_path / f"{config['name']}.h5"
        write_legacy_h5(model, path, regression_id=f"{config['name']}_id", description=f"{config['name']} ü",
                        lookback=lookback, predictions=predictions)
        expected[str(path)] = (config, model, np.asarray(model(inputs.astype(np.float32), training=False)))
        jobs.append({"path": str(path), "inputs": str(tmp_path / "inputs.npy")})
    result = run_platform("load", {"models": jobs}, tmp_path)
    seen_layers: set[str] = set()
    for entry in result["models"]:
        config, model, ours = expected[entry["path"]]
        assert entry["model_class"] == "Sequential"
        assert entry["attrs"] == {"id": f"{config['name']}_id", "description": f"{config['name']} ü",
                                  "lookback": lookback, "predictions": predictions}
        assert entry["attr_types"] == {"id": "str", "description": "str", "lookback": "int64", "predictions": "int64"}
        theirs = np.load(entry["predictions"])
        assert theirs.shape == ours.shape
        np.testing.assert_allclose(theirs, ours, rtol=0, atol=2e-5, err_msg=config["name"])
        seen_layers.update(entry["layers"])
    assert seen_layers >= {"Reshape", "Dense", "Conv1D", "MaxPooling1D", "Flatten", "LSTM", "GRU"}


# --- verify-epoch refuses what the platform cannot install ---------------------------------


def rewrite(source: Path, target: Path, change: dict[str, bytes | None], fix_manifest: bool = True) -> Path:
    """Copy an Epoch File with members replaced (bytes) or dropped (None); the manifest follows."""
    import hashlib

    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    for name, data in change.items():
        if data is None:
            members.pop(name, None)
        else:
            members[name] = data
    if fix_manifest:
        manifest = json.loads(members["manifest.json"])
        manifest["members"] = {n: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)}
                               for n, d in members.items() if n != "manifest.json"}
        members["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return target


def h5_with(original: bytes, **attrs: Any) -> bytes:
    import h5py

    buffer = io.BytesIO(original)
    with h5py.File(buffer, "r+") as f:
        for key, value in attrs.items():
            f.attrs[key] = value
    return buffer.getvalue()


@pytest.mark.slow
def test_verify_refuses_what_the_platform_cannot_install(exported: dict[str, Any], tmp_path: Path) -> None:
    from epoch_builder.export import verify_epoch_file

    source = exported["file"]
    epoch_id = exported["config"].id
    rid = exported["model"]["model"]["regressions"][0]["id"]
    member = f"{rid}.h5"
    with zipfile.ZipFile(source) as archive:
        h5 = archive.read(member)

    def refused(name: str, change: dict[str, bytes | None], match: str, **kwargs: Any) -> None:
        target = rewrite(source, tmp_path / f"{name}.zip", change, **kwargs)
        with pytest.raises(EpochBuilderError, match=match):
            verify_epoch_file(target, epoch_id=epoch_id)

    assert verify_epoch_file(source).regressions  # the original passes
    refused("missing-h5", {member: None}, f"member {member} .*is missing")
    refused("wrong-id", {member: h5_with(h5, id="KR_SOMETHING_ELSE")}, f"member {member}: attribute id is")
    refused("bytes-id", {member: h5_with(h5, id=np.bytes_(rid.encode()))}, "attribute id must be a UTF-8 string")
    refused("string-lookback", {member: h5_with(h5, lookback="16")}, "attribute lookback must be a positive integer")
    refused("other-lookback", {member: h5_with(h5, lookback=np.int64(17))}, "attribute lookback is 17")
    refused("not-h5", {member: b"not an hdf5 file"}, f"{member}: not a readable HDF5 file")
    refused("no-certificate", {"regression_certificates.json": json.dumps(
        [c for c in json.loads(zipfile.ZipFile(source).read("regression_certificates.json")) if c["id"] != rid]
    ).encode()}, f"no certificate for regression {rid}")
    refused("missing-field", {"prediction_model_certificate.json": json.dumps(
        {**exported["model"], "backtest": {k: v for k, v in exported["model"]["backtest"].items() if k != "fees"}}
    ).encode()}, "field backtest.fees is missing")
    refused("tampered", {member: h5[:-10] + b"0123456789"}, f"member {member} does not match its SHA-256",
            fix_manifest=False)
    with pytest.raises(EpochBuilderError, match="has epoch id '_SMALL', the file is for '_OTHER'"):
        verify_epoch_file(source, epoch_id="_OTHER")
    renamed = tmp_path / "_OTHER.zip"
    shutil.copy(source, renamed)
    with pytest.raises(EpochBuilderError, match="the file is for '_OTHER'"):
        verify_epoch_file(renamed)
    # a truncated file: every cut is refused with a one-line error
    data = source.read_bytes()
    for cut in (len(data) // 3, len(data) // 2, len(data) - 30):
        truncated = tmp_path / f"_SMALL_cut{cut}.zip"
        truncated.write_bytes(data[:cut])
        with pytest.raises(EpochBuilderError) as error:
            verify_epoch_file(truncated, epoch_id=epoch_id)
        assert "\n" not in str(error.value) and ("not a valid zip" in str(error.value) or "truncated" in str(error.value))


@pytest.mark.slow
def test_a_damaged_model_stops_export_before_the_workspace_moves(
        exported: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """export-epoch checks every .h5 (and the whole file) before it archives candlesticks/ and config/."""
    from epoch_builder.regressions import legacy_h5

    # the exported workspace, un-archived: the epoch's config and candles back at the root
    root = tmp_path / "workspace"
    shutil.copytree(exported["ws"].root, root)
    ws = Workspace(root)
    epoch_dir = root / exported["config"].id
    (epoch_dir / f"{exported['config'].id}.zip").unlink()
    shutil.move(str(epoch_dir / "candlesticks"), str(root / "candlesticks"))
    (root / "config").mkdir(exist_ok=True)
    shutil.move(str(epoch_dir / "epoch.json"), str(root / "config" / "epoch.json"))
    original = legacy_h5.write_legacy_h5

    def damaged(model: Any, target: Path, **attrs: Any) -> None:
        original(model, target, **attrs)
        import h5py

        with h5py.File(target, "r+") as f:  # one weight zeroed: it loads, but predicts something else
            group = f["model_weights"]
            first = group[group.attrs["layer_names"][0].decode()]
            name = first.attrs["weight_names"][0].decode()
            first[name][...] = 0

    monkeypatch.setattr(legacy_h5, "write_legacy_h5", damaged)
    assert cli(ws, "export-epoch", "--model-id", exported["model"]["id"]) == 1
    assert "predictions differ from the trained model's" in capsys.readouterr().err
    assert ws.epoch_config_file.is_file() and ws.candlesticks_file.is_file()
    assert not (epoch_dir / f"{exported['config'].id}.zip").exists()
    assert not list(epoch_dir.glob(".*.tmp"))
    monkeypatch.setattr(legacy_h5, "write_legacy_h5", original)
    assert cli(ws, "export-epoch", "--model-id", exported["model"]["id"]) == 0  # rerun: it goes through


def _default_grid_models() -> list[dict[str, Any]]:
    """Every template of the default grid at the default profile's sizes, with its largest variation
    (the most units + filters): all 36 family x pooling x depth combinations the original trains."""
    import random

    from epoch_builder.regressions.grid import expand_category, load_grid

    grid = load_grid(None)
    largest: dict[str, dict[str, Any]] = {}
    for category in grid["networks"]:
        for cfg in expand_category(grid, category, "_GRID", 128, 32, random.Random(1)):
            model = cfg["keras_model"]
            size = sum(model.get("units") or []) + sum(model.get("filters") or [])
            best = largest.get(model["name"])
            if best is None or size > sum(best.get("units") or []) + sum(best.get("filters") or []):
                largest[model["name"]] = model
    return list(largest.values())


@pytest.mark.slow
@needs_tf210
def test_every_default_grid_template_at_default_size_loads_in_tensorflow_2_10(tmp_path: Path) -> None:
    import keras

    from epoch_builder.regressions.architectures import build_model
    from epoch_builder.regressions.legacy_h5 import write_legacy_h5

    lookback, predictions = 128, 32  # the default profile
    models = _default_grid_models()
    assert len(models) == 36
    rng = np.random.default_rng(3)
    inputs = rng.uniform(0.01, 1.0, (8, lookback))
    np.save(tmp_path / "inputs.npy", inputs)
    expected, jobs = {}, []
    for number, config in enumerate(models):
        model = build_model(config, lookback, predictions, name=config["name"])
        # small weights: deep relu stacks stay in range, so the comparison means something
        model.set_weights([rng.normal(0, 0.05, w.shape).astype(np.float32) for w in model.get_weights()])
        path = tmp_path / f"{config['name']}.h5"
        write_legacy_h5(model, path, regression_id=config["name"], description="", lookback=lookback,
                        predictions=predictions)
        expected[str(path)] = np.asarray(model(inputs.astype(np.float32), training=False))
        jobs.append({"path": str(path), "inputs": str(tmp_path / "inputs.npy")})
        if number % 10 == 9:
            keras.backend.clear_session()
    result = run_platform("load", {"models": jobs}, tmp_path)
    assert len(result["models"]) == len(models)
    for entry in result["models"]:
        theirs, ours = np.load(entry["predictions"]), expected[entry["path"]]
        assert theirs.shape == (8, predictions)
        scale = max(1.0, float(np.max(np.abs(ours))))
        np.testing.assert_allclose(theirs, ours, rtol=0, atol=2e-5 * scale, err_msg=entry["path"])
