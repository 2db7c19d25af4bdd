"""Servers table: one row per server, refreshed from ``HostView``s."""

from __future__ import annotations

from typing import Iterable

from rich.text import Text
from textual.widgets import DataTable

from console.state import OFFLINE, ONLINE, RECONNECTING, HostView, JobView

STATE_STYLE = {ONLINE: "bold green", OFFLINE: "bold red", RECONNECTING: "bold yellow"}
COLUMNS = ("server", "state", "latency", "cpu", "mem", "gpu", "job", "progress", "eta")


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def _pct(value: float | None) -> str:
    return f"{value:.0f}%" if value is not None else "-"


class ServersTable(DataTable):
    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        for column in COLUMNS:
            self.add_column(column, key=column)

    def _cells(self, host: HostView, job: JobView | None) -> list[object]:
        return [
            host.name,
            Text(host.state, style=STATE_STYLE.get(host.state, "dim")),
            f"{host.latency_ms:.0f} ms" if host.latency_ms is not None and host.state == ONLINE else "-",
            _pct(host.cpu) if host.state == ONLINE else "-",
            _pct(host.memory) if host.state == ONLINE else "-",
            host.gpu_text if host.state == ONLINE else "-",
            job.command.split(" ")[0][:22] if job else "",
            job.progress if job else host.activity,
            format_eta(job.eta_s) if job else "",
        ]

    def show(self, hosts: Iterable[HostView], running: dict[str, JobView]) -> None:
        """Add new rows and update only the cells that changed."""
        for host in hosts:
            cells = self._cells(host, running.get(host.name))
            if host.name not in self.rows:
                self.add_row(*cells, key=host.name)
                continue
            for column, value in zip(COLUMNS, cells):
                if str(self.get_cell(host.name, column)) != str(value):
                    self.update_cell(host.name, column, value, update_width=True)  # grow to fit, never clip

    @property
    def selected_server(self) -> str | None:
        if not self.row_count:
            return None
        row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        return row_key.value
