"""Auto-dispatch of a tiny regression grid over 3 real sshd hosts, with a crashed dispatcher, a killed
sshd and a kill -9'd job: every batch ends done exactly once, results pulled, certificates equal to a
single-host run, and the restarted dispatcher adopts the running jobs instead of restarting them."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from epoch_builder.workspace import Workspace
from remote import host_program
from tests.test_board import write_regression_batch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sshd_cluster  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.ssh]

BATCHES = {f"KR_DNN_{n}_4": [f"BD{n}{m}" for m in range(3)] for n in range(1, 5)}
MAX_EPOCHS = 2


def jobs_on(root: Path) -> list[dict]:
    return host_program.cmd_list({"root": str(root)}) if (root / ".jobs").exists() else []


def all_jobs(servers) -> list[tuple[str, dict]]:
    return [(s.name, job) for s in servers for job in jobs_on(s.root)]


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:  # a session that ended meanwhile (or a zombie reaped since)
            pass


def start_dispatcher(config: Path, ws: Workspace, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "remote.cli", "--config", str(config), "--workspace", str(ws.root), "dispatch",
             "--stage", "regressions", "--max-epochs", str(MAX_EPOCHS), "--interval", "0.5"],
            stdout=out, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[1])


def deterministic(cert: dict) -> dict:
    return {k: cert[k] for k in ("id", "epochs", "training_history", "test_evaluation", "discovery")}


@pytest.fixture
def three_hosts(tmp_path: Path):
    if not sshd_cluster.sshd_available():
        pytest.skip("OpenSSH sshd not installed (run `make system-deps`)")
    key = sshd_cluster.UserKey.generate(tmp_path / "client-key")
    cluster = sshd_cluster.SSHDCluster.start(tmp_path / "sshd", count=3, user_key=key)
    yield cluster
    cluster.stop()
    for server in cluster.servers:  # a failed test must not leave detached jobs running
        for job in jobs_on(server.root):
            if job["state"] == "running":
                host_program.cmd_stop({"root": str(server.root), "job_id": job["id"], "grace_s": 1})


@pytest.mark.timeout(300)
def test_dispatch_survives_dispatcher_crash_sshd_kill_and_kill_9(small_epoch: Workspace, three_hosts, tmp_path: Path) -> None:
    for name, ids in BATCHES.items():
        write_regression_batch(small_epoch, "DNN", name, ids)
    reference = Workspace(tmp_path / "reference")
    shutil.copytree(small_epoch.root, reference.root)
    config = tmp_path / "cluster.json"
    config.write_text(json.dumps(three_hosts.config_dict(python=sys.executable)))
    srv1, srv2, srv3 = three_hosts.servers
    log = tmp_path / "dispatch.log"
    dispatcher = start_dispatcher(config, small_epoch, log)
    try:
        # One job per host, never two.
        wait_until(lambda: sum(j["state"] == "running" for _, j in all_jobs(three_hosts.servers)) == 3, 120,
                   "three running jobs")
        assert all(sum(j["state"] == "running" for j in jobs_on(s.root)) == 1 for s in three_hosts.servers)
        # A second dispatcher on the same epoch, even for other servers, is refused naming the first.
        second = subprocess.run(
            [sys.executable, "-m", "remote.cli", "--config", str(config), "--workspace", str(small_epoch.root),
             "dispatch", "--stage", "regressions", "--server", "srv1", "--interval", "0.5"],
            capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[1])
        assert second.returncode == 1 and "another dispatcher is running" in second.stderr, second.stderr
        assert f"pid {dispatcher.pid}" in second.stderr and "Traceback" not in second.stderr

        running_before = {(n, j["id"]) for n, j in all_jobs(three_hosts.servers) if j["state"] == "running"}
        # srv3's sshd dies under the running dispatcher (its job keeps running), then srv1's job is killed -9:
        # the dispatcher retries that batch on srv1 while srv3 is still down.
        srv3_jobs = [j["pid"] for j in jobs_on(srv3.root) if j["state"] == "running"]
        wait_until(lambda: not set(srv3_jobs) & set(srv3.session_pids()), 60, "srv3's job detached from its start call")
        srv3.kill()
        victim = next(j for j in jobs_on(srv1.root) if j["state"] == "running")
        child = json.loads((srv1.root / ".jobs" / victim["id"] / "job.json").read_text())["child_pid"]
        os.kill(child, signal.SIGKILL)
        try:
            wait_until(lambda: len(jobs_on(srv1.root)) == 2, 60, "the retry of the killed batch on srv1")
        except AssertionError:
            dispatcher.send_signal(signal.SIGUSR1)
            time.sleep(2)
            raise AssertionError(log.read_text()[-6000:])

        # The dispatcher is killed -9 and restarts while srv3 is down: the new one takes the lock and adopts,
        # never restarting a batch elsewhere.
        dispatcher.kill()
        dispatcher.wait(10)
        dispatcher = start_dispatcher(config, small_epoch, log)
        time.sleep(4)  # several ticks of the new dispatcher with srv3 unreachable
        for name, job_id in running_before - {("srv1", victim["id"])}:
            server = {"srv2": srv2, "srv3": srv3}[name]
            batch = host_program.cmd_info({"root": str(server.root), "job_id": job_id})["argv"][4]
            same_batch = [j for _, j in all_jobs(three_hosts.servers) if j["argv"][4] == batch]
            assert len(same_batch) == 1, same_batch
        srv3.start()
        assert dispatcher.wait(240) == 0, log.read_text()[-3000:]
    finally:
        if dispatcher.poll() is None:
            dispatcher.kill()
            dispatcher.wait(10)
    text = log.read_text()

    # Every batch done exactly once: one exit-0 job each; the killed batch failed once (-9) and was retried.
    jobs = all_jobs(three_hosts.servers)
    successes = {}
    for name, job in jobs:
        assert job["state"] == "exited", (name, job)
        if job["exit_code"] == 0:
            successes.setdefault(job["argv"][4], []).append(name)
    assert sorted(successes) == sorted(BATCHES) and all(len(v) == 1 for v in successes.values()), successes
    failed = [j for _, j in jobs if j["exit_code"] != 0]
    assert [j["id"] for j in failed] == [victim["id"]] and failed[0]["exit_code"] == -9
    assert len(jobs) == len(BATCHES) + 1, jobs

    # The board says so too (a fresh process, as after a console restart).
    board = json.loads(subprocess.run(
        [sys.executable, "-m", "remote.cli", "--config", str(config), "--workspace", str(small_epoch.root), "--json",
         "board", "--stage", "regressions"], capture_output=True, text=True, check=True).stdout)
    assert [(b["batch"], b["state"]) for b in board["batches"]] == [(n, "done") for n in sorted(BATCHES)], text
    assert board["next"]["step"] == "rank regressions and initialize prediction models"
    assert {b["batch"]: b["failures"] for b in board["batches"]} == {
        n: ({"srv1": 1} if n == victim["argv"][4] else {}) for n in BATCHES}

    # Certificates identical to a single-host run of the same batches.
    from epoch_builder.regressions.inference import load_regression
    from epoch_builder.regressions.batch import train_batch
    from epoch_builder.regressions.options import TrainingOptions

    for name in BATCHES:
        train_batch(reference, "DNN", name, TrainingOptions(max_epochs=MAX_EPOCHS), log=lambda *_: None)
    for ids in BATCHES.values():
        for model_id in ids:
            ours = json.loads((small_epoch.epoch().regressions_dir / model_id / "certificate.json").read_text())
            theirs = json.loads((reference.epoch().regressions_dir / model_id / "certificate.json").read_text())
            assert deterministic(ours) == deterministic(theirs), model_id
            weights = load_regression(small_epoch.epoch().regressions_dir / model_id).model.get_weights()
            expected = load_regression(reference.epoch().regressions_dir / model_id).model.get_weights()
            assert all(np.array_equal(a, b) for a, b in zip(weights, expected)), model_id
    for name in BATCHES:
        assert (small_epoch.epoch().regression_batched_certificates_dir / f"{name}.json").is_file()


def test_dispatch_profitable_configs_matches_a_local_sweep(small_epoch: Workspace, three_hosts, tmp_path: Path) -> None:
    from epoch_builder.prediction.sweep import find_profitable_configs
    from tests.test_sweep import prepare

    batches = prepare(small_epoch, regressions=8, per_model=3, batch_size=300)
    reference = Workspace(tmp_path / "reference")
    shutil.copytree(small_epoch.root, reference.root)
    config = tmp_path / "cluster.json"
    config.write_text(json.dumps(three_hosts.config_dict(python=sys.executable)))
    done = subprocess.run(
        [sys.executable, "-m", "remote.cli", "--config", str(config), "--workspace", str(small_epoch.root), "--json",
         "dispatch", "--stage", "profitable-configs", "--workers", "1", "--interval", "0.5"],
        capture_output=True, text=True, timeout=240, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-3000:]
    board = json.loads(done.stdout)
    assert [(b["batch"], b["state"]) for b in board["batches"]] == [(b.stem, "done") for b in batches]
    assert board["next"]["step"] == "build prediction models"
    hosts_used = {b["host"] for b in board["batches"]}
    assert len(hosts_used) == 3, board["batches"]  # three batches, three idle servers
    for batch in batches:
        find_profitable_configs(reference, batch.name, workers=1, log=lambda *_: None)
        ours = small_epoch.epoch().profitable_configs_dir / batch.name
        assert json.loads(ours.read_text()) == json.loads((reference.epoch().profitable_configs_dir / batch.name).read_text())


async def test_a_stalled_push_is_abandoned_and_retried_later(small_epoch: Workspace, three_hosts) -> None:
    """A server that stops answering mid-push (its sshd frozen, the link still up) holds its host for
    ``stall_s`` only; once it answers again the next push goes through."""
    from remote.board import BatchSpec
    from remote.cluster import Cluster
    from remote.dispatch import DispatchOptions, Dispatcher
    from remote.errors import RemoteError

    write_regression_batch(small_epoch, "DNN", "KR_DNN_1_1", ["ST0"])
    # Keepalive far away: the link stays "up", only the stall watchdog can end the transfer.
    cluster = Cluster(three_hosts.cluster_config(python=sys.executable, keepalive_interval_s=300))
    host = cluster.hosts["srv1"]
    dispatcher = Dispatcher([host], small_epoch.root, DispatchOptions(stage="regressions", stall_s=1.5), log=lambda _m: None)
    spec = BatchSpec("regressions", "KR_DNN_1_1", "DNN", ("ST0",))
    paths = spec.push_paths(dispatcher.epoch_id)
    from remote import sync

    await host.connect()
    frozen = three_hosts.servers[0].session_pids()
    assert frozen
    signal_all(frozen, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(RemoteError, match=r"srv1: push moved nothing for 1.5 s"):
            await dispatcher._transfer(host, "push", lambda progress: sync.push(
                host, paths, local_root=small_epoch.root, progress=progress))
        assert time.monotonic() - started < 8
    finally:
        signal_all(frozen, signal.SIGCONT)
    report = await dispatcher._transfer(host, "push", lambda progress: sync.push(
        host, paths, local_root=small_epoch.root, progress=progress))
    assert (three_hosts.servers[0].root / dispatcher.epoch_id / "regression_training_configs" / "DNN" / "KR_DNN_1_1.json").is_file()
    assert report.files_sent >= 1
    await host.close()


@pytest.mark.timeout(300)
def test_a_batch_moves_off_a_server_that_stays_unreachable(small_epoch: Workspace, three_hosts, tmp_path: Path) -> None:
    """--reassign-after: the batch of a server that stays down is trained elsewhere; when that server
    answers again, its old job (frozen meanwhile) is stopped instead of running on."""
    write_regression_batch(small_epoch, "DNN", "KR_DNN_1_2", ["RA0", "RA1"])
    doc = three_hosts.config_dict(python=sys.executable)
    doc["servers"] = doc["servers"][:2]
    config = tmp_path / "cluster.json"
    config.write_text(json.dumps(doc))
    servers = three_hosts.servers[:2]
    log = tmp_path / "dispatch.log"
    argv = [sys.executable, "-m", "remote.cli", "--config", str(config), "--workspace", str(small_epoch.root), "dispatch",
            "--stage", "regressions", "--max-epochs", str(MAX_EPOCHS), "--interval", "0.5", "--reassign-after", "3"]
    with open(log, "ab") as out:
        dispatcher = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[1])
    try:
        wait_until(lambda: any(j["state"] == "running" for _, j in all_jobs(servers)), 120, "a running job")
        lost_name, first = next((n, j) for n, j in all_jobs(servers) if j["state"] == "running")
        lost = next(s for s in servers if s.name == lost_name)
        other = next(s for s in servers if s is not lost)
        # Until the helper that started it has exited, the job is still a descendant of sshd, and killing
        # the server (sshd and everything forked from it) would kill the job too: wait for it to be detached.
        wait_until(lambda: first["pid"] not in lost.session_pids(), 60, "the job detached from its start call")
        os.killpg(first["pid"], signal.SIGSTOP)  # first: the job there stays alive but makes no progress
        lost.kill()
        frozen = host_program.cmd_info({"root": str(lost.root), "job_id": first["id"]})
        assert frozen["state"] == "running", frozen  # it did not end before it was frozen
        assert dispatcher.wait(240) == 0, log.read_text()[-3000:]
    finally:
        if dispatcher.poll() is None:
            dispatcher.kill()
            dispatcher.wait(10)
    text = log.read_text()
    assert f"KR_DNN_1_2: server {lost_name} unreachable for" in text, text
    [(name, job)] = [(n, j) for n, j in all_jobs(servers) if n == other.name]
    assert job["exit_code"] == 0 and job["argv"][4] == "KR_DNN_1_2"
    for model_id in ("RA0", "RA1"):
        assert (small_epoch.epoch().regressions_dir / model_id / "certificate.json").is_file()

    # The server returns: the next dispatch stops its frozen job of the moved batch and finds all done.
    lost.start()
    status = [sys.executable, "-m", "remote.cli", "--config", str(config), "status", "--server", lost_name]
    wait_until(lambda: subprocess.run(status, capture_output=True, timeout=60).returncode == 0, 60,
               f"{lost_name} to answer again")  # under load its sshd can take a while to accept logins
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert f"stopped job {first['id']} on {lost_name}" in done.stdout, (
            done.stdout, host_program.cmd_info({"root": str(lost.root), "job_id": first["id"]}), text[-3000:])
        stopped = host_program.cmd_info({"root": str(lost.root), "job_id": first["id"]})
        assert stopped["state"] == "exited" and stopped["stopped"], stopped
    finally:
        try:
            os.killpg(first["pid"], signal.SIGCONT)
        except ProcessLookupError:
            pass
    board = json.loads(subprocess.run(
        [sys.executable, "-m", "remote.cli", "--config", str(config), "--workspace", str(small_epoch.root), "--json",
         "board", "--stage", "regressions"], capture_output=True, text=True, check=True).stdout)
    assert [(b["batch"], b["state"], b["failures"]) for b in board["batches"]] == [("KR_DNN_1_2", "done", {lost_name: 1})]


@pytest.mark.parametrize("order", ["cost", "file"])
async def test_cost_aware_dispatch_follows_the_plan_on_servers_of_different_speeds(small_epoch: Workspace,
                                                                                   three_hosts, order: str) -> None:
    """Three real sshd servers calibrated at 1x, 4x and 2x: the biggest batch starts on the fastest, the next on
    the next fastest, the smallest on the slowest (file order would have sent them the other way round), and
    each start is logged with its reason."""
    from epoch_builder.regressions import calibrate
    from remote.cluster import Cluster
    from remote.dispatch import DispatchOptions, Dispatcher

    write_regression_batch(small_epoch, "DNN", "KR_DNN_1_3", ["P0"])
    write_regression_batch(small_epoch, "DNN", "KR_DNN_2_3", ["P1", "P2"])
    write_regression_batch(small_epoch, "DNN", "KR_DNN_3_3", ["P3", "P4", "P5", "P6"])
    for name, speed in {"srv1": 1.0, "srv2": 4.0, "srv3": 2.0}.items():
        calibrate.save_record(small_epoch.root, small_epoch.training_rates_file, name, {
            "rates": {f: r * speed for f, r in calibrate.REFERENCE_RATES.items()}, "measured_at": 1.7e9, "cores": 2,
            "gpus": [], "tensorflow": "2.x", "machine": "x86_64"})
    cluster = Cluster(three_hosts.cluster_config(python=sys.executable))
    messages: list[str] = []
    dispatcher = Dispatcher(list(cluster.hosts.values()), small_epoch.root,
                            DispatchOptions(stage="regressions", interval_s=0.5, order=order), log=messages.append)
    try:
        board = await dispatcher.tick()
        started = {row.spec.name: row.host for row in board.stage_rows("regressions")}
        if order == "cost":
            assert started == {"KR_DNN_3_3": "srv2", "KR_DNN_2_3": "srv3", "KR_DNN_1_3": "srv1"}, messages
            assert any(m.startswith("KR_DNN_3_3 to srv2: ") for m in messages), messages
            why = {row.spec.name: row.to_dict()["reason"] for row in board.stage_rows("regressions")}
            assert all(why[name].startswith(f"{name} to {host}: ") for name, host in started.items()), why
            from remote.board import format_board

            assert "      why: KR_DNN_3_3 to srv2: " in format_board(board, small_epoch.root)
        else:  # the original's order: each free server in the cluster file's order takes the next batch file
            assert started == {"KR_DNN_1_3": "srv1", "KR_DNN_2_3": "srv2", "KR_DNN_3_3": "srv3"}, messages
            assert not any(" to srv" in m for m in messages), messages
            assert all(row.reason is None for row in board.stage_rows("regressions"))
    finally:
        await cluster.close()


async def test_the_dispatcher_follows_the_plan_made_from_rates_measured_on_servers_of_different_cores(
        small_epoch: Workspace, three_hosts, tmp_path: Path) -> None:
    """The same three batches on three sshd servers, srv1's jobs and calibration bound to one core ("cpus"): the
    rates are measured there for real (epoch-cluster calibrate), and the real dispatcher's first starts are the
    first wave of the plan those rates make (remote.schedule.simulate, cost-aware)."""
    from epoch_builder.regressions import calibrate
    from epoch_builder.regressions.plan import epoch_work
    from remote import schedule
    from remote.cluster import Cluster
    from remote.config import parse_cluster_config
    from remote.dispatch import DispatchOptions, Dispatcher

    write_regression_batch(small_epoch, "DNN", "KR_DNN_1_3", ["Q0"])
    write_regression_batch(small_epoch, "DNN", "KR_DNN_2_3", ["Q1", "Q2"])
    write_regression_batch(small_epoch, "DNN", "KR_DNN_3_3", ["Q3", "Q4", "Q5", "Q6"])
    doc = three_hosts.config_dict(python=sys.executable)
    doc["servers"][0]["cpus"] = [0]
    config = tmp_path / "cluster.json"
    config.write_text(json.dumps(doc))
    measured = subprocess.run([sys.executable, "-m", "remote.cli", "--config", str(config), "--workspace",
                               str(small_epoch.root), "calibrate", "--work", "0.2", "--family", "DNN"],
                              capture_output=True, text=True, timeout=300)
    assert measured.returncode == 0, measured.stderr
    records = calibrate.read_records(small_epoch.training_rates_file)
    assert records["srv1"]["cores"] == 1
    servers = [schedule.Server(name, calibrate.rates_of(records, name)[0]) for name in ("srv1", "srv2", "srv3")]
    batches = [schedule.Batch(b.name, b.family, b.flop) for b in epoch_work(small_epoch).batches]
    plan = schedule.simulate(batches, servers, schedule.COST_AWARE)
    first_wave = {a.batch.name: a.server for a in plan.assignments if a.start == 0}
    cluster = Cluster(parse_cluster_config(doc, config))
    dispatcher = Dispatcher(list(cluster.hosts.values()), small_epoch.root,
                            DispatchOptions(stage="regressions", interval_s=0.5), log=lambda _m: None)
    try:
        board = await dispatcher.tick()
        started = {row.spec.name: row.host for row in board.stage_rows("regressions") if row.host}
        assert started == first_wave, (started, {n: r["rates"] for n, r in records.items()})
    finally:
        await cluster.close()
