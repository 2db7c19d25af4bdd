"""kill -9 a server's sshd (listener and sessions) a second into `epoch-cluster push candlesticks` of a few
hundred MB: the push ends with one clear line about the lost link, and stderr holds nothing else -- no
asyncio "Task exception was never retrieved" reports of SFTP requests left in flight."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import PYTHON

pytestmark = [pytest.mark.slow, pytest.mark.ssh]
FILES, MB_EACH = 6, 60  # large files travel over SFTP, several at once


def staged_bytes(root: Path) -> int:
    staging = root / ".sync-staging"
    return sum(p.stat().st_size for p in staging.rglob("*") if p.is_file()) if staging.exists() else 0


def test_a_link_lost_mid_push_leaves_one_line_and_no_asyncio_noise(sshd, tmp_path: Path) -> None:
    local = tmp_path / "controller"
    candles = local / "candlesticks"
    candles.mkdir(parents=True)
    for i in range(FILES):
        with open(candles / f"part{i}.bin", "wb") as fh:
            for _ in range(MB_EACH):
                fh.write(os.urandom(1 << 20))
    config = tmp_path / "cluster.json"
    config.write_text(json.dumps(sshd.config_dict(python=PYTHON, connect_timeout_s=3, keepalive_interval_s=1,
                                                  keepalive_count_max=2)))
    server = sshd.servers[0]
    for kill_after_mb in (10, 40, 90, 160):  # the leak depends on what is in flight: a few moments
        shutil.rmtree(server.root / ".sync-staging", ignore_errors=True)
        push = subprocess.Popen([sys.executable, "-m", "remote.cli", "--config", str(config), "--workspace",
                                 str(local), "push", "candlesticks", "--server", server.name],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while staged_bytes(server.root) < kill_after_mb << 20 and push.poll() is None:
            assert time.monotonic() < deadline, "the push never got that far"
            time.sleep(0.02)
        server.kill()
        _, err = push.communicate(timeout=120)
        server.start()
        if push.returncode == 0:
            continue  # it finished first: nothing was lost this time
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"error: server {server.name} (") and "link lost" in lines[0], err
        assert "never retrieved" not in err and "Traceback" not in err
