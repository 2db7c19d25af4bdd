"""The Epoch Console: live status, streaming logs, jobs and actions for every server.

All I/O runs in workers (asyncio tasks on remote's async API); they update
plain state (``console.state``) and a timer redraws the tables a few times a
second, so neither 20 hosts streaming status nor a fast log can delay a key
press. Every failure ends in ``report_error``: one line, no traceback.
"""

from __future__ import annotations

import asyncio
import gc
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable

from rich.markup import escape
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Grid
from textual.widgets import DataTable, Footer, Header

from epoch_builder.errors import EpochBuilderError
from epoch_builder.workspace import Workspace

from console.actions import ACTIONS, ACTIONS_BY_ID, ActionSpec, with_console_keys
from console.auto_dispatch import AutoDispatch
from console.cluster import Cluster
from console.commands import ActionsProvider
from console.state import ONLINE, JobView
from console.widgets.detail import HostDetail
from console.widgets.jobs import JobsTable
from console.widgets.logs import LogPane
from console.widgets.servers import ServersTable

if TYPE_CHECKING:  # pragma: no cover
    from remote.board import Board

REDRAW_INTERVAL_S = 0.25
NARROW_BELOW_COLUMNS = 120
SHORT_BELOW_ROWS = 32


class EpochConsole(App[None]):
    TITLE = "Epoch Console"
    CSS_PATH = [Path(__file__).with_name("global.tcss"), Path(__file__).with_name("app.tcss")]  # absolute: subclasses live elsewhere
    COMMANDS = App.COMMANDS | {ActionsProvider}
    # Below 120 columns the log gets the whole width (its lines are long) and the detail pane, which `s`
    # shows in full, gives way: see app.tcss.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (NARROW_BELOW_COLUMNS, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (SHORT_BELOW_ROWS, "-tall")]  # the Board's log gives way to its table
    BINDINGS = [
        Binding("a", "menu", "Actions"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
        *(Binding(spec.key, f"perform('{spec.id}')", spec.title, show=spec.footer) for spec in ACTIONS if spec.key),
    ]

    def __init__(self, cluster: Cluster, workspace: Workspace, *, live: bool = True) -> None:
        """``live=False`` shows the state the cluster holds without connecting
        (documentation screenshots from recorded status)."""
        super().__init__()
        self.cluster = cluster
        self.workspace = workspace
        self.live = live
        self.messages: deque[str] = deque(maxlen=200)  # every notification shown, newest last
        self.following: str | None = None  # job key shown in the log pane
        self.auto_dispatch = AutoDispatch(self.notify, self.report_error)  # the Board's dispatcher: outlives the Board screen

    # --- layout ---------------------------------------------------------------
    def compose(self) -> ComposeResult:
        # Kept as attributes: App.query_one searches the active screen, which is a
        # dialog or the command palette while one is open.
        self.servers_table = ServersTable(id="servers")
        self.detail = HostDetail(id="detail")
        self.log_pane = LogPane(id="log-pane")
        self.jobs_table = JobsTable(id="jobs")
        yield Header()
        with Grid(id="main"):  # wide: servers | detail over log | jobs; narrow: servers, log, jobs stacked
            yield self.servers_table
            yield self.detail
            yield self.log_pane
            yield self.jobs_table
        yield Footer()

    def on_mount(self) -> None:
        others = len(self.cluster.servers)
        self.sub_title = (f"{others} server(s) + " if others else "") + \
            f"{self.cluster.controller}: workspace {self.workspace.root}"
        self.servers_table.border_title = "Servers"
        self.detail.border_title = "Detail"
        self.jobs_table.border_title = "Jobs"
        self.log_pane.border_title = "Log"
        self.redraw()
        self.set_interval(REDRAW_INTERVAL_S, self.redraw)
        if self.live:
            self.cluster.start(self.report_error)
        # Objects alive after start-up (Textual, widgets, CSS) never become garbage:
        # keep them out of every later full collection, which would stall the loop.
        self.call_after_refresh(gc.freeze)
        self.servers_table.focus()

    async def on_unmount(self) -> None:
        await self.cluster.close()

    def redraw(self) -> None:
        if not self.servers_table.is_attached or self._exit:
            return  # shutting down: the panes are being removed
        running = {job.server: job for job in self.cluster.jobs.values() if job.state == "running"}
        servers = self.servers_table
        servers.show(self.cluster.hosts.values(), running)
        self.jobs_table.show(self.cluster.jobs.values())
        self.detail.show(self.cluster.hosts.get(servers.selected_server or ""))
        followed = self.cluster.jobs.get(self.following or "")
        host = self.cluster.hosts.get(followed.server) if followed else None
        self.log_pane.set_link_lost(host is not None and host.state != ONLINE)

    # --- selection ------------------------------------------------------------
    @property
    def selected_server(self) -> str:
        name = self.servers_table.selected_server
        if name is None:
            raise EpochBuilderError("no server selected")
        return name

    @property
    def selected_job(self) -> JobView:
        key = self.jobs_table.selected_job
        if key is None or key not in self.cluster.jobs:
            raise EpochBuilderError("no job selected: pick one in the jobs table")
        return self.cluster.jobs[key]

    @on(DataTable.RowHighlighted, "#servers")
    def _server_highlighted(self) -> None:
        self.redraw()

    @on(DataTable.RowSelected, "#jobs")
    def _job_chosen(self) -> None:
        self.run_action_id("subscribe_logs")

    # --- errors ---------------------------------------------------------------
    def notify(self, message: str, **kwargs: Any) -> None:  # type: ignore[override]
        """Show a toast and keep it in ``messages`` (toasts expire; the record stays)."""
        self.messages.append(message)
        super().notify(message, **kwargs)

    def report_error(self, error: BaseException | str, context: str = "") -> None:
        """The one place failures surface: a one-line notification, never a traceback."""
        if isinstance(error, EpochBuilderError):
            message = str(error)
        elif isinstance(error, str):
            message = error
        else:
            message = f"{type(error).__name__}: {error}"
        prefix = f"{context}: " if context else ""
        self.notify(escape(self.with_console_keys(prefix + message)), title="Error", severity="error", timeout=10)

    def with_console_keys(self, message: str) -> str:
        """A pipeline message with the console action (and key) of each `epoch-builder X` it names."""
        return with_console_keys(message)

    async def guarded(self, context: str, step: Awaitable[Any]) -> Any:
        try:
            return await step
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes a message
            self.report_error(exc, context)
            return None

    # --- menu + help ----------------------------------------------------------
    def action_menu(self) -> None:
        from console.screens.action_menu import ActionMenu

        def chosen(action_id: str | None) -> None:
            if action_id:
                self.run_action_id(action_id)

        self.push_screen(ActionMenu(ACTIONS, self._selection_context()), chosen)

    def _selection_context(self) -> str:
        server = self.servers_table.selected_server
        return f"(server {server})" if server else ""

    # --- running actions: one path, one error handler -------------------------
    def action_perform(self, action_id: str) -> None:
        """What every action key is bound to (``perform('<id>')``)."""
        self.run_action_id(action_id)

    def run_action_id(self, action_id: str) -> None:
        """Run a console action (menu, palette, key, Board) as a worker; what it raises is reported."""
        spec = ACTIONS_BY_ID.get(action_id)
        if spec is None:
            self.report_error(f"unknown action {action_id!r}; known: {', '.join(sorted(ACTIONS_BY_ID))}")
            return
        self.run_worker(self._perform(spec), group="action", name=spec.id, exit_on_error=False)

    async def _perform(self, spec: ActionSpec) -> None:
        try:
            await spec.run(self)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the one handler: a message, never a traceback
            self.report_error(exc, spec.context)

    async def read_board(self) -> "Board":
        """The Board screen's source: the workspace plus every server's job directories."""
        from remote import board as boards

        return await boards.build_board(self.workspace.root, list(self.cluster.remote_hosts.values()))

    def action_quit(self) -> None:  # type: ignore[override]
        self.run_worker(self._quit(), group="action", name="quit", exit_on_error=False)

    async def _quit(self) -> None:
        """Quit; while auto-dispatch runs, only after a confirmation (quitting ends it)."""
        auto = self.auto_dispatch
        if auto.running and not await self.confirm(
                f"Auto-dispatch of {auto.stage} is running. Quitting stops it: running jobs go on on their "
                "servers and the next dispatch adopts them. Quit?", "Quit"):
            return
        self.exit()

    def action_help(self) -> None:
        from console.screens.help import HelpScreen

        self.push_screen(HelpScreen(ACTIONS))

    async def confirm(self, question: str, label: str) -> bool:
        from console.screens.confirm import ConfirmDialog

        return bool(await self.push_screen_wait(ConfirmDialog(question, label)))

    async def choose_servers(self, title: str, *, allow_all: bool, all_but_this_machine: bool = False,
                             not_the_controller: bool = False) -> list[str] | None:
        """``all_but_this_machine``: "all servers" leaves out the console's own machine (power actions);
        ``not_the_controller``: the console's own workspace is not offered at all (pushes and pulls)."""
        from console.screens.pickers import ServerPicker

        names = self.cluster.servers if not_the_controller else list(self.cluster.hosts)
        if not names:
            raise EpochBuilderError(f"no server besides this machine's workspace ({self.cluster.controller}): "
                                    "name your servers in config/cluster.json (see config/cluster.example.json)")
        if len(names) == 1:
            return names
        default = self.servers_table.selected_server
        all_means = [s.name for s in self.cluster.config.servers if not s.local] if all_but_this_machine else names
        return await self.push_screen_wait(ServerPicker(names, allow_all=allow_all, title=title, default=default,
                                                        all_means=all_means))

    # --- the job an action means -------------------------------------------------
    def newest_running_job(self, server: str) -> JobView:
        running = [job for job in self.cluster.jobs.values() if job.server == server and job.state == "running"]
        if not running:
            raise EpochBuilderError(f"no job is running on {server}: pick one in the jobs table (tab) and press enter")
        return max(running, key=lambda job: job.started or 0)

    def target_job(self) -> JobView:
        """The job an action on "the job" means: the one in the log pane, else the selected server's newest
        running job (the jobs table's cursor may sit on an old row of another server)."""
        if self.following in self.cluster.jobs:
            return self.cluster.jobs[self.following]
        return self.newest_running_job(self.selected_server)

    def follow_log(self, job: JobView) -> None:
        self.following = job.key
        self.log_pane.show_source(f"{job.server} · {job.id} · {job.command}", job.key)
        self._follow_worker(job)

    @work(group="log", exclusive=True, exit_on_error=False)
    async def _follow_worker(self, job: JobView) -> None:
        view = self.log_pane.view
        await self.guarded(f"log of {job.id} on {job.server}", self.cluster.follow_log(job.server, job.id, view.append_lines))


def make_app(config_path: str | Path | None = None, workspace: str | Path | None = None) -> EpochConsole:
    """Build the console for a cluster config (None: ``config/cluster.json``, or
    localhost alone when that file does not exist) and a local workspace."""
    from epoch_builder.workspace import resolve_root

    ws = Workspace.open(resolve_root(str(workspace) if workspace else None))
    cluster = Cluster.from_config(config_path, ws.root)
    return EpochConsole(cluster, ws)
