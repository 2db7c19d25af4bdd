"""Incremental push/pull over real SFTP: round trips, no-change re-sync, faults, hostile paths."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from remote import sync
from remote.errors import HostUnreachable, RemoteError, UnsafePath

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
    import time

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
    pulled = await sync.pull(host, "trained-regressions", local_root=back)
    assert pulled.files_sent == SCALE_FILES and not pulled.refused
    assert tree(back, f"{EPOCH}/regressions") == tree(local, f"{EPOCH}/regressions")
    assert not list((sshd.servers[0].root / ".sync-staging").glob("*")) if (sshd.servers[0].root / ".sync-staging").exists() else True
    print(f"{SCALE_FILES} files: push {push_s:.1f} s, no-change re-sync {resync_s:.2f} s")
