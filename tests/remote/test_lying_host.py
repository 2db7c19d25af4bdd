"""A host that lies: its python answers the helper's file listing with crafted entries (the
controller's cluster file, the board state, a batch file, paths out of the workspace, a newline,
malformed sizes). A pull writes only what was asked for and reports every refusal."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from pathlib import Path

from remote import sync
from remote.cluster import Cluster

EPOCH = "_LIAR"
LIES = [
    "config/cluster.json",
    f".board/{EPOCH}.json",
    f"{EPOCH}/regression_training_configs/DNN/KR_DNN_1_1.json",
    f"{EPOCH}/prediction_models/configs/_LIAR_1_1.json",
    "../outside.txt",
    "/etc/passwd",
    f"{EPOCH}/regressions/A1/x\nconfig/cluster.json",
    f"{EPOCH}/regressions/../../config/epoch.json",
    f"{EPOCH}/regressions/./A1/certificate.json",  # not the clean form of a path: refused, not guessed
]
MALFORMED = {f"{EPOCH}/regressions/A1/size_is_text": ["big", 1], f"{EPOCH}/regressions/A1/negative": [-1, 1]}

WRAPPER = '''#!{python}
"""The real helper, with crafted entries added to every file listing."""
import ast, json, os, re, subprocess, sys
program = sys.stdin.buffer.read()
done = subprocess.run([{python!r}, *sys.argv[1:]], input=program, capture_output=True)
out = done.stdout
if sys.argv[1:3] == ["-", "manifest"]:
    answer = json.loads(out.decode().strip().splitlines()[-1])
    literal = re.search(rb"^STDIN_REQUEST = (.*)$", program, re.M).group(1).decode()
    root = json.loads(ast.literal_eval(literal))["root"]
    for rel in {lies!r}:
        path = os.path.join(root, rel)
        answer["ok"]["files"][rel] = ([os.path.getsize(path), os.stat(path).st_mtime_ns]
                                      if os.path.isfile(path) else [7, 1])
    answer["ok"]["files"].update({malformed!r})
    out = (json.dumps(answer) + "\\n").encode()
sys.stdout.buffer.write(out)
sys.stderr.buffer.write(done.stderr)
sys.exit(done.returncode)
'''


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_a_pull_writes_only_the_requested_group_and_reports_each_lie(sshd, tmp_path: Path) -> None:
    liar = tmp_path / "liar-python"
    liar.write_text(WRAPPER.format(python=sys.executable, lies=LIES, malformed=MALFORMED))
    liar.chmod(liar.stat().st_mode | stat.S_IXUSR)
    host_root = sshd.servers[0].root
    # On the host: real results, and the files a compromised worker would love to hand back.
    write(host_root / EPOCH / "regressions" / "A1" / "certificate.json", '{"id": "A1"}')
    write(host_root / EPOCH / "regressions" / "A1" / "model.keras", "weights")
    write(host_root / EPOCH / "regression_batched_certificates" / "KR_DNN_1_1.json", '[{"id": "A1"}]')
    write(host_root / "config" / "cluster.json", '{"servers": [{"name": "x", "reboot_command": "rm -rf ~"}]}')
    write(host_root / ".board" / f"{EPOCH}.json", '{"failed_jobs": "forged"}')
    write(host_root / EPOCH / "regression_training_configs" / "DNN" / "KR_DNN_1_1.json", '{"configs": "forged"}')
    # Here: the controller's own files, which must stay as they are.
    local = tmp_path / "local"
    write(local / "config" / "epoch.json", json.dumps({"id": EPOCH}))
    write(local / "config" / "cluster.json", '{"servers": []}')
    write(local / ".board" / f"{EPOCH}.json", '{"failed_jobs": {}}')
    write(local / EPOCH / "regression_training_configs" / "DNN" / "KR_DNN_1_1.json", '{"configs": []}')
    before = {p: digest(p) for p in local.rglob("*") if p.is_file()}

    cluster = Cluster(sshd.cluster_config(python=str(liar)))
    assert all(r is None for r in (await cluster.connect_all()).values())
    try:
        report = await sync.pull(cluster.hosts["srv1"], "trained-regressions", local_root=local)
    finally:
        await cluster.close()

    assert sorted(report.sent) == [f"{EPOCH}/regression_batched_certificates/KR_DNN_1_1.json",
                                   f"{EPOCH}/regressions/A1/certificate.json", f"{EPOCH}/regressions/A1/model.keras"]
    assert all(digest(p) == d for p, d in before.items())  # config, board state and batch file untouched
    assert not (tmp_path / "outside.txt").exists()
    refused = set(report.refused)
    for lie in LIES:
        assert lie in refused or repr(lie) in refused, (lie, report.refused)
    assert set(MALFORMED) <= refused
    assert report.to_dict()["refused"] == report.refused
    files = sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file() and ".sync-staging" not in p.parts)
    assert files == sorted([str(p.relative_to(local)) for p in before] + report.sent)
    assert os.listdir(local / EPOCH / "regressions" / "A1") == ["certificate.json", "model.keras"] or sorted(
        os.listdir(local / EPOCH / "regressions" / "A1")) == ["certificate.json", "model.keras"]


def test_epoch_cluster_pull_names_the_refusals_and_fails(sshd, tmp_path: Path) -> None:
    import subprocess

    liar = tmp_path / "liar-python"
    liar.write_text(WRAPPER.format(python=sys.executable, lies=LIES[:1], malformed={}))
    liar.chmod(liar.stat().st_mode | stat.S_IXUSR)
    write(sshd.servers[0].root / "config" / "cluster.json", '{"servers": [{"name": "x", "reboot_command": "rm -rf ~"}]}')
    write(sshd.servers[0].root / EPOCH / "regressions" / "A1" / "certificate.json", '{"id": "A1"}')
    local = tmp_path / "local"
    write(local / "config" / "epoch.json", json.dumps({"id": EPOCH}))
    config = tmp_path / "cluster.json"
    config.write_text(json.dumps(sshd.config_dict(python=str(liar))))
    done = subprocess.run([sys.executable, "-m", "remote.cli", "pull", "trained-regressions", "-s", "srv1",
                           "--config", str(config), "--workspace", str(local)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "srv1: fetched 1 of 1 files" in done.stdout
    assert "refused 1 path(s) outside trained-regressions: config/cluster.json" in done.stdout
    assert not (local / "config" / "cluster.json").exists()
