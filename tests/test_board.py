"""Board derivation on a real workspace and a real LocalHost: batches, states, stage gates, state file."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from epoch_builder.storage import atomic_write_json
from epoch_builder.workspace import Workspace
from remote import board as boards
from remote.config import ServerConfig
from remote.errors import RemoteError
from remote.hosts import LocalHost
from remote import jobs as remote_jobs

sys.path.insert(0, str(Path(__file__).resolve().parent))


def write_regression_batch(ws: Workspace, category: str, name: str, ids: list[str]) -> Path:
    from tests.test_regressions_training import training_config

    path = ws.epoch().regression_training_configs_dir / category / f"{name}.json"
    atomic_write_json(path, {"name": name, "category": category,
                             "configs": [training_config(ws, i, "KR_DNN_S2") for i in ids]}, indent=2)
    return path


def test_a_truncated_or_garbled_result_file_is_not_done(tmp_path: Path) -> None:
    """A pull cut short leaves a damaged file: the batch must be redone, never shown done."""
    epoch = tmp_path / "_E"
    spec = boards.BatchSpec(boards.REGRESSIONS, "KR_DNN_1_2", "DNN", ("A1", "A2"))
    certificates = [{"id": "A1", "epochs": 3}, {"id": "A2", "epochs": 4}]
    for cert in certificates:
        atomic_write_json(epoch / "regressions" / cert["id"] / "certificate.json", cert)
    batched = epoch / "regression_batched_certificates" / "KR_DNN_1_2.json"
    atomic_write_json(batched, certificates)
    assert spec.done_locally(tmp_path, "_E")

    whole = batched.read_bytes()
    batched.write_bytes(whole[: len(whole) // 2])  # truncated
    assert not spec.done_locally(tmp_path, "_E")
    for damaged in (b"\x00" * len(whole), b'{"id": "A1"}', b'[{"id": "A1"}]', b'[{"id": "A2"}, {"id": "A1"}]',
                    b'[{"id": "A1"}, {"id": "A2"}, {"id": "A3"}]', b'["A1", "A2"]'):
        batched.write_bytes(damaged)  # garbled, not a list, a model missing, out of order, one too many, not objects
        assert not spec.done_locally(tmp_path, "_E"), damaged
    atomic_write_json(batched, certificates)
    assert spec.done_locally(tmp_path, "_E")
    certificate = epoch / "regressions" / "A2" / "certificate.json"
    certificate.write_text('{"id": "A2", "epo')  # one model's certificate truncated
    assert not spec.done_locally(tmp_path, "_E")
    certificate.write_text('{"id": "A1"}')  # another model's certificate
    assert not spec.done_locally(tmp_path, "_E")

    configs = boards.BatchSpec(boards.PROFITABLE_CONFIGS, "B_1", None)
    profitable = epoch / "prediction_models" / "profitable_configs" / "B_1.json"
    atomic_write_json(profitable, [{"pcr": 1, "msf": 2, "msaf": 3, "ri": 4}])
    assert configs.done_locally(tmp_path, "_E")
    profitable.write_text('[{"pcr": 1, "msf"')
    assert not configs.done_locally(tmp_path, "_E")
    profitable.write_text('{"pcr": 1}')
    assert not configs.done_locally(tmp_path, "_E")
    atomic_write_json(profitable, [])  # no profitable config at all is a result too
    assert configs.done_locally(tmp_path, "_E")


def test_batch_of_job_reads_stage_and_batch_name() -> None:
    assert boards.batch_of_job(["train-regression-batch", "--category", "DNN", "--batch", "KR_DNN_1_2"]) == (
        "regressions", "KR_DNN_1_2")
    assert boards.batch_of_job(["find-profitable-configs", "--batch=prediction_models/configs/B_1.json"]) == (
        "profitable-configs", "B_1")
    assert boards.batch_of_job(["status"]) is None
    assert boards.batch_of_job([]) is None


async def test_board_states_from_workspace_and_job_directories(small_epoch: Workspace, tmp_path: Path) -> None:
    write_regression_batch(small_epoch, "DNN", "KR_DNN_1_2", ["A1", "A2"])
    write_regression_batch(small_epoch, "DNN", "KR_DNN_2_2", ["B1"])
    write_regression_batch(small_epoch, "UNIT_TEST", "UNIT_TEST", ["U"])  # never dispatched
    host = LocalHost(ServerConfig(name="here", root=str(tmp_path / "host"), python=sys.executable, local=True))
    await host.connect()
    board = await boards.build_board(small_epoch.root, [host])
    assert [(r.spec.name, r.state) for r in board.rows] == [("KR_DNN_1_2", "pending"), ("KR_DNN_2_2", "pending")]
    assert board.rows[0].spec.model_ids == ("A1", "A2")
    assert board.next_step(small_epoch.root)["step"] == "train every regression batch"

    # A finished batch: certificates + batched certificate present locally -> done.
    epoch = small_epoch.epoch()
    for model_id in ("A1", "A2"):
        atomic_write_json(epoch.regressions_dir / model_id / "certificate.json", {"id": model_id})
    atomic_write_json(epoch.regression_batched_certificates_dir / "KR_DNN_1_2.json", [{"id": "A1"}, {"id": "A2"}])
    # A failed job of the other batch on the host (exit 3) -> failed, with its log tail and a failure count.
    job = await remote_jobs.start_job(host, ["no-such-subcommand-train", "--batch", "x"])  # not a batch job: ignored
    failing = await remote_jobs.start_job(host, ["train-regression-batch", "--category", "DNN", "--batch", "KR_DNN_2_2",
                                    "--max-epochs", "0"], force=True)
    for _ in range(300):
        if (await remote_jobs.job_info(host, failing.job_id)).state != "running" and (await remote_jobs.job_info(host, job.job_id)).state != "running":
            break
        import asyncio

        await asyncio.sleep(0.1)
    board = await boards.build_board(small_epoch.root, [host])
    rows = {r.spec.name: r for r in board.rows}
    assert rows["KR_DNN_1_2"].state == "done"
    failed = rows["KR_DNN_2_2"]
    assert (failed.state, failed.host, failed.exit_code, failed.failures) == ("failed", "here", 2, {"here": 1})
    assert any("--max-epochs 0" in line for line in failed.log_tail), failed.log_tail
    assert board.totals()["regressions/DNN"] == {"batches": 2, "done": 1, "failed": 1}
    text = boards.format_board(board, small_epoch.root)
    assert "KR_DNN_2_2  failed on here (exit 2)" in text and "next: train every regression batch" in text

    # Stage gates: all regression batches done -> rank + initialize; config batches -> dispatch; then build.
    for model_id in ("B1",):
        atomic_write_json(epoch.regressions_dir / model_id / "certificate.json", {"id": model_id})
    atomic_write_json(epoch.regression_batched_certificates_dir / "KR_DNN_2_2.json", [{"id": "B1"}])
    board = await boards.build_board(small_epoch.root, [host], details=False)
    step = board.next_step(small_epoch.root)
    assert step["step"] == "rank regressions and initialize prediction models"
    import shlex

    from epoch_builder.cli import build_parser

    for command in step["command"].split("&&"):  # the suggested commands are valid as given
        argv = shlex.split(command)
        args = build_parser().parse_args(argv[1:])
        if argv[1] == "initialize-prediction-models":
            assert args.top >= 16 and args.by, "at least 16 regressions, and --top needs --by"
    atomic_write_json(epoch.configs_dir / "B_1.json", {"configs": []})
    board = await boards.build_board(small_epoch.root, [host], details=False)
    assert board.next_step(small_epoch.root)["command"] == "epoch-cluster dispatch --stage profitable-configs"
    atomic_write_json(epoch.profitable_configs_dir / "B_1.json", [])
    board = await boards.build_board(small_epoch.root, [host], details=False)
    assert board.next_step(small_epoch.root)["step"] == "build prediction models"
    await host.close()


async def test_a_job_of_another_epoch_is_not_this_epochs_batch(small_epoch: Workspace, tmp_path: Path) -> None:
    """Batch names repeat from epoch to epoch: a host's job of an older epoch must not count."""
    import asyncio

    write_regression_batch(small_epoch, "DNN", "KR_DNN_1_2", ["A1"])
    root = tmp_path / "host"
    host = LocalHost(ServerConfig(name="here", root=str(root), python=sys.executable, local=True))
    await host.connect()
    argv = ["train-regression-batch", "--category", "DNN", "--batch", "KR_DNN_1_2", "--max-epochs", "0"]

    async def run_job(epoch_id: str) -> None:
        atomic_write_json(root / "config" / "epoch.json", {"id": epoch_id})
        job = await remote_jobs.start_job(host, argv, force=True)
        for _ in range(300):
            if (await remote_jobs.job_info(host, job.job_id)).state != "running":
                break
            await asyncio.sleep(0.1)
        assert (await remote_jobs.job_info(host, job.job_id)).epoch == epoch_id

    await run_job("_OLDER")
    board = await boards.build_board(small_epoch.root, [host])
    assert (board.rows[0].state, board.rows[0].failures, board.rows[0].jobs) == ("pending", {}, [])
    await run_job(small_epoch.epoch().id)
    board = await boards.build_board(small_epoch.root, [host])
    assert (board.rows[0].state, board.rows[0].failures, len(board.rows[0].jobs)) == ("failed", {"here": 1}, 1)
    await host.close()


