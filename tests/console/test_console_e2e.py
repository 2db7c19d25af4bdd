"""End to end through the console: create an epoch and generate its training configs on
localhost, push the workspace to a real sshd host, train the UNIT_TEST batch there, pull
the trained regression back and chart its loss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import PYTHON, shown, wait_for

from console.app import EpochConsole, make_app
from epoch_builder.workspace import Workspace
from console.screens.charts import LossChartScreen
from console.screens.pickers import BatchPicker

pytestmark = [pytest.mark.ssh, pytest.mark.slow]
SIZE = (150, 45)
NEEDED = ("generate-regression-training-configs", "train-regression-batch")


def _subcommands() -> set[str]:
    from epoch_builder.cli import build_parser

    parser = build_parser()
    return set(next(a for a in parser._actions if a.dest == "command").choices)


def _finished(app: EpochConsole, server: str, subcommand: str) -> bool:
    return any(j.server == server and j.command.startswith(subcommand) and j.state == "finished" for j in app.cluster.jobs.values())


def _failed(app: EpochConsole) -> list[str]:
    return [f"{j.server}: {j.command} exit {j.exit_code}" for j in app.cluster.jobs.values() if j.state == "failed"]


async def _wait_job(pilot, app: EpochConsole, server: str, subcommand: str, timeout: float) -> None:
    await wait_for(pilot, lambda: _finished(app, server, subcommand) or _failed(app), timeout=timeout,
                   what=f"{subcommand} on {server}")
    assert not _failed(app), _failed(app)


@pytest.fixture
def imported_workspace(sample_csv: Path, tmp_path: Path) -> Workspace:
    """A workspace holding the bundled sample at 30 minutes and no epoch yet."""
    from epoch_builder.importer import import_candlesticks

    ws = Workspace(tmp_path / "workspace")
    import_candlesticks(ws, [sample_csv], interval_minutes=30, log=lambda *_: None)
    return ws


async def test_create_train_unit_test_remotely_and_pull(sshd_pair, imported_workspace: Workspace, tmp_path: Path) -> None:
    missing = [c for c in NEEDED if c not in _subcommands()]
    if missing:
        pytest.skip(f"epoch-builder has no {', '.join(missing)} yet (regression factory)")
    small_epoch = imported_workspace
    doc = sshd_pair.config_dict(PYTHON, connect_timeout_s=3, keepalive_interval_s=1)
    doc["servers"] = [{"name": "localhost", "local": True, "root": str(small_epoch.root)}, doc["servers"][0]]
    config = tmp_path / "cluster.json"
    config.write_text(json.dumps(doc))
    srv1 = sshd_pair.servers[0]
    app = make_app(config, small_epoch.root)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: all(h.state == "online" and h.cpu is not None for h in app.cluster.hosts.values()),
                       what="servers online")
        table = app.servers_table
        table.move_cursor(row=table.get_row_index("localhost"))

        # Create epoch on localhost through the form.
        await pilot.press("e")
        await pilot.pause(0.2)
        app.screen.query_one("#f-id").value = "_E2E"
        app.screen.query_one("#f-profile").value = "small"
        await pilot.pause(0.1)
        app.screen.query_one("#f-epoch_width").value = "15"
        await pilot.press("ctrl+s")
        await _wait_job(pilot, app, "localhost", "create-epoch", 90)
        assert app.workspace.load_epoch_config().id == "_E2E"

        # Generate regression training configs on localhost: its form names the server and offers --grid/--force.
        await pilot.press("g")
        await wait_for(pilot, lambda: shown(app, "OptionsForm"), what="the generate form")
        assert "on localhost" in str(app.screen.query_one(".dialog-title").render())
        await pilot.press("ctrl+s")
        await _wait_job(pilot, app, "localhost", "generate-regression-training-configs", 120)

        # Push everything to srv1 (confirm the overwrite): the only server besides this workspace, so no picker.
        await pilot.press("P")
        await wait_for(pilot, lambda: shown(app, "ConfirmDialog"), what="the push confirmation")
        await pilot.press("tab", "enter")
        remote_config = srv1.root / "config" / "epoch.json"
        await wait_for(pilot, lambda: any(m.startswith("Push everything srv1:") for m in app.messages), timeout=60,
                       what="push everything")
        assert json.loads(remote_config.read_text())["id"] == "_E2E"

        # Train the UNIT_TEST batch on srv1.
        table.move_cursor(row=table.get_row_index("srv1"))
        await pilot.press("t")
        await pilot.pause(0.3)
        assert isinstance(app.screen, BatchPicker)
        row = next(i for i, b in enumerate(app.screen.batches) if b.category == "UNIT_TEST")
        app.screen.query_one("#batch-table").move_cursor(row=row)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: shown(app, "OptionsForm"), what="the training options")
        app.screen.query_one("#f-max_epochs").value = "0"  # out of range: said in the form
        await pilot.press("ctrl+s")
        assert "allowed 1 to 100,000" in str(app.screen.query_one(".form-error").render())
        app.screen.query_one("#f-max_epochs").value = "3"
        await pilot.press("ctrl+s")
        await _wait_job(pilot, app, "srv1", "train-regression-batch", 240)
        trained = next(job for job in app.cluster.jobs.values() if job.command.startswith("train-regression-batch"))
        assert trained.command.endswith("--max-epochs 3")
        assert any("epoch" in line.lower() for line in app.log_pane.view.buffer.lines())

        # Pull the trained regressions and chart the loss.
        await pilot.press("R")  # from srv1, the only server besides this workspace
        regressions = app.workspace.epoch().regressions_dir
        await wait_for(pilot, lambda: any(regressions.glob("*/certificate.json")), timeout=60, what="pulled certificate")
        await pilot.press("L")
        await pilot.pause(0.3)
        await pilot.press("ctrl+s")
        await pilot.pause(0.3)
        assert isinstance(app.screen, LossChartScreen) and app.screen.history["loss"]
