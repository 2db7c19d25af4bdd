"""Status of a host: one ``epoch-builder status --json`` snapshot, or a stream of them.

A snapshot is what the host says about itself (CPU, memory, disk, GPU, its
workspace's epoch and jobs); like every answer from a host it is untrusted:
one that is not a JSON object of :data:`SNAPSHOT_SHAPE` is skipped in a
stream and an error naming the server and the key for a single call.  ``server`` and ``state`` are always set here,
never taken from the host.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, AsyncIterator, Sequence

from remote.errors import HostUnreachable, RemoteError
from remote.hosts import HostState

if TYPE_CHECKING:  # pragma: no cover - typing only
    from remote.hosts import Host


def epoch_builder_argv(host: "Host", argv: Sequence[str]) -> list[str]:
    """``epoch-builder <argv>`` with the server's Python (no console script needed on PATH)."""
    return [host.python, "-m", "epoch_builder.cli", *argv]


_NUMBER = (int, float)
# What the controller reads of a snapshot (epoch_builder.status.snapshot), with its types.
SNAPSHOT_SHAPE: dict[str, Any] = {
    "hostname": str,
    "cpu": {"percent": _NUMBER, "count": int},
    "memory": {"total": _NUMBER, "used": _NUMBER, "percent": _NUMBER},
    "disk": {"total": _NUMBER, "used": _NUMBER, "free": _NUMBER, "percent": _NUMBER},
    "load": list,
    "uptime_s": _NUMBER,
    "jobs": list,
}


def shape_error(snapshot: dict[str, Any], shape: dict[str, Any] = SNAPSHOT_SHAPE, where: str = "") -> str | None:
    """The first key of ``snapshot`` that is missing or of the wrong type, as ``cpu.percent``; None if all fit."""
    for key, kind in shape.items():
        value = snapshot.get(key)
        if isinstance(kind, dict):
            if not isinstance(value, dict):
                return f"{where}{key}"
            inner = shape_error(value, kind, f"{where}{key}.")
            if inner:
                return inner
        elif not isinstance(value, kind) or isinstance(value, bool):
            return f"{where}{key}"
    return None


# What a real machine can report (a 10 MB hostname, NaN % CPU or negative memory is a lying or broken host):
# numbers by key, finite and within these bounds; strings by key, at most this long.
PERCENT = (0.0, 100.0)
BYTES = (0.0, 1e18)  # an exabyte
PLAUSIBLE: dict[str, tuple[float, float]] = {
    "cpu.percent": PERCENT, "cpu.count": (1, 1_000_000),
    "memory.total": BYTES, "memory.used": BYTES, "memory.percent": PERCENT,
    "disk.total": BYTES, "disk.used": BYTES, "disk.free": BYTES, "disk.percent": PERCENT,
    "load[]": (0.0, 1e6), "uptime_s": (0.0, 1e10), "gpu[].utilization_percent": PERCENT,
}
MAX_TEXT = {"hostname": 255, "jobs[].id": 200, "gpu[].name": 200}
MAX_LISTED = {"load": 3, "jobs": 1000, "gpu": 64}


def _value_at(snapshot: dict[str, Any], key: str) -> list[Any]:
    """The values at ``key`` (``cpu.percent``; ``load[]``: each item; ``gpu[].name``: each item's name)."""
    values: list[Any] = [snapshot]
    for part in key.split("."):
        listed = part.endswith("[]")
        name = part[:-2] if listed else part
        values = [v.get(name) for v in values if isinstance(v, dict)]
        if listed:
            values = [item for v in values if isinstance(v, list) for item in v]
    return values


def implausible(snapshot: dict[str, Any]) -> str | None:
    """The first key whose value no real machine reports, with the allowed range; None if all are plausible."""
    for key, (low, high) in PLAUSIBLE.items():
        for value in _value_at(snapshot, key):
            if value is None and key.startswith("gpu"):
                continue  # a GPU without a utilization figure
            if not (isinstance(value, _NUMBER) and not isinstance(value, bool) and low <= value <= high):
                return f"key {key.replace('[]', '')} = {str(value)[:40]!s} out of range; allowed {low:g}..{high:g}"
    for key, longest in MAX_TEXT.items():
        for value in _value_at(snapshot, key):
            if isinstance(value, str) and len(value) > longest:
                return f"key {key.replace('[]', '')} is {len(value):,} characters long; allowed at most {longest}"
    for key, most in MAX_LISTED.items():
        value = snapshot.get(key)
        if isinstance(value, list) and len(value) > most:
            return f"key {key} lists {len(value):,} items; allowed at most {most}"
    return None


def _refusal(snapshot: dict[str, Any]) -> str | None:
    bad = shape_error(snapshot)
    if bad is None and not all(isinstance(x, _NUMBER) for x in snapshot["load"]):
        bad = "load"
    gpu = snapshot.get("gpu")
    if bad is None and gpu is not None and not (isinstance(gpu, list) and all(
            isinstance(g, dict) and isinstance(g.get("name"), str)
            and (g.get("utilization_percent") is None or isinstance(g["utilization_percent"], _NUMBER)) for g in gpu)):
        bad = "gpu"
    if bad is not None:
        return f"key {bad} missing or of the wrong type"
    return implausible(snapshot)


def _snapshot(host: "Host", raw: bytes | str) -> dict[str, Any] | str:
    """The checked snapshot, or why it was refused."""
    try:
        snapshot = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "not JSON"
    if not isinstance(snapshot, dict):
        return "not a JSON object"
    refusal = _refusal(snapshot)
    if refusal:
        return refusal
    snapshot["jobs"] = [job for job in snapshot["jobs"] if isinstance(job, dict) and isinstance(job.get("id"), str)]
    snapshot["server"] = host.name
    snapshot["state"] = HostState.ONLINE.value
    return snapshot


async def status(host: "Host", timeout: float | None = None) -> dict[str, Any]:
    """One status snapshot of ``host``."""
    result = await host.check_run(epoch_builder_argv(host, ["status", "--json", "--workspace", host.root]), timeout=timeout)
    lines = result.stdout.strip().splitlines()
    snapshot = _snapshot(host, lines[-1]) if lines else "empty"
    if isinstance(snapshot, str):
        raise RemoteError(f"server {host.name}: its status snapshot was refused ({snapshot})")
    return snapshot


async def status_stream(host: "Host", interval_s: float = 2.0) -> AsyncIterator[dict[str, Any]]:
    """Snapshots from ``epoch-builder status --watch`` over one long-lived channel.

    Each item is the snapshot dict plus ``server`` and ``state: "online"``.
    When the link drops it yields ``{"server", "state": "reconnecting",
    "error"}`` once, waits for the host to come back and resumes.  Runs
    until the consumer stops iterating or the host is closed.
    """
    argv = epoch_builder_argv(host, ["status", "--watch", str(interval_s), "--json", "--workspace", host.root])
    announced_gap = False
    while True:
        buffer = b""
        try:
            async for chunk in host.stream(argv, idle_timeout=max(30.0, interval_s * 5)):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for raw in lines:
                    snapshot = _snapshot(host, raw) if raw.strip() else None
                    if isinstance(snapshot, dict):  # a refused line is skipped: the next one may be fine
                        announced_gap = False
                        yield snapshot
            return
        except HostUnreachable as exc:
            if host.state is HostState.OFFLINE:
                raise
            if not announced_gap:
                announced_gap = True
                yield {"server": host.name, "state": HostState.RECONNECTING.value, "error": str(exc)}
            await host.wait_online(timeout=None)
