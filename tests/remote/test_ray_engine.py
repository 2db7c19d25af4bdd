"""dispatch --engine ray on a real multi-node Ray cluster on this machine (a head and two worker nodes of one
CPU each, ``ray.cluster_utils.Cluster``): results equal a local run, a worker node lost mid-batch, a dispatcher
killed -9 and restarted, and an answer that names a path outside its batch."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from epoch_builder.workspace import Workspace
from remote import board as boards
from tests.test_board import write_regression_batch
from tests.test_board_cluster import deterministic, wait_until
from tests.test_build_export import _sweep_all, initialize

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install '.[ray]')")
from remote import ray_engine  # noqa: E402

pytestmark = [pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
BATCHES = {f"KR_DNN_{n}_2": [f"RY{n}{m}" for m in range(2)] for n in (1, 2)}
MAX_EPOCHS = 6


@pytest.fixture(scope="module")
def ray_cluster():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace=ray_engine.NAMESPACE, log_to_driver=False)
    yield cluster, workers
    ray.shutdown()
    cluster.shutdown()


def start_dispatcher(ws: Workspace, address: str, stage: str, log: Path, *extra: str) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "remote.cli", "--workspace", str(ws.root), "dispatch", "--engine", "ray",
             "--address", address, "--stage", stage, "--interval", "0.5", *extra],
            stdout=out, stderr=subprocess.STDOUT, cwd=REPO)


def board_of(ws: Workspace, stages: tuple[str, ...]) -> boards.Board:
    return asyncio.run(boards.build_board(ws.root, [], stages=stages))


async def first_lines(job_id: str, count: int) -> list[str]:
    lines: list[str] = []
    async for _offset, line in ray_engine.follow_log(job_id):
        lines.append(line)
        if len(lines) == count:
            break
    return lines


def store(ws: Workspace):
    return ray.get_actor(ray_engine.store_name(ws.active_epoch_id()), namespace=ray_engine.NAMESPACE)


def starts(ws: Workspace, key: str) -> list[str]:
    """The nodes the batch's runs started on ([] before the dispatcher made its checkpoint store)."""
    try:
        return ray.get(store(ws).starts_of.remote(key))
    except ValueError:
        return []


def has_checkpoint(ws: Workspace, key: str) -> bool:
    try:
        return bool(ray.get(store(ws).checkpoint.remote(key)))
    except ValueError:
        return False


def spec_of(ws: Workspace, stage: str, name: str) -> boards.BatchSpec:
    return next(s for s in boards.stage_batches(ws.root, ws.active_epoch_id(), stage) if s.name == name)


def test_the_sweep_through_ray_equals_a_local_sweep(trained: Workspace, ray_cluster, tmp_path: Path) -> None:
    cluster, _ = ray_cluster
    assert initialize(trained) == 0
    reference = Workspace(tmp_path / "reference")
    shutil.copytree(trained.root, reference.root)
    _sweep_all(reference)
    log = tmp_path / "dispatch.log"
    dispatcher = start_dispatcher(trained, cluster.address, "profitable-configs", log, "--json")
    assert dispatcher.wait(240) == 0, log.read_text()[-3000:]
    board = json.loads(log.read_text().splitlines()[-1])
    batches = sorted(reference.epoch().configs_dir.glob("_SMALL_*.json"))
    assert [(b["batch"], b["state"]) for b in board["batches"]] == [(b.stem, "done") for b in batches]
    assert board["next"]["step"] == "build prediction models"
    for batch in batches:
        ours = trained.epoch().profitable_configs_file(batch.stem)
        assert json.loads(ours.read_text()) == json.loads(reference.epoch().profitable_configs_file(batch.stem).read_text())
    text = log.read_text()
    assert text.count("submitted to ray") == len(batches) and "refused" not in text
    assert ray.get(store(trained).node.remote()) == cluster.head_node.node_id  # it must outlive any worker node
    # the console's log view of a Ray row whose runner is gone says so (and never asks a server)
    from console.cluster import Cluster as ConsoleCluster

    shown: list[str] = []
    spec = spec_of(trained, "profitable-configs", batches[0].stem)
    asyncio.run(ConsoleCluster.from_config(None, trained.root).follow_log(
        "ray:1a2b3c4d", ray_engine.actor_name(trained.active_epoch_id(), spec), shown.extend))
    assert shown == ["--- no Ray runner of this batch now (it is done, or not started yet) ---"]
    for batch in batches:  # each ran once, and the runners are gone
        assert len(starts(trained, f"profitable-configs:{batch.stem}")) == 1
        with pytest.raises(ValueError):
            ray.get_actor(ray_engine.actor_name(trained.active_epoch_id(), spec_of(trained, "profitable-configs", batch.stem)),
                          namespace=ray_engine.NAMESPACE)