def test_state_file_records_each_failed_job_once_and_survives_reload(small_epoch: Workspace) -> None:
    epoch_id = small_epoch.epoch().id
    state = boards.BoardStateFile(small_epoch.root, epoch_id)
    assert state.record_failure("regressions:B", "h1", "job-1")
    assert not state.record_failure("regressions:B", "h1", "job-1")
    state.assign("regressions:C", "h2", "job-9", pushed=True)
    again = boards.BoardStateFile(small_epoch.root, epoch_id)
    assert again.failed_jobs("regressions:B") == {"h1": ["job-1"]}
    assert again.assigned("regressions:C") == {"host": "h2", "job_id": "job-9", "pushed": True}
    again.path.write_text("{not json")
    with pytest.raises(RemoteError, match=r"board state .*delete it"):
        boards.BoardStateFile(small_epoch.root, epoch_id)


def test_unknown_stage_is_refused(small_epoch: Workspace) -> None:
    with pytest.raises(RemoteError, match="allowed: regressions, profitable-configs"):
        boards.stage_batches(small_epoch.root, small_epoch.epoch().id, "build")
    assert json.loads(small_epoch.epoch_config_file.read_text())["id"] == small_epoch.epoch().id


@pytest.mark.parametrize(("option", "value", "message"), [
    ("stage", "training", "--stage 'training' unknown; allowed: regressions, profitable-configs"),
    ("max_failures", 0, "--max-failures 0 out of range; allowed 1..100"),
    ("stall_s", 0.5, "--stall 0.5 out of range; allowed 1..86400 seconds"),
    ("reassign_after_s", float("nan"), "--reassign-after nan out of range"),
    ("workers", 2000, "--workers 2000 out of range; allowed 1..1024"),
])
def test_dispatch_options_name_the_option_and_its_allowed_values(option: str, value: object, message: str) -> None:
    from remote.dispatch import DispatchOptions

    arguments: dict[str, object] = {"stage": "regressions", option: value}
    with pytest.raises(RemoteError) as raised:
        DispatchOptions(**arguments)  # type: ignore[arg-type]
    assert message in str(raised.value)


