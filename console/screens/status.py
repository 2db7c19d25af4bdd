"""The selected server's full status snapshot, in words and units (key ``s``)."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


def status_rows(status: dict[str, Any]) -> list[tuple[str, str]]:
    """A status snapshot as labelled, human-readable lines (sizes in GiB, times as local time)."""
    import time as clock

    gib = 1024 ** 3

    def part(value: Any, key: str, scale: float = 1.0, unit: str = "") -> str:
        number = value.get(key) if isinstance(value, dict) else None
        return f"{number / scale:,.1f}{unit}" if isinstance(number, (int, float)) else "?"

    rows: list[tuple[str, str]] = []
    if isinstance(status.get("time"), (int, float)):
        rows.append(("as of", clock.strftime("%Y-%m-%d %H:%M:%S", clock.localtime(status["time"]))))
    rows.append(("host", str(status.get("hostname", "?"))))
    rows.append(("workspace", str(status.get("workspace", "?"))))
    cpu = status.get("cpu")
    cores = cpu.get("count") if isinstance(cpu, dict) else None
    rows.append(("cpu", f"{part(cpu, 'percent', unit='%')} of {cores if isinstance(cores, int) else '?'} cores"))
    memory, disk = status.get("memory"), status.get("disk")
    rows.append(("memory", f"{part(memory, 'used', gib)} of {part(memory, 'total', gib)} GiB used ({part(memory, 'percent', unit='%')})"))
    rows.append(("disk", f"{part(disk, 'free', gib)} GiB free of {part(disk, 'total', gib)} GiB ({disk.get('path', '?') if isinstance(disk, dict) else '?'})"))
    load = status.get("load")
    rows.append(("load", " ".join(str(x) for x in load) if isinstance(load, list) else "?"))
    if isinstance(status.get("uptime_s"), (int, float)):
        rows.append(("up", f"{status['uptime_s'] / 3600:,.1f} h"))
    gpus = status.get("gpu")
    if gpus is None:
        rows.append(("gpu", "none (no nvidia-smi)"))
    for index, gpu in enumerate(gpus or []):
        if isinstance(gpu, dict):
            rows.append((f"gpu {index}", f"{gpu.get('name', '?')}: {part(gpu, 'utilization_percent', unit='%')} busy, "
                                        f"{part(gpu, 'memory_used_mb', 1024)} of {part(gpu, 'memory_total_mb', 1024)} GiB, "
                                        f"{part(gpu, 'temperature_c', unit=' °C')}"))
    jobs = [job for job in status.get("jobs") or [] if isinstance(job, dict)]
    rows.append(("jobs", ", ".join(str(job.get("id")) for job in jobs) if jobs else "none running"))
    return rows


class StatusScreen(ModalScreen[None]):
    """The selected server's full status snapshot, in words and units."""

    BINDINGS = [Binding("escape,q", "close", "Close")]

    def __init__(self, name: str, status: dict[str, Any]) -> None:
        super().__init__()
        self.server_name, self.status = name, status

    def compose(self) -> ComposeResult:
        from rich.table import Table

        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        for label, value in status_rows(self.status) if self.status else [("status", "no status received yet")]:
            table.add_row(label, escape(value))
        with VerticalScroll(classes="dialog", id="status-json"):
            yield Static(table)

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).border_title = f"Status of {self.server_name}"

    def action_close(self) -> None:
        self.dismiss(None)
