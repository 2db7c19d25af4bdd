"""A whole epoch carried across a real cluster from the console, as a user does it: two loopback sshd
servers (no localhost entry in the cluster file), a workspace with the demo grid generated, and only the
Board, its forms and the pickers -- regressions dispatched, initialize, profitable configs dispatched,
build, export, verify -- to a verified Epoch File in the controller's workspace. The steps that combine
the servers' results run on the controller (where dispatch pulled them), never on the selected server."""

from __future__ import annotations

import json
import zipfile

import pytest
from textual.widgets import Input

from conftest import shown, wait_for, write_cluster_file

from console.app import EpochConsole, make_app
from console.screens.board import AutoDispatch, BoardScreen
from epoch_builder.platform import MODEL_CERTIFICATE_MEMBER
from epoch_builder.workspace import Workspace
from remote import board as boards

pytestmark = [pytest.mark.ssh, pytest.mark.slow]
MAX_EPOCHS = "2"  # a quick batch on a loaded machine; the path, not the fit, is under test here
COMBINING = ("initialize-prediction-models", "build-prediction-models", "export-epoch", "verify-epoch")


@pytest.fixture
def demo_grid_epoch(small_epoch: Workspace) -> Workspace:
    """The small epoch with the demo grid's batches (8 regressions of all six families) generated."""
    from epoch_builder.importer import bundled_sample  # noqa: F401 - the package's data is installed
    from epoch_builder.regressions import grid

    demo = grid.default_grid_path().with_name("demo_grid.json")
    grid.generate(small_epoch, demo, log=lambda *_: None)
    return small_epoch


def jobs_of(app: EpochConsole, command: str) -> list:
    return [j for j in app.cluster.jobs.values() if j.command.startswith(command)]


def failed_jobs(app: EpochConsole) -> list[str]:
    return [f"{j.server}: {j.command[:60]} exit {j.exit_code}" for j in app.cluster.jobs.values() if j.state == "failed"]


async def finished(pilot, app: EpochConsole, command: str, timeout: float) -> None:
    await wait_for(pilot, lambda: any(j.state == "finished" for j in jobs_of(app, command)) or failed_jobs(app),
                   timeout=timeout, what=f"{command} to finish")
    assert not failed_jobs(app), failed_jobs(app)


async def open_board(pilot, app: EpochConsole) -> BoardScreen:
    await pilot.press("o")
    await wait_for(pilot, lambda: shown(app, "BoardScreen"), what="the Board")
    return app.screen  # type: ignore[return-value]


def next_line(app: EpochConsole) -> str:
    return str(app.screen.query_one("#board-next").render())


async def next_stage(pilot, app: EpochConsole, step: str, form: str) -> None:
    """Open the Board, wait until its next-step line names ``step`` and where it runs, press n."""
    await open_board(pilot, app)
    await wait_for(pilot, lambda: step in next_line(app), timeout=60, what=f"next step {step!r}")
    line = next_line(app)
    where = "on srv1, srv2 (auto-dispatch)" if form == "DispatchForm" else "on controller (this workspace)"
    assert where in line and "[n] to run it" in line, line
    await pilot.press("n")
    await wait_for(pilot, lambda: shown(app, form), what=f"the {form} of {step!r}")


async def dispatch_stage(pilot, app: EpochConsole, stage: str) -> None:
    """The dispatch form opened by n: a stage's batches over both servers, until every row is done."""
    assert app.screen.query_one("#f-stage").value == stage
    if stage == boards.REGRESSIONS:
        app.screen.query_one("#f-max-epochs", Input).value = MAX_EPOCHS
    await pilot.press("ctrl+s")
    await wait_for(pilot, lambda: AutoDispatch.of(app).running, what=f"auto-dispatch of {stage}")
    await wait_for(pilot, lambda: not AutoDispatch.of(app).running, timeout=420, what=f"every {stage} batch done")
    board = app.screen
    assert isinstance(board, BoardScreen)
    await wait_for(pilot, lambda: board.board is not None and board.board.stage_done(stage), what=f"{stage} done")
    ran_on = {row.host for row in board.board.stage_rows(stage)}
    assert ran_on <= {"srv1", "srv2"} and ran_on, ran_on
    await pilot.press("escape")


