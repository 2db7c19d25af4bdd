"""find-profitable-configs: output, exact resume after kill -9 (real subprocess), torn journals."""

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

from epoch_builder.errors import EpochBuilderError
from epoch_builder.prediction.assets import load_backtest_data, load_test_range, write_assets
from epoch_builder.prediction.configs import Grid, write_batches
from epoch_builder.prediction.engine import evaluate_rows
from epoch_builder.prediction.sweep import find_profitable_configs, journal_path, output_path
from epoch_builder.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]


def informed_features(ws: Workspace, count: int):
    """Features that partly know the test range's future (so some models are profitable) plus noise,
    one regression per seed. Only the sweep is under test here; real regressions are in test_build_export."""
    test_range = load_test_range(ws)
    lb, pr = test_range.lookback, test_range.predictions

    def feature_of(rid: str, normalized_close: np.ndarray) -> np.ndarray:
        n = len(normalized_close) - lb - pr
        now = normalized_close[lb - 1: lb - 1 + n]
        future = normalized_close[lb + pr - 1: lb + pr - 1 + n]
        change = (future - now) / now * 100
        noise = np.random.default_rng(int(rid[1:])).normal(0, 0.4, n)
        return np.round(np.clip(change * 2 + noise, -1, 1), 6)

    return [f"R{i}" for i in range(count)], feature_of


def prepare(ws: Workspace, regressions: int, per_model: int, pcrs=(0.5, 1.0), batch_size: int = 100_000) -> list[Path]:
    ids, feature_of = informed_features(ws, regressions)
    write_assets(ws, ids, pcrs, feature_of, log=lambda *_: None)
    grid = Grid(tuple(ids), pcrs=tuple(pcrs), per_model=per_model)
    return write_batches(ws.epoch(), grid, ws.load_epoch_config().seed, batch_size, log=lambda *_: None)


def quiet(*_: object) -> None:
    pass


def test_profitable_configs_are_the_engine_verdicts_in_batch_order(small_epoch: Workspace) -> None:
    batches = prepare(small_epoch, regressions=8, per_model=3, batch_size=300)
    assert len(batches) == 3
    data, _ = load_backtest_data(small_epoch)
    total_profitable = 0
    for batch in batches:
        result = find_profitable_configs(small_epoch, batch.name, workers=2, log=quiet, flush_configs=50)
        configs = json.loads(batch.read_text())
        expected = [c for c, e in zip(configs, evaluate_rows(data, configs)) if e.accuracy >= 55 and e.profit > 0]
        assert json.loads(output_path(small_epoch, batch).read_text()) == expected
        assert result.profitable == len(expected) and result.configs == len(configs)
        assert not journal_path(small_epoch, batch).exists()
        total_profitable += len(expected)
    assert 0 < total_profitable < sum(len(json.loads(b.read_text())) for b in batches)
    # a finished batch is not evaluated again
    again = find_profitable_configs(small_epoch, batches[0].name, log=quiet)
    assert again.evaluated_now == 0


