"""`regressions rank` and `models list` fit an 80-column terminal: ids cut to unique prefixes (and long
names to their short forms) only as far as needed, whole with --wide or --json, and whole in a pipe."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios

import pytest

from epoch_builder.workspace import Workspace
from tests.test_build_export import _sweep_all, cli, initialize

CLI = [sys.executable, "-m", "epoch_builder.cli"]


def run(ws: Workspace, *args: str, columns: int | None = None) -> subprocess.CompletedProcess:
    """The command with its stdout a pipe, or (``columns``) a terminal of that width, 24 rows high."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    argv = [*CLI, *args, "--workspace", str(ws.root)]
    if columns is None:
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, check=True)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    done = subprocess.run(argv, stdout=slave, stderr=subprocess.PIPE, timeout=120, env=env, check=True)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal's other end is closed: all read
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return subprocess.CompletedProcess(argv, 0, out.decode().replace("\r\n", "\n"), done.stderr.decode())


@pytest.mark.parametrize("command", [("regressions", "rank"), ("models", "list")])
def test_a_listing_fits_80_columns_and_shows_whole_ids_when_asked(command: tuple[str, str], trained: Workspace) -> None:
    if command[0] == "models":
        assert initialize(trained) == 0 and _sweep_all(trained) > 0
        assert cli(trained, "build-prediction-models", "--top", "5", "--no-progress") == 0
    ids = [row["id"] for row in json.loads(run(trained, *command, "--json").stdout)]
    assert len(ids) >= 5 and max(len(i) for i in ids) > 30

    narrow = run(trained, *command, columns=80)
    table = [line for line in narrow.stdout.splitlines() if line[:1].isdigit() or line.startswith("#")]
    assert table and all(len(line) <= 80 for line in table), "\n".join(table)
    shown = [line.split()[1] for line in table[1:]]
    assert len(set(shown)) == len(shown) == len(ids)
    assert all(full.startswith(short.rstrip("…")) for short, full in zip(shown, ids))  # a unique prefix of each
    assert "ids shortened to fit 80 columns" in narrow.stderr

    for whole in (run(trained, *command, "--wide", columns=80), run(trained, *command)):  # asked, or a pipe
        assert [line.split()[1] for line in whole.stdout.splitlines() if line[:1].isdigit()] == ids
