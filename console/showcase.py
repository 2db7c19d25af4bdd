"""A fixed cluster state for documentation screenshots and snapshot tests.

The console opens with ``live=False`` (no connections) over three servers
whose status snapshots have the exact shape ``epoch-builder status --json``
prints; nothing here is used by the live console.

    python -m console.showcase docs/     # console-main, console-form, console-board, console-main-80x24 (.svg)
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from remote.board import DONE, FAILED, FINISHED, PENDING, PUSHED, REGRESSIONS, RUNNING, Board, BatchRow, BatchSpec
from remote.config import parse_cluster_config

from console.app import EpochConsole
from console.screens.board import AutoDispatch
from console.cluster import Cluster
from console.state import OFFLINE, JobView
from epoch_builder.workspace import Workspace

T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC: fixed times keep screenshots stable
GIB = 2**30

CONFIG = {
    "servers": [
        {"name": "localhost", "local": True, "root": "/srv/epoch"},
        {"name": "gpu-1", "host": "10.0.0.5", "user": "quant", "root": "/srv/epoch"},
        {"name": "cpu-2", "host": "10.0.0.6", "user": "quant", "root": "/srv/epoch"},
    ]
}


def _snapshot(cpu: float, mem: float, load: list[float], gpu: list[dict] | None, uptime: float) -> dict:
    return {
        "time": T0, "hostname": "box", "workspace": "/srv/epoch",
        "cpu": {"percent": cpu, "count": 16},
        "memory": {"total": 64 * GIB, "used": int(64 * GIB * mem / 100), "percent": mem},
        "disk": {"path": "/srv/epoch", "total": 1000 * GIB, "used": 420 * GIB, "free": 580 * GIB, "percent": 42.0},
        "load": load, "uptime_s": uptime, "gpu": gpu, "jobs": [],
    }


def showcase_cluster() -> Cluster:
    cluster = Cluster(parse_cluster_config(CONFIG, "showcase.json"), "/srv/epoch")
    wave = [30, 45, 62, 80, 91, 88, 93, 95, 90, 94, 96, 92, 97, 95, 93, 96, 98, 94, 95, 97]
    gpu = [{"name": "NVIDIA H100", "utilization_percent": 87.0, "memory_used_mb": 61_440.0,
            "memory_total_mb": 81_559.0, "temperature_c": 64.0}]
    hosts = cluster.hosts
    for i, value in enumerate(wave):
        hosts["gpu-1"].apply_status(_snapshot(value, 38 + i * 0.5, [14.2, 13.8, 12.9], [{**gpu[0], "utilization_percent": 60 + i * 1.5}], 86_400 * 3 + 7_200), 21.0)
        hosts["localhost"].apply_status(_snapshot(5 + (i % 5) * 3, 12.0, [0.4, 0.5, 0.6], None, 3_600 * 5), 0.2)
    for view in hosts.values():
        view.updated = None  # no "updated N s ago" line: it would change with the clock
    hosts["cpu-2"].state = OFFLINE
    hosts["cpu-2"].error = "server cpu-2 (quant@10.0.0.6:22): cannot connect: Connection refused"

    jobs = [
        JobView("localhost", "20260101T000000-create-epoch-1a2b3c", "create-epoch --id _EPOCH --profile default",
                "finished", 0, T0 - 3_600, T0 - 3_540),
        JobView("gpu-1", "20260101T001500-train-regression-batch-9f8e7d",
                "train-regression-batch --category DNN --batch KR_DNN_1_9.json", "running", None, T0 - 2_700,
                stage="train", done=37, total=150, eta_s=8_100.0, seen=T0),
        JobView("cpu-2", "20260101T000500-find-profitable-configs-4d5e6f",
                "find-profitable-configs --batch 1.json", "failed", 1, T0 - 3_300, T0 - 3_290),
    ]
    cluster.jobs = {job.key: job for job in jobs}
    return cluster


TRAINING_LOG = [
    "loading datasets: 5,932 train windows, 1,483 test windows (lookback 128, predictions 32)",
    *(f"KR_DNN_S3_{n:04d} epoch {e:>3}/500 loss {0.08 / e:.6f} val_loss {0.09 / e:.6f}" for n in (36, 37) for e in range(1, 9)),
    "KR_DNN_S3_0037 early stop at epoch 8, best val_loss 0.011250",
]


def showcase_board() -> Board:
    """A regression stage half way: every board state once, a retried batch, one server down."""
    def spec(n: int, category: str = "DNN") -> BatchSpec:
        return BatchSpec(REGRESSIONS, f"KR_{category}_{n}_10", category, tuple(f"KR_{category}_S3_{n:02d}{m}" for m in range(10)))

    rows = [
        BatchRow(spec(1), DONE, "gpu-1", "20260101T001000-train-regression-batch-0a0b0c"),
        BatchRow(spec(2), DONE, "localhost", "20260101T001100-train-regression-batch-1a1b1c", failures={"gpu-1": 1}),
        BatchRow(spec(3), RUNNING, "gpu-1", "20260101T001500-train-regression-batch-9f8e7d", done=37, total=150, eta_s=8_100.0,
                 reason="KR_DNN_3_10 to gpu-1: 2.3 h here, 31 h on cpu-2"),
        BatchRow(spec(4), FINISHED, "localhost", "20260101T001600-train-regression-batch-2a2b2c", exit_code=0),
        BatchRow(spec(5), FAILED, "cpu-2", "20260101T000500-train-regression-batch-4d5e6f", exit_code=1,
                 log_tail=["MemoryError: Unable to allocate 3.1 GiB for an array"], failures={"cpu-2": 1}),
        BatchRow(spec(6), PUSHED, "localhost"),
        BatchRow(spec(1, "LSTM"), PENDING),
        BatchRow(spec(2, "LSTM"), PENDING),
    ]
    hosts = {"localhost": "online", "gpu-1": "online", "cpu-2": "unreachable: cannot connect: Connection refused"}
    return Board("_EPOCH", rows, hosts, {}, (REGRESSIONS,))


def showcase_app() -> EpochConsole:
    app = EpochConsole(showcase_cluster(), Workspace(Path("/srv/epoch")), live=False)

    async def read_board() -> Board:
        return showcase_board()

    app.read_board = read_board  # type: ignore[method-assign]
    AutoDispatch.of(app).messages.extend([
        "00:14:58 dispatch regressions: epoch _EPOCH, servers localhost, gpu-1, cpu-2",
        "00:15:02 KR_DNN_3_10: started job 20260101T001500-train-regression-batch-9f8e7d on gpu-1 (sent 4 file(s))",
        "00:15:40 server cpu-2: unreachable: cannot connect: Connection refused",
        "00:16:05 KR_DNN_4_10: started job 20260101T001600-train-regression-batch-2a2b2c on localhost (sent 0 file(s))",
    ])

    def fill_log() -> None:
        job = app.cluster.jobs["gpu-1/20260101T001500-train-regression-batch-9f8e7d"]
        pane = app.log_pane
        pane.show_source(f"{job.server} · {job.id} · {job.command}")
        pane.view.append_lines(TRAINING_LOG)

    app.call_after_refresh(fill_log)
    return app


async def save_screenshots(directory: Path, size: tuple[int, int] = (150, 42)) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    app = showcase_app()
    async with app.run_test(size=size) as pilot:
        await pilot.pause(0.5)
        table = app.servers_table
        table.move_cursor(row=1)  # gpu-1
        await pilot.pause(0.3)
        written.append(Path(app.save_screenshot("console-main.svg", str(directory))))
        await pilot.press("e")
        await pilot.pause(0.3)
        written.append(Path(app.save_screenshot("console-form.svg", str(directory))))
        await pilot.press("escape", "o")
        await pilot.pause(0.5)
        written.append(Path(app.save_screenshot("console-board.svg", str(directory))))
    small = showcase_app()  # the narrow layout: servers, the log at full width, jobs
    async with small.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
        small.servers_table.move_cursor(row=1)
        await pilot.pause(0.3)
        written.append(Path(small.save_screenshot("console-main-80x24.svg", str(directory))))
    return written


if __name__ == "__main__":
    for path in asyncio.run(save_screenshots(Path(sys.argv[1] if len(sys.argv) > 1 else "docs"))):
        print(path)
