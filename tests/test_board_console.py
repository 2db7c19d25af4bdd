"""The console's Board screen on localhost: states, auto-dispatch, a console restart mid-run that adopts
the running job, and the stage gate offered afterwards."""

from __future__ import annotations

import asyncio
import time

import pytest
from textual.widgets import Input, Log

from console.app import make_app
from console.screens.board import AutoDispatch, BoardScreen
from epoch_builder.workspace import Workspace
from remote import host_program
from tests.test_board import write_regression_batch

pytestmark = pytest.mark.slow


async def wait_for(pilot, predicate, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; notifications: {list(pilot.app.messages)}")
        await pilot.pause(0.1)
        await asyncio.sleep(0.1)


def shown(app, screen_name: str) -> bool:
    """The named screen is on top and mounted (its widgets exist)."""
    return type(app.screen).__name__ == screen_name and app.screen.is_mounted


def row_states(app) -> dict[str, str]:
    screen = app.screen
    if not isinstance(screen, BoardScreen) or screen.board is None:
        return {}
    return {r.spec.name: r.state for r in screen.board.rows}


async def test_board_dispatches_survives_a_console_restart_and_offers_the_next_stage(small_epoch: Workspace) -> None:
    write_regression_batch(small_epoch, "DNN", "KR_DNN_1_1", ["CB1", "CB2"])
    missing_cluster = None  # no config/cluster.json in the workspace: localhost alone, root = the workspace

    app = make_app(missing_cluster, small_epoch.root)
    async with app.run_test(size=(150, 40)) as pilot:
        await pilot.press("o")
        await wait_for(pilot, lambda: shown(app, "BoardScreen"), what="the Board")
        await wait_for(pilot, lambda: row_states(app) == {"KR_DNN_1_1": "pending"}, what="pending batch")
        await pilot.press("d")  # asks for the options (those of `epoch-cluster dispatch`)
        await wait_for(pilot, lambda: shown(app, "DispatchForm"), what="the dispatch form")
        app.screen.query_one("#f-max-failures", Input).value = "3"
        app.screen.query_one("#f-max-epochs", Input).value = "40"  # a quick batch whatever the machine's load
        await pilot.press("ctrl+s")
        assert AutoDispatch.of(app).running and AutoDispatch.of(app).dispatcher.options.max_failures == 3
        await wait_for(pilot, lambda: row_states(app).get("KR_DNN_1_1") == "running", 60, "running batch")
        job_id = app.screen.board.rows[0].job_id
        panel = app.screen.query_one("#board-log", Log)  # the dispatcher's log, in the Board screen
        await wait_for(pilot, lambda: any(f"started job {job_id}" in line for line in panel.lines), what="dispatch log line")
        await pilot.press("enter")  # follow the batch's job log on the main screen
        await wait_for(pilot, lambda: not isinstance(app.screen, BoardScreen) and app.following == f"localhost/{job_id}",
                       what="the job's log in the log pane")
        await wait_for(pilot, lambda: any("KR_DNN_1_1" in line for line in app.log_pane.view.buffer.lines()), 60, "log lines of the job")
        await pilot.press("q")  # auto-dispatch runs: quitting asks first (Cancel focused)
        await wait_for(pilot, lambda: shown(app, "ConfirmDialog"), what="the quit question")
        assert "Auto-dispatch of regressions is running" in str(app.screen.query_one("#confirm-question").render())
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert app.is_running and AutoDispatch.of(app).running
        await pilot.press("o")
    # The console is gone (its dispatcher with it); the job keeps running.
    jobs = host_program.cmd_list({"root": str(small_epoch.root)})
    assert [j["state"] for j in jobs] == ["running"]

    app = make_app(missing_cluster, small_epoch.root)
    async with app.run_test(size=(150, 40)) as pilot:
        await pilot.press("o")
        await wait_for(pilot, lambda: row_states(app).get("KR_DNN_1_1") in ("running", "finished"), what="adopted job")
        await pilot.press("d", "ctrl+s")  # adopts: waits for the running job instead of starting another
        await wait_for(pilot, lambda: row_states(app) == {"KR_DNN_1_1": "done"}, 120, "batch done")
        assert len(host_program.cmd_list({"root": str(small_epoch.root)})) == 1
        summary = str(app.screen.query_one("#board-next").render())
        assert "rank regressions and initialize prediction models" in summary
        await wait_for(pilot, lambda: not AutoDispatch.of(app).running, what="dispatch to stop when all is done")
        await pilot.press("n")  # the stage gate opens the initialize form
        await wait_for(pilot, lambda: not isinstance(app.screen, BoardScreen), what="initialize action")
    for cert in ("CB1", "CB2"):
        assert (small_epoch.epoch().regressions_dir / cert / "certificate.json").is_file()
