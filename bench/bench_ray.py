"""Benchmark: the sweep stage through ``dispatch --engine ray`` on a head + 2 worker nodes vs one local process.

One run, on this machine: the bundled sample's small epoch, six tiny trained DNNs and their configuration
batches (``--batches`` of them). Baseline: every batch's ``find-profitable-configs --workers 1`` one after
another, each a fresh process as a server would run it. Then the same batches dispatched to a Ray cluster of
a head (no CPU) and two worker nodes of one CPU each (``ray.cluster_utils.Cluster``). Prints the wall time of
each, the engine's overhead per batch (Ray's batch time on one worker minus the local batch time) and the
speedup with 2 workers; results are checked equal.

    .venv/bin/python bench/bench_ray.py [--batches 6]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from epoch_builder.workspace import Workspace  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def quiet(*_: object) -> None:
    pass


def make_workspace(root: Path, batches: int) -> Workspace:
    from epoch_builder.cli import main
    from epoch_builder.create_epoch import create_epoch
    from epoch_builder.importer import bundled_sample, import_candlesticks
    from tests.test_build_export import regression_ids, train_tiny_regressions

    ws = Workspace(root)
    import_candlesticks(ws, [bundled_sample()], interval_minutes=30, log=quiet)
    create_epoch(ws, "_BENCH", profile="small", width_unit="days", epoch_width=20, log=quiet)
    train_tiny_regressions(root)
    pcrs = "0.3,0.4,0.5,0.6,0.8,1"  # 6 x 2 msf x 3 msaf x C(6,4) = 540 configurations
    size = -(-540 // batches)
    assert main(["initialize-prediction-models", "--workspace", str(root), "--regressions",
                 ",".join(regression_ids(ws)), "--allow-few-regressions", "--pcr", pcrs, "--regressions-per-model", "4",
                 "--batch-size", str(size)]) == 0
    return ws


def local_sweep(ws: Workspace) -> float:
    started = time.perf_counter()
    for batch in sorted(ws.epoch().configs_dir.glob("_BENCH_*.json")):
        subprocess.run([sys.executable, "-m", "epoch_builder", "find-profitable-configs", "--workspace", str(ws.root),
                        "--batch", batch.name, "--workers", "1", "--no-progress"], check=True, capture_output=True,
                       cwd=REPO)
    return time.perf_counter() - started


def ray_sweep(ws: Workspace, address: str) -> float:
    from remote.dispatch import DispatchOptions
    from remote.ray_engine import RayDispatcher

    options = DispatchOptions(stage="profitable-configs", interval_s=0.2, workers=1, engine="ray", ray_address=address)
    dispatcher = RayDispatcher(ws.root, options, log=quiet)
    started = time.perf_counter()
    board = asyncio.run(dispatcher.run())
    seconds = time.perf_counter() - started
    assert board.stage_done("profitable-configs")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=6)
    args = parser.parse_args()
    import ray
    from ray.cluster_utils import Cluster

    with tempfile.TemporaryDirectory() as tmp:
        base = make_workspace(Path(tmp) / "base", args.batches)
        local, remote = (Workspace(Path(tmp) / name) for name in ("local", "ray"))
        shutil.copytree(base.root, local.root)
        shutil.copytree(base.root, remote.root)
        started = time.perf_counter()
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
        for _ in range(2):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        cluster_s = time.perf_counter() - started
        try:
            local_s = local_sweep(local)
            ray_s = ray_sweep(remote, cluster.address)
        finally:
            ray.shutdown()
            cluster.shutdown()
        batches = sorted(local.epoch().configs_dir.glob("_BENCH_*.json"))
        for batch in batches:
            ours = json.loads(remote.epoch().profitable_configs_file(batch.stem).read_text())
            assert ours == json.loads(local.epoch().profitable_configs_file(batch.stem).read_text()), batch.name
    n = len(batches)
    per_local = local_s / n
    per_ray = ray_s * 2 / n  # each worker ran half of the batches
    print(f"cluster start (head + 2 worker nodes): {cluster_s:.1f} s")
    print(f"local:  {n} batches one after another in {local_s:.1f} s ({per_local:.2f} s per batch)")
    print(f"ray:    {n} batches on 2 workers in {ray_s:.1f} s ({per_ray:.2f} s per batch on one worker)")
    print(f"engine overhead per batch: {per_ray - per_local:+.2f} s; speedup with 2 workers: {local_s / ray_s:.2f}x "
          "(results equal)")


if __name__ == "__main__":
    main()
