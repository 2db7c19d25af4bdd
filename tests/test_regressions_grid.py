"""generate-regression-training-configs: the default grid's 1,220 configs, batches, seed, custom grids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from epoch_builder.cli import main
from epoch_builder.errors import EpochBuilderError
from epoch_builder.regressions.configs import read_batch
from epoch_builder.regressions.grid import default_grid_path, generate, load_grid, plan

EXPECTED = {"CNN": 240, "DNN": 252, "CDNN": 480, "LSTM": 84, "CLSTM": 80, "GRU": 84}
BATCH_SIZES = {"CNN": 20, "DNN": 150, "CDNN": 35, "LSTM": 10, "CLSTM": 10, "GRU": 10}


def test_default_grid_plans_1220_configs_per_category_with_the_issue_hyperparameters() -> None:
    per_category = plan(load_grid(None), "_E", 60184, 128, 32)
    assert {c: len(v) for c, v in per_category.items()} == EXPECTED
    configs = [c for v in per_category.values() for c in v]
    assert len({c["id"] for c in configs}) == 1220
    for category, items in per_category.items():
        rates = {c["learning_rate"] for c in items}
        assert rates == ({-1, 0.001, 0.0001} if category in ("CNN", "DNN", "CDNN") else {-1})
        assert {c["optimizer"] for c in items} == {"adam"}
        assert {(c["loss"], c["metric"]) for c in items} == {
            ("mean_absolute_error", "mean_squared_error"), ("mean_squared_error", "mean_absolute_error")}
        activations = {a for c in items for a in c["keras_model"].get("activations") or [None]}
        assert activations == ({None} if category in ("LSTM", "GRU") else {"relu"})
        sizes = {len(c["keras_model"].get("units") or c["keras_model"]["filters"]) for c in items}
        assert sizes == {2, 3, 4, 5}
        assert any("_MP_" in c["keras_model"]["name"] for c in items) == (category in ("CNN", "CDNN", "CLSTM"))
        ladder = {v for c in items for key in ("units", "filters") for v in c["keras_model"].get(key) or []}
        assert min(ladder) == 32 and max(ladder) == 512
        assert all(c["lookback"] == 128 and c["predictions"] == 32 for c in items)


def test_plan_is_deterministic_for_a_seed_and_shuffled_by_it() -> None:
    grid = load_grid(None)
    first, again, other = (plan(grid, "_E", seed, 16, 4) for seed in (7, 7, 8))
    assert first == again
    assert [c["id"] for c in first["DNN"]] != [c["id"] for c in other["DNN"]]
    names = [c["keras_model"]["name"] for c in first["CNN"]]
    assert names != sorted(names, key=lambda n: (n[-1], "_MP_" in n))  # not in grid order


@pytest.mark.slow
def test_generate_writes_validated_batches_receipt_and_unit_test(small_epoch) -> None:
    summary = generate(small_epoch, log=lambda *_: None)
    out = small_epoch.epoch().regression_training_configs_dir
    for category, models in EXPECTED.items():
        files = sorted((out / category).glob("*.json"))
        batches = -(-models // BATCH_SIZES[category])
        assert summary[category] == {"models": models, "batches": batches, "batch_size": BATCH_SIZES[category]}
        assert {f.stem for f in files} == {f"KR_{category}_{n}_{batches}" for n in range(1, batches + 1)}
        loaded = [read_batch(f) for f in files]
        assert sum(len(b["configs"]) for b in loaded) == models
        assert all(b["category"] == category and len(b["configs"]) <= BATCH_SIZES[category] for b in loaded)
    unit = read_batch(out / "UNIT_TEST" / "KR_UNIT_TEST.json")
    assert [c["id"] for c in unit["configs"]] == ["KR_UNIT_TEST"]
    receipt = (out / "receipt.txt").read_text()
    assert "Total Models: 1220" in receipt and "KR_CDNN_14_14: " in receipt and "Models: 480" in receipt
    with pytest.raises(EpochBuilderError, match="already exist.*--force"):
        generate(small_epoch, log=lambda *_: None)


def small_grid(tmp_path: Path, **changes) -> Path:
    grid = {
        "batch_sizes": {"DNN": 2, "GRU": 5},
        "hyperparams": {
            "DNN": {"learning_rates": [-1, 0.001], "optimizers": ["adam"],
                    "losses": [{"loss": "mean_absolute_error", "metric": "mean_squared_error"}], "activations": ["relu"]},
            "GRU": {"learning_rates": [-1], "optimizers": ["rmsprop"],
                    "losses": [{"loss": "mean_squared_error", "metric": "mean_absolute_error"}], "activations": [None]},
        },
        "networks": {"DNN": {"KR_DNN_S2": [{"units": [8, 4]}, {"units": [4, 4]}]}, "GRU": {"KR_GRU_S2": [{"units": [4, 4]}]}},
    }
    grid.update(changes)
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(grid))
    return path


def test_custom_grid_through_the_cli(small_epoch, tmp_path: Path, capsys) -> None:
    grid = small_grid(tmp_path)
    assert main(["generate-regression-training-configs", "--workspace", str(small_epoch.root), "--grid", str(grid)]) == 0
    out = small_epoch.epoch().regression_training_configs_dir
    assert sorted(p.name for p in (out / "DNN").iterdir()) == ["KR_DNN_1_2.json", "KR_DNN_2_2.json"]
    assert [len(read_batch(out / "GRU" / "KR_GRU_1_1.json")["configs"])] == [1]
    assert "5 training configs in 3 batches" in capsys.readouterr().out


@pytest.mark.parametrize("variation, message", [
    ({"units": [8, 4, 2]}, r"grid.json: networks.DNN.KR_DNN_S2\[0\]: KR_DNN_S2 needs 2 units, got 3"),
    ({"units": [8, 4], "filters": [3]}, r"KR_DNN_S2 takes no filters"),
    ({"units": [8, 4], "activations": ["relu"]}, r"variations take no 'name' or 'activations'"),
])
def test_bad_variation_is_refused_naming_file_and_key(small_epoch, tmp_path: Path, capsys, variation, message) -> None:
    grid = small_grid(tmp_path, networks={"DNN": {"KR_DNN_S2": [variation]}})
    assert main(["generate-regression-training-configs", "--workspace", str(small_epoch.root), "--grid", str(grid)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert __import__("re").search(message, err), err
    assert not small_epoch.epoch().regression_training_configs_dir.exists() or not any(
        small_epoch.epoch().regression_training_configs_dir.rglob("*.json"))


def test_grid_structure_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(EpochBuilderError, match="batch_sizes.DNN must be a positive integer"):
        load_grid(small_grid(tmp_path, batch_sizes={"DNN": 0, "GRU": 5}))
    with pytest.raises(EpochBuilderError, match="networks.RNN is not a category"):
        load_grid(small_grid(tmp_path, networks={"RNN": {}}))
    with pytest.raises(EpochBuilderError, match="networks.DNN.KR_GRU_S2 belongs to category GRU"):
        load_grid(small_grid(tmp_path, networks={"DNN": {"KR_GRU_S2": [{"units": [4, 4]}]}}))
    assert default_grid_path().is_file()
