"""The Board screen: every batch of the epoch with its state, auto-dispatch on/off, the next stage.

The board is rebuilt every few seconds from the workspace and the hosts' job
directories (``remote.board``), so closing and reopening it, or restarting the
console, shows the same board.  Auto-dispatch runs a ``remote.dispatch``
Dispatcher in the app (it keeps going while the screen is closed); it adopts
running jobs rather than restarting them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Log, Static

from epoch_builder.errors import EpochBuilderError
from remote import board as boards
from remote.dispatch import DispatchOptions
from remote.plan import DEFAULT_ORDER

from console.auto_dispatch import MESSAGES_KEPT, AutoDispatch
from console.screens.dispatch_form import DispatchForm

REFRESH_S = 3.0
PLAN_REFRESH_S = 60.0  # the plan line is priced again this often, or when a batch is done
# The console action offered by each stage gate (see remote.board.Board.next_step); DISPATCH: the Board's
# own auto-dispatch form (key d), for the stages that run batch by batch on the servers.
DISPATCH = "dispatch"
GATE_ACTIONS = {
    boards.GENERATE_STEP: "generate_configs",
    boards.TRAIN_STEP: DISPATCH,
    boards.INITIALIZE_STEP: "initialize_models",
    boards.SWEEP_STEP: DISPATCH,
    boards.BUILD_STEP: "build_models",
    boards.EXPORT_STEP: "export_epoch",
    boards.VERIFY_STEP: "verify_epoch",
}

def plan_summary(root: Path, board: boards.Board, servers: list[str], order: str) -> str:
    """``remote.plan.summary_line`` of the epoch's regressions on these servers ("" without regression batches)."""
    from remote.plan import summary_line, workspace_plan

    if not board.stage_rows(boards.REGRESSIONS) or not servers:
        return ""
    return summary_line(workspace_plan(root, board, servers, order=order))


def totals_line(board: boards.Board) -> str:
    """``regressions 2/8 done (running 1, pending 5) · DNN 2/6 · LSTM 0/2`` for every stage of the board."""
    totals = board.totals()
    parts = []
    for stage in boards.STAGES:
        counts = totals.get(stage)
        if not counts:
            continue
        others = ", ".join(f"{state} {n}" for state, n in counts.items() if state not in ("batches", boards.DONE))
        part = f"{stage} {counts.get(boards.DONE, 0)}/{counts['batches']} done" + (f" ({others})" if others else "")
        categories = sorted(name for name in totals if name.startswith(f"{stage}/"))
        parts.append(" · ".join([part] + [
            f"{name.split('/', 1)[1]} {totals[name].get(boards.DONE, 0)}/{totals[name]['batches']}" for name in categories]))
    return "\n".join(parts)