def test_regressions_survive_a_lost_node_and_a_killed_dispatcher(small_epoch: Workspace, ray_cluster,
                                                                  tmp_path: Path) -> None:
    """One node is removed while its batch trains and the dispatcher is killed -9 at the same moment; a new
    dispatcher adopts both runners: the lost batch resumes on the other node from its shipped checkpoints
    (two starts), the other is never started again (one start), and every certificate and weight equals an
    uninterrupted local run's."""
    from epoch_builder.regressions.inference import load_regression
    from epoch_builder.regressions.batch import train_batch
    from epoch_builder.regressions.options import TrainingOptions

    cluster, workers = ray_cluster
    for name, ids in BATCHES.items():
        write_regression_batch(small_epoch, "DNN", name, ids)
    reference = Workspace(tmp_path / "reference")
    shutil.copytree(small_epoch.root, reference.root)
    log = tmp_path / "dispatch.log"
    first = start_dispatcher(small_epoch, cluster.address, "regressions", log, "--max-epochs", str(MAX_EPOCHS))
    try:
        keys = [f"regressions:{name}" for name in BATCHES]
        wait_until(lambda: all(len(starts(small_epoch, k)) == 1 for k in keys), 120, "both batches started")
        wait_until(lambda: any(has_checkpoint(small_epoch, k) for k in keys), 120, "a checkpoint shipped back")
        victim_key = next(k for k in keys if has_checkpoint(small_epoch, k))
        victim_node = starts(small_epoch, victim_key)[0]
        # the console's log view of a Ray row: the runner serves its job's log, line by line
        lines = asyncio.run(first_lines(f"{small_epoch.active_epoch_id()}/{victim_key}", 3))
        assert any(victim_key.split(":", 1)[1] in line for line in lines), lines
        assert boards.read_ray_address(small_epoch.root, small_epoch.active_epoch_id())
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        node = next(w for w in workers if w.node_id == victim_node)
        cluster.remove_node(node)
        workers.remove(node)
        second = start_dispatcher(small_epoch, cluster.address, "regressions", log, "--max-epochs", str(MAX_EPOCHS))
        assert second.wait(300) == 0, log.read_text()[-4000:]
    finally:
        for process in (first,):
            if process.poll() is None:
                process.kill()
        workers.append(cluster.add_node(num_cpus=1))  # the next test gets two workers again
    runs = {k: starts(small_epoch, k) for k in keys}
    assert len(runs[victim_key]) == 2 and runs[victim_key][1] != victim_node, runs
    assert [len(v) for k, v in runs.items() if k != victim_key] == [1], runs  # adopted, not run again
    text = log.read_text()
    assert text.count("submitted to ray") == 2, text[-3000:]  # once per batch, in all
    victim_name = victim_key.split(":", 1)[1]
    resumed = [line for line in text.splitlines() if line.startswith(f"{victim_name}: run 2 on ray:")]
    assert resumed and "resumed from 0 " not in resumed[0], text[-3000:]  # from the shipped checkpoint

    board = board_of(small_epoch, ("regressions",))
    assert [(r.spec.name, r.state) for r in board.rows] == [(n, boards.DONE) for n in sorted(BATCHES)]
    for name in BATCHES:
        train_batch(reference, "DNN", name, TrainingOptions(max_epochs=MAX_EPOCHS), log=lambda *_: None)
    for ids in BATCHES.values():
        for model_id in ids:
            ours = json.loads(small_epoch.epoch().regression_certificate_file(model_id).read_text())
            theirs = json.loads(reference.epoch().regression_certificate_file(model_id).read_text())
            assert deterministic(ours) == deterministic(theirs), model_id
            weights = load_regression(small_epoch.epoch().regression_dir(model_id)).model.get_weights()
            expected = load_regression(reference.epoch().regression_dir(model_id)).model.get_weights()
            assert all(np.array_equal(a, b) for a, b in zip(weights, expected)), model_id
    assert not (small_epoch.epoch().dir / ".regression_checkpoints").exists()