@pytest.mark.parametrize("size", [(80, 24), (200, 50)], ids=["80x24", "200x50"])
async def test_the_console_carries_an_epoch_across_two_servers_to_a_verified_epoch_file(
        sshd_pair, demo_grid_epoch: Workspace, tmp_path, size) -> None:
    ws = demo_grid_epoch
    epoch_id = ws.active_epoch_id()
    config = write_cluster_file(sshd_pair, tmp_path / "cluster.json")
    app = make_app(config, ws.root)
    async with app.run_test(size=size) as pilot:
        assert list(app.cluster.hosts) == ["controller", "srv1", "srv2"]
        await wait_for(pilot, lambda: all(h.state == "online" for h in app.cluster.hosts.values()), what="online")
        app.servers_table.move_cursor(row=app.servers_table.get_row_index("srv1"))  # a server is selected

        # 1. Regressions, dispatched over both servers and pulled back.
        await next_stage(pilot, app, boards.TRAIN_STEP, "DispatchForm")
        await dispatch_stage(pilot, app, boards.REGRESSIONS)

        # 2. Initialize on the controller, from the regressions its picker shows: the controller's, every
        # server's results pulled together, while each server holds only what it trained itself.
        epoch = ws.epoch()
        trained = {p.parent.name for p in epoch.regressions_dir.glob("*/certificate.json")}
        on_servers = {s.name: {p.parent.name for p in (s.root / epoch_id / "regressions").glob("*/certificate.json")}
                      for s in sshd_pair.servers}
        assert len(trained) == 8 and set().union(*on_servers.values()) == trained
        assert any(held != trained for held in on_servers.values()), on_servers
        await next_stage(pilot, app, boards.INITIALIZE_STEP, "RegressionPicker")
        assert {r.id for r in app.screen.regressions} == trained
        assert "runs on controller" in str(app.screen.query_one("#run-on").render())
        app.screen.query_one("#f-pcr", Input).value = "1"
        app.screen.query_one("#f-per-model", Input).value = "4"
        await pilot.press("ctrl+s")
        await finished(pilot, app, "initialize-prediction-models", 240)
        initialize = jobs_of(app, "initialize-prediction-models")[0]
        assert initialize.server == "controller" and set(initialize.command.split()[2].split(",")) == trained

        # 3. Profitable configs, dispatched.
        await next_stage(pilot, app, boards.SWEEP_STEP, "DispatchForm")
        await dispatch_stage(pilot, app, boards.PROFITABLE_CONFIGS)

        # 4. Build, on the controller.
        await next_stage(pilot, app, boards.BUILD_STEP, "NumberForm")
        app.screen.query_one("#f-number", Input).value = "5"
        await pilot.press("ctrl+s")
        await finished(pilot, app, "build-prediction-models", 240)

        # 4b. Build read every server's profitable configs, pulled to the controller (no server holds them all).
        swept = {p.name for p in epoch.profitable_configs_dir.glob("*.json")}
        assert swept == {p.name for p in epoch.configs_dir.glob("*.json")}
        assert all({p.name for p in (s.root / epoch.relative(epoch.profitable_configs_dir)).glob("*.json")} != swept
                   for s in sshd_pair.servers) or len(swept) == 1

        # 5. Export the highlighted (most profitable) model, on the controller: the picker lists its build.
        await next_stage(pilot, app, boards.EXPORT_STEP, "ModelPicker")
        built = [m["id"] for m in json.loads(epoch.build_file.read_text())]
        assert [m.id for m in app.screen.models] == built
        await pilot.press("ctrl+s")
        await finished(pilot, app, "export-epoch", 300)
        epoch_file = ws.root / epoch_id / f"{epoch_id}.zip"
        with zipfile.ZipFile(epoch_file) as archive:
            assert json.loads(archive.read(MODEL_CERTIFICATE_MEMBER))["id"] == built[0]

        # 6. The epoch is no longer active (export moved it): the Board offers the file's verification.
        await next_stage(pilot, app, boards.VERIFY_STEP, "EpochFilePicker")
        await pilot.press("ctrl+s")
        await finished(pilot, app, "verify-epoch", 300)
        assert any("OK — installs in Epoca's platform" in line for line in app.log_pane.view.buffer.lines())
        await open_board(pilot, app)  # the epoch is complete, and the Board says so
        await wait_for(pilot, lambda: next_line(app).startswith(f"done: {epoch_id}/{epoch_id}.zip passed verify-epoch"),
                       what="the Board's last line")

        combining = [j for j in app.cluster.jobs.values() if j.command.startswith(COMBINING)]
        assert sorted(j.command.split()[0] for j in combining) == sorted(COMBINING)
        assert {j.server for j in combining} == {"controller"}, [(j.server, j.command) for j in combining]
        for server in sshd_pair.servers:  # the servers never ran a combining step
            assert not (server.root / epoch_id / "prediction_models" / "build.json").exists()
