"""A host whose status lies, through real sshd: escape sequences in its hostname or job ids never reach the
operator's terminal raw, and impossible numbers or over-long strings are refused by key in one line."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PYTHON

WRAPPER = '''#!{python}
"""The real python, with the status snapshot rewritten."""
import json, subprocess, sys
done = subprocess.run([{python!r}, *sys.argv[1:]], input=sys.stdin.buffer.read(), capture_output=True)
out = done.stdout
if sys.argv[1:4] == ["-m", "epoch_builder.cli", "status"]:
    snapshot = json.loads(out.decode().strip().splitlines()[-1])
    for key, value in json.loads({patch!r}).items():
        *path, last = key.split(".")
        target = snapshot
        for part in path:
            target = target[part]
        target[last] = value
    out = (json.dumps(snapshot) + "\\n").encode()
sys.stdout.buffer.write(out)
sys.stderr.buffer.write(done.stderr)
sys.exit(done.returncode)
'''
ESCAPES = "\x1b[31mRED\x1b]0;pwned\x07\x9b2J"


def cluster_with_liar(sshd, tmp_path: Path, patch: dict) -> Path:
    liar = tmp_path / "liar-python"
    # json.dumps writes NaN and Infinity as JSON's extensions, which Python's reader (the controller's) accepts.
    liar.write_text(WRAPPER.format(python=sys.executable, patch=json.dumps(patch)))
    liar.chmod(liar.stat().st_mode | stat.S_IXUSR)
    doc = sshd.config_dict(python=PYTHON)
    doc["servers"][0]["python"] = str(liar)
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(doc))
    return path


def status(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "remote.cli", "--config", str(config), "status", "--server", "srv1"],
                          capture_output=True, text=True, timeout=60)


def test_escape_sequences_from_a_host_are_shown_not_obeyed(sshd, tmp_path: Path) -> None:
    config = cluster_with_liar(sshd, tmp_path, {"hostname": f"box{ESCAPES}", "jobs": [{"id": f"job{ESCAPES}"}]})
    out = status(config)
    assert out.returncode == 0, out.stderr
    assert not any(c in out.stdout for c in "\x1b\x07\x9b"), repr(out.stdout)
    assert out.stdout.startswith(r"srv1: box\x1b[31mRED\x1b]0;pwned\x07\x9b2J | cpu ")
    assert r"jobs: job\x1b[31mRED" in out.stdout
    as_json = subprocess.run([sys.executable, "-m", "remote.cli", "--config", str(config), "--json", "status",
                              "--server", "srv1"], capture_output=True, text=True, timeout=60)
    assert "\x1b" not in as_json.stdout and json.loads(as_json.stdout)["srv1"]["hostname"] == f"box{ESCAPES}"


@pytest.mark.parametrize("patch, refusal", [
    ({"cpu.percent": float("nan")}, "key cpu.percent = nan out of range; allowed 0..100"),
    ({"cpu.percent": float("inf")}, "key cpu.percent = inf out of range; allowed 0..100"),
    ({"cpu.percent": 1e308}, "key cpu.percent = 1e+308 out of range; allowed 0..100"),
    ({"memory.used": -5}, "key memory.used = -5 out of range; allowed 0..1e+18"),
    ({"load": [1.0, float("nan"), 0.5]}, "key load = nan out of range; allowed 0..1e+06"),
    ({"hostname": "h" * 10_000_000}, "key hostname is 10,000,000 characters long; allowed at most 255"),
], ids=["nan", "infinity", "1e308", "negative-memory", "nan-load", "10MB-hostname"])
def test_implausible_status_values_are_refused_by_key(sshd, tmp_path: Path, patch: dict, refusal: str) -> None:
    out = status(cluster_with_liar(sshd, tmp_path, patch))
    assert out.returncode != 0 and out.stdout.strip() == ""
    assert out.stderr.strip().splitlines() == [f"error: server srv1: its status snapshot was refused ({refusal})"]
