"""What each combining step reads and writes (remote.steps), and its one-line error for a missing input."""

from __future__ import annotations

import pytest

from epoch_builder.errors import EpochBuilderError
from epoch_builder.storage import atomic_write_json
from epoch_builder.workspace import Workspace
from remote import steps


def test_each_step_reads_exactly_its_inputs_from_the_controllers_files(small_epoch: Workspace) -> None:
    ws = small_epoch
    epoch = ws.epoch()
    e = epoch.id
    for rid in ("R1", "R2", "R3"):
        atomic_write_json(epoch.regression_certificate_file(rid), {"id": rid})

    chosen = steps.step_files(ws.root, ["initialize-prediction-models", "--regressions", "R1,R3", "--pcr", "1"])
    assert chosen.reads == ("config/epoch.json", "candlesticks", f"{e}/regressions/R1", f"{e}/regressions/R3")
    assert chosen.writes == (f"{e}/prediction_models/assets", f"{e}/prediction_models/configs")
    top = steps.step_files(ws.root, ["initialize-prediction-models", "--top", "2", "--by", "test_loss"])
    assert top.reads[2:] == (f"{e}/regressions/R1", f"{e}/regressions/R2", f"{e}/regressions/R3")  # ranked where it runs

    atomic_write_json(epoch.assets_dir / "assets.json", {"regression_ids": ["R1", "R2"]})
    atomic_write_json(epoch.config_batch_file("B_1"), {"configs": []})
    build = steps.step_files(ws.root, ["build-prediction-models", "--top", "5"])
    assert build.reads == ("config/epoch.json", "candlesticks", f"{e}/prediction_models/assets",
                           f"{e}/prediction_models/configs", f"{e}/prediction_models/profitable_configs",
                           f"{e}/regressions/R1/certificate.json", f"{e}/regressions/R2/certificate.json")
    assert build.writes == (f"{e}/prediction_models/build_summary.json", f"{e}/prediction_models/build.json")
    assert steps.missing_inputs(ws.root, build) == [f"{e}/prediction_models/profitable_configs/B_1.json"]

    atomic_write_json(epoch.build_file, [{"id": "M2", "model": {"regressions": [{"id": "R2"}, {"id": "R3"}]}},
                                         {"id": "M1", "model": {"regressions": [{"id": "R1"}]}}])
    export = steps.step_files(ws.root, ["export-epoch", "--model-id", "M1"])
    assert export.reads[-1:] == (f"{e}/regressions/R1",) and export.writes == (f"{e}/{e}.zip",)
    best = steps.step_files(ws.root, ["export-epoch", "--best"])
    assert best.reads[-2:] == (f"{e}/regressions/R2", f"{e}/regressions/R3")

    verify = steps.step_files(ws.root, ["verify-epoch", f"{e}/{e}.zip"])
    assert verify.reads == (f"{e}/{e}.zip",) and verify.writes == ()
    assert steps.missing_inputs(ws.root, verify) == [f"{e}/{e}.zip"]
    with pytest.raises(EpochBuilderError, match="not a combining step"):
        steps.step_files(ws.root, ["train-regression-batch", "--batch", "X"])


def test_a_missing_input_names_who_has_it_and_the_fix() -> None:
    regression = "_E/regressions/R9/certificate.json"
    assert steps.missing_input_message("initialize-prediction-models", [regression], {regression: ["w1"]}) == (
        "initialize-prediction-models needs _E/regressions/R9/certificate.json, not in the controller's workspace; "
        "w1 has it: pull trained regressions (console: key R; `epoch-cluster pull trained-regressions`) from there")
    two = ["_E/prediction_models/profitable_configs/B_1.json", "_E/prediction_models/profitable_configs/B_2.json"]
    assert steps.missing_input_message("build-prediction-models", two, {}) == (
        "build-prediction-models needs _E/prediction_models/profitable_configs/B_1.json and 1 more, not in the "
        "controller's workspace; no server has it: find the profitable configs of that batch first "
        "(dispatch --stage profitable-configs)")
    assert "run `epoch-builder create-epoch` first" in steps.missing_input_message("export-epoch", ["config/epoch.json"], {})
    assert steps.missing_input_message("build-prediction-models", ["_E/prediction_models/assets/assets.json"], {}).endswith(
        "run `epoch-builder initialize-prediction-models` first")
