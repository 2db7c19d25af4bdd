"""The prediction-model pipeline on real tiny regressions: initialize -> sweep -> build -> export -> verify.

A session-scoped workspace holds six tiny DNN regressions trained on the bundled
sample's small epoch; each test works on its own copy. They are linear DNNs with a
high learning rate and 30 epochs (~20 s in all): with 2 epochs every regression's
features saturate at +-1 (no positions at all), so nothing downstream would be tested.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from epoch_builder.cli import main as cli_main
from epoch_builder.errors import EpochBuilderError
from epoch_builder.workspace import Workspace
from tests.oracle import oracle_simulate

REPO = Path(__file__).resolve().parents[1]
TINY_GRID = {
    "description": "six tiny DNNs for the prediction-model tests",
    "batch_sizes": {"DNN": 6},
    "hyperparams": {"DNN": {
        "learning_rates": [0.01, 0.03], "optimizers": ["adam"],
        "losses": [{"loss": "mean_absolute_error", "metric": "mean_squared_error"}], "activations": ["linear"],
    }},
    "networks": {"DNN": {"KR_DNN_S2": [{"units": [8, 8]}, {"units": [16, 8]}, {"units": [16, 16]}]}},
}


def quiet(*_: object) -> None:
    pass


def train_tiny_regressions(root: Path) -> Workspace:
    """TINY_GRID's six DNNs generated and trained in ``root`` (a copy of the small epoch's workspace)."""
    from epoch_builder.regressions.grid import generate
    from epoch_builder.regressions.batch import train_batch
    from epoch_builder.regressions.options import TrainingOptions

    ws = Workspace(root)
    grid = root.parent / "tiny_grid.json"
    grid.write_text(json.dumps(TINY_GRID))
    generate(ws, grid, log=quiet)
    batch = next((ws.epoch().regression_training_configs_dir / "DNN").glob("KR_DNN_*.json"))
    train_batch(ws, "DNN", batch, TrainingOptions(max_epochs=30), log=quiet)
    assert len(regression_ids(ws)) == 6
    return ws


def regression_ids(ws: Workspace) -> list[str]:
    return sorted(p.parent.name for p in ws.epoch().regressions_dir.glob("*/certificate.json"))


def cli(ws: Workspace, *args: str) -> int:
    return cli_main([*args[:1], "--workspace", str(ws.root), *args[1:]])


def initialize(ws: Workspace, *extra: str) -> int:
    return cli(ws, "initialize-prediction-models", "--regressions", ",".join(regression_ids(ws)),
               "--allow-few-regressions", "--pcr", "0.3,0.5,1", "--regressions-per-model", "4",
               "--batch-size", "100", *extra)


def test_assets_from_real_regressions(trained: Workspace) -> None:
    from epoch_builder.prediction.assets import load_test_range, range_labels
    from epoch_builder.regressions.inference import load_regression, predict_features

    assert initialize(trained) == 0
    assets = trained.epoch().assets_dir
    features = json.loads((assets / "features.json").read_text())
    labels = json.loads((assets / "labels.json").read_text())
    test_range = load_test_range(trained)
    assert list(features) == regression_ids(trained)
    for rid, values in features.items():
        assert len(values) == test_range.n_windows
        assert all(-1 <= v <= 1 and round(v, 6) == v for v in values)
        direct = predict_features(load_regression(trained.epoch().regressions_dir / rid), test_range.normalized_close)
        assert np.array_equal(np.asarray(direct, dtype=np.float64), np.asarray(values))
    assert any(len(set(v)) > 3 for v in features.values())  # real predictions, not a constant
    assert sorted(labels) == ["0.3", "0.5", "1"]
    assert labels["1"] == range_labels(test_range, 1.0).tolist()
    # 3 pcr x 2 msf x 3 msaf x C(6,4) = 270 configurations in batches of 100
    batches = sorted(trained.epoch().configs_dir.glob("_SMALL_*_3.json"))
    assert [len(json.loads(b.read_text())) for b in batches] == [100, 100, 70]
    assert "270" in (trained.epoch().configs_dir / "configs_receipt.txt").read_text()


def test_selection_errors(trained: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    ids = regression_ids(trained)
    assert cli(trained, "initialize-prediction-models", "--regressions", ",".join(ids)) == 2
    assert "6 regression(s) selected; at least 16 are required" in capsys.readouterr().err
    assert cli(trained, "initialize-prediction-models", "--regressions", "KR_NOPE,"+ids[0], "--allow-few-regressions",
               "--regressions-per-model", "1") == 2
    assert "unknown regression id 'KR_NOPE'" in capsys.readouterr().err
    assert initialize(trained) == 0
    assert initialize(trained) == 1
    assert "pass --force" in capsys.readouterr().err
    assert initialize(trained, "--force") == 0


def test_top_n_by_metric_selects_through_the_ranking(trained: Workspace) -> None:
    from epoch_builder.regressions.rank import rank_regressions

    ranked = rank_regressions(trained, "test_loss", 5)
    expected = [r if isinstance(r, str) else r["id"] for r in ranked]
    assert cli(trained, "initialize-prediction-models", "--top", "5", "--by", "test_loss", "--allow-few-regressions",
               "--pcr", "1", "--regressions-per-model", "2") == 0
    assert list(json.loads((trained.epoch().assets_dir / "features.json").read_text())) == expected


def _sweep_all(ws: Workspace) -> int:
    batches = sorted(ws.epoch().configs_dir.glob("_SMALL_*.json"))
    for batch in batches:
        assert cli(ws, "find-profitable-configs", "--batch", batch.name, "--workers", "2") == 0
    return sum(len(json.loads(p.read_text())) for p in ws.epoch().profitable_configs_dir.glob("*.json"))


def _oracle_backtest(ws: Workspace, model: dict[str, Any]) -> dict[str, Any]:
    from epoch_builder.prediction.assets import load_backtest_data

    data, _ = load_backtest_data(ws)
    config = {"pcr": model["price_change_requirement"], "msf": model["min_sum_function"],
              "msaf": model["min_sum_adjustment_factor"], "ri": [r["id"] for r in model["regressions"]]}
    candles = {name: getattr(data, name) for name in ("ot", "ct", "o", "h", "l")}
    return oracle_simulate(candles, data.k, data.features, data.labels, config, data.position_size, data.leverage,
                           data.exchange_fee, data.idle_minutes)


def test_sweep_build_export_verify_round_trip(trained: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    assert initialize(trained) == 0
    profitable = _sweep_all(trained)
    assert profitable > 0, "the tiny regressions should give some profitable configuration"
    assert cli(trained, "build-prediction-models", "--top", "3", "--no-progress") == 0
    paths = trained.epoch()
    build = json.loads(paths.build_file.read_text())
    assert 1 <= len(build) == min(3, profitable)
    profits = [c["backtest"]["profit"] for c in build]
    assert profits == sorted(profits, reverse=True)
    for cert in build:
        assert cert["id"].startswith("_SMALL_") and cert["model"]["id"] == cert["id"]
        backtest = cert["backtest"]
        assert backtest["accuracy"] >= 55 and backtest["profit"] > 0
        assert [r["id"] for r in cert["model"]["regressions"]] and all("id" in r for r in cert["model"]["regressions"])
        assert backtest["balance_history"][0] == backtest["initial_balance"]
        assert len(backtest["balance_history"]) == len(backtest["positions"]) + 1
        assert set(cert["discovery"]) >= {"increase_num", "decrease_num", "accuracy"}
        # the certificate's figures are the per-candle oracle's
        oracle = _oracle_backtest(trained, cert["model"])
        assert backtest["final_balance"] == oracle["final_balance"]
        assert backtest["balance_history"] == oracle["balance_history"]
        assert [(p["t"], p["ot"], p["op"], p["ct"], p["cp"], p["o"]) for p in backtest["positions"]] == [
            (p["t"], p["ot"], p["op"], p["ct"], p["cp"], p["o"]) for p in oracle["positions"]]
        assert cert["model"]["min_increase_sum"] == oracle["min_increase_sum"]
        lowest_after = [min(backtest["balance_history"][i:]) for i in range(len(backtest["balance_history"]))]
        worst = min((round(max((low - b) / b * 100, -100), 2) for b, low in zip(backtest["balance_history"], lowest_after)),
                    default=0.0)
        assert backtest["max_drawdown"] == min(worst, 0.0)

    # models list marks a model whose regressions --search halving stopped early
    from tests.test_regressions_search import _stop

    _stop(trained, build[0]["model"]["regressions"][0]["id"], 1)
    capsys.readouterr()
    assert cli_main(["models", "list", "--workspace", str(trained.root)]) == 0
    shown = capsys.readouterr()
    first = next(line for line in shown.out.splitlines() if build[0]["id"] in line)
    assert first.rstrip().endswith("*"), first
    marked = sum(1 for c in build if build[0]["model"]["regressions"][0]["id"] in [r["id"] for r in c["model"]["regressions"]])
    assert f"* {marked} model(s) use regressions that --search halving stopped early" in shown.out + shown.err
    assert cli_main(["models", "list", "--workspace", str(trained.root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["search_stopped"] == 1

    model_id = build[0]["id"]
    capsys.readouterr()
    assert cli(trained, "export-epoch", "--model-id", "_SMALL_nope") == 2
    assert "model id '_SMALL_nope' is not in" in capsys.readouterr().err
    assert cli(trained, "export-epoch", "--model-id", model_id) == 0
    epoch_file = paths.epoch_file
    assert epoch_file.is_file()
    # seed behaviour: candlesticks and the epoch config move into the epoch directory
    assert not trained.candlesticks_dir.exists() and (paths.dir / "candlesticks" / "candlesticks.parquet").is_file()
    assert not trained.epoch_config_file.exists() and (paths.dir / "epoch.json").is_file()
    capsys.readouterr()
    assert cli(trained, "export-epoch", "--model-id", model_id) == 1
    assert "no active epoch" in capsys.readouterr().err
    # Killed between the two final moves (candlesticks/ moved, config/epoch.json not): a rerun finishes it.
    os.replace(paths.dir / "epoch.json", trained.epoch_config_file)
    assert cli(trained, "export-epoch", "--model-id", "_SMALL_other") == 1
    assert f"an interrupted export of model {model_id}" in capsys.readouterr().err
    assert cli(trained, "export-epoch", "--best") == 0 and not trained.epoch_config_file.exists()
    assert (paths.dir / "epoch.json").is_file() and "finishing an interrupted export" in capsys.readouterr().err
    with zipfile.ZipFile(epoch_file) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("manifest.json"))
        certificate = json.loads(archive.read("prediction_model_certificate.json"))
        regression_certificates = json.loads(archive.read("regression_certificates.json"))
    assert certificate == build[0]
    ids = [r["id"] for r in certificate["model"]["regressions"]]
    assert manifest["regression_ids"] == ids == [c["id"] for c in regression_certificates]
    # the platform's members, all at the root, and nothing else
    assert names == {"epoch.json", "prediction_model_certificate.json", "regression_certificates.json",
                     "manifest.json", *(f"{rid}.h5" for rid in ids)}
    assert set(manifest["members"]) == names - {"manifest.json"}

    # verify: the CLI in a fresh process loads every regression
    verified = subprocess.run([sys.executable, "-m", "epoch_builder.cli", "verify-epoch", str(epoch_file)],
                              cwd=REPO, capture_output=True, text=True, timeout=300)
    assert verified.returncode == 0, verified.stderr
    assert "OK" in verified.stdout and f"{len(manifest['regression_ids'])} regression(s) (DNN) checked, every .h5 loaded" in verified.stdout
    assert "installs in Epoca's platform" in verified.stdout

    # a changed member is named
    tampered = epoch_file.with_name("tampered.zip")
    with zipfile.ZipFile(epoch_file) as source, zipfile.ZipFile(tampered, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "epoch.json":
                data = data.replace(b"_SMALL", b"_SMALX", 1)
            target.writestr(item, data)
    from epoch_builder.export import verify_epoch_file

    with pytest.raises(EpochBuilderError, match="member epoch.json does not match its SHA-256"):
        verify_epoch_file(tampered, load_models=False)


def test_build_and_export_errors(trained: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(trained, "find-profitable-configs", "--batch", "_SMALL_1_1.json") == 2
    assert "batch file not found" in capsys.readouterr().err
    assert cli(trained, "build-prediction-models", "--limit", "3") == 1  # the former name still works
    assert "no profitable configurations" in capsys.readouterr().err
    assert initialize(trained) == 0
    (trained.epoch().assets_dir / "assets.json").unlink()
    assert cli(trained, "find-profitable-configs", "--batch", "_SMALL_1_3.json") == 1
    assert "assets are missing" in capsys.readouterr().err
    assert cli(trained, "export-epoch", "--model-id", "x") == 1
    assert "no build" in capsys.readouterr().err
    assert cli(trained, "build-prediction-models", "--limit", "0") == 2
    assert "limit=0 must be >= 1" in capsys.readouterr().err


def test_verify_rejects_a_file_that_is_not_an_epoch_file(tmp_path: Path) -> None:
    from epoch_builder.export import verify_epoch_file

    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(EpochBuilderError, match="not a valid zip"):
        verify_epoch_file(bad)
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w") as archive:
        archive.writestr("epoch.json", "{}")
    with pytest.raises(EpochBuilderError, match="member manifest.json is missing"):
        verify_epoch_file(plain)


def test_features_before_t_do_not_depend_on_later_closes(trained: Workspace) -> None:
    """Research integrity of the feature asset: window w sees test rows [w, w + lookback) only, so
    changing the normalised closes from row r on changes no feature of a window ending before r.
    (With --normalization expanding those closes themselves depend only on earlier candles.)"""
    from epoch_builder.prediction.assets import load_test_range
    from epoch_builder.regressions.inference import load_regression, predict_features

    test_range = load_test_range(trained)
    regression = load_regression(trained.epoch().regressions_dir / regression_ids(trained)[0])
    before = predict_features(regression, test_range.normalized_close)
    r = len(test_range.normalized_close) // 2
    changed = test_range.normalized_close.copy()
    changed[r:] = np.clip(changed[r:] * np.random.default_rng(2).uniform(0.8, 1.2, len(changed) - r), 1e-6, 1)
    after = predict_features(regression, changed)
    decided = r - test_range.lookback + 1  # windows 0..decided-1 end before row r
    assert np.array_equal(before[:decided], after[:decided])
    assert not np.array_equal(before[decided:], after[decided:])
