"""Jobs across hosts: running / finished / failed, exit code, duration."""

from __future__ import annotations

from typing import Iterable

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from console.state import JobView
from console.widgets.servers import format_eta

STATE_STYLE = {"running": "bold cyan", "finished": "green", "failed": "bold red", "stopped": "yellow", "lost": "yellow"}
COLUMNS = ("server", "job", "state", "exit", "duration", "progress", "command")
MIN_COMMAND_WIDTH = 10  # below this the command scrolls sideways instead of shrinking further


def ellipsize(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def short_id(job_id: str) -> str:
    """The job id's random suffix: enough to tell jobs apart in a narrow column."""
    return job_id.rsplit("-", 1)[-1]


def _duration(seconds: float | None) -> str:
    return format_eta(seconds) if seconds is not None else "-"


class JobsTable(DataTable):
    # Rows are what matters here (DataTable's own home/end scroll sideways): the first and the newest job.
    BINDINGS = [Binding("home", "first_job", "First job", show=False), Binding("end", "newest_job", "Newest job", show=False)]

    def action_first_job(self) -> None:
        if self.row_count:
            self.move_cursor(row=0)

    def action_newest_job(self) -> None:
        if self.row_count:
            self.move_cursor(row=self.row_count - 1)

    def on_mount(self) -> None:
        self.cursor_type = "row"
        for column in COLUMNS:
            self.add_column(column, key=column)

    def _command_width(self) -> int:
        """The command column gets the width the other columns leave (the table is redrawn on a timer, so
        a resized terminal re-cuts the commands): no sideways scrolling while there is room to show them."""
        others = sum(column.get_render_width(self) for key, column in self.columns.items() if key.value != "command")
        return max(MIN_COMMAND_WIDTH, self.scrollable_content_region.width - others - 2 * self.cell_padding)

    def show(self, jobs: Iterable[JobView]) -> None:
        budget = self._command_width()
        if self.columns["command"].content_width > budget:  # the terminal got narrower: columns only grow
            self.remove_column("command")
            self.add_column("command", key="command", default="")
        for job in jobs:
            cells = [
                job.server, short_id(job.id),
                Text(job.state, style=STATE_STYLE.get(job.state, "")),
                "" if job.exit_code is None else str(job.exit_code),
                _duration(job.duration_s),
                job.progress,
                ellipsize(job.command, budget),
            ]
            if job.key not in self.rows:
                self.add_row(*cells, key=job.key)
                continue
            for column, value in zip(COLUMNS, cells):
                if str(self.get_cell(job.key, column)) != str(value):
                    self.update_cell(job.key, column, value, update_width=True)  # grow to fit, never clip

    @property
    def selected_job(self) -> str | None:
        """``server/job-id`` of the highlighted row."""
        if not self.row_count:
            return None
        row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        return row_key.value
