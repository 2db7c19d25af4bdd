"""create-epoch (SEMANTICS §2): ranges, refusals, SMA + normalisation, test range, files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from epoch_builder.candles import read_candles
from epoch_builder.create_epoch import create_epoch
from epoch_builder.errors import EpochBuilderError
from epoch_builder.importer import import_candlesticks
from epoch_builder.workspace import Workspace


def quiet(*_: object) -> None:
    pass


@pytest.fixture
def imported(tmp_path: Path, sample_csv: Path) -> Workspace:
    ws = Workspace(tmp_path / "ws")
    import_candlesticks(ws, [sample_csv], log=quiet)
    return ws


def test_small_epoch_files_and_normalisation(small_epoch: Workspace) -> None:
    config = small_epoch.load_epoch_config()
    pred = read_candles(small_epoch.prediction_candlesticks_file)
    norm = read_candles(small_epoch.normalized_prediction_candlesticks_file)
    minute = read_candles(small_epoch.candlesticks_file)
    assert len(pred) == len(norm) == config.prediction_candles
    np.testing.assert_array_equal(pred.ot, norm.ot)
    assert norm.c.max() == 1.0 and norm.c.min() > 0
    assert (norm.c == norm.c.min()).sum() == 2  # the lowest took the second lowest's value
    # SMA check: the last value is the mean of the last 10 closes, scaled by the stored bounds.
    sma_last = pred.c.iloc[-10:].mean()
    span = config.highest_price_sma - config.lowest_price_sma
    assert norm.c.iloc[-1] == pytest.approx((sma_last - config.lowest_price_sma) / span)
    assert config.test_ds_start_index == int(len(pred) * 0.75)
    assert config.test_ds_start == pred.ot.iloc[config.test_ds_start_index]
    assert minute.ot.iloc[0] == pred.ot.iloc[0] and minute.ct.iloc[-1] == pred.ct.iloc[-1] == config.end
    epoch = small_epoch.epoch()
    assert epoch.receipt_file.exists() and all(d.is_dir() for d in epoch.subdirs())
    assert json.loads(small_epoch.epoch_config_file.read_text())["seed"] == 60184


def test_refusals_name_what_is_wrong(imported: Workspace, small_epoch: Workspace, tmp_path: Path) -> None:
    with pytest.raises(EpochBuilderError, match=r"regression_lookback=600 is out of range: allowed 32\.\.512"):
        create_epoch(imported, "_EP1", regression_lookback=600, log=quiet)
    with pytest.raises(EpochBuilderError, match=r"id '_x' is invalid"):
        create_epoch(imported, "_x", log=quiet)
    with pytest.raises(EpochBuilderError, match=r"not enough candles: the epoch width needs 1440 days"):
        create_epoch(imported, "_EP1", log=quiet)
    with pytest.raises(EpochBuilderError, match=r"previous epoch _SMALL is still present"):
        create_epoch(small_epoch, "_EP2", profile="small", width_unit="days", epoch_width=20, log=quiet)
    (imported.root / "_EP3").mkdir()
    (imported.root / "_EP3" / "notes.txt").write_text("not a leftover of an interrupted create-epoch")
    with pytest.raises(EpochBuilderError, match=r"_EP3: epoch directory already exists"):
        create_epoch(imported, "_EP3", profile="small", width_unit="days", epoch_width=20, log=quiet)
    with pytest.raises(EpochBuilderError, match=r"no candlestick bundle"):
        create_epoch(Workspace(tmp_path / "empty"), "_EP4", log=quiet)
    assert not imported.epoch_config_file.exists()


def test_cli_error_is_one_line_and_help_is_light(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "epoch_builder.cli", "create-epoch", "--id", "_ABCD", "--workspace", str(tmp_path),
         "--leverage", "11"], capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "error: parameter leverage=11 is out of range: allowed 1..10"
    probe = ("import sys; from epoch_builder.cli import build_parser; build_parser().format_help(); "
             "heavy = [m for m in ('tensorflow', 'keras', 'pandas', 'numba', 'pyarrow') if m in sys.modules]; "
             "print(','.join(heavy))")
    heavy = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert heavy == "", f"`epoch-builder --help` imports {heavy}"


def _epoch_after_perturbing(tmp_path: Path, sample_csv: Path, name: str, cutoff_row: int | None,
                            normalization: str) -> tuple[Workspace, object]:
    import pandas as pd

    df = pd.read_csv(sample_csv)
    if cutoff_row is not None:  # candles after t move 5% up (same times, still valid candles)
        for col in ("open", "high", "low", "close"):
            df.loc[cutoff_row:, col] = (df.loc[cutoff_row:, col] * 1.05).round(2)
    src = tmp_path / f"{name}.csv"
    df.to_csv(src, index=False)
    ws = Workspace(tmp_path / name)
    import_candlesticks(ws, [src], log=quiet)
    config = create_epoch(ws, "_LEAK", profile="small", width_unit="days", epoch_width=20,
                          normalization=normalization, log=quiet)
    return ws, config


@pytest.mark.parametrize("normalization", ["global", "expanding"])
def test_research_integrity_before_t(tmp_path: Path, sample_csv: Path, normalization: str) -> None:
    """Perturb candles after t: with the leak-free normalisation nothing before t changes; the original's
    global min/max normalisation leaks the future into the past (documented in docs/pipeline.md)."""
    cutoff_row = 25_000  # t = 2023-03-18 08:40, inside the test dataset
    base_ws, base = _epoch_after_perturbing(tmp_path, sample_csv, f"base-{normalization}", None, normalization)
    pert_ws, pert = _epoch_after_perturbing(tmp_path, sample_csv, f"pert-{normalization}", cutoff_row, normalization)
    t = 1677628800000 + cutoff_row * 60_000
    before_base = read_candles(base_ws.normalized_prediction_candlesticks_file)
    before_pert = read_candles(pert_ws.normalized_prediction_candlesticks_file)
    rows_before = (before_base.ct < t).to_numpy()
    same = np.array_equal(before_base.c[rows_before], before_pert.c[rows_before])
    for key in ("start", "test_ds_start", "test_ds_start_index", "prediction_candles"):
        assert getattr(base, key) == getattr(pert, key)
    if normalization == "expanding":
        assert same
    else:
        assert not same  # the leak docs/pipeline.md documents


@pytest.mark.parametrize("key, value, message", [
    ("id", "../../../elsewhere/y", "id '../../../elsewhere/y' is invalid"),
    ("regression_lookback", "x", "parameter regression_lookback='x' must be int in 4..512"),
    ("regression_lookback", 2, "parameter regression_lookback=2 is out of range: allowed 4..512"),
    ("train_split", 2.5, "parameter train_split=2.5 is out of range"),
    ("normalization", "future", "normalization 'future' is unknown: allowed global, expanding"),
    ("highest_price_sma", float("nan"), "must be finite with 0 < lowest < highest"),
    ("test_ds_start_index", -3, "test_ds_start_index=-3 must be a non-negative integer"),
])
def test_a_hand_edited_epoch_config_is_refused_where_it_is_loaded(small_epoch: Workspace, key: str, value: object,
                                                                   message: str) -> None:
    """Every stage reads config/epoch.json: its id names directories, its values drive every computation."""
    path = small_epoch.epoch_config_file
    data = json.loads(path.read_text())
    data[key] = value
    path.write_text(json.dumps(data))
    with pytest.raises(EpochBuilderError, match=f"{path}: .*{__import__('re').escape(message)}"):
        small_epoch.load_epoch_config()
    from epoch_builder.regressions.grid import generate

    with pytest.raises(EpochBuilderError):
        generate(small_epoch, None, log=lambda *_: None)
    assert not (small_epoch.root.parent / "elsewhere").exists()


def test_a_create_epoch_killed_before_its_last_step_is_finished_by_a_rerun(imported: Workspace, monkeypatch) -> None:
    """The cut bundle is switched in as a whole and records its config; config/epoch.json comes last."""
    import epoch_builder.create_epoch as module
    from epoch_builder.epoch import EpochConfig

    original_bundle = json.loads(imported.bundle_file.read_text())
    before = read_candles(imported.candlesticks_file)

    def killed_in_commit(root, write):  # noqa: ANN001 - dies before anything is switched in
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "commit_bundle", killed_in_commit)
    with pytest.raises(KeyboardInterrupt):
        create_epoch(imported, "_KILLED", profile="small", width_unit="days", epoch_width=20, log=quiet)
    assert read_candles(imported.candlesticks_file).equals(before)  # the bundle is untouched
    monkeypatch.undo()

    real_save = EpochConfig.save

    def killed_before_config(self, path):  # noqa: ANN001 - the bundle is cut, config/epoch.json not written
        raise KeyboardInterrupt

    monkeypatch.setattr(EpochConfig, "save", killed_before_config)
    with pytest.raises(KeyboardInterrupt):  # the leftover directory of the first try is reused
        create_epoch(imported, "_KILLED", profile="small", width_unit="days", epoch_width=20, log=quiet)
    monkeypatch.setattr(EpochConfig, "save", real_save)
    assert not imported.epoch_config_file.exists()
    assert json.loads(imported.bundle_file.read_text())["cut_for_epoch"]["id"] == "_KILLED"
    with pytest.raises(EpochBuilderError, match="cut for epoch _KILLED by an interrupted create-epoch"):
        create_epoch(imported, "_OTHER", profile="small", width_unit="days", epoch_width=20, log=quiet)
    config = create_epoch(imported, "_KILLED", profile="small", width_unit="days", epoch_width=20, log=quiet)
    assert imported.load_epoch_config() == config and config.id == "_KILLED"
    assert json.loads(imported.bundle_file.read_text()) == original_bundle  # nothing left to finish
    assert imported.normalized_prediction_candlesticks_file.is_file()
    assert (imported.root / "_KILLED" / "_KILLED_receipt.txt").is_file()
