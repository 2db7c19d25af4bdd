"""Console fixtures: real sshd servers (tests/sshd_cluster.py), a cluster file for them,
and a helper that waits for the live app to reach a state."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: sshd_cluster

import sshd_cluster  # noqa: E402

PYTHON = sys.executable  # the project venv's python: has epoch_builder installed


@pytest.fixture(scope="session")
def console_user_key(tmp_path_factory: pytest.TempPathFactory) -> sshd_cluster.UserKey:
    if not sshd_cluster.sshd_available():
        pytest.skip("OpenSSH sshd not installed (run `make system-deps`)")
    return sshd_cluster.UserKey.generate(tmp_path_factory.mktemp("console-client-key"))


def stop_leftover_jobs(root: Path) -> None:
    """Stop jobs a failed test left running under ``root`` (only those jobs' own processes)."""
    from remote import host_program

    for job in host_program._all_jobs(str(root)) if root.is_dir() else []:
        if job["state"] == "running":
            for pid in host_program._job_members(job):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


@pytest.fixture
def sshd_pair(tmp_path: Path, console_user_key: sshd_cluster.UserKey):
    """Two real sshd servers on loopback, each with its own workspace root."""
    servers = sshd_cluster.SSHDCluster.start(tmp_path / "sshd", count=2, user_key=console_user_key)
    yield servers
    servers.stop()
    for server in servers.servers:
        stop_leftover_jobs(server.root)


def write_cluster_file(servers: sshd_cluster.SSHDCluster, path: Path, **server_overrides: object) -> Path:
    """cluster.json for the sshd servers; ``server_overrides`` apply to every server."""
    doc = servers.config_dict(PYTHON, connect_timeout_s=3, keepalive_interval_s=1, keepalive_count_max=2)
    for server in doc["servers"]:
        server.update(server_overrides)
    path.write_text(json.dumps(doc, indent=2))
    return path


def shown(app, screen_name: str) -> bool:
    """The named screen is on top and mounted: its widgets exist (pushing it is not enough, it composes later)."""
    return type(app.screen).__name__ == screen_name and app.screen.is_mounted


async def wait_for(pilot, predicate: Callable[[], object], timeout: float = 45.0, what: str = "condition") -> None:
    """Let the app run until ``predicate()`` is true; fail with ``what`` (and the app's
    notifications, which carry any error) after ``timeout`` seconds. The timeout is generous: `make test`
    runs a worker per core and a loaded CI machine is slower; a passing wait returns as soon as it holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            shown = list(getattr(pilot.app, 'messages', []))
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; notifications: {shown}")
        await pilot.pause(0.05)
        await asyncio.sleep(0.05)
