"""`epoch-cluster` end to end against real sshd: JSON output and exit codes scripts rely on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PYTHON

CLI = [sys.executable, "-m", "remote.cli"]


@pytest.fixture
def config_file(sshd, tmp_path: Path) -> Path:
    path = tmp_path / "cluster.json"
    doc = sshd.config_dict(python=PYTHON)
    for server in doc["servers"]:
        server["reboot_command"] = ["echo", "reboot requested"]
    path.write_text(json.dumps(doc))
    return path


def cli(config_file: Path, *args: str, local_root: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    extra = ["--local-root", str(local_root)] if local_root else []
    return subprocess.run([*CLI, "--config", str(config_file), *extra, *args], capture_output=True, text=True, timeout=timeout)


def test_status_jobs_run_logs_stop_push(config_file: Path, sshd, tmp_path: Path) -> None:
    out = cli(config_file, "--json", "status")
    assert out.returncode == 0, out.stderr
    assert set(json.loads(out.stdout)) == {"srv1", "srv2"}

    out = cli(config_file, "--json", "run", "--server", "srv2", "--", "candlesticks", "import", "--sample")
    assert out.returncode == 0, out.stderr
    job_id = json.loads(out.stdout)["srv2"]["job_id"]
    out = cli(config_file, "logs", "--server", "srv2", "-f", job_id)
    assert out.returncode == 0 and "imported 30240 1m candles" in out.stdout
    out = cli(config_file, "--json", "jobs", "--server", "srv2")
    assert json.loads(out.stdout)["srv2"][0]["label"] == "exited 0"

    out = cli(config_file, "run", "--server", "srv1", "--", "status", "--watch", "1")
    job_id = out.stdout.split()[1]
    conflict = cli(config_file, "run", "--server", "srv1", "--", "status")
    assert conflict.returncode == 1 and "is running on this host" in conflict.stderr
    out = cli(config_file, "--json", "stop", "--server", "srv1", "--grace", "3", job_id)
    assert out.returncode == 0 and json.loads(out.stdout)["srv1"]["stopped"]

    local = tmp_path / "ws"
    (local / "config").mkdir(parents=True)
    (local / "config" / "epoch.json").write_text('{"id": "_E"}')
    out = cli(config_file, "--json", "push", "config", local_root=local)
    assert out.returncode == 0, out.stderr
    assert all(r["files_sent"] == 1 for r in json.loads(out.stdout).values())
    out = cli(config_file, "--json", "push", "config", local_root=local)
    assert all(r["bytes_sent"] == 0 for r in json.loads(out.stdout).values())


def test_power_connect_and_exit_codes(config_file: Path, sshd) -> None:
    assert cli(config_file, "reboot", "--server", "srv1").returncode == 1  # needs --yes
    out = cli(config_file, "--json", "reboot", "--server", "srv1", "--yes")
    assert out.returncode == 0 and json.loads(out.stdout) == {"srv1": {"sent": True, "exit_status": 0}}
    out = cli(config_file, "--json", "connect", "--server", "srv1", "--print")
    assert json.loads(out.stdout)[0] == "ssh"
    bad = cli(config_file, "status", "--server", "nope")
    assert bad.returncode == 2 and "unknown server 'nope'; configured: srv1, srv2" in bad.stderr
    sshd.servers[1].kill()
    partial = cli(config_file, "--json", "status")
    assert partial.returncode == 1 and "server srv2" in partial.stderr
    assert set(json.loads(partial.stdout)) == {"srv1"}
