"""`epoch-cluster calibrate` and `plan` through real sshd: each server's record is measured there and kept
here; a garbled or implausible answer is refused by key in one line and nothing is recorded; the plan reads
the records and says which are stale."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PYTHON

pytestmark = pytest.mark.ssh

# The real python, with `regressions calibrate --json`'s answer replaced (the host lies about its rates).
WRAPPER = '''#!{python}
import subprocess, sys
if "calibrate" in sys.argv and "--fingerprint" not in sys.argv:
    sys.stdout.write({answer!r})
    sys.exit(0)
done = subprocess.run([{python!r}, *sys.argv[1:]], input=sys.stdin.buffer.read(), capture_output=True)
sys.stdout.buffer.write(done.stdout)
sys.stderr.buffer.write(done.stderr)
sys.exit(done.returncode)
'''


def cluster_file(sshd, tmp_path: Path, liar_answer: str | None = None) -> Path:
    doc = sshd.config_dict(python=PYTHON)
    if liar_answer is not None:
        liar = tmp_path / "liar-python"
        liar.write_text(WRAPPER.format(python=PYTHON, answer=liar_answer))
        liar.chmod(liar.stat().st_mode | stat.S_IXUSR)
        doc["servers"][0]["python"] = str(liar)
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(doc))
    return path


def cluster_cli(config: Path, workspace: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "remote.cli", "--config", str(config), "--workspace", str(workspace),
                           *args], capture_output=True, text=True, timeout=timeout)


def test_calibrate_measures_each_server_there_and_the_plan_reads_it(sshd, small_epoch, tmp_path: Path) -> None:
    workspace = small_epoch.root
    config = cluster_file(sshd, tmp_path)
    out = cluster_cli(config, workspace, "calibrate", "--server", "srv1", "--work", "0.2", "--family", "DNN")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("srv1: DNN ") and "GFLOP/s" in out.stdout
    rates_file = workspace / "config" / "training_rates.json"
    records = json.loads(rates_file.read_text())["servers"]
    assert list(records) == ["srv1"]
    record = records["srv1"]
    assert list(record["rates"]) == ["DNN"] and 1e6 <= record["rates"]["DNN"] <= 1e16
    assert record["cores"] >= 1 and record["tensorflow"] and isinstance(record["gpus"], list)

    # The plan reads it; a record measured under another TensorFlow is stale, and the plan says so.
    record["tensorflow"] = "0.0.1"
    rates_file.write_text(json.dumps({"servers": records}))
    generated = subprocess.run([sys.executable, "-m", "epoch_builder.cli", "generate-regression-training-configs",
                                "--workspace", str(workspace)], capture_output=True, text=True, timeout=300)
    assert generated.returncode == 0, generated.stderr
    plan = cluster_cli(config, workspace, "--json", "plan")
    assert plan.returncode == 0, plan.stderr
    document = json.loads(plan.stdout)
    servers = {s["name"]: s for s in document["servers"]}
    assert servers["srv1"]["source"].startswith("calibrated ") and servers["srv1"]["rates"]["DNN"] == record["rates"]["DNN"]
    assert servers["srv1"]["stale"][0].startswith("tensorflow 0.0.1 -> ")
    assert servers["srv2"]["source"].startswith("not calibrated") and servers["srv2"]["stale"] == []
    assert document["families"][-1]["family"] == "total" and document["families"][-1]["models"] == 1220
    assert document["pending_batches"] == 54 and document["finish_at"] > document["now"]
    text = cluster_cli(config, workspace, "plan")
    assert "STALE (tensorflow 0.0.1 -> " in " ".join(text.stdout.split()), text.stdout  # wrapped to the terminal
    assert max(map(len, text.stdout.splitlines())) <= 80, text.stdout


@pytest.mark.parametrize("answer, refusal", [
    ('{"rates": {"DNN": 1e30}, "measured_at": 1, "cores": 2, "gpus": []}',
     "rates.DNN = '1e+30': not a rate; allowed 1e+06 to 1e+16 FLOP/s"),
    ('{"rates": {"DNN": NaN}, "measured_at": 1, "cores": 2, "gpus": []}',
     "rates.DNN = 'nan': not a rate; allowed 1e+06 to 1e+16 FLOP/s"),
    ('{"rates": {"TPU": 5e10}, "measured_at": 1, "cores": 2, "gpus": []}',
     "rates.TPU: unknown family; allowed DNN, CNN, CDNN, LSTM, CLSTM, GRU"),
    ('{"rates": {"DNN": 5e10}, "measured_at": 1, "cores": -3, "gpus": []}', "key cores = '-3'; allowed 1 to 4096"),
    ("\x1b[31mnot json at all", "the answer is not JSON"),
], ids=["absurd-rate", "nan-rate", "unknown-family", "negative-cores", "garbled"])
def test_a_lying_hosts_calibration_is_refused_by_key_and_nothing_recorded(sshd, tmp_path: Path, answer: str,
                                                                          refusal: str) -> None:
    workspace = tmp_path / "controller"
    workspace.mkdir()
    out = cluster_cli(cluster_file(sshd, tmp_path, answer), workspace, "calibrate", "--server", "srv1")
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: server srv1: calibrate") and refusal in lines[0], lines
    assert "\x1b" not in out.stderr  # shown escaped, never obeyed
    assert not (workspace / "config" / "training_rates.json").exists()


def test_a_servers_cores_bound_its_jobs_and_its_calibration(sshd, tmp_path: Path) -> None:
    """"cpus" in the cluster file: the server's jobs run with that CPU affinity, and its calibration measures
    on those cores (its record says 1 core where the other server has them all)."""
    import os
    import time

    from remote import host_program

    doc = json.loads(cluster_file(sshd, tmp_path).read_text())
    doc["servers"][0]["cpus"] = [0]
    config = tmp_path / "cluster.json"
    config.write_text(json.dumps(doc))
    workspace = tmp_path / "controller"
    workspace.mkdir()
    started = cluster_cli(config, workspace, "--json", "run", "--server", "srv1", "--", "status", "--watch", "1")
    assert started.returncode == 0, started.stderr
    job_id = json.loads(started.stdout)["srv1"]["job_id"]
    job_file = sshd.servers[0].root / ".jobs" / job_id / "job.json"
    for _ in range(100):
        if job_file.exists() and "child_pid" in job_file.read_text():
            break
        time.sleep(0.1)
    child = json.loads(job_file.read_text())["child_pid"]
    try:
        assert os.sched_getaffinity(child) == {0}
    finally:
        host_program.cmd_stop({"root": str(sshd.servers[0].root), "job_id": job_id, "grace_s": 1})
    out = cluster_cli(config, workspace, "calibrate", "--work", "0.2", "--family", "DNN")
    assert out.returncode == 0, out.stderr
    records = json.loads((workspace / "config" / "training_rates.json").read_text())["servers"]
    assert records["srv1"]["cores"] == 1 and records["srv2"]["cores"] == len(os.sched_getaffinity(0))