@pytest.mark.parametrize(("training", "message"), [
    ({"max_epochs": 0}, "--max-epochs 0 out of range; allowed 1..100000"),
    ({"pack": 0}, "--pack 0 out of range; allowed 1..64"),
    ({"processes": 65}, "--processes 65 out of range; allowed 1..64"),
    ({"search": "halving", "first_rung": 0}, "--first-rung 0 out of range; allowed 1..1000"),
])
def test_dispatch_refuses_training_options_as_train_regression_batch_does(training: dict, message: str) -> None:
    """The training options are one object, checked once (epoch_builder.regressions.options): the same line
    from `epoch-cluster dispatch`, the console's forms and the command on the server."""
    from epoch_builder.errors import UsageError
    from epoch_builder.regressions.options import TrainingOptions

    with pytest.raises(UsageError) as raised:
        TrainingOptions(**training)
    assert str(raised.value) == message


def test_a_batch_job_command_carries_the_training_options() -> None:
    from epoch_builder.regressions.options import TrainingOptions
    from remote.board import PROFITABLE_CONFIGS, REGRESSIONS, BatchSpec

    spec = BatchSpec(REGRESSIONS, "KR_DNN_1_2", "DNN")
    assert spec.argv() == ["train-regression-batch", "--category", "DNN", "--batch", "KR_DNN_1_2"]
    training = TrainingOptions(max_epochs=40, fast=True, pack=4, mixed_precision=True, processes=2)
    assert spec.argv(training=training, workers=3) == [
        "train-regression-batch", "--category", "DNN", "--batch", "KR_DNN_1_2", "--max-epochs", "40", "--fast",
        "--pack", "4", "--mixed-precision", "--processes", "2"]
    assert spec.argv(training=TrainingOptions(search="halving", eta=3)) == [
        "train-regression-batch", "--category", "DNN", "--batch", "KR_DNN_1_2", "--search", "halving", "--eta", "3"]
    assert BatchSpec(PROFITABLE_CONFIGS, "_E_1_8", None).argv(training=training, workers=3) == [
        "find-profitable-configs", "--batch", "_E_1_8.json", "--workers", "3"]


