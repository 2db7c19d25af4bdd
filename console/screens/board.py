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
from collections import deque
from typing import Any, Callable

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Log, Static

from epoch_builder.errors import EpochBuilderError
from remote import board as boards
from remote.dispatch import DispatchOptions, Dispatcher

from console.actions import with_console_keys
from console.screens.dispatch_form import DispatchForm

REFRESH_S = 3.0
MESSAGES_KEPT = 500  # lines of the dispatcher's log kept for the Board screen
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

class AutoDispatch:
    """One Dispatcher task per app, kept on the app so it outlives the Board screen."""

    def __init__(self) -> None:
        self.dispatcher: Dispatcher | None = None
        self.task: asyncio.Task[Any] | None = None
        self.messages: deque[str] = deque(maxlen=MESSAGES_KEPT)  # the dispatcher's log, newest last
        self.on_message: Callable[[str], None] | None = None  # the open Board screen's log panel
        self.last_options: DispatchOptions | None = None  # offered again the next time it is switched on

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    @property
    def stage(self) -> str | None:
        return self.dispatcher.options.stage if self.running and self.dispatcher else None

    @classmethod
    def of(cls, app: Any) -> "AutoDispatch":
        if not hasattr(app, "_auto_dispatch"):
            app._auto_dispatch = cls()
        return app._auto_dispatch

    def start(self, app: Any, options: DispatchOptions) -> None:
        hosts = list(app.cluster.remote_hosts.values())

        def alert(message: str) -> None:  # failures also pop up, wherever the user is
            self.record(message)
            app.notify(escape(message), severity="warning")

        if options.engine == "ray":  # the batches go to a Ray cluster: the same board, no cluster file servers
            from remote.ray_engine import RayDispatcher

            self.dispatcher = RayDispatcher(app.workspace.root, options, log=self.record, alert=alert)
        else:
            self.dispatcher = Dispatcher(hosts, app.workspace.root, options, log=self.record, alert=alert)
        self.last_options = options
        self.task = asyncio.get_running_loop().create_task(self._run(app))

    async def _run(self, app: Any) -> None:
        try:
            assert self.dispatcher is not None
            await self.dispatcher.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a message, never a crash
            app.report_error(exc, "auto-dispatch")

    def record(self, message: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {message}"
        self.messages.append(line)
        if self.on_message is not None:
            self.on_message(line)

    def stop(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.stop()


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

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("reading the board...", id="board-summary")
        yield DataTable(id="board-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="board-next")
        yield Log(id="board-log", max_lines=MESSAGES_KEPT)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#board-table", DataTable)
        table.add_columns("stage", "batch", "category", "state", "failures", "last log line")
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
            self.query_one("#board-summary", Static).update(escape(with_console_keys(message)))
            self._show_next(self.exported)
            return
        self.exported = None
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
                          escape(row.log_tail[-1][:60]) if row.log_tail else "", key=row.spec.key)
        if board.rows:
            table.move_cursor(row=min(cursor, len(board.rows) - 1), animate=False)
        hosts = ", ".join(f"{h} {s.split(':')[0]}" for h, s in board.hosts.items())
        dispatch = f"auto-dispatch [b]ON[/b] ({self.auto.stage})" if self.auto.running else "auto-dispatch off"
        self.query_one("#board-summary", Static).update(
            f"epoch [b]{escape(board.epoch_id)}[/b] · {dispatch} · servers: {escape(hosts)}\n" + escape(totals_line(board)))
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
            self.auto.start(self.app, options)
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
