"""`candlesticks import` racing `create-epoch` (each its own process, the import started 0-0.5 s after):
one workspace lock covers each one's check and act, so whichever order they take, the active epoch's
candles are the bundle it was cut from -- never a later, uncut import."""

from __future__ import annotations

import gzip
import subprocess
import sys
import time
from pathlib import Path

import pytest

from epoch_builder.workspace import Workspace

CLI = [sys.executable, "-m", "epoch_builder.cli"]


@pytest.fixture(scope="module")
def other_csv(tmp_path_factory: pytest.TempPathFactory, sample_csv: Path) -> Path:
    """Another candle file: the sample's first 16 days."""
    path = tmp_path_factory.mktemp("other") / "OTHER.csv"
    with gzip.open(sample_csv, "rt") as source:
        lines = [line for _, line in zip(range(1 + 16 * 1440), source)]
    path.write_text("".join(lines))
    return path


@pytest.mark.parametrize("delay_s", [0.0, 0.1, 0.2, 0.35, 0.5])
def test_an_import_racing_create_epoch_never_swaps_the_active_epochs_candles(
        delay_s: float, sample_csv: Path, other_csv: Path, tmp_path: Path) -> None:
    from epoch_builder import candles
    from epoch_builder.importer import import_candlesticks

    ws = Workspace(tmp_path / "ws")
    import_candlesticks(ws, [sample_csv], interval_minutes=30, log=lambda *_: None)
    root = ["--workspace", str(ws.root)]
    create = subprocess.Popen([*CLI, "create-epoch", "--id", "_ADVX", "--profile", "small", *root],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay_s)
    imported = subprocess.run([*CLI, "candlesticks", "import", str(other_csv), "--interval", "30", *root],
                              capture_output=True, text=True, timeout=300)
    _, create_err = create.communicate(timeout=300)
    assert create.returncode == 0, create_err
    config = ws.load_epoch_config()
    assert ws.normalized_prediction_candlesticks_file.is_file()
    minute = candles.read_candles(ws.candlesticks_file)
    assert int(minute["ot"].iloc[0]) == config.start and int(minute["ct"].iloc[-1]) == config.end  # the cut bundle
    if imported.returncode != 0:  # the epoch came first: the import saw it under the lock
        assert "an epoch is active" in imported.stderr, imported.stderr