async def test_a_moved_batchs_job_is_stopped_even_when_its_id_was_never_known(small_epoch: Workspace,
                                                                              tmp_path: Path) -> None:
    """A server can go away after its job started but before the start answer reached the dispatcher:
    the batch then moved with its failure counted under an "unreachable-..." id. When the server
    answers again, a running job of that batch there (not assigned to it) is the old one: stopped."""
    import asyncio
    import os
    import signal

    from remote.dispatch import UNREACHABLE_JOB, DispatchOptions, Dispatcher

    write_regression_batch(small_epoch, "DNN", "KR_DNN_1_2", ["M0", "M1"])
    host = LocalHost(ServerConfig(name="here", root=str(tmp_path / "host"), python=sys.executable, local=True,
                                  is_cluster=True))
    await host.connect()
    job = await remote_jobs.start_job(host, ["train-regression-batch", "--category", "DNN", "--batch", "KR_DNN_1_2"], force=True)
    os.killpg(job.pid, signal.SIGSTOP)  # it stays "running" without doing anything
    try:
        messages: list[str] = []
        dispatcher = Dispatcher([host], small_epoch.root, DispatchOptions(stage="regressions", interval_s=0.5),
                                log=messages.append)
        key = (await dispatcher.board()).rows[0].spec.key
        dispatcher.state.record_failure(key, "here", f"{UNREACHABLE_JOB}1700000000")
        await dispatcher.tick()
        for _ in range(100):
            if (await remote_jobs.job_info(host, job.job_id)).state != "running":
                break
            await asyncio.sleep(0.1)
        assert (await remote_jobs.job_info(host, job.job_id)).state != "running"
        assert any(f"stopped job {job.job_id} on here" in m for m in messages), messages
    finally:
        try:
            os.killpg(job.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await host.close()


def test_one_dispatcher_per_epoch_and_a_killed_one_is_taken_over(small_epoch: Workspace, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    from remote.dispatch import DispatcherLock

    write_regression_batch(small_epoch, "DNN", "KR_DNN_1_1", ["L1"])
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from remote.dispatch import DispatcherLock\n"
        f"lock = DispatcherLock(Path({str(small_epoch.root)!r}), '_SMALL').__enter__()\n"
        "print('held', flush=True); time.sleep(600)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        # A second dispatcher of the same epoch (a shell here; the console's auto-dispatch runs the same code).
        second = subprocess.run([sys.executable, "-m", "remote.cli", "--workspace", str(small_epoch.root), "dispatch",
                                 "--stage", "regressions"], capture_output=True, text=True, timeout=60)
        assert second.returncode == 1, second.stdout + second.stderr
        assert "epoch _SMALL: another dispatcher is running (host " in second.stderr + second.stdout
        assert f"pid {holder.pid}, since " in second.stderr + second.stdout
        with pytest.raises(RemoteError, match=f"pid {holder.pid}"):
            DispatcherLock(small_epoch.root, "_SMALL").__enter__()
        with DispatcherLock(small_epoch.root, "_OTHER"):  # another epoch is another lock
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    with DispatcherLock(small_epoch.root, "_SMALL") as taken:  # the kernel dropped the dead holder's lock
        assert json.loads(taken.path.read_text())["pid"] == os.getpid()
    with DispatcherLock(small_epoch.root, "_SMALL"):  # and released it on exit
        pass
