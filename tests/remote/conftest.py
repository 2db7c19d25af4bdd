"""Real OpenSSH servers on loopback for the remote tests (see tests/sshd_cluster.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: sshd_cluster

import sshd_cluster  # noqa: E402

from remote.cluster import Cluster  # noqa: E402

PYTHON = sys.executable  # the project venv's python: has epoch_builder installed

pytestmark = pytest.mark.ssh


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/remote" in str(item.fspath):
            item.add_marker(pytest.mark.ssh)


@pytest.fixture(scope="session")
def user_key(tmp_path_factory: pytest.TempPathFactory) -> sshd_cluster.UserKey:
    if not sshd_cluster.sshd_available():
        pytest.skip("OpenSSH sshd not installed (run `make system-deps`)")
    return sshd_cluster.UserKey.generate(tmp_path_factory.mktemp("client-key"))


@pytest.fixture
def sshd(tmp_path: Path, user_key: sshd_cluster.UserKey):
    """Two real sshd servers, each with its own host key and workspace root."""
    servers = sshd_cluster.SSHDCluster.start(tmp_path / "sshd", count=2, user_key=user_key)
    yield servers
    servers.stop()
    for server in servers.servers:  # a failed test must not leave its detached jobs running
        stop_leftover_jobs(server.root)


def stop_leftover_jobs(root: Path) -> None:
    from remote import host_program

    for job in host_program.cmd_list({"root": str(root)}):
        if job["state"] == "running":
            host_program.cmd_stop({"root": str(root), "job_id": job["id"], "grace_s": 1})


@pytest.fixture
async def cluster(sshd: sshd_cluster.SSHDCluster):
    """A connected remote.Cluster over the two sshd servers (strict host keys)."""
    cl = Cluster(sshd.cluster_config(python=PYTHON))
    results = await cl.connect_all()
    assert all(r is None for r in results.values()), results
    yield cl
    await cl.close()
