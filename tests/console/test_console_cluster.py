"""The console against real sshd servers: one test per action group, plus a host
going down and coming back. Everything runs through the app's own actions and keys."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import shown, wait_for, write_cluster_file

from console.actions import pipeline
from console.app import EpochConsole, make_app
from console.screens.charts import LossChartScreen

pytestmark = pytest.mark.ssh
SIZE = (150, 45)


def notifications(app: EpochConsole) -> list[str]:
    return list(app.messages)


def all_online(app: EpochConsole) -> bool:
    return all(h.state == "online" and h.cpu is not None for h in app.cluster.hosts.values())


def select_server(app: EpochConsole, name: str) -> None:
    table = app.servers_table
    table.move_cursor(row=table.get_row_index(name))


def select_job(app: EpochConsole, key: str) -> None:
    app.redraw()
    table = app.jobs_table
    table.move_cursor(row=table.get_row_index(key))


@pytest.fixture
def fresh_public_key(tmp_path: Path) -> Path:
    """A key the servers do not know yet, for install-key."""
    key = tmp_path / "installable_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "installable", "-f", str(key)], check=True)
    return key.with_suffix(".pub")


@pytest.fixture
def console_app(sshd_pair, small_epoch, tmp_path: Path) -> EpochConsole:
    """The console over two sshd servers; power commands write marker files instead of rebooting."""
    doc_path = write_cluster_file(sshd_pair, tmp_path / "cluster.json")
    doc = json.loads(doc_path.read_text())
    project = tmp_path / "tiny-project"
    (project / "tests").mkdir(parents=True)
    (project / "tests" / "test_tiny.py").write_text("def test_ok():\n    assert 1 + 1 == 2\n")
    for server in doc["servers"]:
        root = server["root"]
        server["reboot_command"] = ["sh", "-c", f"echo reboot > {root}/reboot.marker"]
        server["shutdown_command"] = ["sh", "-c", f"echo shutdown > {root}/shutdown.marker"]
        server["project_dir"] = str(project)
    doc_path.write_text(json.dumps(doc))
    return make_app(doc_path, small_epoch.root)


async def test_server_actions(console_app: EpochConsole, sshd_pair, fresh_public_key: Path) -> None:
    app = console_app
    srv1 = sshd_pair.servers[0]
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: all_online(app), what="both servers online with status")
        app.redraw()
        cpu_row = app.servers_table.get_row("srv1")
        assert str(cpu_row[1]) == "online" and cpu_row[3].endswith("%")

        # View status
        await pilot.press("s")
        assert type(app.screen).__name__ == "StatusScreen"
        await pilot.press("escape")

        # Subscribe to logs of a running job (a long-running real subcommand).
        job = await app.cluster.start_job("srv1", ["status", "--watch", "0.2", "--json"])
        select_job(app, job.key)
        app.jobs_table.focus()
        await pilot.press("l")
        view = app.log_pane.view
        await wait_for(pilot, lambda: len(view.buffer) >= 3, what="log lines of the job")
        assert json.loads(view.buffer[0])["workspace"] == str(srv1.root)

        # Kill process: Enter on the dialog is Cancel; the job keeps running.
        await pilot.press("k")  # asks the server for the job's state first
        await wait_for(pilot, lambda: shown(app, "ConfirmDialog"), what="the confirmation")
        await pilot.press("enter")
        await pilot.pause(0.5)
        assert app.cluster.jobs[job.key].state == "running"
        await pilot.press("k")
        await wait_for(pilot, lambda: shown(app, "ConfirmDialog"), what="the confirmation")
        await pilot.press("tab", "enter")
        await wait_for(pilot, lambda: app.cluster.jobs[job.key].state == "stopped", what="job stopped")

        # Reboot / shutdown: server picker, confirm, the configured command runs on that server only.
        select_server(app, "srv1")
        app.run_action_id("reboot")
        await pilot.pause(0.2)
        await pilot.press("enter")  # picker: srv1 (the selected server) highlighted
        await pilot.press("enter")  # confirm dialog: Cancel
        await pilot.pause(0.5)
        assert not (srv1.root / "reboot.marker").exists()
        app.run_action_id("reboot")
        await pilot.pause(0.2)
        await pilot.press("enter", "tab", "enter")
        await wait_for(pilot, lambda: (srv1.root / "reboot.marker").exists(), what="reboot command on srv1")
        assert not (sshd_pair.servers[1].root / "reboot.marker").exists()
        app.run_action_id("shutdown")
        await pilot.pause(0.2)
        await pilot.press("down", "down", "enter", "tab", "enter")  # "all servers"
        await wait_for(pilot, lambda: all((s.root / "shutdown.marker").exists() for s in sshd_pair.servers),
                       what="shutdown command on both servers")

        # Install SSH key: appended once to srv1's authorized_keys (the file its sshd reads), then idempotent.
        for expected in ("installed on srv1", "already installed on srv1"):
            app.run_action_id("install_key")
            await pilot.pause(0.2)
            await pilot.press("enter")  # srv1
            await pilot.pause(0.2)
            app.screen.query_one("#f-text").value = str(fresh_public_key)
            await pilot.press("enter")
            await wait_for(pilot, lambda: any(m.endswith(expected) for m in notifications(app)), what=expected)
        blob = fresh_public_key.read_text().split()[1]
        authorized = sshd_pair.servers[0].directory / "authorized_keys"
        assert sum(blob in line for line in authorized.read_text().splitlines()) == 1

        # Unit tests: the project's suite on the server, output in the log pane.
        app.run_action_id("unit_tests")
        await wait_for(pilot, lambda: any("unit tests passed on srv1" in m for m in notifications(app)), timeout=60,
                       what="unit tests")
        assert any("1 passed" in line for line in view.buffer.lines())


async def test_push_and_epoch_builder_actions(console_app: EpochConsole, sshd_pair) -> None:
    app = console_app
    srv1 = sshd_pair.servers[0]
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: all_online(app), what="servers online")
        select_server(app, "srv1")

        # Push candlesticks (asks which server, then to confirm the overwrite).
        await pilot.press("a")
        menu = app.screen.query_one("#action-list")
        menu.highlighted = next(i for i in range(menu.option_count) if menu.get_option_at_index(i).id == "push_candlesticks")
        await pilot.press("enter")
        await pilot.pause(0.2)
        await pilot.press("enter", "tab", "enter")  # srv1, confirm Push
        local = app.workspace.prediction_candlesticks_file
        remote = srv1.root / "candlesticks" / local.name
        await wait_for(pilot, lambda: remote.exists() and remote.read_bytes() == local.read_bytes(), what="candles pushed")

        # Create epoch on srv1 through the form; the job's log follows in the log pane.
        await pilot.press("e")
        await pilot.pause(0.2)
        app.screen.query_one("#f-id").value = "_REMOTE"
        app.screen.query_one("#f-profile").value = "small"
        await pilot.pause(0.1)
        app.screen.query_one("#f-epoch_width").value = "15"  # days: the local bundle holds the last 20
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: any(j.command.startswith("create-epoch") and j.state == "finished"
                                          for j in app.cluster.jobs.values()), timeout=60, what="create-epoch job finished")
        assert json.loads((srv1.root / "config" / "epoch.json").read_text())["id"] == "_REMOTE"
        assert app.log_pane.source.startswith("srv1")

        # A command that fails: the message carries the exit code and the last log lines.
        job = await pipeline.launch(app, ["create-epoch", "--id", "BAD"], server="srv1")
        await wait_for(pilot, lambda: app.cluster.jobs[job.key].state == "failed", timeout=60, what="failing job")
        await wait_for(pilot, lambda: any("failed with exit code 2" in m for m in notifications(app)), what="failure message")
        assert any("is invalid" in m for m in notifications(app) if "failed with exit code 2" in m)


async def test_pull_actions_and_loss_chart(console_app: EpochConsole, sshd_pair) -> None:
    app = console_app
    srv2 = sshd_pair.servers[1]
    epoch_id = app.workspace.load_epoch_config().id
    cert = {"id": "KR_UNIT_TEST", "test_evaluation": [0.012, 0.02],
            "training_history": {"loss": [0.3, 0.1, 0.05], "val_loss": [0.35, 0.15, 0.07]}}
    remote_cert = srv2.root / epoch_id / "regressions" / "KR_UNIT_TEST" / "certificate.json"
    remote_cert.parent.mkdir(parents=True)
    remote_cert.write_text(json.dumps(cert))
    batched = srv2.root / epoch_id / "regression_batched_certificates" / "KR_UNIT_TEST.json"
    batched.parent.mkdir(parents=True)
    batched.write_text(json.dumps([cert]))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: all_online(app), what="servers online")
        await pilot.press("R")  # Pull trained regressions
        await pilot.pause(0.2)
        await pilot.press("down", "enter")  # srv2
        local = app.workspace.epoch().regressions_dir / "KR_UNIT_TEST" / "certificate.json"
        await wait_for(pilot, lambda: local.exists(), what="certificate pulled")
        assert (app.workspace.epoch().regression_batched_certificates_dir / "KR_UNIT_TEST.json").read_bytes() == batched.read_bytes()
        await wait_for(pilot, lambda: any("Pull trained regressions srv2: 2 of 2 files fetched" in m for m in notifications(app)),
                       what="pull summary")

        await pilot.press("L")  # loss chart of a trained regression
        await pilot.pause(0.2)
        await pilot.press("ctrl+s")
        await pilot.pause(0.2)
        assert isinstance(app.screen, LossChartScreen)
        assert app.screen.history["val_loss"] == [0.35, 0.15, 0.07]


async def test_host_down_and_back_resumes_status_and_log(console_app: EpochConsole, sshd_pair) -> None:
    app = console_app
    srv1 = sshd_pair.servers[0]
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: all_online(app), what="servers online")
        job = await app.cluster.start_job("srv1", ["status", "--watch", "0.2", "--json"])
        app.follow_log(job)
        view = app.log_pane.view
        await wait_for(pilot, lambda: len(view.buffer) >= 3, what="log lines")

        srv1.kill()
        await wait_for(pilot, lambda: app.cluster.hosts["srv1"].state in ("offline", "reconnecting"), timeout=15,
                       what="srv1 seen down")
        assert app.cluster.hosts["srv2"].state == "online"
        title = lambda: str(app.log_pane.query_one("#log-title").render())  # noqa: E731
        await wait_for(pilot, lambda: "LINK LOST — reconnecting" in title(), what="the log header saying so")
        assert "FOLLOW" not in title()
        await pilot.pause(1.0)
        srv1.start()
        await wait_for(pilot, lambda: app.cluster.hosts["srv1"].state == "online", timeout=30, what="srv1 back online")
        await wait_for(pilot, lambda: "FOLLOW" in title(), what="the header back to FOLLOW")
        seen = len(view.buffer)
        await wait_for(pilot, lambda: len(view.buffer) >= seen + 5, timeout=20, what="log follow resumed")

        # No line lost or repeated: the pane holds exactly the job's log so far (minus the notice line).
        await app.cluster.stop_job("srv1", job.id)
        log_file = srv1.root / ".jobs" / job.id / "log"
        await wait_for(pilot, lambda: app.cluster.jobs[job.key].state != "running", what="job stopped")
        await pilot.pause(1.0)
        shown = [line for line in view.buffer.lines() if not line.startswith("---")]
        assert shown == log_file.read_text().splitlines()


async def test_k_stops_the_followed_job_and_says_what_really_happened(console_app: EpochConsole, sshd_pair) -> None:
    """`k` acts on the job in the log pane, not on the jobs table's cursor; a job that already ended is
    reported as such (with its exit code), never as "stopped"."""
    app = console_app
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: all_online(app), what="both servers online with status")
        done = await app.cluster.start_job("srv2", ["status", "--json"])
        await wait_for(pilot, lambda: app.cluster.jobs[done.key].state == "finished", what="the short job's end")
        running = await app.cluster.start_job("srv1", ["status", "--watch", "0.2", "--json"])
        app.follow_log(running)
        select_job(app, done.key)  # the cursor on the other, finished job
        await pilot.press("k")
        await wait_for(pilot, lambda: shown(app, "ConfirmDialog"), what="the confirmation")
        question = str(app.screen.query_one("#confirm-question").render())
        assert running.id in question and "srv1" in question and "running now" in question, question
        await pilot.press("tab", "enter")
        await wait_for(pilot, lambda: any(m.startswith(f"stopped {running.id} on srv1") for m in notifications(app)),
                       what="the stop")
        assert app.cluster.jobs[done.key].state == "finished"
        app.jobs_table.focus()
        await pilot.press("home")
        assert app.jobs_table.cursor_row == 0
        await pilot.press("end")  # the newest job
        assert app.jobs_table.selected_job == running.key

        app.follow_log(app.cluster.jobs[done.key])
        await pilot.press("k")
        await wait_for(pilot, lambda: any(f"job {done.id} on srv2 is not running: finished, exit 0; nothing to stop" in m
                                          for m in notifications(app)), what="the already-finished message")
        assert type(app.screen).__name__ != "ConfirmDialog"
        assert not any(m.startswith(f"stopped {done.id}") for m in notifications(app))


async def test_a_run_on_a_fresh_server_offers_to_push_what_the_job_reads(console_app: EpochConsole, sshd_pair) -> None:
    """`t` on a server that has nothing yet: before starting, the console names what the job reads and the
    server lacks (the rule dispatch pushes by), pushes it on confirmation, then runs."""
    from tests.test_board import write_regression_batch

    app = console_app
    write_regression_batch(app.workspace, "DNN", "KR_DNN_1_1", ["PF1"])
    srv1 = sshd_pair.servers[0]
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: all_online(app), what="servers online")
        select_server(app, "srv1")
        await pilot.press("t")
        await wait_for(pilot, lambda: shown(app, "BatchPicker"), what="the batch picker")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: shown(app, "OptionsForm"), what="the training options")
        app.screen.query_one("#f-max_epochs").value = "1"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: shown(app, "ConfirmDialog"), timeout=30, what="the push offer")
        question = str(app.screen.query_one("#confirm-question").render())
        assert "srv1 lacks what train-regression-batch reads" in question and "KR_DNN_1_1.json" in question, question
        assert not (srv1.root / "config" / "epoch.json").exists()
        await pilot.press("tab", "enter")
        await wait_for(pilot, lambda: any(j.command.startswith("train-regression-batch") and j.server == "srv1"
                                          for j in app.cluster.jobs.values()), timeout=60, what="the job on srv1")
        assert any(m.startswith("pushed ") and "to srv1 for train-regression-batch" in m for m in notifications(app))
        epoch = app.workspace.epoch()
        assert (srv1.root / epoch.relative(epoch.regression_batch_file("DNN", "KR_DNN_1_1"))).is_file()
        assert (srv1.root / "candlesticks" / "bundle.json").is_file()
        job = next(j for j in app.cluster.jobs.values() if j.server == "srv1")
        await app.cluster.stop_job("srv1", job.id)
