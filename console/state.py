"""What the console knows about each server and job, updated from remote's streams.

Plain data kept by the app; widgets render it on a timer, so a burst of
status messages costs one redraw.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

HISTORY = 60  # samples kept for the sparklines (one a second: the last minute)

ONLINE, OFFLINE, RECONNECTING, CONNECTING = "online", "offline", "reconnecting", "connecting"


def _number(mapping: dict[str, Any], *path: str) -> float | None:
    value: Any = mapping
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass
class JobView:
    server: str
    id: str
    command: str
    state: str  # running | finished | failed | stopped | lost
    exit_code: int | None = None
    started: float | None = None
    ended: float | None = None
    stage: str = ""
    done: int = 0
    total: int = 0
    eta_s: float | None = None
    seen: float | None = None  # when the console last heard of it (durations run to here)

    @property
    def key(self) -> str:
        return f"{self.server}/{self.id}"

    @property
    def duration_s(self) -> float | None:
        if self.started is None:
            return None
        return (self.ended or self.seen or time.time()) - self.started

    @property
    def state_label(self) -> str:
        """``running``, ``finished, exit 0``, ``failed, exit 1``, ``stopped, exit -15``, ``lost``."""
        return self.state if self.exit_code is None else f"{self.state}, exit {self.exit_code}"

    @property
    def progress(self) -> str:
        if not self.total:
            return self.stage
        return f"{self.stage} {self.done}/{self.total} ({100 * self.done / self.total:.0f}%)"

    def apply_event(self, event: dict[str, Any]) -> None:
        """Take stage / done / total / ETA from one progress event (checked by remote.jobs.checked_event)."""
        self.stage = str(event.get("stage", self.stage))
        self.done = event.get("done", self.done) or 0
        self.total = event.get("total", self.total) or 0
        self.eta_s = event.get("eta_s")
        if event.get("time") is not None:
            self.seen = event["time"]


@dataclass
class HostView:
    name: str
    address: str
    state: str = CONNECTING
    latency_ms: float | None = None
    error: str = ""
    activity: str = ""  # a sync in progress, shown when no job runs
    status: dict[str, Any] = field(default_factory=dict)
    updated: float | None = None
    cpu_history: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))
    memory_history: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))
    gpu_history: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))

    def apply_status(self, status: dict[str, Any], latency_ms: float | None = None) -> None:
        self.status = status
        self.state = ONLINE
        self.error = ""
        self.updated = time.time()
        if latency_ms is not None:
            self.latency_ms = latency_ms
        for history, value in ((self.cpu_history, self.cpu), (self.memory_history, self.memory), (self.gpu_history, self.gpu)):
            if value is not None:
                history.append(value)

    @property
    def cpu(self) -> float | None:
        return _number(self.status, "cpu_percent") if "cpu_percent" in self.status else _number(self.status, "cpu", "percent")

    @property
    def memory(self) -> float | None:
        return _number(self.status, "memory_percent") if "memory_percent" in self.status else _number(self.status, "memory", "percent")

    @property
    def gpu(self) -> float | None:
        gpus = self.status.get("gpus") or self.status.get("gpu")
        if isinstance(gpus, list) and gpus and isinstance(gpus[0], dict):
            return _number(gpus[0], "utilization_percent") if "utilization_percent" in gpus[0] else _number(gpus[0], "util")
        return None

    @property
    def gpu_text(self) -> str:
        gpus = self.status.get("gpus") or self.status.get("gpu")
        if not isinstance(gpus, list) or not gpus:
            return "-"
        first = gpus[0] if isinstance(gpus[0], dict) else {}
        util = self.gpu
        extra = f" +{len(gpus) - 1}" if len(gpus) > 1 else ""
        return f"{util:.0f}%{extra}" if util is not None else f"{first.get('name', 'GPU')}{extra}"
