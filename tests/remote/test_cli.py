"""`epoch-cluster` end to end against real sshd: JSON output and exit codes scripts rely on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from remote.errors import RemoteError

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


def cli(config_file: Path, *args: str, local_root: Path | None = None, timeout: float = 60,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    extra = ["--workspace", str(local_root)] if local_root else []
    return subprocess.run([*CLI, "--config", str(config_file), *extra, *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_status_jobs_run_logs_stop_push(config_file: Path, sshd, tmp_path: Path) -> None:
    out = cli(config_file, "--json", "status")
    assert out.returncode == 0, out.stderr
    assert set(json.loads(out.stdout)) == {"srv1", "srv2"}

    out = cli(config_file, "--json", "run", "--server", "srv2", "--", "candlesticks", "import", "--sample")
    assert out.returncode == 0, out.stderr
    job_id = json.loads(out.stdout)["srv2"]["job_id"]
    out = cli(config_file, "logs", "--server", "srv2", "-f", job_id)
    assert out.returncode == 0 and "imported 30,240 1m candles" in out.stdout
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


def test_global_options_go_before_or_after_the_command(config_file: Path, sshd, tmp_path: Path) -> None:
    for argv in (["--json", "status"], ["status", "--json"], ["status", "--server", "srv1,srv2", "--json"]):
        out = cli(config_file, *argv)
        assert out.returncode == 0, (argv, out.stderr)
        assert set(json.loads(out.stdout)) == {"srv1", "srv2"}, argv
    out = cli(config_file, "jobs", "--server", "srv1", "--json")
    assert out.returncode == 0 and json.loads(out.stdout) == {"srv1": []}
    out = cli(config_file, "connect", "--server", "srv1", "--print", "--json")
    assert json.loads(out.stdout)[0] == "ssh"
    out = cli(config_file, "run", "--server", "srv1", "--json", "--", "status", "--json")  # after --: epoch-builder's
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["srv1"]["argv"][-2:] == ["status", "--json"]
    local = tmp_path / "ws"
    (local / "config").mkdir(parents=True)
    (local / "config" / "epoch.json").write_text('{"id": "_E"}')
    after = subprocess.run([*CLI, "push", "config", "--config", str(config_file), "--workspace", str(local), "--json"],
                           capture_output=True, text=True, timeout=60)
    assert after.returncode == 0, after.stderr
    assert all(r["files_sent"] == 1 for r in json.loads(after.stdout).values())
    old_name = cli(config_file, "--local-root", str(local), "push", "config", "--json")  # the former option name
    assert old_name.returncode == 0, old_name.stderr
    assert all(r["files_sent"] == 0 for r in json.loads(old_name.stdout).values())


def test_port_from_ssh_config_unless_the_cluster_file_sets_one(sshd, tmp_path: Path) -> None:
    """Without a port in the cluster file, ~/.ssh/config's Port applies (asyncssh reads it, as ssh does);
    a port in the cluster file wins over it."""
    from sshd_cluster import free_port

    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    env = {**os.environ, "HOME": str(home)}  # asyncssh reads ~/.ssh/config of $HOME
    doc = sshd.config_dict(python=PYTHON, ssh_config=True)
    doc["servers"] = doc["servers"][:1]
    del doc["servers"][0]["port"]
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(doc))
    ssh_config = home / ".ssh" / "config"
    ssh_config.write_text(f"Host 127.0.0.1\n    Port {sshd.servers[0].port}\n")
    out = cli(path, "status", "--json", env=env)
    assert out.returncode == 0, out.stderr
    assert set(json.loads(out.stdout)) == {"srv1"}

    closed = free_port()
    ssh_config.write_text(f"Host 127.0.0.1\n    Port {closed}\n")
    out = cli(path, "status", "--json", env=env)
    assert out.returncode == 1 and "server srv1 (" in out.stderr and f":{closed}" not in out.stderr  # no port shown
    doc["servers"][0]["port"] = sshd.servers[0].port
    path.write_text(json.dumps(doc))
    out = cli(path, "status", "--json", env=env)
    assert out.returncode == 0, out.stderr


def test_help_shows_workspace_and_exit_codes_and_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from remote.cli import build_parser, main

    parser = build_parser()
    for text in (parser.format_help(), parser._subparsers._group_actions[0].choices["status"].format_help()):
        assert "--workspace DIR" in text and "--local-root" not in text
        assert "exit status: 0 ok; 1 failed" in text and "2 bad usage or config" in text
    for argv in (["status", "--bogus"], ["no-such-command"], ["stop", "--server", "srv1"]):
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 2, argv
    assert "error:" in capsys.readouterr().err


def test_a_garbled_job_record_on_a_host_is_named_and_the_others_still_listed(config_file: Path, sshd) -> None:
    jobs = sshd.servers[0].root / ".jobs"
    garbled = jobs / "20261202T010101-train-regression-batch-abc123"
    garbled.mkdir(parents=True)
    (garbled / "job.json").write_text('{"id": "20261202T010101-train-regr')  # cut short
    (garbled / "argv.json").write_text('["train-regression-batch", "--batch", "KR_DNN_1_2"]')
    bad_exit = jobs / "20261202T010102-status-abc124"
    bad_exit.mkdir()
    (bad_exit / "argv.json").write_text('["status"]')
    (bad_exit / "exit_code").write_text("zero")
    done = cli(config_file, "jobs", "--server", "srv1")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("srv1\t20261202T010101-train-regression-batch-abc123\tlost\ttrain-regression-batch --batch "
                               "KR_DNN_1_2\t(") and "job.json: not a job record" in line for line in lines), lines
    assert any("20261202T010102-status-abc124\tlost\tstatus\t(" in line and "exit_code: not an exit status" in line
               for line in lines), lines


def test_job_records_from_a_host_are_checked_field_by_field() -> None:
    from remote.jobs import JobInfo

    with pytest.raises(RemoteError, match="server evil: a job record without a valid id and state"):
        JobInfo.from_answer("evil", {"id": "x", "state": "rm -rf"})
    with pytest.raises(RemoteError, match="server evil"):
        JobInfo.from_answer("evil", ["not", "a", "record"])
    job = JobInfo.from_answer("evil", {"id": "j", "state": "exited", "exit_code": "0", "pid": True, "argv": "status",
                                      "log_size": -0.5, "stopped": "yes", "epoch": ["_E"]})
    assert (job.exit_code, job.pid, job.argv, job.log_size, job.stopped, job.epoch) == (None, None, (), 0, False, None)


def test_logs_into_a_closed_pipe_stop_quietly(config_file: Path, sshd) -> None:
    """`epoch-cluster logs -f JOB | head -1`: head leaves after one line; no BrokenPipeError traceback."""
    out = cli(config_file, "--json", "run", "--server", "srv1", "--", "status", "--watch", "0.1", "--count", "40")
    job_id = json.loads(out.stdout)["srv1"]["job_id"]
    command = " ".join(f"'{a}'" for a in [*CLI, "--config", str(config_file), "logs", "--server", "srv1", "-f", job_id])
    done = subprocess.run(["bash", "-c", f"set -o pipefail; {command} 2>err.txt | head -1; echo \"status $?\"; cat err.txt"],
                          capture_output=True, text=True, timeout=60, cwd=config_file.parent)
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and lines[1] == "status 0", done.stdout
    assert "Traceback" not in done.stdout and "BrokenPipe" not in done.stdout


def test_step_runs_a_combining_step_on_one_server_with_its_input_pushed(config_file: Path, sshd, tmp_path: Path) -> None:
    """`epoch-cluster step`: the file verify-epoch reads goes to the server byte for byte, the job runs there,
    and its verdict (this file is no Epoch File: exit 3) is the command's failure, with nothing pulled back."""
    local = tmp_path / "controller"
    fake = local / "_FAKE" / "_FAKE.zip"
    fake.parent.mkdir(parents=True)
    fake.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip: no members the platform needs
    out = cli(config_file, "step", "--server", "srv1", "--", "verify-epoch", "_FAKE/_FAKE.zip", local_root=local)
    assert out.returncode != 0, out.stdout
    assert out.stdout.startswith("verify-epoch on srv1: pushed 1 of 1 file(s) it reads"), out.stdout
    assert "the job ended with exit code 3, nothing pulled back" in out.stdout
    srv1 = next(s for s in sshd.servers if s.name == "srv1")
    assert (srv1.root / "_FAKE" / "_FAKE.zip").read_bytes() == fake.read_bytes()

    missing = cli(config_file, "step", "--server", "srv1", "--", "verify-epoch", "_NONE/_NONE.zip", local_root=local)
    assert missing.returncode != 0
    assert missing.stderr.strip().splitlines() == [
        "error: verify-epoch needs _NONE/_NONE.zip, not in the controller's workspace; no server has it"], missing.stderr
    both = cli(config_file, "step", "--server", "srv1,srv2", "--", "verify-epoch", "_FAKE/_FAKE.zip", local_root=local)
    assert both.returncode != 0 and "--server names one server" in both.stderr
