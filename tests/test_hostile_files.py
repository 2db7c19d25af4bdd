"""Damaged state files get one line naming the file, never a traceback: bytes that are not UTF-8 text in
each JSON file a command reads (a disk error, a bad copy, a hostile hand)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from epoch_builder.workspace import Workspace

NOT_UTF8 = b'{"id": "\xff\xfe\x80 damaged"}'


def run_cli(main, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(argv)
    return code, capsys.readouterr().err.strip().splitlines()


def damage(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(NOT_UTF8)
    return path


@pytest.mark.parametrize("command", ["models list", "regressions rank", "initialize-prediction-models",
                                     "export-epoch", "train-regression-batch", "epoch-cluster board"])
def test_a_state_file_that_is_not_utf8_is_one_line_naming_it(command: str, trained: Workspace,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from epoch_builder.cli import main as builder
    from remote.cli import main as cluster

    ws = trained
    epoch = ws.epoch()
    ids = sorted(p.parent.name for p in epoch.regressions_dir.glob("*/certificate.json"))
    root = ["--workspace", str(ws.root)]
    if command == "models list":
        bad, code_lines = damage(epoch.build_file), run_cli(builder, ["models", "list", *root], capsys)
    elif command == "regressions rank":
        bad, code_lines = damage(epoch.regression_certificate_file(ids[0])), run_cli(builder, ["regressions", "rank", *root], capsys)
    elif command == "initialize-prediction-models":
        bad = damage(epoch.regression_certificate_file(ids[1]))
        code_lines = run_cli(builder, ["initialize-prediction-models", "--regressions", ",".join(ids[:4]),
                                       "--allow-few-regressions", "--regressions-per-model", "2", *root], capsys)
    elif command == "export-epoch":
        bad, code_lines = damage(epoch.build_file), run_cli(builder, ["export-epoch", "--model-id", "M", *root], capsys)
    elif command == "train-regression-batch":
        batch = next(epoch.regression_training_configs_dir.glob("*/*.json"))
        from epoch_builder.storage import read_json

        first = read_json(batch)["configs"][0]["id"]
        shutil.rmtree(epoch.regression_dir(first))  # not trained yet: its checkpoint is read to resume
        bad = damage(epoch.regression_checkpoint_dir(first) / "state.json")
        code_lines = run_cli(builder, ["train-regression-batch", "--category", batch.parent.name, "--batch", batch.name,
                                       "--max-epochs", "1", *root], capsys)
    else:
        bad = damage(ws.epoch_config_file)
        code_lines = run_cli(cluster, [*root, "board"], capsys)
    code, lines = code_lines
    assert code != 0
    assert not any("Traceback" in line for line in lines), lines
    assert lines[-1] == f"error: {bad}: not UTF-8 text (byte 0xff at offset 8), so not valid JSON; the file is damaged", lines


def test_a_text_decompression_bomb_is_refused_at_its_first_bad_row_in_bounded_memory(tmp_path: Path) -> None:
    """300 MB of one valid row repeated, gzip'd to about a megabyte: refused at row 3 while streaming, the
    import's memory bounded by its block size, not by the inflated file."""
    import gzip
    import subprocess
    import sys
    import time

    bomb = tmp_path / "bomb.csv.gz"
    row = b"2023-03-01 00:00:00+00:00,23140.48,23150.77,23128.52,23142.31,2.131777\n"
    block = row * (1 << 20 // len(row) + 1)
    with gzip.open(bomb, "wb", compresslevel=1) as out:
        out.write(b"open_time,open,high,low,close,volume\n")
        for _ in range(300 * (1 << 20) // len(block)):
            out.write(block)
    assert bomb.stat().st_size < 5 << 20
    # The import runs under a fresh parent that reports its children's peak RSS (this test process's
    # children include every earlier test's).
    measure = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(done.returncode)")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", measure, sys.executable, "-m", "epoch_builder.cli", "candlesticks",
                           "import", str(bomb), "--workspace", str(tmp_path / "ws")],
                          capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - started
    *lines, peak_kib = done.stderr.strip().splitlines()
    peak_mb = int(peak_kib) / 1024
    done.stderr = "\n".join(lines)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: {bomb}: row 3: open time 2023-03-01"), done.stderr
    print(f"bomb refused in {seconds:.1f} s, peak RSS {peak_mb:.0f} MB")
    assert peak_mb < 400, f"peak RSS {peak_mb:.0f} MB"  # the interpreter with pandas and pyarrow alone: ~140 MB
    assert seconds < 30, seconds
    assert not (tmp_path / "ws" / "candlesticks").exists()
