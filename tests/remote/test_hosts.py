"""SSHHost / LocalHost against real sshd: quoting, timeouts, host keys, channel limit, reconnect."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import os
from pathlib import Path

import pytest

import sshd_cluster
from remote.config import default_local_server
from remote.errors import HostKeyError, HostUnreachable, RemoteError
from remote.host_factory import make_host
from remote.hosts import HostState, LocalHost
from remote.ssh_host import SSHHost

from conftest import PYTHON
from remote import jobs as remote_jobs
from remote import status as remote_status

HOSTILE = ["a b", "x;touch pwned", "$(touch pwned)", "`touch pwned`", "'quoted'", '"dq"', "back\\slash", "*", "~", "-n"]


async def test_run_passes_hostile_arguments_literally(cluster, sshd) -> None:
    host = cluster.hosts["srv1"]
    result = await host.run(["printf", "%s\\n", *HOSTILE], cwd=str(sshd.servers[0].root))
    assert result.ok
    assert result.stdout.splitlines() == HOSTILE
    assert not any(p.name == "pwned" for p in sshd.servers[0].root.rglob("*"))
    assert not Path("pwned").exists()


async def test_run_reports_exit_status_and_stderr(cluster) -> None:
    result = await cluster.hosts["srv2"].run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.exit_status, result.stdout, result.stderr) == (3, "out\n", "err\n")


async def test_run_timeout_is_a_clear_error(cluster) -> None:
    with pytest.raises(RemoteError, match=r"server srv1: `sleep 5` timed out after 0.5 s"):
        await cluster.hosts["srv1"].run(["sleep", "5"], timeout=0.5)
    assert (await cluster.hosts["srv1"].run(["true"])).ok  # the connection is still usable


def _sleepers(marker: str) -> list:
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if marker in " ".join(proc.info["cmdline"] or []) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            pass
    return found


@pytest.mark.parametrize("server", ["srv1", "local"])
async def test_a_command_that_times_out_is_stopped_on_the_host_with_its_children(cluster, server, tmp_path) -> None:
    """The channel closing does not end a remote process: the timed-out command and the child it started are
    killed on the host, while a detached job started before keeps running."""
    host = cluster.hosts["srv1"] if server == "srv1" else LocalHost(default_local_server(str(tmp_path)))
    await host.connect()
    job = await remote_jobs.start_job(host, ["status", "--watch", "0.5"], force=True)
    marker = f"sleep {317 if server == 'srv1' else 318}"
    with pytest.raises(RemoteError, match=r"timed out after 1 s \(stopped"):
        await host.run(["sh", "-c", f"{marker}1 & {marker}2; wait"], timeout=1)
    for _ in range(50):
        if not _sleepers(marker):
            break
        await asyncio.sleep(0.1)
    assert not _sleepers(marker)
    assert (await remote_jobs.job_info(host, job.job_id)).state == "running"
    await remote_jobs.stop_job(host, job.job_id, grace_s=2)


async def test_many_commands_share_the_channel_limit(cluster) -> None:
    host = cluster.hosts["srv1"]
    results = await asyncio.gather(*(host.run(["echo", str(i)]) for i in range(24)))  # > OpenSSH MaxSessions 10
    assert [r.stdout.strip() for r in results] == [str(i) for i in range(24)]
    assert await host.ping() < 2


async def test_a_channel_refused_by_max_sessions_is_opened_again(sshd) -> None:
    """More channels than the server's MaxSessions (10): the refused opens wait for a free slot."""
    config = sshd.cluster_config(python=PYTHON, max_channels=16)
    host = SSHHost(config.servers[0], config.ssh)
    await host.connect()
    try:
        results = await asyncio.gather(*(host.run(["sh", "-c", f"sleep 0.2; echo {i}"]) for i in range(32)))
        assert [r.stdout.strip() for r in results] == [str(i) for i in range(32)]
        assert host.state is HostState.ONLINE and host.reconnects == 0
    finally:
        await host.close()