class BoardScreen(Screen[None]):
    BINDINGS = [
        Binding("escape,q", "close", "Close"),
        Binding("d", "toggle_dispatch", "Auto-dispatch on/off"),
        Binding("n", "next_step", "Next stage"),
        Binding("r", "reload", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.board: boards.Board | None = None
        self.exported: dict[str, str] | None = None  # no active epoch, an Epoch File to verify
        self.plan_line = ""  # remote.plan's summary of the regressions' plan, under the totals
        self._planned: tuple[int, float] | None = None  # (done batches, when) of the last plan

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("reading the board...", id="board-summary")
        yield DataTable(id="board-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="board-next")
        yield Log(id="board-log", max_lines=MESSAGES_KEPT)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#board-table", DataTable)
        # detail: a failed batch's last log line; a running one's reason for being where it is (cost-aware order)
        table.add_columns("stage", "batch", "category", "state", "failures", "detail")
        table.border_title = "Batches"
        table.border_subtitle = "enter: follow the batch's job log"
        self.query_one("#board-summary", Static).border_title = "Board"
        log = self.query_one("#board-log", Log)
        log.border_title = "Auto-dispatch"
        log.write_lines(self.auto.messages)
        self.auto.on_message = log.write_line
        self.reload()
        self.set_interval(REFRESH_S, self.reload)

    def on_unmount(self) -> None:
        self.auto.on_message = None

    @property
    def auto(self) -> AutoDispatch:
        return AutoDispatch.of(self.app)

    @work(exclusive=True, group="board", exit_on_error=False)
    async def reload(self) -> None:
        try:
            self.board = await self.app.read_board()
        except Exception as exc:  # noqa: BLE001 - e.g. no epoch yet: one line
            self.board = None
            # After an export on the controller its epoch is no longer active: offer the file's verification.
            self.exported = boards.exported_step(self.app.workspace.root)
            message = (f"no active epoch: the last export wrote {self.exported['command'].split()[-1]}"
                       if self.exported else f"board: {exc}")
            self.query_one("#board-summary", Static).update(escape(self.app.with_console_keys(message)))
            self._show_next(self.exported)
            return
        self.exported = None
        self.draw()
        await self._replan(self.board)

    async def _replan(self, board: boards.Board) -> None:
        """The plan line, priced again each PLAN_REFRESH_S or when a batch is done (it reads every batch file and
        certificate: in a thread, never on the UI's loop). No regression batches, no line."""
        done = sum(r.state == boards.DONE for r in board.stage_rows(boards.REGRESSIONS))
        now = time.monotonic()
        if self._planned is not None and self._planned[0] == done and now - self._planned[1] < PLAN_REFRESH_S:
            return
        self._planned = (done, now)
        servers = [s.name for s in self.app.cluster.config.servers if s.is_cluster]
        last = self.auto.last_options
        try:
            line = await asyncio.to_thread(plan_summary, self.app.workspace.root, board, servers,
                                           last.order if last else DEFAULT_ORDER)
        except (EpochBuilderError, OSError, ValueError):
            line = ""
        if line != self.plan_line:
            self.plan_line = line
            self.draw()

    def where_text(self, step: dict[str, str]) -> str:
        """Where a stage gate's step runs, by name."""
        cluster = self.app.cluster
        if step.get("where") == boards.SERVERS:
            names = [s.name for s in cluster.config.servers if s.is_cluster]
            return f"on {', '.join(names) or 'no is_cluster server'} (auto-dispatch)"
        return f"on {cluster.controller} (this workspace)"

    def _show_next(self, step: dict[str, str] | None) -> None:
        if not step:
            self.query_one("#board-next", Static).update("")
            return
        key = "  [n] to run it" if step["step"] in GATE_ACTIONS else ""
        line = f"next: {step['step']} {self.where_text(step)} ({step['command']}){key}"
        if step["step"] == boards.VERIFY_STEP:  # the last step: once it passed, the epoch is complete
            verified = [job for job in self.app.cluster.jobs.values()
                        if job.state == "finished" and job.command == step["command"].removeprefix("epoch-builder ")]
            if verified:
                line = (f"done: {step['command'].split()[-1]} passed verify-epoch (job {verified[-1].id} on "
                        f"{verified[-1].server}): install it in Epoca's platform  [n] to verify again")
        self.query_one("#board-next", Static).update(escape(line))

    def draw(self) -> None:
        board = self.board
        if board is None or not self.is_attached:
            return
        table = self.query_one("#board-table", DataTable)
        cursor = table.cursor_row  # rows keep their order between refreshes: keep the user's place
        table.clear()
        for row in board.rows:
            failures = ", ".join(f"{h} {n}" for h, n in row.failures.items())
            table.add_row(row.spec.stage, row.spec.name, row.spec.category or "-", row.label, failures or "-",
                          escape((row.log_tail[-1] if row.log_tail else (row.reason or "").partition(": ")[2])[:60]), key=row.spec.key)
        if board.rows:
            table.move_cursor(row=min(cursor, len(board.rows) - 1), animate=False)
        hosts = ", ".join(f"{h} {s.split(':')[0]}" for h, s in board.hosts.items())
        dispatch = f"auto-dispatch [b]ON[/b] ({self.auto.stage})" if self.auto.running else "auto-dispatch off"
        self.query_one("#board-summary", Static).update(
            f"epoch [b]{escape(board.epoch_id)}[/b] · {dispatch} · servers: {escape(hosts)}\n" + escape(totals_line(board))
            + (f"\n{escape(self.plan_line)}" if self.plan_line else ""))
        self._show_next(board.next_step(self.app.workspace.root))

    def action_toggle_dispatch(self) -> None:
        if self.auto.running:
            self.auto.stop()
            self.app.notify("auto-dispatch: stopping after this round (running jobs keep running)")
            return
        board = self.board
        if board is None:
            self.app.notify("the board is still loading")
            return
        if not board.rows:  # nothing any stage could dispatch: say so before asking for options
            self.app.report_error(f"auto-dispatch: no batches in epoch {board.epoch_id}; generate regression training configs first")
            return
        stage = boards.REGRESSIONS
        if board.stage_done(boards.REGRESSIONS) and board.stage_rows(boards.PROFITABLE_CONFIGS):
            stage = boards.PROFITABLE_CONFIGS
        last = self.auto.last_options
        defaults = dataclasses.replace(last, stage=stage) if last else DispatchOptions(stage=stage, interval_s=REFRESH_S)
        self.app.push_screen(DispatchForm(defaults), self._start_dispatch)

    def _start_dispatch(self, options: DispatchOptions | None) -> None:
        if options is None or self.auto.running:
            return
        board = self.board
        if board is not None and not board.stage_rows(options.stage):
            self.app.report_error(f"auto-dispatch: no {options.stage} batches in epoch {board.epoch_id}")
            return
        try:
            self.auto.start(options, list(self.app.cluster.remote_hosts.values()), self.app.workspace.root)
        except EpochBuilderError as exc:  # e.g. no is_cluster server: one line
            self.app.report_error(exc, "auto-dispatch")
            return
        self.app.notify(f"auto-dispatch on: {options.stage}")
        self.draw()

    def action_next_step(self) -> None:
        step = self.board.next_step(self.app.workspace.root) if self.board else self.exported
        action = GATE_ACTIONS.get(step["step"]) if step else None
        if action is None:
            self.app.notify(f"next: {step['step']}: {escape(step['command'])}" if step else "nothing to do")
            return
        if action == DISPATCH:
            if not self.auto.running:
                self.action_toggle_dispatch()
            else:
                self.app.notify(f"auto-dispatch of {self.auto.stage} is running: its batches are on the way")
            return
        self.dismiss(None)
        self.app.call_later(self.app.run_action_id, action)

    @on(DataTable.RowSelected, "#board-table")
    def _show_log(self, event: DataTable.RowSelected) -> None:
        """Enter on a batch with a job: back to the main screen, following that job's log."""
        row = next((r for r in self.board.rows if r.spec.key == event.row_key.value), None) if self.board else None
        if row is None or not row.job_id or not row.host:
            self.app.notify("this batch has no job yet")
            return
        from console.state import JobView

        job = self.app.cluster.jobs.get(f"{row.host}/{row.job_id}") or JobView(
            row.host, row.job_id, " ".join(row.spec.argv()), row.state, row.exit_code)
        self.dismiss(None)
        self.app.follow_log(job)

    def action_close(self) -> None:
        self.dismiss(None)
