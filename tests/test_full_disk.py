"""A full disk (a small tmpfs mounted for the test) gives one line naming the file being written and the
free space, and leaves nothing half-made: the old bundle stays, no epoch skeleton, no Epoch File, no
temporaries. Skipped, with the reason, where mounting is not allowed."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from epoch_builder.workspace import Workspace

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "epoch_builder.cli"]


@pytest.fixture
def small_disk(tmp_path: Path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not allowed'}): the full-disk test needs one")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave_bytes: int) -> None:
    """Take the disk's free space down to about ``leave_bytes``."""
    free = shutil.disk_usage(disk).free
    with open(disk / "filler", "ab") as fh:
        fh.write(b"\0" * max(0, free - leave_bytes))


def snapshot(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def run(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args, "--workspace", str(root)], capture_output=True, text=True, timeout=300)


def assert_one_line(done: subprocess.CompletedProcess, file_part: str) -> None:
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert not any("Traceback" in line for line in lines), done.stderr
    assert lines[-1].startswith("error: ") and file_part in lines[-1], lines[-1]
    assert "no space left on the device while writing it (" in lines[-1] and "MB free there); free some space" in lines[-1]


def test_import_and_create_epoch_on_a_full_disk(small_disk: Path, sample_csv: Path) -> None:
    root = small_disk / "ws"
    assert run(root, "candlesticks", "import", "--sample", "--interval", "30").returncode == 0
    bundle = snapshot(root / "candlesticks")
    fill(small_disk, 200_000)

    done = run(root, "candlesticks", "import", str(sample_csv), "--interval", "15")
    assert_one_line(done, f"{root}/candlesticks.new-")
    assert snapshot(root / "candlesticks") == bundle
    assert sorted(os.listdir(root)) == ["candlesticks"]

    done = run(root, "create-epoch", "--id", "_ADVX", "--profile", "small")
    assert_one_line(done, str(root))
    assert snapshot(root / "candlesticks") == bundle
    assert sorted(os.listdir(root)) == ["candlesticks"]  # no _ADVX/ skeleton, no config/epoch.json

    os.unlink(small_disk / "filler")  # room again: the same command now works
    assert run(root, "create-epoch", "--id", "_ADVX", "--profile", "small").returncode == 0


def test_export_on_a_full_disk(small_disk: Path, trained: Workspace) -> None:
    from tests.test_build_export import _sweep_all, cli, initialize

    assert initialize(trained) == 0 and _sweep_all(trained) > 0
    assert cli(trained, "build-prediction-models", "--top", "1", "--no-progress") == 0
    root = small_disk / "ws"
    shutil.copytree(trained.root, root)
    before = snapshot(root)
    epoch = Workspace(root).epoch()
    fill(small_disk, 0)
    done = run(root, "export-epoch", "--best")
    assert_one_line(done, str(epoch.epoch_file))
    assert snapshot(root) == before  # no Epoch File, no temporary, candles and epoch.json in place
