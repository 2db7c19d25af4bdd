"""A host that lies: its python answers the helper's file listing with crafted entries (the
controller's cluster file, the board state, a batch file, paths out of the workspace, a newline,
malformed sizes), or sends a crafted tar stream for a pull (other names, ``..``, absolute names,
links, a directory, wrong sizes, a repeat, no tar at all). A pull writes only what was asked for
and reports every refusal."""

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


# A host whose file stream for a pull lies: member i of the request is sent as TAR_LIES[i] says (the
# others honestly), with honest sha256s after the archive.
TAR_LIES = ["another name", "dot-dot", "absolute", "symlink", "hard link", "directory", "oversize", "undersize",
            "twice"]
TAR_WRAPPER = '''#!{python}
"""The real helper, but a pull's file stream is crafted: {lies!r} for the first files asked for."""
import ast, hashlib, json, os, re, subprocess, sys, tarfile
if sys.argv[1:3] != ["-", "send"]:
    os.execv({python!r}, [{python!r}, *sys.argv[1:]])
program = sys.stdin.buffer.read()
request = json.loads(ast.literal_eval(re.search(rb"^STDIN_REQUEST = (.*)$", program, re.M).group(1).decode()))
out, digests = sys.stdout.buffer, {{}}

def member(name, data=b"", kind=tarfile.REGTYPE, link="", size=None):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data) if size is None else size
    out.write(info.tobuf(tarfile.USTAR_FORMAT) + data + b"\\0" * (-len(data) % 512))

for position, (index, rel) in enumerate(request["files"]):
    data, name = open(os.path.join(request["root"], rel), "rb").read(), f"{{index}}.part"
    digests[name] = hashlib.sha256(data).hexdigest()
    lie = {lies!r}[position] if position < len({lies!r}) else "honest"
    if lie == "another name":
        member(f"{{index + 1000}}.part", data)
    elif lie == "dot-dot":
        member("../../../escaped.txt", data)
    elif lie == "absolute":
        member({absolute!r}, data)
    elif lie == "symlink":
        member(name, kind=tarfile.SYMTYPE, link={absolute!r})
    elif lie == "hard link":
        member(name, kind=tarfile.LNKTYPE, link="../../../escaped.txt")
    elif lie == "directory":
        member(name, kind=tarfile.DIRTYPE)
    elif lie == "oversize":
        member(name, data + b"x" * 100_000)
    elif lie == "undersize":
        member(name, data[:-1])
    elif lie == "twice":
        member(name, data)
        member(name, b"second version " + data)
    else:
        member(name, data)
out.write(b"\\0" * 1024 + json.dumps(digests).encode() + b"\\n")
'''


def lying_python(tmp_path: Path, source: str) -> str:
    liar = tmp_path / "liar-python"
    liar.write_text(source)
    liar.chmod(liar.stat().st_mode | stat.S_IXUSR)
    return str(liar)


def everything_under(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): ("link" if p.is_symlink() else digest(p) if p.is_file() else "dir")
            for p in path.rglob("*")}


async def test_a_pull_writes_only_the_tar_members_asked_for(sshd, tmp_path: Path) -> None:
    host_root = sshd.servers[0].root
    count = len(TAR_LIES) + 2
    for i in range(count):
        write(host_root / EPOCH / "regressions" / f"A{i:02d}" / "certificate.json", json.dumps({"id": f"A{i:02d}"}))
    local = tmp_path / "local"
    write(local / "config" / "epoch.json", json.dumps({"id": EPOCH}))
    absolute = tmp_path / "absolute.txt"
    liar = lying_python(tmp_path, TAR_WRAPPER.format(python=sys.executable, lies=TAR_LIES, absolute=str(absolute)))
    before = everything_under(tmp_path)

    cluster = Cluster(sshd.cluster_config(python=liar))
    assert all(r is None for r in (await cluster.connect_all()).values())
    try:
        report = await sync.pull(cluster.hosts["srv1"], "trained-regressions", local_root=local)
    finally:
        await cluster.close()

    asked = [f"{EPOCH}/regressions/A{i:02d}/certificate.json" for i in range(count)]  # the order of the request
    assert report.sent == asked[len(TAR_LIES):]
    assert sorted(set(report.refused) & set(asked)) == asked[:len(TAR_LIES)]
    foreign = sorted(set(report.refused) - set(asked))
    directory = f"{TAR_LIES.index('directory')}.part/"  # tar names a directory with its slash: no name asked for
    assert foreign == sorted(repr(n) for n in ["1000.part", "../../../escaped.txt", str(absolute), directory])
    for rel in asked[len(TAR_LIES):]:
        assert (local / rel).read_bytes() == (host_root / rel).read_bytes()
    # Nothing else anywhere: no link, no escaped or absolute file, no leftover in staging.
    after = everything_under(tmp_path)
    added = {p: kind for p, kind in after.items() if p not in before and not p.startswith("sshd/")}
    assert {p for p, kind in added.items() if kind != "dir"} == {f"local/{rel}" for rel in report.sent}
    assert not (local / ".sync-staging").exists() or not list((local / ".sync-staging").iterdir())
    assert not absolute.exists() and not list(tmp_path.rglob("escaped.txt"))


GARBAGE_WRAPPER = '''#!{python}
"""The real helper, but a pull's file stream is no tar at all."""
import os, sys
if sys.argv[1:3] != ["-", "send"]:
    os.execv({python!r}, [{python!r}, *sys.argv[1:]])
sys.stdin.buffer.read()
sys.stdout.buffer.write(b"\\x00" * 100 + b"../../etc/passwd\\n" * 2000)
'''


async def test_a_pull_stream_that_is_no_tar_refuses_its_files_without_a_traceback(sshd, tmp_path: Path) -> None:
    host_root = sshd.servers[0].root
    write(host_root / EPOCH / "regressions" / "A1" / "certificate.json", '{"id": "A1"}')
    local = tmp_path / "local"
    write(local / "config" / "epoch.json", json.dumps({"id": EPOCH}))
    cluster = Cluster(sshd.cluster_config(python=lying_python(tmp_path, GARBAGE_WRAPPER.format(python=sys.executable))))
    assert all(r is None for r in (await cluster.connect_all()).values())
    try:
        report = await sync.pull(cluster.hosts["srv1"], "trained-regressions", local_root=local)
    finally:
        await cluster.close()
    assert report.sent == [] and report.refused == [f"{EPOCH}/regressions/A1/certificate.json"]
    assert not [p for p in local.rglob("*") if p.is_file() and p.name != "epoch.json"]
