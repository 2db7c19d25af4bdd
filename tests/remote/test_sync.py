"""Incremental push/pull over real SFTP: round trips, no-change re-sync, faults, hostile paths."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from remote import host_program, host_program_client, sync
from remote.config import ServerConfig
from remote.errors import HostUnreachable, RemoteError, UnsafePath
from remote.hosts import LocalHost

EPOCH = "_TEST_EPOCH"


def make_workspace(root: Path) -> Path:
    (root / "config").mkdir(parents=True)
    (root / "config" / "epoch.json").write_text(f'{{"id": "{EPOCH}"}}')
    (root / "candlesticks").mkdir()
    (root / "candlesticks" / "candlesticks.parquet").write_bytes(os.urandom(300_000))
    (root / "candlesticks" / "bundle.json").write_text('{"interval": 30}')
    configs = root / EPOCH / "regression_training_configs" / "DNN"
    configs.mkdir(parents=True)
    for i in range(5):
        (configs / f"KR_DNN_{i + 1}_5.json").write_text(f'{{"n": {i}}}')
    (root / "README.txt").write_text("root file")
    return root


def tree(root: Path, below: str = "") -> dict[str, str]:
    base = root / below
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(base.rglob("*")) if p.is_file() and ".sync-staging" not in p.parts and ".jobs" not in p.parts
    }


@pytest.fixture
def local(tmp_path: Path) -> Path:
    return make_workspace(tmp_path / "local")


async def test_push_round_trip_then_nothing_then_only_the_changed_file(cluster, sshd, local: Path) -> None:
    host = cluster.hosts["srv1"]
    remote_root = sshd.servers[0].root
    progress: list[sync.SyncProgress] = []
    first = await sync.push(host, "workspace", local_root=local, progress=progress.append)
    assert first.files_sent == first.files_checked == 9
    assert tree(remote_root) == tree(local)
    assert progress[-1].bytes_done == progress[-1].bytes_total == first.bytes_sent
    assert progress[-1].files_done == 9

    second = await sync.push(host, "workspace", local_root=local)
    assert (second.files_sent, second.bytes_sent) == (0, 0)

    changed = local / EPOCH / "regression_training_configs" / "DNN" / "KR_DNN_3_5.json"
    changed.write_text('{"n": "changed"}')
    third = await sync.push(host, "workspace", local_root=local)
    assert third.sent == [f"{EPOCH}/regression_training_configs/DNN/KR_DNN_3_5.json"]
    assert tree(remote_root) == tree(local)

    # same bytes, new mtime: hashes match, only the mtime is fixed, nothing is sent
    os.utime(local / "README.txt", (1_600_000_000, 1_600_000_000))
    fourth = await sync.push(host, "workspace", local_root=local)
    assert (fourth.files_sent, fourth.files_touched) == (0, 1)
    assert (remote_root / "README.txt").stat().st_mtime == 1_600_000_000
    assert not list((remote_root / ".sync-staging").iterdir())


async def test_named_groups_push_only_their_paths(cluster, sshd, local: Path) -> None:
    host = cluster.hosts["srv2"]
    report = await sync.push(host, "regression-training-configs", local_root=local)
    assert report.files_sent == 5
    assert set(tree(sshd.servers[1].root)) == {f"{EPOCH}/regression_training_configs/DNN/KR_DNN_{i}_5.json" for i in range(1, 6)}
    await sync.push(host, "root-files", local_root=local)
    assert (sshd.servers[1].root / "README.txt").read_text() == "root file"
    with pytest.raises(RemoteError, match="unknown push group 'everything'; allowed: root-files, config"):
        await sync.push(host, "everything", local_root=local)


async def test_pull_trained_regressions_from_several_hosts(cluster, sshd, local: Path) -> None:
    for index, server in enumerate(sshd.servers):  # each host trained its own batch
        regression = server.root / EPOCH / "regressions" / f"KR_DNN_{index}"
        regression.mkdir(parents=True)
        (regression / "certificate.json").write_text(f'{{"id": "KR_DNN_{index}"}}')
        (regression / "model.keras").write_bytes(os.urandom(50_000))
        batched = server.root / EPOCH / "regression_batched_certificates"
        batched.mkdir(parents=True)
        (batched / f"KR_DNN_{index}_5.json").write_text("[]")
    results = await sync.pull_many(list(cluster.hosts.values()), "trained-regressions", local_root=local)
    assert all(r.files_sent == 3 for r in results.values()), results
    for server in sshd.servers:
        assert tree(server.root, EPOCH).items() <= tree(local, EPOCH).items()
    again = await sync.pull(cluster.hosts["srv1"], "trained-regressions", local_root=local)
    assert again.bytes_sent == 0


async def test_hostile_names_are_quoted_and_hostile_paths_refused(cluster, sshd, local: Path, tmp_path: Path) -> None:
    host = cluster.hosts["srv1"]
    odd = local / "config" / "a b;touch pwned $(touch pwned2) `x`.json"
    odd.write_text("{}")
    await sync.push(host, "config", local_root=local)
    assert (sshd.servers[0].root / "config" / odd.name).read_text() == "{}"
    assert not list(sshd.servers[0].root.rglob("pwned*"))

    for bad in (["../outside"], ["/etc"], ["config/../../x"], ["con\nfig"]):
        with pytest.raises(UnsafePath):
            await sync.push(host, bad, local_root=local)
    secret = tmp_path / "secret.txt"
    secret.write_text("outside the workspace")
    (local / "config" / "leak.json").symlink_to(secret)
    with pytest.raises(UnsafePath, match="symlinks out.*config/leak.json"):
        await sync.push(host, "config", local_root=local)
    # on the host side too: a link out of the remote workspace is never read for a pull
    remote_regressions = sshd.servers[0].root / EPOCH / "regressions"
    remote_regressions.mkdir(parents=True)
    (remote_regressions / "stolen").symlink_to(secret)
    with pytest.raises(UnsafePath, match="server srv1"):
        await sync.pull(host, "trained-regressions", local_root=local)


async def test_a_link_inside_the_workspace_travels_as_its_file_and_an_odd_name_stays_behind(cluster, sshd, local: Path) -> None:
    """A symlink to a file inside the workspace is sent as that file's content; a name with a newline
    cannot be named safely on the other side: it is left out and reported, and the rest of its group syncs."""
    host = cluster.hosts["srv1"]
    configs = local / EPOCH / "regression_training_configs" / "DNN"
    (configs / "latest.json").symlink_to(configs / "KR_DNN_1_5.json")
    (configs / "bad\nname.json").write_text("{}")
    (configs / "odd\x1bdir").mkdir()
    (configs / "odd\x1bdir" / "inside.json").write_text("{}")
    report = await sync.push(host, "regression-training-configs", local_root=local)
    remote = sshd.servers[0].root / EPOCH / "regression_training_configs" / "DNN"
    assert (remote / "latest.json").read_text() == (configs / "KR_DNN_1_5.json").read_text()
    assert not (remote / "latest.json").is_symlink()
    assert sorted(p.name for p in remote.iterdir()) == sorted([f"KR_DNN_{i}_5.json" for i in range(1, 6)] + ["latest.json"])
    assert report.unsendable == [f"{EPOCH}/regression_training_configs/DNN/bad\nname.json",
                                 f"{EPOCH}/regression_training_configs/DNN/odd\x1bdir/"]
    assert report.files_sent == 6


async def test_sshd_killed_mid_push_leaves_no_partial_file_and_rerun_completes(cluster, sshd, local: Path) -> None:
    host = cluster.hosts["srv1"]
    big = local / "candlesticks" / "candlesticks.parquet"
    big.write_bytes(os.urandom(48 * 1024 * 1024))
    target = sshd.servers[0].root / "candlesticks" / "candlesticks.parquet"
    killed = asyncio.Event()

    def progress(p: sync.SyncProgress) -> None:
        assert not target.exists(), "a partial file became visible at the destination"
        if p.path.endswith("candlesticks.parquet") and p.bytes_done > 4 * 1024 * 1024 and not killed.is_set():
            killed.set()
            sshd.servers[0].kill()

    with pytest.raises((HostUnreachable, RemoteError)):
        await sync.push(host, "candlesticks", local_root=local, progress=progress)
    assert killed.is_set() and not target.exists()
    sshd.servers[0].start()
    await host.wait_online(timeout=20)
    report = await sync.push(host, "candlesticks", local_root=local)
    assert report.files_sent == 2
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(big.read_bytes()).digest()


SCALE_FILES = int(os.environ.get("EPOCH_SYNC_SCALE_FILES", "3000"))


@pytest.mark.slow
async def test_thousands_of_changed_files_push_pull_and_resync(cluster, sshd, tmp_path: Path) -> None:
    """Requests travel on stdin, not the command line: a commit of thousands of paths (megabytes of
    JSON; ~900 paths reset the connection when they were an argument) goes through in one sync."""
    host = cluster.hosts["srv1"]
    local = make_workspace(tmp_path / "many")
    models = local / EPOCH / "regressions"
    for i in range(SCALE_FILES):
        path = models / f"KR_DNN_S2_{i:05d}-{'x' * 40}" / "certificate.json"
        path.parent.mkdir(parents=True)
        path.write_text(f'{{"id": {i}}}')
    started = time.perf_counter()
    pushed = await sync.push(host, "workspace", local_root=local)
    push_s = time.perf_counter() - started
    assert pushed.files_sent == SCALE_FILES + 9 and tree(sshd.servers[0].root, EPOCH) == tree(local, EPOCH)
    again = time.perf_counter()
    assert (await sync.push(host, "workspace", local_root=local)).files_sent == 0
    resync_s = time.perf_counter() - again

    back = make_workspace(tmp_path / "back")
    pull_started = time.perf_counter()
    pulled = await sync.pull(host, "trained-regressions", local_root=back)
    pull_s = time.perf_counter() - pull_started
    assert pulled.files_sent == SCALE_FILES and not pulled.refused
    assert tree(back, f"{EPOCH}/regressions") == tree(local, f"{EPOCH}/regressions")
    assert not staging_dirs(sshd.servers[0].root) and not staging_dirs(back)
    print(f"{SCALE_FILES} files: push {push_s:.1f} s, no-change re-sync {resync_s:.2f} s, pull {pull_s:.1f} s")


def staging_dirs(root: Path) -> list[str]:
    base = root / ".sync-staging"
    return sorted(p.name for p in base.iterdir()) if base.exists() else []


def make_regressions(root: Path, count: int) -> None:
    for i in range(count):
        path = root / EPOCH / "regressions" / f"KR_DNN_S2_{i:05d}" / "certificate.json"
        path.parent.mkdir(parents=True)
        path.write_bytes(os.urandom(200 + i % 1800))


async def test_helper_killed_mid_push_leaves_its_staging_to_the_next_sync(cluster, sshd, local: Path) -> None:
    """kill -9 of the host's helper while files stream in: nothing reaches the destination, its staging
    directory stays (its lock is free now), and the next push removes it and completes."""
    import psutil

    host = cluster.hosts["srv1"]
    server = sshd.servers[0]
    make_regressions(local, 3000)
    killed: list[int] = []

    def kill_helper_once_files_are_staged(_progress: sync.SyncProgress) -> None:
        if killed:
            return
        deadline = time.monotonic() + 20  # the stream's first chunk is on its way: wait until it lands there
        while time.monotonic() < deadline and not list((server.root / ".sync-staging").glob("*/*.part")):
            time.sleep(0.01)
        helpers = [p for p in psutil.Process(server.process.pid).children(recursive=True) if "receive" in p.cmdline()]
        assert len(helpers) == 1, helpers
        helpers[0].kill()
        killed.append(helpers[0].pid)

    with pytest.raises(RemoteError, match="killed|exited"):
        await sync.push(host, "workspace", local_root=local, progress=kill_helper_once_files_are_staged)
    assert killed
    left = staging_dirs(server.root)
    assert len(left) == 1 and list((server.root / ".sync-staging" / left[0]).glob("*.part"))
    assert not [p for p in server.root.rglob("*") if p.is_file() and ".sync-staging" not in p.parts]  # nothing committed

    report = await sync.push(host, "workspace", local_root=local)
    assert report.files_sent == 3000 + 9
    assert staging_dirs(server.root) == []
    assert tree(server.root) == tree(local)


SLOW_SEND_PYTHON = '''#!{python}
"""The real helper, whose file stream for a pull trickles out: a test can kill the pull in the middle."""
import os, subprocess, sys, time
if sys.argv[1:3] != ["-", "send"]:
    os.execv({python!r}, [{python!r}, *sys.argv[1:]])
helper = subprocess.Popen([{python!r}, *sys.argv[1:]], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
helper.stdin.write(sys.stdin.buffer.read())
helper.stdin.close()
while chunk := helper.stdout.read(8192):
    sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()
    time.sleep(0.02)
sys.exit(helper.wait())
'''


async def test_epoch_cluster_pull_killed_leaves_its_staging_to_the_next_pull(cluster, sshd, local: Path, tmp_path: Path) -> None:
    """kill -9 of `epoch-cluster pull` and of its local helper while files land in the local staging
    directory: the rerun removes that directory (no live pull holds its lock) and ends byte-identical
    to the host."""
    import psutil

    server = sshd.servers[0]
    make_regressions(server.root, 2000)
    slow = tmp_path / "slow-python"
    slow.write_text(SLOW_SEND_PYTHON.format(python=sys.executable))
    slow.chmod(slow.stat().st_mode | stat.S_IXUSR)
    config = tmp_path / "slow-cluster.json"
    config.write_text(json.dumps(sshd.config_dict(python=str(slow))))
    pull = subprocess.Popen([sys.executable, "-m", "remote.cli", "pull", "trained-regressions", "-s", "srv1",
                             "--config", str(config), "--workspace", str(local)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not list((local / ".sync-staging").glob("*/*.part")):
            await asyncio.sleep(0.01)
        assert pull.poll() is None, "the pull ended before it could be killed"
        for helper in psutil.Process(pull.pid).children(recursive=True):  # else it cleans up after the pull
            helper.kill()
        pull.kill()
    finally:
        pull.kill()
        pull.wait(timeout=10)
    assert len(staging_dirs(local)) == 1
    assert not [p for p in (local / EPOCH / "regressions").rglob("*") if p.is_file()]  # nothing committed

    report = await sync.pull(cluster.hosts["srv1"], "trained-regressions", local_root=local)
    assert report.files_sent == 2000 and not report.refused
    assert staging_dirs(local) == []
    assert tree(local, f"{EPOCH}/regressions") == tree(server.root, f"{EPOCH}/regressions")


def test_stale_staging_goes_and_live_staging_stays(tmp_path: Path) -> None:
    live = host_program.Staging(str(tmp_path))
    killed = host_program.Staging(str(tmp_path))
    (Path(killed.path) / "0.part").write_bytes(b"left by a killed sync")
    os.close(killed._lock)  # what the kernel does when its owner dies: the flock is free
    being_made = tmp_path / ".sync-staging" / ".new-1-2-abcd"
    being_made.mkdir()
    cut_short = tmp_path / ".sync-staging" / ".new-0-1-dcba"
    cut_short.mkdir()
    os.utime(cut_short, (0, 0))

    assert sorted(host_program.remove_stale_staging(str(tmp_path))) == sorted([Path(killed.path).name, cut_short.name])
    assert staging_dirs(tmp_path) == sorted([Path(live.path).name, being_made.name])
    live.remove()
    assert staging_dirs(tmp_path) == [being_made.name]


def receive_helper(root: Path, items: list) -> subprocess.Popen:
    """The host helper's `receive`, as a push starts it, on this machine."""
    helper = subprocess.Popen([sys.executable, "-c", host_program_client.BOOTSTRAP, "receive"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    helper.stdin.write(host_program_client.framed_program({"root": str(root), "items": items}))
    helper.stdin.flush()
    return helper


async def test_a_push_running_beside_another_keeps_its_staging(cluster, sshd, local: Path) -> None:
    """Two pushes to one host root: the second's clean-up never touches the first's live staging."""
    server = sshd.servers[0]
    data = b"pushed by the first sync"
    first = receive_helper(server.root, [{"tmp": "0.part", "path": "first.txt", "size": len(data), "mtime_ns": 1,
                                          "mode": 0o644}])
    try:
        staging = json.loads(first.stdout.readline())["ok"]["staging"]
        second = await sync.push(cluster.hosts["srv1"], "workspace", local_root=local)  # its listing cleans up
        assert second.files_sent == 9 and os.path.isdir(staging)
        digest = hashlib.sha256(data).hexdigest()
        out, err = first.communicate(host_program.tar_header("0.part", len(data)) + data + b"\0" * (512 - len(data))
                                     + host_program.TAR_END + json.dumps({"0.part": digest}).encode(), timeout=30)
    finally:
        first.kill()
    assert first.returncode == 0, err
    assert json.loads(out.splitlines()[-1])["ok"] == {"committed": ["first.txt"], "failed": []}
    assert (server.root / "first.txt").read_bytes() == data
    assert staging_dirs(server.root) == []


@pytest.mark.parametrize("member", ["../escaped", "/tmp/absolute", "0.part -> link", "0.part/"])
def test_the_helper_refuses_a_push_stream_with_anything_but_plain_staged_files(tmp_path: Path, member: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    info = tarfile.TarInfo(member.split(" -> ")[0])
    if " -> " in member:
        info.type, info.linkname = tarfile.SYMTYPE, str(tmp_path / "outside")
    elif member.endswith("/"):
        info.type = tarfile.DIRTYPE
    else:
        info.size = 5
    body = info.tobuf(tarfile.USTAR_FORMAT) + (b"pwned" + b"\0" * 507 if info.size else b"")
    helper = receive_helper(root, [{"tmp": "0.part", "path": "x.txt", "size": 5, "mtime_ns": 1, "mode": 0o644}])
    out, err = helper.communicate(body + b"\0" * 1024 + b"{}", timeout=30)
    answer = json.loads(out.splitlines()[-1])
    assert helper.returncode == 1 and answer["error"]["kind"] == "invalid", (out, err)
    assert "nothing was committed" in answer["error"]["message"]
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["root", "root/.sync-staging"]


def test_a_tar_stream_unpacks_the_same_in_chunks_of_any_size(tmp_path: Path) -> None:
    source = tmp_path / "source"
    sizes = [0, 1, 511, 512, 513, 100_000, 3]
    for i, size in enumerate(sizes):
        (source / f"d{i}").mkdir(parents=True)
        (source / f"d{i}" / "f").write_bytes(os.urandom(size))
    members = [[i, f"d{i}/f"] for i in range(len(sizes))]
    stream = (b"".join(chunk for chunk, _sent in host_program.pack_files(str(source), members))
              + host_program.TAR_END + b"trailer")
    for step in (1, 7, 512, 4096, len(stream)):
        staging = tmp_path / f"staging-{step}"
        staging.mkdir()
        receiver = host_program.TarReceiver(str(staging), {f"{i}.part": size for i, size in enumerate(sizes)})
        rest = b"".join(receiver.feed(stream[at:at + step]) for at in range(0, len(stream), step))
        receiver.close()
        assert receiver.finished and not receiver.refused and rest == b"trailer", step
        for i in range(len(sizes)):
            assert (staging / f"{i}.part").read_bytes() == (source / f"d{i}" / "f").read_bytes()
            assert receiver.digests[f"{i}.part"] == hashlib.sha256((source / f"d{i}" / "f").read_bytes()).hexdigest()


async def test_push_and_pull_through_a_local_host(tmp_path: Path, local: Path) -> None:
    """The same streams with this machine as the host (LocalHost: subprocesses instead of SSH)."""
    (local / "candlesticks" / "big.parquet").write_bytes(os.urandom(sync.SMALL_FILE_BYTES + 1))  # over SFTP's path
    host = LocalHost(ServerConfig(name="here", root=str(tmp_path / "host"), python=sys.executable, local=True))
    await host.connect()
    pushed = await sync.push(host, "workspace", local_root=local)
    assert pushed.files_sent == 10 and tree(tmp_path / "host") == tree(local)
    back = make_workspace(tmp_path / "back")
    (tmp_path / "host" / EPOCH / "regressions" / "A1").mkdir(parents=True)
    (tmp_path / "host" / EPOCH / "regressions" / "A1" / "model.keras").write_bytes(os.urandom(3000))
    pulled = await sync.pull(host, "trained-regressions", local_root=back)
    assert pulled.sent == [f"{EPOCH}/regressions/A1/model.keras"] and not pulled.refused
    assert tree(back, f"{EPOCH}/regressions") == tree(tmp_path / "host", f"{EPOCH}/regressions")
    assert staging_dirs(tmp_path / "host") == staging_dirs(back) == []


def test_push_everything_leaves_the_raw_downloads_on_the_controller(tmp_path: Path) -> None:
    from epoch_builder.workspace import DOWNLOADS_DIR

    for name in (DOWNLOADS_DIR, "candlesticks", "config", ".jobs"):
        (tmp_path / name).mkdir()
    (tmp_path / "pyproject.toml").write_text("")
    assert sync.resolve_paths("workspace", "push", tmp_path) == ["candlesticks", "config", "pyproject.toml"]