def test_an_answer_outside_the_batch_is_refused(small_epoch: Workspace, tmp_path: Path) -> None:
    """What a runner hands back is untrusted, like a pull: only the batch's own result files are written."""
    epoch_id = small_epoch.active_epoch_id()
    spec = boards.BatchSpec(boards.PROFITABLE_CONFIGS, "_SMALL_1_3", None)
    allowed = spec.pull_paths(epoch_id)
    cluster_file = small_epoch.root / "config" / "cluster.json"
    before = {p: p.read_bytes() for p in (small_epoch.epoch_config_file,)}
    answer = {
        allowed[0]: [b"[]", 1_700_000_000_000_000_000],
        "config/cluster.json": [b'{"servers": []}', 1],
        "config/epoch.json": [b"{}", 1],
        f"{epoch_id}/prediction_models/profitable_configs/_SMALL_2_3.json": [b"[]", 1],  # another batch's
        "../outside.json": [b"x", 1],
        "/etc/passwd": [b"x", 1],
        f"{allowed[0]}/../../../config/epoch.json": [b"{}", 1],
        f"{epoch_id}/prediction_models/profitable_configs/_SMALL_1_3.json\n": [b"x", 1],
        allowed[0] + ".extra": [b"x", 1],
    }
    committed, refused = ray_engine.commit_answer(small_epoch.root, allowed, answer)
    assert committed == allowed
    assert (small_epoch.root / allowed[0]).read_bytes() == b"[]"
    assert len(refused) == len(answer) - 1
    assert not cluster_file.exists() and not (small_epoch.root.parent / "outside.json").exists()
    assert all(p.read_bytes() == data for p, data in before.items())
    assert not (small_epoch.epoch().profitable_configs_dir / "_SMALL_2_3.json").exists()
    # malformed entries and a non-map answer
    committed, refused = ray_engine.commit_answer(small_epoch.root, allowed, {allowed[0]: ["text", 1]})
    assert committed == [] and refused == [allowed[0]]
    committed, refused = ray_engine.commit_answer(small_epoch.root, allowed, {allowed[0]: [b"[]", -1]})
    assert committed == [] and refused == [allowed[0]]
    assert ray_engine.commit_answer(small_epoch.root, allowed, ["not", "a", "map"])[0] == []
    assert not any((small_epoch.root / ".sync-staging").glob("*"))  # no staging directory left behind


def test_the_board_shows_ray_rows(small_epoch: Workspace) -> None:
    """The states a Ray dispatcher records appear on the board like an SSH server's."""
    for name, ids in BATCHES.items():
        write_regression_batch(small_epoch, "DNN", name, ids)
    epoch_id = small_epoch.active_epoch_id()
    boards.write_ray_rows(small_epoch.root, epoch_id, {
        "regressions:KR_DNN_1_2": {"state": boards.RUNNING, "host": "ray:1a2b3c4d", "done": 1, "total": 2, "eta_s": 30,
                                   "job_id": f"{epoch_id}/regressions:KR_DNN_1_2"},
        "regressions:KR_DNN_2_2": {"state": boards.FAILED, "host": "ray:5e6f7a8b", "exit_code": 1,
                                   "log_tail": ["Traceback", "MemoryError"]},
    })
    board = board_of(small_epoch, ("regressions",))
    rows = {r.spec.name: r for r in board.rows}
    assert rows["KR_DNN_1_2"].label == "running on ray:1a2b3c4d 1/2 ETA 0m30s"
    assert rows["KR_DNN_2_2"].label == "failed on ray:5e6f7a8b (exit 1)"
    assert rows["KR_DNN_2_2"].log_tail == ["Traceback", "MemoryError"]
    text = boards.format_board(board, small_epoch.root)
    assert "ray:1a2b3c4d" in text and "MemoryError" in text


def test_ray_rows_are_told_apart_from_servers() -> None:
    assert [ray_engine.is_ray_host(h) for h in ("ray", "ray:1a2b3c4d", "ray (waiting for a node)", "ray1", "rayon",
                                                "srv1", None)] == [True, True, True, False, False, False, False]


def test_each_stage_declares_its_resources() -> None:
    """What a batch asks Ray for (no GPU here: the request is what can be checked)."""
    training = boards.BatchSpec(boards.REGRESSIONS, "KR_DNN_1_2", "DNN", ("A", "B"))
    sweep = boards.BatchSpec(boards.PROFITABLE_CONFIGS, "_E_1_3", None)
    assert ray_engine.batch_resources(training, None, 0.25) == {"num_cpus": 1.0, "num_gpus": 0.25}  # 4 share a GPU
    assert ray_engine.batch_resources(training, 4.0, 1.0) == {"num_cpus": 4.0, "num_gpus": 1.0}
    assert ray_engine.batch_resources(sweep, 8.0, 0.5) == {"num_cpus": 8.0, "num_gpus": 0.0}  # the sweep: CPUs only


