"""One shape for every command: results on stdout, timestamped messages on stderr, events apart,
progress bars only on a terminal, -q/-v, --json, exit statuses, completion, former option names."""

from __future__ import annotations

import argparse
import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

import console.cli
import epoch_builder.cli
import remote.cli
from epoch_builder.workspace import Workspace

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")
DEMO_GRID = Path(epoch_builder.cli.__file__).parent / "data" / "demo_grid.json"


def run(ws: Workspace, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "epoch_builder", *args, "--workspace", str(ws.root)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})


def test_events_on_stdout_keep_stdout_pure_json_lines(small_epoch: Workspace) -> None:
    done = run(small_epoch, "generate-regression-training-configs", "--grid", str(DEMO_GRID), "--events", "-")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]  # every stdout line is an event
    assert events and all(e["stage"] == "generate-regression-training-configs" for e in events)
    # The result moved to stderr, beside the timestamped messages.
    assert "8 training configs in 6 batches" in done.stderr
    messages = [line for line in done.stderr.splitlines() if "configs validated" in line]
    assert messages and all(TIMESTAMP.match(line) for line in messages)


def test_quiet_keeps_results_and_json_is_one_document(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    done = run(ws, "candlesticks", "import", "--sample", "-q", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["candles"], summary["prediction_candles"], summary["interval_minutes"]) == (30240, 1008, 30)
    assert done.stderr == ""  # -q: no messages (and no bars: stderr is not a terminal)
    talkative = run(ws, "candlesticks", "import", "--sample", "-v")
    assert talkative.stdout.startswith("imported 30,240 1m candles and 1,008 30m candles")
    assert TIMESTAMP.match(talkative.stderr) and "bundle written" in talkative.stderr


def _on_a_terminal(ws: Workspace, *args: str) -> str:
    """Run with stderr on a pseudo-terminal (stdout piped); returns what the terminal showed."""
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "epoch_builder", *args, "--workspace", str(ws.root)],
                               stdout=subprocess.PIPE, stderr=follower, env={**os.environ, "COLUMNS": "100"})
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    process.wait(timeout=300)
    os.close(leader)
    assert process.returncode == 0, shown.decode(errors="replace")
    return shown.decode(errors="replace")


def test_progress_bars_only_on_a_terminal_and_not_with_no_progress(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    shown = _on_a_terminal(ws, "candlesticks", "import", "--sample")
    assert "reading candles" in shown and "2/2" in shown and "30,240 rows" in shown
    piped = run(ws, "candlesticks", "import", "--sample")
    assert "reading candles" not in piped.stderr and "\x1b[" not in piped.stderr
    plain = _on_a_terminal(ws, "candlesticks", "import", "--sample", "--no-progress")
    assert "reading candles" not in plain and "bundle written" in plain


def test_exit_statuses_tell_failure_from_bad_usage(small_epoch: Workspace, tmp_path: Path) -> None:
    assert epoch_builder.cli.main(["export-epoch", "--best", "--workspace", str(small_epoch.root)]) == 1  # no build
    assert epoch_builder.cli.main(["regressions", "rank", "--top", "0", "--workspace", str(small_epoch.root)]) == 2
    with pytest.raises(SystemExit) as usage:
        epoch_builder.cli.main(["build-prediction-models", "--top", "many"])
    assert usage.value.code == 2
    empty = Workspace(tmp_path / "empty")
    assert epoch_builder.cli.main(["create-epoch", "--id", "_XYZ", "--workspace", str(empty.root)]) == 1  # no candles
    assert epoch_builder.cli.main(["create-epoch", "--id", "no-underscore", "--workspace", str(empty.root)]) == 2
    assert "exit status: 0 done, 1 failed" in epoch_builder.cli.build_parser().format_help()


def test_one_name_per_idea_with_former_names_hidden() -> None:
    parser = epoch_builder.cli.build_parser()
    commands = {name: sub for action in parser._actions if isinstance(action, argparse._SubParsersAction)
                for name, sub in action.choices.items()}
    build_help = commands["build-prediction-models"].format_help()
    assert "--top N" in build_help and "--limit" not in build_help
    assert commands["build-prediction-models"].parse_args(["--limit", "7"]).top == 7
    sweep = commands["find-profitable-configs"]
    assert "--restart" not in sweep.format_help() and "--force" in sweep.format_help()
    assert sweep.parse_args(["--batch", "b.json", "--restart"]).force is True
    assert sweep.parse_args(["--batch", "b.json"]).force is False


@pytest.mark.parametrize("program, build", [("epoch-builder", epoch_builder.cli.build_parser),
                                            ("epoch-cluster", remote.cli.build_parser),
                                            ("epoch-console", console.cli.build_parser)])
def test_every_program_prints_a_completion_script(program: str, build, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        build().parse_args(["--print-completion", "bash"])
    assert done.value.code == 0
    script = capsys.readouterr().out
    assert "complete" in script and program.replace("-", "_") in script
    if program == "epoch-builder":
        assert "train-regression-batch" in script and "find-profitable-configs" in script


def test_a_training_job_log_is_timestamped_lines_only(small_epoch: Workspace) -> None:
    """What a job log shows for hours: our timestamped lines, no TensorFlow native or retracing noise."""
    assert run(small_epoch, "generate-regression-training-configs", "--grid", str(DEMO_GRID)).returncode == 0
    done = run(small_epoch, "train-regression-batch", "--batch", "KR_DNN_1_1", "--max-epochs", "2")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert [line for line in lines if not TIMESTAMP.match(line)] == [] and len(lines) >= 3 * 2
    assert "KR_DNN_S2" in done.stdout and done.stdout.splitlines()[0].split() == ["#", "id", "epochs", "test_loss", "accuracy"]
