"""A combining step run on a server the user picks (ctrl+o in its form): the console pushes exactly what the
step reads, runs it there and pulls back what it wrote, byte for byte; and a step whose input the
controller lacks says which server has it and which pull brings it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import Input

from conftest import shown, wait_for, write_cluster_file

from console.app import make_app
from epoch_builder.storage import atomic_write_json
from epoch_builder.workspace import Workspace

pytestmark = pytest.mark.ssh
SIZE = (120, 40)


def files_under(root: Path, relative: str) -> dict[str, bytes]:
    base = root / relative
    paths = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in paths}


async def test_initialize_run_on_a_chosen_server_pushes_its_inputs_and_pulls_its_output(
        sshd_pair, trained: Workspace, tmp_path: Path) -> None:
    from remote import steps

    ws = trained
    epoch = ws.epoch()
    config = write_cluster_file(sshd_pair, tmp_path / "cluster.json")
    srv1 = sshd_pair.servers[0]
    app = make_app(config, ws.root)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: all(h.state == "online" for h in app.cluster.hosts.values()), what="online")
        await pilot.press("i")
        await wait_for(pilot, lambda: shown(app, "RegressionPicker"), what="the regression picker")
        run_on = app.screen.query_one("#run-on")
        assert "runs on controller" in str(run_on.render())
        await pilot.press("ctrl+o")  # the next place: srv1
        assert "runs on srv1" in str(run_on.render()) and "pushed first" in str(run_on.render())
        app.screen.query_one("#f-pcr", Input).value = "1"
        app.screen.query_one("#f-per-model", Input).value = "4"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: any("pulled back" in m or "nothing pulled" in m for m in app.messages),
                       timeout=240, what="the step's account")
        account = next(m for m in app.messages if "pulled back" in m or "nothing pulled" in m)
        assert account.startswith("initialize-prediction-models on srv1: pushed ") and "pulled back" in account, account
        job = next(j for j in app.cluster.jobs.values() if j.command.startswith("initialize-prediction-models"))
        assert job.server == "srv1" and job.state == "finished"
        argv = job.command.split()

    files = steps.step_files(ws.root, argv)
    chosen = argv[argv.index("--regressions") + 1].split(",")
    assert sorted(files.reads) == sorted(["config/epoch.json", "candlesticks",
                                          *(epoch.relative(epoch.regression_dir(r)) for r in chosen)])
    for path in files.reads:  # pushed: byte-identical on the server
        ours = files_under(ws.root, path)
        assert ours and ours == files_under(srv1.root, path), path
    assert not (srv1.root / epoch.relative(epoch.regression_training_configs_dir)).exists()  # nothing else went
    for path in files.writes:  # pulled back: byte-identical on the controller
        theirs = files_under(srv1.root, path)
        assert theirs and theirs == files_under(ws.root, path), path
    assert json.loads((epoch.assets_dir / "assets.json").read_text())["regression_ids"] == chosen
    assert any(epoch.configs_dir.glob(f"{epoch.id}_*.json"))
    assert not (sshd_pair.servers[1].root / epoch.relative(epoch.assets_dir)).exists()


async def test_a_step_missing_an_input_names_the_server_that_has_it_and_the_pull(
        sshd_pair, small_epoch: Workspace, tmp_path: Path) -> None:
    """Build on the controller when a sweep's result is still on srv2: one line, nothing started."""
    ws = small_epoch
    epoch = ws.epoch()
    atomic_write_json(epoch.assets_dir / "assets.json", {"regression_ids": []})
    atomic_write_json(epoch.config_batch_file("B_1"), {"configs": []})
    atomic_write_json(epoch.config_batch_file("B_2"), {"configs": []})
    atomic_write_json(epoch.profitable_configs_file("B_1"), [])
    on_srv2 = sshd_pair.servers[1].root / epoch.relative(epoch.profitable_configs_file("B_2"))
    on_srv2.parent.mkdir(parents=True)
    on_srv2.write_text("[]")
    app = make_app(write_cluster_file(sshd_pair, tmp_path / "cluster.json"), ws.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: all(h.state == "online" for h in app.cluster.hosts.values()), what="online")
        await pilot.press("b")
        await wait_for(pilot, lambda: shown(app, "NumberForm"), what="the build form")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: any("needs" in m for m in app.messages), what="the missing-input line")
    message = next(m for m in app.messages if "needs" in m)
    wanted = epoch.relative(epoch.profitable_configs_file("B_2"))
    assert message == (f"build prediction models: build-prediction-models needs {wanted}, not in the controller's "
                       "workspace; srv2 has it: pull prediction models (console: key M; `epoch-cluster pull "
                       "prediction-models`) from there"), message
    assert not app.cluster.jobs  # nothing was started anywhere