async def test_unknown_host_key_is_refused(sshd, tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    config = sshd.cluster_config(python=PYTHON, known_hosts=str(empty))
    host = SSHHost(config.servers[0], config.ssh)
    with pytest.raises(HostKeyError, match=r"server srv1 .*host key not verified.*ssh.host_key_policy: strict"):
        await host.connect()
    assert host.state is HostState.OFFLINE


async def test_changed_host_key_is_refused_even_with_accept_new(sshd, tmp_path: Path) -> None:
    other = sshd_cluster.keygen(tmp_path / "other_host_key")
    kind, blob = other.with_name(other.name + ".pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.servers[0].port} {kind} {blob}\n")
    config = sshd.cluster_config(python=PYTHON, known_hosts=str(known), host_key_policy="accept-new")
    with pytest.raises(HostKeyError, match=r"server srv1 .*its key differs from the one in known_hosts .*accept-new never "
                                           r"replaces a known key") as refused:
        await SSHHost(config.servers[0], config.ssh).connect()
    assert "strict" not in str(refused.value)  # the policy in force is not misreported
    assert known.read_text().count("\n") == 1  # nothing appended


async def test_a_missing_key_file_is_named(sshd, tmp_path: Path) -> None:
    config = sshd.cluster_config(python=PYTHON)
    server = dataclasses.replace(config.servers[0], key=tmp_path / "no_such_key")
    with pytest.raises(RemoteError, match=rf"server srv1 .*key file {tmp_path / 'no_such_key'} \(servers\[\]\.key\) not found"):
        await SSHHost(server, config.ssh).connect()


async def test_accept_new_records_the_key_of_a_new_host(sshd, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    config = sshd.cluster_config(python=PYTHON, known_hosts=str(known), host_key_policy="accept-new")
    async with SSHHost(config.servers[0], config.ssh) as host:
        assert (await host.run(["true"])).ok
    assert f"[127.0.0.1]:{sshd.servers[0].port} ssh-ed25519 " in known.read_text()
    strict = dataclasses.replace(config.ssh, host_key_policy="strict")
    async with SSHHost(config.servers[0], strict) as host:  # now known: strict works
        assert (await host.run(["true"])).ok


async def test_reconnects_after_sshd_restart(cluster, sshd) -> None:
    host = cluster.hosts["srv1"]
    states: list[str] = []
    host.on_state_change(lambda h: states.append(h.state.value))
    sshd.servers[0].kill()
    await asyncio.sleep(0.3)
    assert host.state is HostState.RECONNECTING
    sshd.servers[0].start()
    result = await host.run(["echo", "back"], timeout=20)
    assert result.stdout == "back\n"
    assert host.state is HostState.ONLINE and host.reconnects == 1
    assert states[:2] == ["reconnecting", "online"]


async def test_closed_host_is_offline_and_refuses_work(cluster) -> None:
    host = cluster.hosts["srv2"]
    await host.close()
    assert host.state is HostState.OFFLINE
    await host.connect()  # reconnecting after close works
    assert (await host.run(["true"])).ok


async def test_local_host_runs_the_same_interface(tmp_path: Path) -> None:
    host = make_host(default_local_server(tmp_path))
    assert isinstance(host, LocalHost)
    async with host:
        result = await host.run(["printf", "%s\\n", *HOSTILE])
        assert result.stdout.splitlines() == HOSTILE
        snapshot = await remote_status.status(host)
        assert snapshot["server"] == "localhost" and snapshot["workspace"] == str(tmp_path.resolve())


async def test_requests_a_failed_transfer_leaves_in_flight_are_claimed() -> None:
    """asyncssh's parallel file I/O raises a lost link from its first failed request and leaves the others
    in flight; their failures would each be reported as "Task exception was never retrieved" (seen under
    load in the test below). The real asyncssh class, its requests failing one after another."""
    import asyncssh
    from asyncssh.sftp import _SFTPParallelIO

    from remote.ssh_host import _claim_parallel_requests

    class LinkLost(_SFTPParallelIO[bytes]):
        async def run_task(self, offset: int, size: int) -> tuple[int, bytes]:
            await asyncio.sleep(0.01 * (1 + offset))
            raise asyncssh.ConnectionLost("link lost")

    loop = asyncio.get_running_loop()
    reports: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: reports.append(context))

    async def transfer() -> None:
        with pytest.raises(asyncssh.ConnectionLost):
            async for _ in LinkLost(block_size=1, max_requests=8, offset=0, size=8).iter():
                pass
        await asyncio.sleep(0.3)  # the requests left behind fail too
        gc.collect()
        await asyncio.sleep(0.05)

    try:
        await transfer()
        assert len(reports) == 7, reports  # the failure mode is real: 7 requests nobody read
        reports.clear()
        _claim_parallel_requests(loop)  # what every SSH transfer does first: the loop's request tasks claimed
        await transfer()
        assert not reports, reports[:3]
    finally:
        loop.set_exception_handler(None)
        loop.set_task_factory(None)


@pytest.mark.parametrize("direction", ["upload", "download"])
async def test_a_link_lost_mid_transfer_is_one_clear_error_without_asyncio_noise(
        sshd, tmp_path: Path, direction: str, caplog: pytest.LogCaptureFixture) -> None:
    config = sshd.cluster_config(python=PYTHON)
    host = SSHHost(config.servers[0], config.ssh)
    await host.connect()
    unretrieved: list[dict] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: unretrieved.append(context))
    big = (tmp_path if direction == "upload" else sshd.servers[0].root) / "big.bin"
    block = os.urandom(1 << 20)
    with open(big, "wb") as fh:
        for _ in range(400):
            fh.write(block)
    remote, local = str(sshd.servers[0].root / "copy.bin"), tmp_path / "copy.bin"

    async def cut_the_link() -> None:
        await asyncio.sleep(0.4)
        sshd.servers[0].kill()

    cutter = asyncio.create_task(cut_the_link())
    try:
        with pytest.raises(HostUnreachable, match=r"server srv1 .*link lost"):
            if direction == "upload":
                await host.upload(big, remote)
            else:
                await host.download(str(big), local)
        await cutter
        await asyncio.sleep(0.5)
        gc.collect()  # a task whose exception nobody read is reported when it is collected
        await asyncio.sleep(0.1)
    finally:
        await host.close()
        loop.set_exception_handler(None)
        sshd.servers[0].restart()
    assert not unretrieved, unretrieved[:3]
    assert not [r for r in caplog.records if r.name == "asyncio"], [r.getMessage() for r in caplog.records][:3]
