"""`candlesticks import` commits the bundle as a whole: after any crash the workspace holds the complete
old bundle or the complete new one, never a mix (bundle.commit_bundle / recover_bundle)."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from epoch_builder import bundle
from epoch_builder.candles import read_candles
from epoch_builder.errors import EpochBuilderError
from epoch_builder.bundle import NEW_PREFIX, OLD_PREFIX, _bundle_lock, commit_bundle, recover_bundle
from epoch_builder.importer import bundled_sample, import_candlesticks
from epoch_builder.workspace import Workspace

OLD_FILES = {"bundle.json", "candlesticks.parquet", "prediction_candlesticks.parquet"}
NEW_FILES = OLD_FILES | {"candlesticks.csv", "prediction_candlesticks.csv"}
NEW_ARGS = ["--interval", "60", "--export-csv"]  # differs from the old bundle (30 min, no CSV) in every file


def quiet(*_: object) -> None:
    pass


# --- recovery of each interrupted state --------------------------------------------------


def make_bundle(directory: Path, tag: str, *, complete: bool = True) -> Path:
    """A stand-in bundle: a data file, and bundle.json (written last by a real import) when complete."""
    directory.mkdir(parents=True)
    (directory / "candlesticks.parquet").write_text(tag)
    if complete:
        (directory / "bundle.json").write_text(json.dumps({"tag": tag}))
    return directory


def fill_new(directory: Path) -> None:
    """A writer for commit_bundle: the directory exists, bundle.json comes last."""
    (directory / "candlesticks.parquet").write_text("new")
    (directory / "bundle.json").write_text("{}")


def tag_of(root: Path) -> str:
    return (root / "candlesticks" / "candlesticks.parquet").read_text()


def leftovers(root: Path) -> list[str]:
    return sorted(n for n in os.listdir(root) if n.startswith((NEW_PREFIX, OLD_PREFIX)))


def test_recovery_keeps_the_old_bundle_when_the_new_one_was_never_switched_in(tmp_path: Path) -> None:
    make_bundle(tmp_path / "candlesticks", "old")
    make_bundle(tmp_path / f"{NEW_PREFIX}1", "half", complete=False)  # killed while writing
    make_bundle(tmp_path / f"{NEW_PREFIX}2", "new")  # killed after writing, before the switch
    recover_bundle(tmp_path)
    assert tag_of(tmp_path) == "old" and leftovers(tmp_path) == []


def test_recovery_finishes_a_switch_cut_between_the_two_renames(tmp_path: Path) -> None:
    make_bundle(tmp_path / f"{OLD_PREFIX}7", "old")
    make_bundle(tmp_path / f"{NEW_PREFIX}7", "new")
    recover_bundle(tmp_path)
    assert tag_of(tmp_path) == "new" and leftovers(tmp_path) == []


def test_recovery_rolls_back_when_the_new_bundle_is_incomplete(tmp_path: Path) -> None:
    make_bundle(tmp_path / f"{OLD_PREFIX}7", "old")
    make_bundle(tmp_path / f"{NEW_PREFIX}7", "half", complete=False)
    recover_bundle(tmp_path)
    assert tag_of(tmp_path) == "old" and leftovers(tmp_path) == []


def test_recovery_removes_a_finished_switchs_old_bundle_even_half_deleted(tmp_path: Path) -> None:
    make_bundle(tmp_path / "candlesticks", "new")
    make_bundle(tmp_path / f"{OLD_PREFIX}7", "old", complete=False)  # killed while removing it
    recover_bundle(tmp_path)
    assert tag_of(tmp_path) == "new" and leftovers(tmp_path) == []


def test_recovery_of_a_first_import(tmp_path: Path) -> None:
    make_bundle(tmp_path / f"{NEW_PREFIX}1", "new")  # complete, no earlier bundle: switch it in
    recover_bundle(tmp_path)
    assert tag_of(tmp_path) == "new" and leftovers(tmp_path) == []
    shutil.rmtree(tmp_path / "candlesticks")
    make_bundle(tmp_path / f"{NEW_PREFIX}2", "half", complete=False)  # incomplete: no bundle at all
    recover_bundle(tmp_path)
    assert not (tmp_path / "candlesticks").exists() and leftovers(tmp_path) == []


def test_recovery_leaves_a_running_imports_directory_alone(tmp_path: Path) -> None:
    make_bundle(tmp_path / "candlesticks", "old")
    make_bundle(tmp_path / f"{NEW_PREFIX}1", "half", complete=False)
    with _bundle_lock(tmp_path, wait=True):  # as held by an import writing that directory
        recover_bundle(tmp_path)
        assert leftovers(tmp_path) == [f"{NEW_PREFIX}1"]
    recover_bundle(tmp_path)
    assert leftovers(tmp_path) == []


def test_opening_the_workspace_recovers_before_use(tmp_path: Path) -> None:
    make_bundle(tmp_path / f"{OLD_PREFIX}7", "old")
    make_bundle(tmp_path / f"{NEW_PREFIX}7", "new")
    assert Workspace(tmp_path).candlesticks_dir == tmp_path / "candlesticks"  # naming a path changes nothing
    assert len(leftovers(tmp_path)) == 2
    ws = Workspace.open(tmp_path)
    assert json.loads(ws.bundle_file.read_text()) == {"tag": "new"} and leftovers(tmp_path) == []
    assert Workspace.open(tmp_path / "missing").candlesticks_dir == tmp_path / "missing" / "candlesticks"


def test_every_command_opens_its_workspace_recovered(tmp_path: Path) -> None:
    from epoch_builder.cli import main

    make_bundle(tmp_path / f"{OLD_PREFIX}7", "old")
    make_bundle(tmp_path / f"{NEW_PREFIX}7", "new")
    main(["status", "--workspace", str(tmp_path)])  # any command: status reads nothing of the bundle
    assert tag_of(tmp_path) == "new" and leftovers(tmp_path) == []


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
def test_commit_replaces_the_whole_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool) -> None:
    if not exchange:  # platforms or filesystems without renameat2(RENAME_EXCHANGE)
        monkeypatch.setattr(bundle, "_exchange", lambda a, b: False)
    old = make_bundle(tmp_path / "candlesticks", "old")
    (old / "normalized_prediction_candlesticks.parquet").write_text("an epoch's")
    commit_bundle(tmp_path, fill_new)
    assert sorted(os.listdir(tmp_path / "candlesticks")) == ["bundle.json", "candlesticks.parquet"]
    assert tag_of(tmp_path) == "new" and leftovers(tmp_path) == []


def test_a_linked_bundle_directory_is_replaced_and_its_target_kept(tmp_path: Path) -> None:
    elsewhere = make_bundle(tmp_path / "elsewhere", "old")
    root = tmp_path / "ws"
    root.mkdir()
    (root / "candlesticks").symlink_to(elsewhere)
    commit_bundle(root, fill_new)
    assert not (root / "candlesticks").is_symlink() and tag_of(root) == "new" and leftovers(root) == []
    assert (elsewhere / "candlesticks.parquet").read_text() == "old"


def test_a_failing_second_rename_puts_the_old_bundle_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bundle, "_exchange", lambda a, b: False)
    make_bundle(tmp_path / "candlesticks", "old")
    real_rename = os.rename

    def rename(src: Path, dst: Path) -> None:
        if Path(src).name.startswith(NEW_PREFIX):
            raise OSError(5, "Input/output error")
        real_rename(src, dst)

    monkeypatch.setattr(bundle.os, "rename", rename)
    with pytest.raises(OSError):
        commit_bundle(tmp_path, fill_new)
    monkeypatch.setattr(bundle.os, "rename", real_rename)
    assert tag_of(tmp_path) == "old" and leftovers(tmp_path) == []


def test_a_failed_import_leaves_no_directory_behind(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    import_candlesticks(ws, [bundled_sample()], log=quiet)
    before = {p.name: p.read_bytes() for p in ws.candlesticks_dir.iterdir()}

    def failing_write(directory: Path) -> None:
        (directory / "candlesticks.parquet").write_text("partial")
        raise EpochBuilderError("disk full")

    with pytest.raises(EpochBuilderError, match="disk full"):
        commit_bundle(ws.root, failing_write)
    assert {p.name: p.read_bytes() for p in ws.candlesticks_dir.iterdir()} == before
    assert leftovers(ws.root) == []


# --- SIGKILL at random points of a real import -------------------------------------------


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir()}


def cli_import(root: Path) -> list[str]:
    return [sys.executable, "-m", "epoch_builder", "candlesticks", "import", "--sample", "--workspace", str(root),
            *NEW_ARGS]


def classify(root: Path, old: dict[str, bytes], new: dict[str, bytes]) -> str:
    """'old' or 'new' if the bundle is exactly one of them, each file consistent with its bundle.json."""
    assert leftovers(root) == [], "recovery left temporary directories"
    files = snapshot(root / "candlesticks")
    bundle = json.loads(files["bundle.json"])
    if files == old:
        assert bundle["interval_minutes"] == 30 and not bundle["export_csv"]
        return "old"
    assert set(files) == NEW_FILES, f"a mix: {sorted(files)}"
    assert bundle["interval_minutes"] == 60 and bundle["export_csv"]
    assert {name: data for name, data in files.items() if name != "bundle.json"} == {
        name: data for name, data in new.items() if name != "bundle.json"}  # bundle.json differs by its time
    return "new"


def check_consistent(directory: Path) -> None:
    bundle = json.loads((directory / "bundle.json").read_text())
    minute = read_candles(directory / "candlesticks.parquet")
    prediction = read_candles(directory / "prediction_candlesticks.parquet")
    assert len(minute) == bundle["candles"] and len(prediction) == bundle["prediction_candles"]
    assert (np.diff(prediction["ot"].to_numpy()) == bundle["interval_minutes"] * 60_000).all()
    assert (directory / "candlesticks.csv").exists() == bundle["export_csv"]
    assert (directory / "prediction_candlesticks.csv").exists() == bundle["export_csv"]


def test_sigkill_at_random_points_leaves_the_old_or_the_new_bundle(tmp_path: Path) -> None:
    template = tmp_path / "template"
    import_candlesticks(Workspace(template), [bundled_sample()], interval_minutes=30, log=quiet)
    old = snapshot(template / "candlesticks")
    assert set(old) == OLD_FILES
    check_consistent(template / "candlesticks")

    reference = tmp_path / "reference"  # one uninterrupted run: the new bundle, and how long a run takes
    shutil.copytree(template, reference)
    started = time.monotonic()
    subprocess.run(cli_import(reference), check=True, capture_output=True, timeout=120)
    duration = time.monotonic() - started
    new = snapshot(reference / "candlesticks")
    assert set(new) == NEW_FILES and leftovers(reference) == []
    check_consistent(reference / "candlesticks")

    rng = random.Random(20240601)
    kills = 8
    outcomes = []
    for i in range(kills):  # one random point in each eighth of the run, so the kills cover all of it
        root = tmp_path / f"kill{i}"
        shutil.copytree(template, root)
        delay = duration * (i + rng.random()) / kills
        proc = subprocess.Popen(cli_import(root), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        recover_bundle(root)  # what every later command does first (Workspace.open)
        outcomes.append((round(delay, 2), proc.returncode, classify(root, old, new)))
        check_consistent(root / "candlesticks")
    assert len(outcomes) == kills, outcomes