def test_resume_from_any_prefix_of_the_journal_is_exact(small_epoch: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """kill -9 can leave only a prefix of the bytes written: resume from many prefixes
    (every line boundary, one byte either side, and inside lines) and compare."""
    batch = prepare(small_epoch, regressions=8, per_model=3)[0]
    reference = find_profitable_configs(small_epoch, batch.name, workers=1, log=quiet, flush_configs=40)
    expected = output_path(small_epoch, batch).read_bytes()
    # record a full journal by stopping just before the final write
    journal_file = journal_path(small_epoch, batch)
    output_path(small_epoch, batch).unlink()
    original_unlink = Path.unlink
    with monkeypatch.context() as patch:  # keep the finished journal instead of removing it
        patch.setattr(Path, "unlink", lambda self, missing_ok=False: None if self == journal_file
                      else original_unlink(self, missing_ok))
        find_profitable_configs(small_epoch, batch.name, workers=1, log=quiet, flush_configs=40)
    full = journal_file.read_bytes()
    boundaries = [i + 1 for i, byte in enumerate(full) if byte == ord("\n")]
    assert len(boundaries) > 10
    cuts = {0, len(full)}
    for b in boundaries[::3]:
        cuts.update({b - 1, b, b + 1})
    cuts.update(random.Random(1).sample(range(len(full)), 8))
    for cut in sorted(c for c in cuts if 0 <= c <= len(full)):
        journal_file.write_bytes(full[:cut])
        output_path(small_epoch, batch).unlink(missing_ok=True)
        result = find_profitable_configs(small_epoch, batch.name, workers=1, log=quiet, flush_configs=40)
        assert output_path(small_epoch, batch).read_bytes() == expected, cut
        assert result.profitable == reference.profitable
        assert not journal_file.exists()


def test_journal_of_another_batch_content_is_refused(small_epoch: Workspace) -> None:
    batch = prepare(small_epoch, regressions=8, per_model=3)[0]
    journal_file = journal_path(small_epoch, batch)
    journal_file.parent.mkdir(parents=True, exist_ok=True)
    from epoch_builder.prediction.sweep import _line

    journal_file.write_bytes(_line({"batch": batch.name, "sha256": "0" * 64, "configs": 1, "assets_id": "x"}))
    with pytest.raises(EpochBuilderError, match="journal of other inputs.*--force"):
        find_profitable_configs(small_epoch, batch.name, workers=1, log=quiet)
    result = find_profitable_configs(small_epoch, batch.name, workers=1, log=quiet, restart=True)
    assert result.evaluated_now == result.configs


def test_missing_assets_and_batches_are_named(small_epoch: Workspace) -> None:
    with pytest.raises(EpochBuilderError, match="batch file not found"):
        find_profitable_configs(small_epoch, "_SMALL_9_9.json", log=quiet)
    batch = small_epoch.epoch().configs_dir / "_SMALL_1_1.json"
    batch.parent.mkdir(parents=True, exist_ok=True)
    batch.write_text("[]")
    with pytest.raises(EpochBuilderError, match="assets are missing.*initialize-prediction-models"):
        find_profitable_configs(small_epoch, batch.name, log=quiet)


def test_malformed_batch_is_refused_before_any_work(small_epoch: Workspace) -> None:
    batch = prepare(small_epoch, regressions=8, per_model=3)[0]
    configs = json.loads(batch.read_text())
    del configs[5]["msf"]
    batch.write_text(json.dumps(configs))
    with pytest.raises(EpochBuilderError, match=r"_SMALL_1_1.json: entry 5: missing key\(s\) msf"):
        find_profitable_configs(small_epoch, batch.name, log=quiet)
    assert not journal_path(small_epoch, batch).exists()


def _run_sweep(ws: Workspace, batch: Path, events: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "epoch_builder.cli", "find-profitable-configs",
         "--workspace", str(ws.root), "--events", str(events), "--batch", batch.name, "--workers", "2",
         "--journal-every", "200"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )


def _done(events: Path) -> int:
    if not events.exists():
        return 0
    lines = [json.loads(line) for line in events.read_text().splitlines() if line.strip()]
    return max((e["done"] for e in lines if e["stage"] == "find-profitable-configs"), default=0)


@pytest.mark.slow
def test_kill_9_twice_in_one_batch_gives_the_uninterrupted_result(small_epoch: Workspace, tmp_path: Path) -> None:
    batch = prepare(small_epoch, regressions=14, per_model=5, pcrs=(0.5, 1.0))[0]
    total = len(json.loads(batch.read_text()))
    assert total == 2 * 2 * 3 * 2002
    reference_ws = Workspace(tmp_path / "reference")
    shutil.copytree(small_epoch.root, reference_ws.root)
    find_profitable_configs(reference_ws, batch.name, workers=2, log=quiet)
    expected = output_path(reference_ws, batch).read_bytes()

    events = tmp_path / "events.jsonl"
    kills: list[int] = []
    rng = random.Random(4)
    for attempt in range(2):
        before = _done(events)
        process = _run_sweep(small_epoch, batch, events)
        target = before + rng.randint(total // 8, total // 4)
        deadline = time.monotonic() + 120
        while _done(events) < target and process.poll() is None and time.monotonic() < deadline:
            time.sleep(rng.uniform(0.005, 0.05))
        assert process.poll() is None, f"the sweep ended before the kill: {process.stderr.read().decode()[-400:]}"
        os.killpg(process.pid, signal.SIGKILL)  # the job's whole process group, as `remote` stops a job
        process.wait()
        kills.append(_done(events))
        assert journal_path(small_epoch, batch).exists()
        assert not output_path(small_epoch, batch).exists()
    assert 0 < kills[0] < kills[1] < total

    process = _run_sweep(small_epoch, batch, events)
    assert process.wait(timeout=180) == 0, process.stderr.read().decode()[-400:]
    assert output_path(small_epoch, batch).read_bytes() == expected
    assert not journal_path(small_epoch, batch).exists()
    progress = [json.loads(line) for line in events.read_text().splitlines()]
    last = progress[-1]
    assert (last["done"], last["total"], last["profitable"]) == (total, total, len(json.loads(expected)))
    assert any("eta_s" in e and "configs_per_s" in e for e in progress[:-1])
