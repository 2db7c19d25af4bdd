"""How much is luck: the out-of-sample window, PBO over the sweep and the deflated Sharpe ratios in the build.

On the real tiny regressions of test_build_export (the bundled 21-day sample's
small epoch): the window is cut from the test dataset as ``create-epoch
--oos-days`` cuts it, the sweep and the build run through the CLI.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from epoch_builder.create_epoch import out_of_sample_window
from epoch_builder.epoch import DAY_MS
from epoch_builder.workspace import Workspace
from tests.test_build_export import _sweep_all, cli, initialize

OOS_DAYS = 2


def with_out_of_sample_window(ws: Workspace, days: int = OOS_DAYS) -> dict:
    """The epoch's config with the window create-epoch --oos-days would record (same helper)."""
    from epoch_builder.candles import read_candles

    path = ws.epoch_config_file
    config = json.loads(path.read_text())
    prediction_ot = read_candles(ws.prediction_candlesticks_file)["ot"].to_numpy(dtype=np.int64)
    config["oos_days"], config["oos_start"] = out_of_sample_window(
        prediction_ot, config["test_ds_start_index"], config["test_ds_end"], config["regression_lookback"],
        config["regression_predictions"], days)
    path.write_text(json.dumps(config, indent=2))
    return config


def profitable_configs(ws: Workspace) -> dict[str, list]:
    return {p.name: json.loads(p.read_text()) for p in sorted(ws.epoch().profitable_configs_dir.glob("*.json"))}


def perturb_out_of_sample(ws: Workspace, oos_start: int) -> None:
    """Other prices inside the window (1-minute candles) and other predictions there (features)."""
    from epoch_builder.candles import read_candles, write_candles

    candles = read_candles(ws.candlesticks_file)
    inside = candles["ot"].to_numpy() >= oos_start
    rng = np.random.default_rng(3)
    factor = np.round(1 + rng.normal(0, 0.004, inside.sum()).cumsum(), 6)
    for column in ("o", "h", "l", "c"):
        values = candles[column].to_numpy(dtype=np.float64).copy()
        values[inside] = np.round(values[inside] * factor, 2)
        candles[column] = values
    write_candles(ws.candlesticks_file, candles)
    features_file = ws.epoch().assets_dir / "features.json"
    features = json.loads(features_file.read_text())
    from epoch_builder.prediction.assets import load_backtest_data, OUT_OF_SAMPLE

    first_window = int(load_backtest_data(ws, OUT_OF_SAMPLE)[0].k[0])
    for rid, values in features.items():
        values[first_window:] = [round(-v, 6) for v in values[first_window:]]
    features_file.write_text(json.dumps(features))


def models_list(ws: Workspace, *extra: str) -> int:
    from epoch_builder.cli import main

    return main(["models", "list", "--workspace", str(ws.root), *extra])


