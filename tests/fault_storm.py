"""A fault storm over a real dispatch: a small epoch's two stages (regressions, then profitable configs)
dispatched over loopback sshd servers while a seeded injector, at random moments, kills sshd listeners
with their sessions, kills sessions alone (links dropped, mid-transfer when one is under way), kill -9s
jobs, the helper calls on the hosts and the dispatcher itself (restarted at once), and restarts servers.

At the end every result equals an undisturbed run's (the deterministic part of each regression
certificate, every profitable-config file), nothing outside the results changed in the controller's
workspace, and the dispatcher's output holds no traceback. Used by ``tests/remote/test_soak.py`` (a size
``make test`` affords) and ``bench/bench_soak.py`` (at least 200 faults).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import sshd_cluster  # noqa: E402

FAULTS = ("sshd", "link", "job", "helper", "dispatcher", "restart")
MAX_EPOCHS = 30  # as test_build_export's tiny regressions: enough for profitable configurations
# What the dispatch may write in the controller's workspace; everything else must stay as it was.
RESULT_PARTS = ("regressions", "regression_batched_certificates", "tensorboard", "profitable_configs", ".board",
                ".regression_checkpoints", "prediction_models/assets", "prediction_models/configs",
                "prediction_models/configs_receipt")


@dataclass
class StormReport:
    faults: Counter = field(default_factory=Counter)
    dispatcher_restarts: int = 0
    batches: int = 0
    starts: int = 0
    differences: list[str] = field(default_factory=list)
    outside_changes: list[str] = field(default_factory=list)
    tracebacks: list[str] = field(default_factory=list)
    storm_s: float = 0.0
    undisturbed_s: float = 0.0
    compared: tuple[int, int] = (0, 0)  # regressions, profitable configurations of the undisturbed run

    @property
    def extra_starts(self) -> int:
        return self.starts - self.batches

    @property
    def restart_causing_faults(self) -> int:
        """Faults that can end a job or its start (and so require the batch to start again)."""
        return sum(self.faults[kind] for kind in ("sshd", "link", "job", "helper", "restart"))

    def lines(self) -> list[str]:
        total = sum(self.faults.values())
        return [
            f"faults injected: {total} ({', '.join(f'{k} {self.faults[k]}' for k in FAULTS)})",
            f"dispatcher restarts: {self.dispatcher_restarts}",
            f"batches: {self.batches}, job starts: {self.starts}, extra starts: {self.extra_starts} "
            f"(faults that can require one: {self.restart_causing_faults})",
            f"compared with the undisturbed run: {self.compared[0]} regressions, {self.compared[1]} profitable "
            f"configurations; differences: {len(self.differences)}; changes outside the results: "
            f"{len(self.outside_changes)}; tracebacks in the dispatcher's output: {len(self.tracebacks)}",
            f"wall time: storm {self.storm_s:.1f} s, undisturbed {self.undisturbed_s:.1f} s "
            f"({self.storm_s / max(self.undisturbed_s, 1e-9):.2f}x)",
        ]


def _files(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and ".jobs" not in p.parts}


def _is_result(rel: str) -> bool:
    return any(f"/{part}" in f"/{rel}" for part in RESULT_PARTS)


def _jobs(root: Path) -> list[dict]:
    from remote import host_program

    return host_program.cmd_list({"root": str(root)}) if (root / ".jobs").is_dir() else []


def _kill(pids: list[int]) -> int:
    killed = 0
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            killed += 1
        except ProcessLookupError:
            pass
    return killed


def _deterministic(cert: dict) -> dict:
    return {k: cert.get(k) for k in ("id", "epochs", "training_history", "test_evaluation", "discovery")}


class Storm:
    def __init__(self, workspace: Path, directory: Path, *, servers: int, seed: int, faults: int,
                 mean_gap_s: float, log: Callable[[str], None] = lambda _line: None) -> None:
        self.ws_root = Path(workspace)
        self.directory = Path(directory)
        self.rng = random.Random(seed)
        self.fault_budget = faults
        self.mean_gap_s = mean_gap_s
        self.log = log
        self.cluster = sshd_cluster.SSHDCluster.start(self.directory / "sshd", count=servers)
        self.config = self.directory / "cluster.json"
        self.config.write_text(json.dumps(self.cluster.config_dict(
            sys.executable, connect_timeout_s=3, keepalive_interval_s=1, keepalive_count_max=2, command_timeout_s=30)))
        self.report = StormReport()
        self.dispatch_log = self.directory / "dispatch.log"
        self.process: subprocess.Popen | None = None
        self._down: dict[str, float] = {}  # server -> when it comes back
        self._kinds: list[str] = []  # the round of fault kinds still to come

    # --- the dispatcher ---------------------------------------------------------------------------
    def _start_dispatcher(self, stage: str) -> None:
        with open(self.dispatch_log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "remote.cli", "--config", str(self.config), "--workspace", str(self.ws_root),
                 "dispatch", "--stage", stage, "--interval", "0.3", "--max-failures", "100",
                 *(["--max-epochs", str(MAX_EPOCHS)] if stage == "regressions" else ["--workers", "1"])],
                stdout=out, stderr=subprocess.STDOUT, cwd=REPO)

    def _run_stage(self, stage: str, timeout_s: float) -> None:
        self._start_dispatcher(stage)
        deadline = time.monotonic() + timeout_s
        next_fault = time.monotonic() + self.rng.expovariate(1 / self.mean_gap_s)
        budget = sum(self.report.faults.values()) + (self.fault_budget + 1) // 2  # half the faults in each stage
        kind: str | None = None
        while True:
            self._bring_back()
            code = self.process.poll()
            if code is not None:
                if code == 0:
                    return
                raise AssertionError(f"dispatch {stage} exited {code}: {self.dispatch_log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"dispatch {stage} still running after {timeout_s} s: "
                                     f"{self.dispatch_log.read_text()[-3000:]}")
            if sum(self.report.faults.values()) < min(budget, self.fault_budget) and time.monotonic() >= next_fault:
                kind = kind or self._next_kind()
                if self._inject(stage, kind):
                    kind, next_fault = None, time.monotonic() + self.rng.expovariate(1 / self.mean_gap_s)
                else:  # a job to kill when none runs: the next one that does
                    next_fault = time.monotonic() + 0.1
            time.sleep(0.05)

    def finish(self) -> None:
        """Every server back (the last stage may end while one is down), the dispatcher gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        for server in self.cluster.servers:
            if server.process is None:
                server.start()
        self._down.clear()

    # --- faults -------------------------------------------------------------------------------------
    def _bring_back(self) -> None:
        now = time.monotonic()
        for server in self.cluster.servers:
            if server.name in self._down and now >= self._down[server.name]:
                server.start()
                del self._down[server.name]

    def _next_kind(self) -> str:
        """Every kind once per round, in a seeded random order: each is exercised, none crowds out the others."""
        if not self._kinds:
            self._kinds = list(FAULTS)
            self.rng.shuffle(self._kinds)
        return self._kinds.pop()

    def _inject(self, stage: str, kind: str) -> bool:
        """One fault of ``kind``; False when there was nothing to hit (no job running, no server up)."""
        up = [s for s in self.cluster.servers if s.process is not None]
        server = self.rng.choice(up) if up else None
        if kind == "dispatcher":
            self.process.kill()
            self.process.wait(10)
            self.report.dispatcher_restarts += 1
            self._start_dispatcher(stage)
        elif server is None:
            return False
        elif kind == "sshd":  # listener and sessions; back after a while
            server.kill()
            self._down[server.name] = time.monotonic() + self.rng.uniform(0.5, 3.0)
        elif kind == "restart":
            server.restart()
        elif kind == "link":  # the sessions only: every link drops, transfers under way with them
            _kill(server.session_pids())
        elif kind == "helper":  # the helper programs the controller runs there, not the sessions carrying them
            helpers = []
            for pid in server.session_pids():
                try:
                    if psutil.Process(pid).name().startswith("python"):
                        helpers.append(pid)
                except psutil.NoSuchProcess:
                    pass
            _kill(helpers)
        elif kind == "job":  # a running job of any server that answers
            running = [(s, j) for s in up for j in _jobs(s.root) if j["state"] == "running"]
            if not running:
                return False
            server, job = self.rng.choice(running)
            try:
                os.killpg(job["pid"], signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                return False
        self.report.faults[kind] += 1
        self.log(f"fault {sum(self.report.faults.values())}: {kind}" + (f" on {server.name}" if server else ""))
        return True

    # --- the whole run ------------------------------------------------------------------------------
    def run(self, stage_timeout_s: float) -> StormReport:
        from epoch_builder.workspace import Workspace

        ws = Workspace(self.ws_root)
        before = _files(self.ws_root)
        started = time.monotonic()
        try:
            self._run_stage("regressions", stage_timeout_s)
            self.finish()
            initialize(self.ws_root)
            before.update({k: v for k, v in _files(self.ws_root).items() if "prediction_models" in k})
            self._run_stage("profitable-configs", stage_timeout_s)
        finally:
            self.finish()
        self.report.storm_s = time.monotonic() - started
        after = _files(self.ws_root)
        self.report.outside_changes = sorted(rel for rel in set(before) | set(after)
                                             if not _is_result(rel) and before.get(rel) != after.get(rel))
        text = self.dispatch_log.read_text(errors="replace")
        self.report.tracebacks = [line for line in text.splitlines() if "Traceback" in line]
        from remote import board as boards

        specs = [*boards.stage_batches(ws.root, ws.active_epoch_id(), "regressions"),
                 *boards.stage_batches(ws.root, ws.active_epoch_id(), "profitable-configs")]
        self.report.batches = len(specs)
        starts = [job for s in self.cluster.servers for job in _jobs(s.root)]
        self.report.starts = sum(1 for job in starts if boards.batch_of_job(job["argv"]) is not None)
        return self.report

    def compare(self, reference: Path) -> list[str]:
        """Every result against the undisturbed run's: the names of those that differ."""
        from epoch_builder.workspace import Workspace

        ours, theirs = Workspace(self.ws_root).epoch(), Workspace(reference).epoch()
        differences = []
        for cert in sorted(theirs.regressions_dir.glob("*/certificate.json")):
            mine = ours.regressions_dir / cert.parent.name / "certificate.json"
            if not mine.is_file() or _deterministic(json.loads(mine.read_text())) != _deterministic(json.loads(cert.read_text())):
                differences.append(f"regressions/{cert.parent.name}")
        for batch in sorted(theirs.profitable_configs_dir.glob("*.json")):
            mine = ours.profitable_configs_dir / batch.name
            if not mine.is_file() or json.loads(mine.read_text()) != json.loads(batch.read_text()):
                differences.append(f"profitable_configs/{batch.name}")
        extra = {p.parent.name for p in ours.regressions_dir.glob("*/certificate.json")} - {
            p.parent.name for p in theirs.regressions_dir.glob("*/certificate.json")}
        differences += [f"regressions/{name} (not in the undisturbed run)" for name in sorted(extra)]
        self.report.differences = differences
        self.report.compared = (len(list(theirs.regressions_dir.glob("*/certificate.json"))),
                                sum(len(json.loads(p.read_text())) for p in theirs.profitable_configs_dir.glob("*.json")))
        return differences

    def close(self) -> None:
        self.finish()
        self.cluster.stop()
        for server in self.cluster.servers:  # detached jobs a failed storm left behind
            for job in _jobs(server.root):
                if job["state"] == "running":
                    try:
                        os.killpg(job["pid"], signal.SIGKILL)
                    except ProcessLookupError:
                        pass


def epoch_with_batches(root: Path, template: Path, models_per_batch: int = 2) -> Path:
    """A copy of a small epoch's workspace with test_build_export's six tiny DNNs in batches of ``models_per_batch``."""
    from epoch_builder.regressions.grid import generate
    from epoch_builder.workspace import Workspace
    from tests.test_build_export import TINY_GRID

    shutil.copytree(template, root)
    grid = root.parent / "storm_grid.json"
    grid.write_text(json.dumps({**TINY_GRID, "batch_sizes": {"DNN": models_per_batch}}))
    generate(Workspace(root), grid, log=lambda *_: None)
    return root


def initialize(root: Path) -> None:
    """The step between the stages, on the controller: every trained regression, several small config batches
    (as test_build_export's, which give profitable configurations to compare)."""
    from epoch_builder.cli import main

    ids = sorted(p.parent.name for p in (next(root.glob("_*/regressions"))).glob("*/certificate.json"))
    code = main(["initialize-prediction-models", "--regressions", ",".join(ids), "--allow-few-regressions", "--pcr", "0.3,0.5,1",
                 "--regressions-per-model", "3", "--batch-size", "60", "--workspace", str(root), "-q"])
    assert code == 0


def undisturbed(root: Path, directory: Path, servers: int) -> StormReport:
    """The same two stages dispatched over as many fresh sshd servers with no fault: the reference."""
    calm = Storm(root, directory, servers=servers, seed=0, faults=0, mean_gap_s=1.0)
    try:
        return calm.run(stage_timeout_s=600)
    finally:
        calm.close()
