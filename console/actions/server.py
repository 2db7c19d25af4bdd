"""Server actions: a shell on the server, its status, the job log, power, stopping a job, SSH keys."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from epoch_builder.errors import EpochBuilderError

from console.actions.spec import ActionSpec

if TYPE_CHECKING:  # pragma: no cover
    from console.app_interface import ConsoleApp

GROUP = "Server"


async def connect(app: "ConsoleApp") -> None:
    """Hand the terminal to an interactive ssh in the server's workspace."""
    import subprocess

    server = app.selected_server
    argv = app.cluster.interactive_command(server)
    with app.suspend():
        completed = subprocess.run(argv, check=False)
    if completed.returncode not in (0, 130):
        raise EpochBuilderError(f"{argv[0]} on {server} exited with code {completed.returncode}")


async def view_status(app: "ConsoleApp") -> None:
    from console.screens.status import StatusScreen

    server = app.selected_server
    app.push_screen(StatusScreen(server, app.cluster.hosts[server].status))


async def subscribe_logs(app: "ConsoleApp") -> None:
    job = app.selected_job if app.jobs_table.has_focus else app.newest_running_job(app.selected_server)
    app.follow_log(job)


async def _power(app: "ConsoleApp", what: str) -> None:
    servers = await app.choose_servers(f"{what.capitalize()} which server?", allow_all=True, all_but_this_machine=True)
    if not servers:
        return
    if not await app.confirm(f"{what.capitalize()} {', '.join(servers)}? Running jobs stop.", what.capitalize()):
        return
    for server in servers:  # one server's failure is reported and the others still get theirs
        if await app.guarded(f"{what} {server}", app.cluster.power(server, what)) is not None:
            app.notify(f"{what} sent to {server}")


async def reboot(app: "ConsoleApp") -> None:
    await _power(app, "reboot")


async def shutdown(app: "ConsoleApp") -> None:
    await _power(app, "shutdown")


async def kill_process(app: "ConsoleApp") -> None:
    job = app.target_job()
    if app.live:  # the state the server reports now (a recorded showcase has no server to ask)
        job = await app.cluster.refresh_job(job.server, job.id)
    if job.state != "running":
        app.report_error(f"job {job.id} on {job.server} is not running: {job.state_label}; nothing to stop")
        return
    if not await app.confirm(f"Stop job {job.id} ({job.command}) on {job.server}, running now? Only its "
                             "process group is signalled.", "Stop job"):
        return
    ended = await app.cluster.stop_job(job.server, job.id)
    if ended.state == "stopped":
        app.notify(f"stopped {job.id} on {job.server} ({ended.state_label})")
    else:  # it ended on its own between the question and the answer
        app.notify(f"job {job.id} on {job.server} had already ended: {ended.state_label}; nothing was stopped")


async def install_key(app: "ConsoleApp") -> None:
    from console.screens.forms import TextForm

    servers = await app.choose_servers("Install your SSH public key on which server?", allow_all=True)
    if not servers:
        return
    key = await app.push_screen_wait(TextForm("Install SSH key", "public key file", default_public_key()))
    if not key:
        return
    for server in servers:
        added = await app.guarded(f"install key on {server}", app.cluster.install_key(server, key))
        if added is not None:
            app.notify(f"public key {'installed' if added else 'was already installed'} on {server}")


def default_public_key() -> str:
    """The first of the usual public key files that exists (else the ed25519 one)."""
    for name in ("id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"):
        path = Path.home() / ".ssh" / name
        if path.exists():
            return str(path)
    return str(Path.home() / ".ssh" / "id_ed25519.pub")


ACTIONS = (
    ActionSpec("connect", GROUP, "Connect", "open an interactive SSH session on the selected server", "c", run=connect),
    ActionSpec("view_status", GROUP, "View status", "show the selected server's full status", "s", run=view_status),
    ActionSpec("subscribe_logs", GROUP, "Subscribe to logs",
               "follow a job's log: the jobs table's row when it has focus, else the server's newest running job", "l",
               run=subscribe_logs),
    ActionSpec("reboot", GROUP, "Reboot", "reboot the selected server", destructive=True, run=reboot),
    ActionSpec("shutdown", GROUP, "Shutdown", "power off the selected server", destructive=True, run=shutdown),
    ActionSpec("kill_process", GROUP, "Kill process",
               "stop the job in the log pane, else the selected server's newest running job (its process group only)",
               "k", destructive=True, run=kill_process),
    ActionSpec("install_key", GROUP, "Install SSH key", "append your public key to the server's authorized_keys",
               run=install_key),
)