def test_create_epoch_records_the_window_and_names_its_bounds(small_epoch: Workspace,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    small_epoch.epoch_config_file.unlink()  # the template's epoch makes way, as after an export
    create = ("create-epoch", "--id", "_OOS_EPOCH", "--profile", "small", "--width-days", "15")
    assert cli(small_epoch, *create, "--oos-days", "30") == 2  # refused before anything is written
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: parameter oos_days=30: the test dataset has ") and "allowed 1.." in error
    assert cli(small_epoch, *create, "--oos-days", "-1") == 2
    assert "parameter oos_days=-1 must be an integer >= 0" in capsys.readouterr().err
    assert cli(small_epoch, *create, "--oos-days", "2", "--json") == 0
    config = json.loads(capsys.readouterr().out)
    assert config["oos_days"] == 2 and config["test_ds_start"] < config["oos_start"] <= config["test_ds_end"]
    assert config["test_ds_end"] + 1 - config["oos_start"] <= 2 * DAY_MS  # from the first candle inside the 2 days
    receipt = Workspace(small_epoch.root).epoch().receipt_file.read_text()
    assert "out-of-sample" in receipt and "last 2 day(s)" in receipt


def test_the_sweep_never_sees_the_window_and_the_build_trades_it(trained: Workspace) -> None:
    from epoch_builder.prediction.assets import IN_SAMPLE, OUT_OF_SAMPLE, load_backtest_data

    config = with_out_of_sample_window(trained)
    assert initialize(trained) == 0
    inside, _ = load_backtest_data(trained, IN_SAMPLE)
    outside, _ = load_backtest_data(trained, OUT_OF_SAMPLE)
    assert inside.ot[-1] < config["oos_start"] <= outside.ot[0]
    assert inside.n_features < outside.n_features
    assert _sweep_all(trained) > 0
    before = profitable_configs(trained)
    assert cli(trained, "build-prediction-models", "--top", "5", "--no-progress") == 0
    build = json.loads(trained.epoch().build_file.read_text())
    for certificate in build:
        window = certificate["out_of_sample"]
        assert (window["start"], window["end"], window["days"]) == (config["oos_start"], config["test_ds_end"], OOS_DAYS)
        assert window["in_sample"]["profit"] == certificate["backtest"]["profit"]
        assert set(window["out_of_sample"]) == set(window["in_sample"]) >= {"profit", "accuracy", "positions",
                                                                          "max_drawdown"}
        assert all(p["ot"] < config["oos_start"] for p in certificate["backtest"]["positions"])

    perturb_out_of_sample(trained, config["oos_start"])
    for batch in sorted(trained.epoch().configs_dir.glob("_SMALL_*.json")):
        assert cli(trained, "find-profitable-configs", "--batch", batch.name, "--force", "--no-progress") == 0
    assert profitable_configs(trained) == before  # nothing inside the window reached the sweep
    assert cli(trained, "build-prediction-models", "--top", "5", "--no-progress") == 0
    rebuilt = json.loads(trained.epoch().build_file.read_text())
    assert [c["backtest"] for c in rebuilt] == [c["backtest"] for c in build]
    assert [c["out_of_sample"]["out_of_sample"] for c in rebuilt] != [c["out_of_sample"]["out_of_sample"] for c in build]

    # the HTML report shows both sides
    assert cli(trained, "report", "--no-progress") == 0
    page = trained.epoch().report_file(rebuilt[0]["id"]).read_text()
    outside_profit = rebuilt[0]["out_of_sample"]["out_of_sample"]["profit"]
    assert "Out-of-sample window: the last 2 day(s)" in page and f"out-of-sample</td><td>{outside_profit:,.2f}</td>" in page


def test_build_summary_pbo_and_deflated_sharpe(trained: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    from epoch_builder.prediction import luck

    assert initialize(trained) == 0
    assert _sweep_all(trained) > 0
    assert cli(trained, "build-prediction-models", "--top", "4", "--pbo-blocks", "8", "--no-progress") == 0
    printed = capsys.readouterr().out
    assert "probability of backtest overfitting" in printed and "8 blocks" in printed
    paths = trained.epoch()
    build = json.loads(paths.build_file.read_text())
    summary = json.loads(paths.build_summary_file.read_text())
    assert summary["models"] == [c["id"] for c in build]
    assert summary["configurations"] == 270 == summary["sharpe_ratios"]["trials"]  # every config, sampled or not
    pbo = summary["pbo"]
    assert (pbo["blocks"], pbo["splits"], pbo["sampled_configurations"]) == (8, math.comb(8, 4), 270)
    assert 0.0 <= pbo["pbo"] <= 1.0 and pbo["seed"] == trained.load_epoch_config().seed
    assert summary["out_of_sample"] is None and all("out_of_sample" not in c for c in build)
    variance = summary["sharpe_ratios"]["variance"]
    assert variance > 0
    for certificate in build:
        dsr = certificate["deflated_sharpe"]
        returns = np.diff(certificate["backtest"]["balance_history"]) / certificate["backtest"]["position_size"]
        if dsr["dsr"] is None:
            assert dsr["reason"]
            continue
        expected = luck.deflated_sharpe_ratio(returns, 270, variance)
        assert dsr["dsr"] == pytest.approx(expected.dsr) and dsr["observations"] == len(returns)
        assert 0.0 <= dsr["dsr"] <= 1.0

    assert models_list(trained) == 0
    listed = capsys.readouterr().out
    assert " dsr " in listed.splitlines()[0] and "probability of backtest overfitting" in listed
    assert models_list(trained, "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["dsr"] for r in rows] == [c["deflated_sharpe"]["dsr"] for c in build]
    summary["models"] = ["someone else's"]  # a summary of another build is not shown as this one's
    paths.build_summary_file.write_text(json.dumps(summary))
    assert models_list(trained) == 0
    captured = capsys.readouterr()
    assert "probability of backtest overfitting" not in captured.out and "no build_summary.json" in captured.err
    assert cli(trained, "build-prediction-models", "--pbo-blocks", "7") == 2
    assert "parameter --pbo-blocks=7 must be an even integer >= 2" in capsys.readouterr().err


def test_counts_give_each_configuration_its_sharpe_ratio(trained: Workspace) -> None:
    """The per-position Sharpe ratios from the kernel's counts equal those of the positions themselves;
    the per-block profits add up to the profit and follow the positions' entry times."""
    from epoch_builder.prediction import luck
    from epoch_builder.prediction.assets import load_backtest_data
    from epoch_builder.prediction.engine import Blocks, encode, evaluate_full, run_kernel
    from epoch_builder.prediction.selection import per_position_sharpes, sample_sweep

    assert initialize(trained) == 0
    data, _ = load_backtest_data(trained)
    drawn = sample_sweep(trained.epoch(), data.regression_ids, list(data.labels), 40, seed=5)
    assert len(drawn.configs) == 40 and drawn.total == 270 and drawn.indices == sorted(drawn.indices)
    again = sample_sweep(trained.epoch(), data.regression_ids, list(data.labels), 40, seed=5)
    other = sample_sweep(trained.epoch(), data.regression_ids, list(data.labels), 40, seed=6)
    assert again.indices == drawn.indices != other.indices
    assert sample_sweep(trained.epoch(), data.regression_ids, list(data.labels), 0, seed=5).indices == list(range(270))
    bounds = luck.block_bounds(int(data.ot[0]), int(data.ot[data.end - 1]) + 1, 6)
    rows, block_pnl = run_kernel(data, encode(data, drawn.configs), Blocks.by_time(data, bounds))
    sharpes = per_position_sharpes(rows, [c["pcr"] for c in drawn.configs], data)
    checked = 0
    for config, row, pnl, sharpe in zip(drawn.configs, rows, block_pnl, sharpes):
        backtest = evaluate_full(data, config)["backtest"]
        assert pnl.sum() == pytest.approx(backtest["profit"], abs=1e-6)
        entries = np.array([p["ot"] for p in backtest["positions"]], dtype=np.int64)
        changes = np.diff(backtest["balance_history"])
        for block, (start, end) in enumerate(bounds):
            assert pnl[block] == pytest.approx(changes[(entries >= start) & (entries < end)].sum(), abs=1e-6)
        returns = changes / data.position_size
        if np.isnan(sharpe):
            assert len(returns) < 2 or len(set(np.sign(returns))) < 2
            continue
        assert sharpe == pytest.approx(luck.return_moments(returns)[0], rel=1e-9)
        checked += 1
    assert checked > 5
