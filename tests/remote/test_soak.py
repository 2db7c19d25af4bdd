"""The board under a fault storm (tests/fault_storm.py), at a size `make test` affords: a small epoch's two
stages over 4 loopback sshd servers while sshd listeners and sessions, jobs, helper calls and the dispatcher
are killed and servers restarted at seeded random moments. `bench/bench_soak.py` runs it with 200+ faults."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import sshd_cluster
from fault_storm import Storm, epoch_with_batches, undisturbed

pytestmark = [pytest.mark.slow, pytest.mark.ssh, pytest.mark.timeout(900)]


def test_a_fault_storm_changes_no_result(_small_epoch_template: Path, tmp_path: Path) -> None:
    if not sshd_cluster.sshd_available():
        pytest.skip("OpenSSH sshd not installed (run `make system-deps`)")
    root = epoch_with_batches(tmp_path / "ws", _small_epoch_template, models_per_batch=2)
    reference = tmp_path / "reference"
    shutil.copytree(root, reference)
    storm = Storm(root, tmp_path / "storm", servers=4, seed=7, faults=16, mean_gap_s=1.0)
    try:
        report = storm.run(stage_timeout_s=360)
    finally:
        storm.close()
    report.undisturbed_s = undisturbed(reference, tmp_path / "calm", servers=4).storm_s
    storm.compare(reference)
    print("\n".join(report.lines()))
    assert sum(report.faults.values()) >= 8, report.lines()
    assert report.compared[0] == 6 and report.compared[1] > 0, report.lines()
    assert not report.differences, report.differences
    assert not report.outside_changes, report.outside_changes
    assert not report.tracebacks, report.tracebacks
    assert report.extra_starts <= report.restart_causing_faults, report.lines()
