"""JSON-lines progress events: one object a line (time, job, stage, done, total, ...).

Enabled by ``epoch-builder --events FILE`` or ``$EPOCH_BUILDER_EVENTS``; the
job id comes from ``$EPOCH_BUILDER_JOB_ID`` (set by the remote layer).
Lines are appended and flushed one at a time so a follower never sees half
an object, and a killed process loses at most the event it was writing.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, TextIO

EVENTS_ENV = "EPOCH_BUILDER_EVENTS"
JOB_ENV = "EPOCH_BUILDER_JOB_ID"

_sink: TextIO | None = None


def configure(path: str | None) -> None:
    global _sink
    path = path or os.environ.get(EVENTS_ENV)
    if _sink is not None and _sink not in (sys.stdout, sys.stderr):
        _sink.close()
    _sink = None
    if path == "-":
        _sink = sys.stdout
    elif path:
        _sink = open(path, "a", encoding="utf-8", buffering=1)


def destination() -> str | None:
    """Where events go, as ``configure`` takes it ("-": stdout; None: nowhere): for child processes."""
    return "-" if _sink is sys.stdout else getattr(_sink, "name", None)


def on_stdout() -> bool:
    """Events share stdout: the command's results must go elsewhere (see ``output``)."""
    return _sink is sys.stdout


def emit(stage: str, done: int, total: int, **fields: Any) -> None:
    """Write one progress event if events are enabled."""
    if _sink is None:
        return
    event = {"time": round(time.time(), 3), "job": os.environ.get(JOB_ENV), "stage": stage, "done": done, "total": total}
    event.update(fields)
    _sink.write(json.dumps(event, default=str) + "\n")
    _sink.flush()


class Eta:
    """Remaining-time estimate from the average pace so far. ``total`` counts units of work (models, configs);
    ``per_unit`` is how many steps (epochs) a unit is expected to take, when that is an estimate rather than
    a count (``fraction`` turns a unit's steps into its share of the unit, short of 1 until it is done).
    ``finished`` is what progress events report as done: units finished, those of an earlier run included (its
    owner counts each one, ``finish``), so that the number only grows while units run side by side or in
    stages; the pace counts only this run's (``total`` is what this run has to do)."""

    def __init__(self, total: int, per_unit: float | None = None, finished: int = 0) -> None:
        self.total = total
        self.per_unit = per_unit
        self.finished = finished
        self._finished_before = finished
        self.started = time.monotonic()

    def finish(self) -> None:
        """One more unit done."""
        self.finished += 1

    def remaining(self, running: float = 0.0) -> float | None:
        """Seconds left, with ``running`` units' worth of work done in the units still running."""
        return self.seconds(self.finished - self._finished_before + running)

    def fraction(self, steps: int, limit: int) -> float:
        """A unit's share done after ``steps`` of at most ``limit``: of the expected steps (capped at the
        limit), never a whole unit while it still runs."""
        expected = min(self.per_unit or limit, limit)
        return min(steps / expected, 0.99) if expected > 0 else 0.0

    def seconds(self, done: int) -> float | None:
        if done <= 0:
            return None
        elapsed = time.monotonic() - self.started
        return round(elapsed / done * max(self.total - done, 0), 1)
