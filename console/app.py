"""The Epoch Console: live status, streaming logs, jobs and actions for every server.

All I/O runs in workers (asyncio tasks on remote's async API); they update
plain state (``console.state``) and a timer redraws the tables a few times a
second, so neither 20 hosts streaming status nor a fast log can delay a key
press. Every failure ends in ``report_error``: one line, no traceback.
"""

from __future__ import annotations

import asyncio
import functools
import gc
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Sequence

from rich.markup import escape
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Header, Static

from epoch_builder.errors import EpochBuilderError
from epoch_builder.workspace import CANDLESTICKS_DIR, CONFIG_DIR, Workspace
from remote.board import PROFITABLE_CONFIGS, REGRESSIONS, BatchSpec

from console.actions import ACTIONS, with_console_keys
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


def action_worker(group: str = "action") -> Callable[[Callable[..., Awaitable[None]]], Any]:
    """Run an action as a worker whose failures become a message, not a crash."""

    def decorate(method: Callable[..., Awaitable[None]]) -> Any:
        @functools.wraps(method)
        async def guarded_method(self: "EpochConsole", *args: Any, **kwargs: Any) -> None:
            try:
                await method(self, *args, **kwargs)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - shown to the user instead of a traceback
                self.report_error(exc, method.__name__.removeprefix("action_").replace("_", " "))

        return work(group=group, exit_on_error=False)(guarded_method)

    return decorate


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


