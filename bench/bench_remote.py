"""Remote layer on loopback: push vs `rsync -a -e ssh`, no-change re-sync, status round trip to 20 hosts.

    .venv/bin/python bench/bench_remote.py [--mb 100] [--files 500] [--hosts 20]

Prints ratios measured in this one run (targets: push <= 1.5x rsync,
no-change re-sync <= 1 s, status of 20 hosts <= 1 s).
"""

from __future__ import annotations

import argparse
import asyncio
import os
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


def rsync_push(local: Path, dest: Path, server, known_hosts: Path, key: Path) -> float:
    ssh = (f"ssh -p {server.port} -i {key} -o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes "
           "-o BatchMode=yes")
    started = time.perf_counter()
    subprocess.run(["rsync", "-a", "-e", ssh, f"{local}/", f"127.0.0.1:{dest}/"], check=True)
    return time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--hosts", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
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
