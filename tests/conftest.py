"""Shared fixtures: the bundled real sample and a small-profile epoch workspace."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from epoch_builder.children import available_cores
from epoch_builder.regressions.runtime import THREAD_POOL_VARIABLES
from epoch_builder.workspace import Workspace

# One size of TensorFlow's CPU thread pools (its default, every core) for every test process and the
# commands they start. A packed batch sizes the pools of its process (packed.cpu_thread_pools), once, and a
# convolutional model's float rounding depends on them: a test comparing a run in this process with one in
# a subprocess needs them equal whatever this process trained first. The sizing itself is tested in a
# process without these (tests/test_regressions_packed.py).
for _variable in THREAD_POOL_VARIABLES:
    os.environ.setdefault(_variable, str(available_cores()))

SMALL_EPOCH_ID = "_SMALL"


@pytest.fixture(scope="session")
def sample_csv() -> Path:
    """The real 21-day BTCUSDT 1m sample shipped in the package (gzip CSV)."""
    from epoch_builder.importer import bundled_sample

    return bundled_sample()


@pytest.fixture(scope="session")
def _small_epoch_template(tmp_path_factory: pytest.TempPathFactory, sample_csv: Path) -> Path:
    from epoch_builder.create_epoch import create_epoch
    from epoch_builder.importer import import_candlesticks

    root = tmp_path_factory.mktemp("small-epoch-template")
    ws = Workspace(root)
    import_candlesticks(ws, [sample_csv], interval_minutes=30, log=lambda *_: None)
    create_epoch(ws, SMALL_EPOCH_ID, profile="small", width_unit="days", epoch_width=20, log=lambda *_: None)
    return root


@pytest.fixture
def small_epoch(_small_epoch_template: Path, tmp_path: Path) -> Workspace:
    """A fresh copy per test of a workspace holding the sample (30m) and a small epoch:
    lookback 16, predictions 4, SMA 10, width 20 days."""
    root = tmp_path / "workspace"
    shutil.copytree(_small_epoch_template, root)
    return Workspace(root)


@pytest.fixture(scope="session")
def _trained_template(_small_epoch_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.test_build_export import train_tiny_regressions

    root = tmp_path_factory.mktemp("trained-regressions") / "workspace"
    shutil.copytree(_small_epoch_template, root)
    train_tiny_regressions(root)
    return root


@pytest.fixture
def trained(_trained_template: Path, tmp_path: Path) -> Workspace:
    """A fresh copy per test of the small epoch with six tiny trained DNNs (test_build_export.TINY_GRID)."""
    root = tmp_path / "workspace"
    shutil.copytree(_trained_template, root)
    return Workspace(root)
