"""Status of a host: one ``epoch-builder status --json`` snapshot, or a stream of them.

A snapshot is what the host says about itself (CPU, memory, disk, GPU, its
workspace's epoch and jobs); like every answer from a host it is untrusted:
a line that is not a JSON object is skipped in a stream and an error naming
the server for a single call.  ``server`` and ``state`` are always set here,
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


def _snapshot(host: "Host", raw: bytes | str) -> dict[str, Any] | None:
    try:
        snapshot = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(snapshot, dict):
        return None
    snapshot["server"] = host.name
    snapshot["state"] = HostState.ONLINE.value
    return snapshot


async def status(host: "Host", timeout: float | None = None) -> dict[str, Any]:
    """One status snapshot of ``host``."""
    result = await host.check_run(epoch_builder_argv(host, ["status", "--json", "--workspace", host.root]), timeout=timeout)
    lines = result.stdout.strip().splitlines()
    snapshot = _snapshot(host, lines[-1]) if lines else None
    if snapshot is None:
        raise RemoteError(f"server {host.name}: `epoch-builder status --json` did not answer a JSON object")
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
                    if snapshot is not None:
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
