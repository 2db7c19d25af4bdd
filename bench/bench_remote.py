"""Remote layer on loopback: push vs `rsync -a -e ssh`, no-change re-sync, status round trip to 20 hosts.

    .venv/bin/python bench/bench_remote.py [--mb 100] [--files 500] [--small-files 20000] [--hosts 20]

Prints ratios measured in this one run (targets: push <= 1.5x rsync,
no-change re-sync <= 1 s, status of 20 hosts <= 1 s). ``--small-files``:
push and pull of that many small files (a few hundred bytes to 100 KB, laid
out like trained regressions) against rsync push and pull, and the
no-change re-syncs (targets: <= 1.5x rsync, re-sync <= 2 s; 0 skips it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import sshd_cluster  # noqa: E402

from remote import sync  # noqa: E402
from remote.cluster import Cluster  # noqa: E402
from remote import status as remote_status


def make_workspace(root: Path, total_mb: int, files: int) -> None:
    size = total_mb * 1024 * 1024 // files
    for i in range(files):
        path = root / "_EPOCH" / "regressions" / f"KR_{i // 10}" / f"file_{i}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))


# A trained regression's files: (name, smallest, largest size in bytes).
REGRESSION_FILES = (("certificate.json", 300, 3_000), ("model.keras", 10_000, 100_000),
                    ("training_history.json", 500, 8_000))


def make_regressions(root: Path, files: int, seed: int = 60184) -> int:
    """``files`` small files under ``_EPOCH/regressions/<id>/`` (three per regression) and one batched
    certificate per 50 regressions; their total size."""
    rng = random.Random(seed)
    total = 0
    for i in range(files):
        regression, kind = divmod(i, len(REGRESSION_FILES))
        name, smallest, largest = REGRESSION_FILES[kind]
        if kind == 0 and regression % 50 == 0:
            name, directory = f"KR_DNN_{regression // 50 + 1}.json", root / "_EPOCH" / "regression_batched_certificates"
        else:
            directory = root / "_EPOCH" / "regressions" / f"KR_DNN_S{2 + regression % 4}_{regression:05d}"
        directory.mkdir(parents=True, exist_ok=True)
        size = rng.randint(smallest, largest)
        (directory / name).write_bytes(rng.randbytes(size))
        total += size
    return total


def rsync_ssh(server, known_hosts: Path, key: Path) -> str:
    return (f"ssh -p {server.port} -i {key} -o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes "
            "-o BatchMode=yes")


def rsync_push(local: Path, dest: Path, server, known_hosts: Path, key: Path) -> float:
    os.sync()  # each timed step starts with no dirty data of an earlier one to write out
    started = time.perf_counter()
    subprocess.run(["rsync", "-a", "-e", rsync_ssh(server, known_hosts, key), f"{local}/", f"127.0.0.1:{dest}/"], check=True)
    return time.perf_counter() - started


def rsync_pull(source: str, local: Path, server, known_hosts: Path, key: Path) -> float:
    local.parent.mkdir(parents=True, exist_ok=True)  # rsync makes the last directory only
    os.sync()
    started = time.perf_counter()
    subprocess.run(["rsync", "-a", "-e", rsync_ssh(server, known_hosts, key), f"127.0.0.1:{source}/", f"{local}/"], check=True)
    return time.perf_counter() - started


async def timed(call) -> tuple[float, object]:
    os.sync()
    started = time.perf_counter()
    result = await call
    return time.perf_counter() - started, result


async def small_files(tmp_path: Path, count: int) -> None:
    """Push, pull and re-sync of ``count`` small files against rsync push and pull, in this one run."""
    servers = sshd_cluster.SSHDCluster.start(tmp_path / "sshd-small", count=1)
    try:
        server, key = servers.servers[0], servers.user_key.private
        local = tmp_path / "small-local"
        total = make_regressions(local, count)
        rsync_push_s = rsync_push(local, server.root / "rsync-copy", server, servers.known_hosts, key)
        cluster = Cluster(servers.cluster_config(python=sys.executable))
        await cluster.connect_all()
        host = cluster.hosts["srv1"]
        try:
            push_s, pushed = await timed(sync.push(host, ["_EPOCH"], local_root=local))
            repush_s, repushed = await timed(sync.push(host, ["_EPOCH"], local_root=local))
            rsync_pull_s = rsync_pull(f"{server.root}/_EPOCH", tmp_path / "rsync-pulled" / "_EPOCH", server,
                                      servers.known_hosts, key)
            back = tmp_path / "small-pulled"
            pull_s, pulled = await timed(sync.pull(host, ["_EPOCH"], local_root=back))
            repull_s, repulled = await timed(sync.pull(host, ["_EPOCH"], local_root=back))
        finally:
            await cluster.close()
        print(f"{count} small files, {total / 1e6:.0f} MB: push {pushed.files_sent} files {push_s:.2f} s; "
              f"rsync -a -e ssh push {rsync_push_s:.2f} s; ratio {push_s / rsync_push_s:.2f}x (target <= 1.5x)")
        print(f"{count} small files: pull {pulled.files_sent} files {pull_s:.2f} s; rsync -a -e ssh pull "
              f"{rsync_pull_s:.2f} s; ratio {pull_s / rsync_pull_s:.2f}x (target <= 1.5x)")
        print(f"{count} small files, no-change re-sync: push {repush_s:.2f} s ({repushed.files_sent} sent), "
              f"pull {repull_s:.2f} s ({repulled.files_sent} fetched) (target <= 2 s)")
    finally:
        servers.stop()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--small-files", type=int, default=20000)
    parser.add_argument("--hosts", type=int, default=20)
    args = parser.parse_args()
    if shutil.which("rsync") is None:  # the baseline every ratio is measured against
        sys.exit("bench_remote: rsync is not installed (Debian: apt-get install rsync)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        if args.small_files:
            await small_files(tmp_path, args.small_files)
        servers = sshd_cluster.SSHDCluster.start(tmp_path / "sshd", count=1)
        try:
            local = tmp_path / "local"
            make_workspace(local, args.mb, args.files)
            server = servers.servers[0]
            rsync_s = rsync_push(local, server.root / "rsync-copy", server, servers.known_hosts, servers.user_key.private)
            cluster = Cluster(servers.cluster_config(python=sys.executable))
            await cluster.connect_all()
            host = cluster.hosts["srv1"]
            started = time.perf_counter()
            report = await sync.push(host, "workspace", local_root=local)
            push_s = time.perf_counter() - started
            started = time.perf_counter()
            again = await sync.push(host, "workspace", local_root=local)
            resync_s = time.perf_counter() - started
            await cluster.close()
            print(f"push {report.files_sent} files {report.bytes_sent / 1e6:.0f} MB: {push_s:.2f} s; "
                  f"rsync -a -e ssh: {rsync_s:.2f} s; ratio {push_s / rsync_s:.2f}x (target <= 1.5x)")
            print(f"no-change re-sync: {resync_s:.3f} s, {again.bytes_sent} bytes sent (target <= 1 s)")
        finally:
            servers.stop()

        # 20 connections (to one sshd: the per-host work is the same), one status round trip each.
        servers = sshd_cluster.SSHDCluster.start(tmp_path / "sshd20", count=1)
        try:
            config = servers.cluster_config(python=sys.executable)
            from dataclasses import replace

            from remote.config import ClusterConfig

            many = ClusterConfig(servers=tuple(replace(config.servers[0], name=f"h{i}") for i in range(args.hosts)),
                                 ssh=config.ssh)
            cluster = Cluster(many)
            started = time.perf_counter()
            await cluster.connect_all()
            connect_s = time.perf_counter() - started
            started = time.perf_counter()
            results = await cluster.each(lambda h: remote_status.status(h))
            status_s = time.perf_counter() - started
            failed = [n for n, r in results.items() if isinstance(r, BaseException)]
            print(f"{args.hosts} hosts: connect all {connect_s:.2f} s; one-shot status for all {status_s:.2f} s "
                  f"(a new status process per host; target <= 1 s){'; failed: ' + ', '.join(failed) if failed else ''}")
            stream_s = await steady_status_round(cluster)
            print(f"{args.hosts} hosts, live status streams (what the console uses): a fresh snapshot from every "
                  f"host within {stream_s:.2f} s (target <= 1 s; one-shot / stream ratio {status_s / stream_s:.1f}x)")
            await cluster.close()
        finally:
            servers.stop()


async def steady_status_round(cluster: Cluster, interval_s: float = 0.5) -> float:
    """Open a `status --watch` stream per host, wait until all deliver, then time one full round:
    from a mark until every host has delivered a snapshot taken after it."""
    arrivals: dict[str, float] = {}
    everyone = asyncio.Event()
    names = [h.name for h in cluster.select(None)]

    async def consume(host) -> None:
        async for snapshot in remote_status.status_stream(host, interval_s):
            if snapshot.get("state", "online") == "online":
                arrivals[host.name] = time.perf_counter()
                if len(arrivals) == len(names):
                    everyone.set()

    tasks = [asyncio.create_task(consume(h)) for h in cluster.select(None)]
    try:
        await asyncio.wait_for(everyone.wait(), 120)
        mark = time.perf_counter()
        while min(arrivals.values()) < mark:
            await asyncio.sleep(0.01)
        return max(arrivals.values()) - mark if max(arrivals.values()) > mark else 0.0
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main())
