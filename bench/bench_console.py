"""Console responsiveness under load: 20 hosts streaming status at 1 Hz + one log at 10,000 lines/s.

Everything on the load path is real: 20 local servers, each a live
``epoch-builder status --watch 1`` stream through remote.LocalHost; a real
detached job whose log file a writer process appends to at 10,000 lines/s,
followed through remote's follow_log into the log pane. Key presses go
through Textual's input path (Pilot); latency = from posting the key to the
handler running. Printed: latency percentiles idle (baseline, same process)
and under load, their ratio, and the log lines/s the pane ingested.
Target (console issue): every key press handled in under 100 ms.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from textual.binding import Binding  # noqa: E402

from console.app import EpochConsole, make_app  # noqa: E402
from console.widgets.logs import LogPane  # noqa: E402

HOSTS = 20
LOG_LINES_PER_S = 10_000
PRESSES = 100
PRESS_EVERY_S = 0.1

WRITER = r"""
import sys, time
path, rate = sys.argv[1], int(sys.argv[2])
batch = rate // 100
n = 0
with open(path, "a", buffering=1 << 16) as log:
    start = time.perf_counter()
    while True:
        for _ in range(batch):
            log.write(f"{time.time():.6f} line {n} epoch 12/500 loss 0.012345 val_loss 0.013579 padding to look like a real log\n")
            n += 1
        log.flush()
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
"""


class BenchConsole(EpochConsole):
    BINDINGS = [Binding("z", "ping", "ping")]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.handled: list[float] = []

    def action_ping(self) -> None:
        self.handled.append(time.perf_counter())


async def press_latencies(app: BenchConsole, pilot) -> list[float]:
    latencies = []
    for _ in range(PRESSES):
        before = len(app.handled)
        started = time.perf_counter()
        await pilot.press("z")
        while len(app.handled) == before:
            await asyncio.sleep(0.001)
        latencies.append((app.handled[-1] - started) * 1000)
        await asyncio.sleep(PRESS_EVERY_S)
    return latencies


def summary(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    return f"p50 {statistics.median(ordered):6.1f} ms  p95 {p95:6.1f} ms  max {ordered[-1]:6.1f} ms"


def make_bench_app(config: Path, workspace: Path) -> BenchConsole:
    base = make_app(config, workspace)
    return BenchConsole(base.cluster, base.workspace)


async def main() -> int:
    global HOSTS, LOG_LINES_PER_S
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=HOSTS, help=f"local hosts streaming status (default {HOSTS})")
    parser.add_argument("--log-rate", type=int, default=LOG_LINES_PER_S, help=f"log lines/s (default {LOG_LINES_PER_S})")
    args = parser.parse_args()
    HOSTS, LOG_LINES_PER_S = args.hosts, args.log_rate
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        servers = [{"name": f"h{i:02d}", "local": True, "root": str(root / f"h{i:02d}")} for i in range(HOSTS)]
        config = root / "cluster.json"
        config.write_text(json.dumps({"servers": servers}))
        workspace = root / "local"
        workspace.mkdir()

        # Baseline: the same app, one idle local host, no log.
        idle_config = root / "idle.json"
        idle_config.write_text(json.dumps({"servers": servers[:1]}))
        app = make_bench_app(idle_config, workspace)
        async with app.run_test(size=(160, 48)) as pilot:
            await pilot.pause(2)
            idle = await press_latencies(app, pilot)

        app = make_bench_app(config, workspace)
        writer = None
        async with app.run_test(size=(160, 48)) as pilot:
            deadline = time.monotonic() + 120
            while not all(h.state == "online" and h.cpu is not None for h in app.cluster.hosts.values()):
                if time.monotonic() > deadline:
                    print("hosts not online:", {n: (h.state, h.error) for n, h in app.cluster.hosts.items()})
                    return 1
                await pilot.pause(0.2)
            job = await app.cluster.start_job("h00", ["status", "--watch", "5", "--json"])
            log_file = root / "h00" / ".jobs" / job.id / "log"
            writer = subprocess.Popen([sys.executable, "-c", WRITER, str(log_file), str(max(LOG_LINES_PER_S, 100))]) if LOG_LINES_PER_S else None
            app.follow_log(job)
            view = app.query_one(LogPane).view
            await pilot.pause(2)  # follower running at full rate
            received_before, t0 = view.buffer.total_received + len(view._pending), time.perf_counter()
            loaded = await press_latencies(app, pilot)
            received = view.buffer.total_received + len(view._pending) - received_before
            elapsed = time.perf_counter() - t0
            statuses = sum(len(h.cpu_history) for h in app.cluster.hosts.values())
            if writer is not None:
                writer.terminate()
                writer.wait()
            await app.cluster.stop_job("h00", job.id)

        print(f"console key latency, {PRESSES} presses every {PRESS_EVERY_S * 1000:.0f} ms")
        print(f"  idle (baseline, 1 host, no log):          {summary(idle)}")
        print(f"  {HOSTS} hosts at 1 Hz + log at {LOG_LINES_PER_S:,} lines/s: {summary(loaded)}")
        print(f"  ratio loaded/idle p95: {sorted(loaded)[94] / max(sorted(idle)[94], 1e-6):.1f}x")
        print(f"  log lines ingested: {received / elapsed:,.0f} lines/s (writer: {LOG_LINES_PER_S:,}/s)")
        print(f"  status snapshots held: {statuses} over {HOSTS} hosts")
        ok = max(loaded) < 100
        print(f"  target max < 100 ms: {'met' if ok else 'NOT met'}")
        return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