def test_cost_order_gives_gpus_to_the_recurrent_families_and_submits_the_longest_first(small_epoch) -> None:
    from remote.dispatch import DispatchOptions
    from tests.test_board import write_regression_batch

    lstm = boards.BatchSpec(boards.REGRESSIONS, "KR_LSTM_1_9", "LSTM", ("A",))
    dnn = boards.BatchSpec(boards.REGRESSIONS, "KR_DNN_1_2", "DNN", ("B",))
    assert ray_engine.batch_resources(lstm, None, 1.0, ray_engine.GPU_FAMILIES) == {"num_cpus": 1.0, "num_gpus": 1.0}
    assert ray_engine.batch_resources(dnn, None, 1.0, ray_engine.GPU_FAMILIES) == {"num_cpus": 1.0, "num_gpus": 0.0}
    write_regression_batch(small_epoch, "DNN", "KR_DNN_1_2", ["S0"])
    write_regression_batch(small_epoch, "DNN", "KR_DNN_2_2", ["S1", "S2", "S3"])
    specs = boards.regression_batches(small_epoch.root, "_SMALL")
    cost = ray_engine.RayDispatcher(small_epoch.root, DispatchOptions(stage="regressions", engine="ray", gpus_per_batch=1))
    assert [s.name for s in cost._in_order(specs)] == ["KR_DNN_2_2", "KR_DNN_1_2"]  # 3 models before 1
    assert cost.gpu_families == ray_engine.GPU_FAMILIES
    listed = ray_engine.RayDispatcher(small_epoch.root, DispatchOptions(stage="regressions", engine="ray", order="file"))
    assert [s.name for s in listed._in_order(specs)] == ["KR_DNN_1_2", "KR_DNN_2_2"] and listed.gpu_families is None


def test_engines_are_one_list() -> None:
    from remote.board_cli import ENGINES
    from remote.dispatch import ENGINES as CHECKED

    assert ENGINES == CHECKED


def test_ray_options_are_checked_before_anything_runs(small_epoch: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    from remote.cli import main

    assert main(["--workspace", str(small_epoch.root), "dispatch", "--engine", "ray", "--stage", "regressions",
                 "--gpus-per-batch", "-1"]) == 1
    assert "--gpus-per-batch -1.0 out of range; allowed 0..64" in capsys.readouterr().err
    started = time.monotonic()
    assert main(["--workspace", str(small_epoch.root), "dispatch", "--engine", "ray", "--stage", "regressions",
                 "--max-failures", "0"]) == 1
    assert "--max-failures 0 out of range" in capsys.readouterr().err and time.monotonic() - started < 5


def test_a_dispatch_that_cannot_be_scheduled_says_why_and_gives_up(small_epoch: Workspace, ray_cluster,
                                                                   tmp_path: Path) -> None:
    """A batch no node can hold (4 CPUs; the test cluster's nodes have 1): the dispatcher says what it waits
    for within seconds and gives up with one line after --ray-wait, instead of waiting silently forever; an
    address nobody answers at is given up the same way."""
    cluster, _workers = ray_cluster
    write_regression_batch(small_epoch, "DNN", "KR_DNN_1_1", ["RW0"])
    log = tmp_path / "dispatch.log"
    started = time.monotonic()
    dispatcher = start_dispatcher(small_epoch, cluster.address, "regressions", log, "--cpus-per-batch", "4",
                                  "--ray-wait", "12")
    assert dispatcher.wait(120) == 1, log.read_text()
    assert time.monotonic() - started < 60
    lines = log.read_text().splitlines()
    assert any("KR_DNN_1_1: waiting" in line and "for a node with 4 CPU: no node of the cluster has that much" in line
               for line in lines), lines
    assert lines[-1].startswith("error: dispatch regressions (ray): KR_DNN_1_1 waited ") and lines[-1].endswith(
        "giving up (--ray-wait)"), lines[-1]
    with pytest.raises(ValueError):  # the runner that never started is gone: the next dispatch asks afresh
        ray.get_actor(ray_engine.actor_name(small_epoch.active_epoch_id(), spec_of(small_epoch, "regressions", "KR_DNN_1_1")),
                      namespace=ray_engine.NAMESPACE)

    nobody = start_dispatcher(small_epoch, "127.0.0.1:1", "regressions", tmp_path / "nobody.log", "--ray-wait", "5")
    assert nobody.wait(60) == 1
    last = (tmp_path / "nobody.log").read_text().splitlines()[-1]
    assert last.startswith("error: dispatch regressions (ray): could not connect to the Ray cluster at 127.0.0.1:1 "
                           "and start its checkpoint store in ") and last.endswith(" s; giving up (--ray-wait)"), last
