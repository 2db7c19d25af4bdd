"""The console on localhost alone (no cluster file): CLI, command palette, errors as messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import shown, wait_for

from console.app import make_app
from console.cli import main as console_main


def test_cli_reports_a_bad_cluster_file_in_one_line(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "cluster.json"
    bad.write_text(json.dumps({"servers": [{"name": "a b", "host": "x", "root": "/srv"}]}))
    assert console_main(["--config", str(bad), "--workspace", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "servers[0].name" in err and "\n" not in err


def test_console_help_is_instant_and_imports_nothing_heavy() -> None:
    code = ("import sys; from console.cli import build_parser; build_parser().format_help(); "
            "heavy = [m for m in ('tensorflow', 'keras', 'pandas', 'numba', 'textual', 'asyncssh') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


async def test_localhost_alone_palette_and_error_messages(tmp_path: Path) -> None:
    app = make_app(None, tmp_path)  # no config/cluster.json in the workspace: localhost alone
    async with app.run_test(size=(140, 40)) as pilot:
        assert list(app.cluster.hosts) == ["localhost"]
        await wait_for(pilot, lambda: app.cluster.hosts["localhost"].cpu is not None, what="localhost status")

        # Command palette: type part of an action's title, Enter runs it.
        await pilot.press("ctrl+p")
        await pilot.press(*"train regression")
        await pilot.pause(0.5)
        await pilot.press("enter")
        # No epoch in this workspace: a one-line message naming the file, not a traceback.
        await wait_for(pilot, lambda: any("no active epoch" in m for m in app.messages), what="error message")
        assert app.is_running

        # An action on a job, with no job to act on, says so and how to pick one.
        await pilot.press("k")
        await wait_for(pilot, lambda: any("no job is running on localhost" in m for m in app.messages), what="no-job message")
        await pilot.press("question_mark")
        assert type(app.screen).__name__ == "HelpScreen"


async def test_auto_dispatch_without_batches_says_so_before_asking_for_options(small_epoch) -> None:
    from console.screens.board import AutoDispatch, BoardScreen

    app = make_app(None, small_epoch.root)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("o")
        await wait_for(pilot, lambda: isinstance(app.screen, BoardScreen) and app.screen.board is not None, what="the board")
        await pilot.press("d")
        await wait_for(pilot, lambda: any("no batches in epoch" in m for m in app.messages), what="the error line")
        assert isinstance(app.screen, BoardScreen) and not AutoDispatch.of(app).running  # no options form opened


async def test_a_newcomer_starts_from_an_empty_directory_with_console_keys(tmp_path: Path) -> None:
    """An empty workspace at 80x24: the Board and a failed Create epoch name the console key that fixes
    them; `I` imports the bundled sample and its report shows in the log pane."""
    from textual.widgets import Checkbox, Static

    from console.screens.board import BoardScreen

    app = make_app(None, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.cluster.hosts["localhost"].cpu is not None, what="localhost status")
        await pilot.press("o")
        await wait_for(pilot, lambda: isinstance(app.screen, BoardScreen)
                       and "(console: Create epoch, key e)" in str(app.screen.query_one("#board-summary", Static).render()),
                       what="the empty board naming the key")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, BoardScreen), what="the main screen")

        await pilot.press("I")
        await wait_for(pilot, lambda: shown(app, "ImportCandlesForm"), what="the import form")
        # No candles yet: the bundled sample is offered ticked, and its mark says so (not only its colour).
        sample = app.screen.query_one("#f-sample", Checkbox)
        assert sample.value and "▐X▌" in str(sample.render()) and "no candles here yet" in str(sample.render())
        sample.value = False
        await pilot.pause()
        assert "▐ ▌" in str(sample.render())
        await pilot.press("ctrl+s")  # nothing chosen: the form says what it needs
        assert "bundled sample" in str(app.screen.query_one(".form-error", Static).render())
        sample.value = True
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: any("imported 30,240 1m candles" in line for line in app.log_pane.view.buffer.lines()),
                       timeout=90, what="the import's report in the log pane")
        assert (tmp_path / "candlesticks" / "bundle.json").is_file()

        # Create epoch: 21 days of candles are too few for the default profile (6 months at least), so the form
        # offers the small one with a width the candles hold, says why, and its defaults are accepted as they are.
        await pilot.press("e")
        await wait_for(pilot, lambda: shown(app, "CreateEpochForm"), what="the create-epoch form")
        form = app.screen
        assert form.query_one("#f-profile").value == "small" and form.query_one("#f-unit").value == "days"
        assert form.query_one("#f-epoch_width").value == "20"
        note = str(form.query_one("#profile-note", Static).render())
        assert "the imported candles cover 21.0 days" in note and "at least 6 months" in note, note
        form.query_one("#f-id").value = "_NEW"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: (tmp_path / "config" / "epoch.json").is_file(), timeout=90,
                       what="the epoch created with the offered profile")