class EpochConsole(App[None]):
    TITLE = "Epoch Console"
    CSS_PATH = [Path(__file__).with_name("global.tcss"), Path(__file__).with_name("app.tcss")]  # absolute: subclasses live elsewhere
    COMMANDS = App.COMMANDS | {ActionsProvider}
    BINDINGS = [
        Binding("a", "menu", "Actions"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
        *(Binding(spec.key, spec.id, spec.title, show=spec.footer) for spec in ACTIONS if spec.key),
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

    # --- layout ---------------------------------------------------------------
    def compose(self) -> ComposeResult:
        # Kept as attributes: App.query_one searches the active screen, which is a
        # dialog or the command palette while one is open.
        self.servers_table = ServersTable(id="servers")
        self.detail = HostDetail(id="detail")
        self.log_pane = LogPane(id="log-pane")
        self.jobs_table = JobsTable(id="jobs")
        yield Header()
        with Horizontal(id="top"):
            yield self.servers_table
            yield self.detail
        with Horizontal(id="bottom"):
            yield self.log_pane
            yield self.jobs_table
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"{len(self.cluster.hosts)} server(s) · workspace {self.workspace.root}"
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
        self.action_subscribe_logs()

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
        self.notify(escape(with_console_keys(prefix + message)), title="Error", severity="error", timeout=10)

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

        self.push_screen(ActionMenu(self._selection_context()), chosen)

    def _selection_context(self) -> str:
        server = self.servers_table.selected_server
        return f"(server {server})" if server else ""

    def run_action_id(self, action_id: str) -> None:
        getattr(self, f"action_{action_id}")()

    def action_board(self) -> None:
        from console.screens.board import BoardScreen  # batch board + auto-dispatch

        self.push_screen(BoardScreen())

    async def read_board(self) -> "Board":
        """The Board screen's source: the workspace plus every server's job directories."""
        from remote import board as boards

        return await boards.build_board(self.workspace.root, list(self.cluster.remote_hosts.values()))

    @action_worker()
    async def action_quit(self) -> None:
        """Quit; while auto-dispatch runs, only after a confirmation (quitting ends it)."""
        auto = getattr(self, "_auto_dispatch", None)
        if auto is not None and auto.running and not await self.confirm(
                f"Auto-dispatch of {auto.stage} is running. Quitting stops it: running jobs go on on their "
                "servers and the next dispatch adopts them. Quit?", "Quit"):
            return
        self.exit()

    def action_help(self) -> None:
        from console.screens.help import HelpScreen

        self.push_screen(HelpScreen())

    async def confirm(self, question: str, label: str) -> bool:
        from console.screens.confirm import ConfirmDialog

        return bool(await self.push_screen_wait(ConfirmDialog(question, label)))

    async def choose_servers(self, title: str, *, allow_all: bool, all_but_this_machine: bool = False) -> list[str] | None:
        """``all_but_this_machine``: "all servers" leaves out the console's own machine (power actions)."""
        from console.screens.forms import ServerPicker

        names = list(self.cluster.hosts)
        if len(names) == 1:
            return names
        default = self.servers_table.selected_server
        all_means = [s.name for s in self.cluster.config.servers if not s.local] if all_but_this_machine else names
        return await self.push_screen_wait(ServerPicker(names, allow_all=allow_all, title=title, default=default,
                                                        all_means=all_means))

    # --- Server actions -------------------------------------------------------
    def action_connect(self) -> None:
        """Hand the terminal to an interactive ssh in the server's workspace."""
        import subprocess

        try:
            server = self.selected_server
            argv = self.cluster.interactive_command(server)
        except EpochBuilderError as exc:
            self.report_error(exc, "connect")
            return
        with self.suspend():
            completed = subprocess.run(argv, check=False)
        if completed.returncode not in (0, 130):
            self.report_error(f"{argv[0]} exited with code {completed.returncode}", f"connect {server}")

    def action_view_status(self) -> None:
        try:
            server = self.selected_server
        except EpochBuilderError as exc:
            self.report_error(exc)
            return
        self.push_screen(StatusScreen(server, self.cluster.hosts[server].status))

    def action_subscribe_logs(self) -> None:
        try:
            job = self.selected_job if self.jobs_table.has_focus else self.newest_running_job(self.selected_server)
        except EpochBuilderError as exc:
            self.report_error(exc)
            return
        self.follow_log(job)

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

    @action_worker()
    async def action_reboot(self) -> None:
        await self._power("reboot")

    @action_worker()
    async def action_shutdown(self) -> None:
        await self._power("shutdown")

    async def _power(self, what: str) -> None:
        servers = await self.choose_servers(f"{what.capitalize()} which server?", allow_all=True, all_but_this_machine=True)
        if not servers:
            return
        if not await self.confirm(f"{what.capitalize()} {', '.join(servers)}? Running jobs stop.", what.capitalize()):
            return
        for server in servers:
            if await self.guarded(f"{what} {server}", self.cluster.power(server, what)) is not None:
                self.notify(f"{what} sent to {server}")

    @action_worker()
    async def action_kill_process(self) -> None:
        job = self.target_job()
        if self.live:  # the state the server reports now (a recorded showcase has no server to ask)
            job = await self.cluster.refresh_job(job.server, job.id)
        if job.state != "running":
            self.report_error(f"job {job.id} on {job.server} is not running: {job.state_label}; nothing to stop")
            return
        if not await self.confirm(f"Stop job {job.id} ({job.command}) on {job.server}, running now? Only its "
                                  "process group is signalled.", "Stop job"):
            return
        ended = await self.guarded(f"stop {job.id} on {job.server}", self.cluster.stop_job(job.server, job.id))
        if ended is None:
            return
        if ended.state == "stopped":
            self.notify(f"stopped {job.id} on {job.server} ({ended.state_label})")
        else:  # it ended on its own between the question and the answer
            self.notify(f"job {job.id} on {job.server} had already ended: {ended.state_label}; nothing was stopped")

    @action_worker()
    async def action_install_key(self) -> None:
        from console.screens.forms import TextForm

        servers = await self.choose_servers("Install your SSH public key on which server?", allow_all=True)
        if not servers:
            return
        key = await self.push_screen_wait(TextForm("Install SSH key", "public key file", default_public_key()))
        if not key:
            return
        for server in servers:
            added = await self.guarded(f"install key on {server}", self.cluster.install_key(server, key))
            if added is not None:
                self.notify(f"public key {'installed' if added else 'was already installed'} on {server}")

    # --- Epoch Builder actions --------------------------------------------------
    async def launch(self, args: list[str], *, server: str | None = None, follow: bool = True,
                     inputs: Sequence[str] = ()) -> JobView | None:
        """Start ``epoch-builder <args>`` as a detached job and follow its log. ``inputs``: the workspace paths
        it reads, offered as a push first where the server lacks them or holds older versions."""
        server = server or self.selected_server
        if inputs and not await self._preflight(args[0], server, inputs):
            return None
        job = await self.guarded(f"{args[0]} on {server}", self.cluster.start_job(server, args))
        if job is not None:
            self.notify(f"started {args[0]} on {server} (job {job.id})")
            if follow:
                self.follow_log(job)
        return job

    async def _preflight(self, command: str, server: str, inputs: Sequence[str]) -> bool:
        """What dispatch does before a job, for a job started by hand: push the inputs the server lacks."""
        if self.cluster.is_local(server):
            return True
        missing = await self.guarded(f"check what {command} needs on {server}", self.cluster.plan_push(server, inputs))
        if missing is None:
            return False
        if not missing:
            return True
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        if not await self.confirm(f"{server} lacks what {command} reads, or holds older versions: {shown} "
                                  f"({len(missing)} file(s)). Push them first, then run?", "Push and run"):
            return False
        pushed = await self.guarded(f"push to {server}", self.cluster.push_paths(server, inputs))
        if pushed is None:
            return False
        self.notify(f"pushed {pushed.files_sent} file(s) to {server} for {command}")
        return True

    @action_worker()
    async def action_import_candlesticks(self) -> None:
        from console.screens.forms import ImportCandlesForm

        server = self.selected_server
        args = await self.push_screen_wait(ImportCandlesForm(server))
        if args:
            await self.launch(args, server=server)  # its log ends with the import's report

    @action_worker()
    async def action_create_epoch(self) -> None:
        from console.screens.forms import CreateEpochForm

        args = await self.push_screen_wait(CreateEpochForm())
        if args:
            await self.launch(args, inputs=[CANDLESTICKS_DIR])

    @action_worker()
    async def action_generate_configs(self) -> None:
        from console.screens.forms import FormField, OptionsForm

        server = self.selected_server
        options = await self.push_screen_wait(OptionsForm(f"Generate regression training configs on {server}", [
            FormField("grid", "grid file", hint=f"path on {server}; empty: the bundled 1,220-model grid"),
            FormField("force", "existing batches", "flag", hint="replace them (--force)"),
        ]))
        if options is None:
            return
        if options["force"] and not await self.confirm(
                f"Replace the epoch's existing training-config batches on {server}? Trained results stay, but the "
                "batches they came from are written again.", "Replace"):
            return
        await self.launch(["generate-regression-training-configs", *(["--grid", options["grid"]] if options["grid"] else []),
                           *(["--force"] if options["force"] else [])], server=server, inputs=[CONFIG_DIR])

    @action_worker()
    async def action_train_batch(self) -> None:
        from console.screens.forms import BatchPicker, FormField, OptionsForm
        from console.workspace_files import list_batches

        batches = self._read(list_batches, self.workspace)
        if batches is None:
            return
        server = self.selected_server
        batch = await self.push_screen_wait(BatchPicker(batches, f"Train regression batch on {server}: choose a batch"))
        if not batch:
            return
        options = await self.push_screen_wait(OptionsForm(f"Train {batch.path.stem} on {server}", [
            FormField("max_epochs", "max epochs per model", "int", hint="empty: each config's own (else 500)",
                      low=1, high=100_000)]))
        if options is None:
            return
        # The batch's name: the command finds it under regression_training_configs/<category>/ on any host.
        await self.launch(["train-regression-batch", "--category", batch.category, "--batch", batch.path.name,
                           *(["--max-epochs", str(options["max_epochs"])] if options["max_epochs"] else [])], server=server,
                          inputs=self._batch_inputs(REGRESSIONS, batch))

    @action_worker()
    async def action_initialize_models(self) -> None:
        from console.screens.forms import RegressionPicker
        from console.workspace_files import list_regressions

        regressions = self._read(list_regressions, self.workspace)
        if regressions is None:
            return
        if not regressions:
            self.report_error("no trained regressions in the local workspace: pull trained regressions first")
            return
        args = await self.push_screen_wait(RegressionPicker(regressions))
        if args:
            await self.launch(args)

    @action_worker()
    async def action_find_profitable(self) -> None:
        from console.screens.forms import BatchPicker
        from console.workspace_files import list_batches

        batches = self._read(list_batches, self.workspace, "configs")
        if batches is None:
            return
        batch = await self.push_screen_wait(BatchPicker(batches, "Find profitable configs: choose a config batch"))
        if batch:
            await self.launch(["find-profitable-configs", "--batch", batch.path.name],
                              inputs=self._batch_inputs(PROFITABLE_CONFIGS, batch))

    @action_worker()
    async def action_build_models(self) -> None:
        from console.screens.forms import NumberForm

        limit = await self.push_screen_wait(NumberForm("Build prediction models", "limit (models kept)", 100, 1, 10_000_000))
        if limit:
            await self.launch(["build-prediction-models", "--top", str(limit)])

    @action_worker()
    async def action_export_epoch(self) -> None:
        from console.screens.forms import ModelPicker
        from console.workspace_files import list_build_models

        models = self._read(list_build_models, self.workspace)
        if models is None:
            return
        model_id = await self.push_screen_wait(ModelPicker(models))
        if model_id:
            await self.launch(["export-epoch", "--model-id", model_id])

    @action_worker()
    async def action_unit_tests(self) -> None:
        server = self.selected_server
        self.following = None
        pane = self.log_pane
        pane.show_source(f"{server} · unit tests")
        code = await self.guarded(f"unit tests on {server}", self.cluster.unit_tests(server, pane.view.append_lines))
        if code == 0:
            self.notify(f"unit tests passed on {server}")
        elif code is not None:
            self.report_error(f"unit tests failed with exit code {code} (see the log pane)", server)

    def _batch_inputs(self, stage: str, batch: Any) -> list[str]:
        """The paths a batch's job reads: the rule dispatch pushes by (remote.board.BatchSpec)."""
        spec = BatchSpec(stage, batch.path.stem, batch.category or None)
        return spec.push_paths(self.workspace.active_epoch_id())

    def _read(self, reader: Callable[..., Any], *args: Any) -> Any:
        try:
            return reader(*args)
        except EpochBuilderError as exc:
            self.report_error(exc)
            return None

    # --- Push / Pull ----------------------------------------------------------
    async def _sync(self, direction: str, what: str, title: str) -> None:
        servers = await self.choose_servers(f"{title}: which server?", allow_all=True)
        if not servers:
            return
        if direction == "push" and not await self.confirm(
            f"{title} to {', '.join(servers)}? Changed files on the server are overwritten.", "Push"
        ):
            return
        results = await asyncio.gather(
            *(self.guarded(f"{title} {server}", self.cluster.sync(server, direction, what)) for server in servers)
        )
        for server, summary in zip(servers, results):
            if summary is not None:
                self.notify(f"{title} {server}: {summary}")

    def _sync_action(direction: str, what: str, title: str):  # noqa: N805 - builds methods below
        @action_worker("sync")
        async def action(self: "EpochConsole") -> None:
            await self._sync(direction, what, title)

        return action

    # Group names are remote.sync's (``dist`` is remote.bootstrap: push + install the project).
    action_push_root = _sync_action("push", "root-files", "Push root files")
    action_push_config = _sync_action("push", "config", "Push configuration")
    action_push_candlesticks = _sync_action("push", "candlesticks", "Push candlesticks")
    action_push_dist = _sync_action("push", "dist", "Push dist/project")
    action_push_training_configs = _sync_action("push", "regression-training-configs", "Push regression training configs")
    action_push_prediction_models = _sync_action("push", "prediction-models", "Push prediction models")
    action_push_everything = _sync_action("push", "workspace", "Push everything")
    action_pull_regressions = _sync_action("pull", "trained-regressions", "Pull trained regressions")
    action_pull_prediction_models = _sync_action("pull", "prediction-models", "Pull prediction models")
    del _sync_action

    # --- Charts ---------------------------------------------------------------
    @action_worker()
    async def action_chart_regression(self) -> None:
        from console.screens.charts import loss_chart_for
        from console.screens.forms import RegressionChooser
        from console.workspace_files import list_regressions

        regressions = self._read(list_regressions, self.workspace)
        if not regressions:
            if regressions is not None:
                self.report_error("no trained regressions in the local workspace: pull trained regressions first")
            return
        chosen = await self.push_screen_wait(RegressionChooser(regressions))
        if chosen is None:
            return
        screen = self._read(loss_chart_for, chosen.path)
        if screen is not None:
            self.push_screen(screen)

    @action_worker()
    async def action_chart_model(self) -> None:
        from console.screens.charts import BalanceChartScreen
        from console.screens.forms import ModelPicker
        from console.workspace_files import list_build_models

        models = self._read(list_build_models, self.workspace)
        if models is None:
            return
        model_id = await self.push_screen_wait(ModelPicker(models))
        if model_id:
            self.push_screen(BalanceChartScreen(next(m for m in models if m.id == model_id)))


def default_public_key() -> str:
    """The first of the usual public key files that exists (else the ed25519 one)."""
    for name in ("id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"):
        path = Path.home() / ".ssh" / name
        if path.exists():
            return str(path)
    return str(Path.home() / ".ssh" / "id_ed25519.pub")


def make_app(config_path: str | Path | None = None, workspace: str | Path | None = None) -> EpochConsole:
    """Build the console for a cluster config (None: ``config/cluster.json``, or
    localhost alone when that file does not exist) and a local workspace."""
    from epoch_builder.workspace import resolve_root

    ws = Workspace(resolve_root(str(workspace) if workspace else None))
    cluster = Cluster.from_config(config_path, ws.root)
    return EpochConsole(cluster, ws)
