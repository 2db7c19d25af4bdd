"""Status stream, power actions (harmless configured commands), keys, ssh argv, unit tests on a host."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from epoch_builder import status as eb_status
from remote import host_program_client, power
from remote import jobs as remote_jobs
from remote import status as remote_status
from remote.errors import RemoteError, SudoPasswordRequired
from remote.ssh_host import SSHHost

from conftest import PYTHON


async def test_status_stream_over_one_channel_survives_reconnect(cluster, sshd) -> None:
    host = cluster.hosts["srv1"]
    job = await remote_jobs.start_job(host, ["status", "--watch", "5"])
    seen: list[dict] = []
    async for snapshot in remote_status.status_stream(host, interval_s=0.2):
        seen.append(snapshot)
        if len(seen) == 2:
            sshd.servers[0].kill()
            await asyncio.sleep(0.5)
            sshd.servers[0].start()
        if len([s for s in seen if s["state"] == "online"]) >= 4:
            break
    states = [s["state"] for s in seen]
    assert states[:2] == ["online", "online"] and "reconnecting" in states and states[-1] == "online"
    online = [s for s in seen if s["state"] == "online"]
    assert all(s["server"] == "srv1" and s["workspace"] == str(sshd.servers[0].root) for s in online)
    assert {"cpu", "memory", "disk", "load", "uptime_s", "gpu", "jobs"} <= set(online[0])
    assert [j["id"] for j in online[-1]["jobs"]] == [job.job_id]
    await remote_jobs.stop_job(host, job.job_id, grace_s=2)


def test_status_snapshot_lists_only_running_jobs(tmp_path: Path) -> None:
    job = tmp_path / ".jobs" / "20240101T000000-status-abcdef"
    job.mkdir(parents=True)
    ticks = eb_status._start_ticks(os.getpid())
    (job / "job.json").write_text(json.dumps({"pid": os.getpid(), "start_ticks": ticks, "argv": ["status"]}))
    (job / "events.jsonl").write_text('{"stage": "train", "done": 1, "total": 4}\n{"stage": "train", "done": 2')
    snap = eb_status.snapshot(tmp_path, cpu_interval=0.01)
    assert [j["id"] for j in snap["jobs"]] == [job.name]
    assert snap["jobs"][0]["last_event"] == {"stage": "train", "done": 1, "total": 4}
    (job / "exit_code").write_text("0")
    assert eb_status.snapshot(tmp_path, cpu_interval=0.01)["jobs"] == []


def test_status_command_is_light_and_streams_json_lines(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "epoch_builder.cli", "status", "--json", "--watch", "0.1", "--count", "3",
         "--workspace", str(tmp_path)], capture_output=True, text=True, timeout=60, check=True,
    )
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(lines) == 3 and lines[0]["workspace"] == str(tmp_path)
    heavy = {"tensorflow", "pandas", "numba", "keras", "pyarrow", "numpy", "asyncssh", "textual"}
    imported = {line.split("|")[-1].strip().split(".")[0] for line in out.stderr.splitlines() if "|" in line}
    assert not heavy & imported


def harmless_script(directory: Path, name: str, body: str) -> Path:
    script = directory / name
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return script


async def test_reboot_and_shutdown_send_the_configured_command(sshd, tmp_path: Path) -> None:
    record = tmp_path / "power.log"
    script = harmless_script(tmp_path, "fake-power", f'echo "$@" >> {record}\n')
    config = sshd.cluster_config(python=PYTHON)
    server = dataclasses.replace(config.servers[0], reboot_command=(str(script), "reboot", "now; x"),
                                 shutdown_command=(str(script), "poweroff"))
    async with SSHHost(server, config.ssh) as host:
        await power.reboot(host)
        await power.shutdown(host)
    assert record.read_text().splitlines() == ["reboot now; x", "poweroff"]
    assert power.power_command(config.servers[1], "reboot") == ("sudo", "-n", "reboot")  # the default


async def test_sudo_wanting_a_password_is_a_clear_error(sshd, tmp_path: Path) -> None:
    # What `sudo -n` prints and returns when a password would be needed.
    script = harmless_script(tmp_path, "sudo", 'echo "sudo: a password is required" >&2\nexit 1\n')
    config = sshd.cluster_config(python=PYTHON)
    server = dataclasses.replace(config.servers[0], reboot_command=(str(script), "-n", "reboot"))
    async with SSHHost(server, config.ssh) as host:
        with pytest.raises(SudoPasswordRequired, match=r"server srv1: .* needs a sudo password; .*servers\[\]\.reboot_command"):
            await power.reboot(host)


async def test_a_sudo_password_prompt_is_a_clear_error_not_a_timeout(sshd, tmp_path: Path) -> None:
    """`sudo -S` prompts on stderr and reads the password from stdin: the command gets end of file at once,
    so the prompt ends in a clear error within seconds instead of a 30 s timeout."""
    script = harmless_script(tmp_path, "sudo", 'printf "[sudo] password for user: " >&2\nread -r password || '
                             '{ echo "sudo: no password was provided" >&2; exit 1; }\nexit 0\n')
    config = sshd.cluster_config(python=PYTHON)
    server = dataclasses.replace(config.servers[0], shutdown_command=(str(script), "-S", "poweroff"))
    async with SSHHost(server, config.ssh) as host:
        started = time.monotonic()
        with pytest.raises(SudoPasswordRequired, match=r"server srv1: .* needs a sudo password; .*servers\[\]\.shutdown_command"):
            await power.shutdown(host, timeout=20)
        assert time.monotonic() - started < 10
        assert (await host.run(["cat"], timeout=5)).stdout == ""  # any command reading stdin sees its end


async def test_install_key_is_idempotent_and_the_key_then_logs_in(sshd, tmp_path: Path) -> None:
    import sshd_cluster

    new_key = sshd_cluster.UserKey.generate(tmp_path / "newkey")
    config = sshd.cluster_config(python=PYTHON)
    authorized = sshd.servers[0].directory / "authorized_keys"  # the file this sshd reads
    before = authorized.read_text()
    async with SSHHost(config.servers[0], config.ssh) as host:
        request = {"key": new_key.public.read_text(), "path": str(authorized)}
        assert (await host_program_client.call(host, "append_key", request))["added"]
        assert not (await host_program_client.call(host, "append_key", request))["added"]
    assert authorized.read_text() == before + new_key.public.read_text()
    server = dataclasses.replace(config.servers[0], key=new_key.private)
    async with SSHHost(server, config.ssh) as host:
        assert (await host.run(["true"])).ok


def test_connect_argv_runs_a_real_ssh_session(sshd) -> None:
    config = sshd.cluster_config(python=PYTHON)
    argv = power.connect_argv(config.servers[1], config.ssh)
    assert "StrictHostKeyChecking=yes" in argv and f"UserKnownHostsFile={sshd.known_hosts}" in argv
    out = subprocess.run(argv, input="pwd\nexit\n", capture_output=True, text=True, timeout=30)
    assert str(sshd.servers[1].root) in out.stdout


async def test_unit_tests_run_on_the_host(sshd, tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "tests").mkdir(parents=True)
    (project / "tests" / "test_small.py").write_text("def test_ok():\n    assert 1 + 1 == 2\n")
    config = sshd.cluster_config(python=PYTHON)
    server = dataclasses.replace(config.servers[0], project_dir=str(project))
    lines: list[str] = []
    async with SSHHost(server, config.ssh) as host:
        assert await power.unit_tests(host, ["-p", "no:cacheprovider", "tests"], on_output=lines.append) == 0
        (project / "tests" / "test_small.py").write_text("def test_bad():\n    assert False\n")
        assert await power.unit_tests(host, ["-p", "no:cacheprovider", "tests"], on_output=lines.append) == 1
    assert any("1 passed" in line for line in lines) and any("1 failed" in line for line in lines)


LYING_STATUS = [
    "not json",
    "[1, 2]",
    json.dumps({"hostname": "h", "cpu": {"percent": "high", "count": 2}}),
    json.dumps({"hostname": "h", "cpu": {"percent": 1, "count": 2}, "memory": {"total": 1, "used": 1, "percent": 1},
                "disk": {"total": 1, "used": 1, "free": 1, "percent": 1}, "load": ["x"], "uptime_s": 1, "jobs": []}),
]


async def test_status_snapshots_from_a_lying_host_are_refused_by_key(sshd, tmp_path: Path) -> None:
    """A host whose `epoch-builder status` answers garbage: one call is an error naming the bad key, a stream
    skips the bad lines and yields the good one; nothing crashes the controller."""
    good = eb_status.snapshot(tmp_path)
    lines = LYING_STATUS + [json.dumps(good)]
    liar = harmless_script(tmp_path, "python", "case \"$*\" in *--watch*) cat <<'EOF'\n" + "\n".join(lines)
                           + "\nEOF\n;; *) echo '" + LYING_STATUS[2] + "';; esac\n")
    config = sshd.cluster_config(python=str(liar))
    async with SSHHost(config.servers[0], config.ssh) as host:
        with pytest.raises(RemoteError, match=r"server srv1: its status snapshot was refused \(key cpu.percent missing"):
            await remote_status.status(host)
        seen = [snap async for snap in remote_status.status_stream(host, interval_s=0.1)]
    assert [snap["hostname"] for snap in seen] == [good["hostname"]]
    out = subprocess.run([sys.executable, "-m", "remote.cli", "--config", str(_cluster_file(sshd, liar, tmp_path)),
                          "status", "--server", "srv1"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "server srv1: its status snapshot was refused (key cpu.percent" in out.stderr


def _cluster_file(sshd, python: Path, directory: Path) -> Path:
    path = directory / "cluster.json"
    path.write_text(json.dumps(sshd.config_dict(python=str(python))))
    return path
