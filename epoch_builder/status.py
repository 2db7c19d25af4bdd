"""Light machine snapshot for ``epoch-builder status`` (cpu, memory, disk, load, uptime, GPU, jobs).

Imports only psutil and the standard library so a status stream starts in
well under a second on every host.  Jobs are read from ``<root>/.jobs/*``
(the remote layer's detached jobs; layout in remote/host_program.py): a job is
running while its recorded process is alive with the recorded start time
and no ``exit_code`` file exists; the newest event of a running job is
included so the console can show progress without another channel.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

NVIDIA_SMI_QUERY = "name,utilization.gpu,memory.used,memory.total,temperature.gpu"
LAST_EVENT_BYTES = 8192


def _start_ticks(pid: int) -> int | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes().decode("utf-8", "replace")
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2:].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


def _last_event(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - LAST_EVENT_BYTES))
            tail = fh.read().splitlines()
    except OSError:
        return None
    for raw in reversed(tail):
        try:
            event = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(event, dict):
            return event
    return None


def running_jobs(root: Path) -> list[dict[str, Any]]:
    """Jobs under ``<root>/.jobs`` whose process is alive, oldest first."""
    jobs_dir = root / ".jobs"
    if not jobs_dir.is_dir():
        return []
    jobs = []
    for directory in sorted(p for p in jobs_dir.iterdir() if p.is_dir()):
        if (directory / "exit_code").exists():
            continue
        try:
            job = json.loads((directory / "job.json").read_text(encoding="utf-8"))
            pid = int(job["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        ticks = _start_ticks(pid) if sys.platform.startswith("linux") else None
        alive = ticks == job.get("start_ticks") if sys.platform.startswith("linux") else _pid_alive(pid)
        if not alive:
            continue
        jobs.append({
            "id": directory.name, "argv": job.get("argv"), "pid": pid, "started_at": job.get("started_at"),
            "last_event": _last_event(directory / "events.jsonl"),
        })
    return jobs


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def gpus() -> list[dict[str, Any]] | None:
    """One entry per GPU from nvidia-smi; None when there is no nvidia-smi."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, f"--query-gpu={NVIDIA_SMI_QUERY}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=5, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    result = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 5:
            continue
        result.append({"name": parts[0], "utilization_percent": _number(parts[1]), "memory_used_mb": _number(parts[2]),
                       "memory_total_mb": _number(parts[3]), "temperature_c": _number(parts[4])})
    return result


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def snapshot(root: Path, *, cpu_interval: float | None = None) -> dict[str, Any]:
    """The status snapshot (``cpu_interval`` None: usage since the previous call)."""
    import psutil

    memory = psutil.virtual_memory()
    disk_path = root if root.exists() else Path(root.anchor or "/")
    disk = psutil.disk_usage(str(disk_path))
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "time": round(time.time(), 3),
        "hostname": socket.gethostname(),
        "workspace": str(root),
        "cpu": {"percent": psutil.cpu_percent(interval=cpu_interval), "count": psutil.cpu_count() or 1},
        "memory": {"total": memory.total, "used": memory.total - memory.available, "percent": memory.percent},
        "disk": {"path": str(disk_path), "total": disk.total, "used": disk.used, "free": disk.free, "percent": disk.percent},
        "load": [round(x, 2) for x in load],
        "uptime_s": round(time.time() - psutil.boot_time(), 1),
        "gpu": gpus(),
        "jobs": running_jobs(root),
    }


def describe(snap: dict[str, Any]) -> str:
    """One human line per snapshot."""
    gib = 1024 ** 3
    parts = [
        f"{snap['hostname']}",
        f"cpu {snap['cpu']['percent']:.0f}% of {snap['cpu']['count']}",
        f"mem {snap['memory']['used'] / gib:.1f}/{snap['memory']['total'] / gib:.1f} GiB",
        f"disk {snap['disk']['free'] / gib:.1f} GiB free",
        f"load {' '.join(str(x) for x in snap['load'])}",
        f"up {snap['uptime_s'] / 3600:.1f} h",
    ]
    if snap["gpu"]:
        parts.append(", ".join(f"{g['name']} {g['utilization_percent'] or 0:.0f}%" for g in snap["gpu"]))
    jobs = snap["jobs"]
    parts.append(f"jobs: {', '.join(j['id'] for j in jobs)}" if jobs else "jobs: none")
    return " | ".join(parts)


def watch(root: Path, interval_s: float, write: Callable[[str], None], *, as_json: bool, count: int | None = None) -> None:
    """Write a snapshot every ``interval_s`` seconds (one line each) until ``count`` or a closed pipe."""
    import psutil

    psutil.cpu_percent(interval=None)  # prime: later calls measure since the previous one
    written = 0
    next_at = time.monotonic()
    first = True
    while count is None or written < count:
        snap = snapshot(root, cpu_interval=0.1 if first else None)
        first = False
        write(json.dumps(snap, separators=(",", ":")) if as_json else describe(snap))
        written += 1
        next_at += interval_s
        time.sleep(max(0.0, next_at - time.monotonic()))
