"""Training histories as TensorBoard runs and CSV, written by training and pulled with the trained regressions."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

from epoch_builder.regressions.batch import train_batch
from epoch_builder.regressions.options import TrainingOptions
from epoch_builder.workspace import TENSORBOARD_EVENTS_FILE, Workspace
from remote import sync
from remote.board import REGRESSIONS, BatchSpec
from remote.config import ServerConfig
from remote.hosts import LocalHost
from tests.test_regressions_training import quiet, training_config, write_batch


def read_events(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of an events file, by tag: (step, value), in file order."""
    import tensorflow as tf

    scalars: dict[str, list[tuple[int, float]]] = {}
    for event in tf.compat.v1.train.summary_iterator(str(path)):
        for value in event.summary.value:
            number = float(tf.make_ndarray(value.tensor)) if value.HasField("tensor") else value.simple_value
            scalars.setdefault(value.tag, []).append((event.step, number))
    return scalars


def _train(ws: Workspace, epochs: int = 3) -> dict:
    batch = write_batch(ws, "DNN", "KR_TB", [training_config(ws, "TB", "KR_DNN_S2")])
    return train_batch(ws, "DNN", batch, TrainingOptions(max_epochs=epochs), log=quiet)[0]


def test_each_regression_writes_one_scalar_per_epoch_and_key_and_a_csv(small_epoch: Workspace) -> None:
    cert = _train(small_epoch)
    history = cert["training_history"]
    paths = small_epoch.epoch()
    run = paths.regression_tensorboard_dir("TB")
    assert [p.name for p in run.iterdir()] == [TENSORBOARD_EVENTS_FILE]  # one file, no scratch left

    scalars = read_events(paths.regression_events_file("TB"))
    assert set(scalars) == set(history) and {"loss", "val_loss"} <= set(scalars)
    for key, values in history.items():
        assert [step for step, _ in scalars[key]] == list(range(1, len(values) + 1))  # one value per epoch
        assert [v for _, v in scalars[key]] == [float(np.float32(x)) for x in values]  # float32 scalars

    with open(paths.regression_history_file("TB"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(row["epoch"]) for row in rows] == list(range(1, cert["epochs"] + 1))
    for key, values in history.items():
        assert [float(row[key]) for row in rows] == values  # exact: repr of each float

    # A rerun of the batch finds the model done: the files are untouched, no second run appears.
    before = {p: p.stat().st_mtime_ns for p in (paths.regression_events_file("TB"), paths.regression_history_file("TB"))}
    write_batch(small_epoch, "DNN", "KR_TB", [training_config(small_epoch, "TB", "KR_DNN_S2")])
    train_batch(small_epoch, "DNN", "KR_TB", TrainingOptions(max_epochs=3), log=quiet)
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert len(list(run.iterdir())) == 1


async def test_trained_regressions_pull_brings_the_histories_and_a_batch_pulls_only_its_own(
        small_epoch: Workspace, tmp_path: Path) -> None:
    _train(small_epoch)
    epoch_id = small_epoch.active_epoch_id()
    spec = BatchSpec(REGRESSIONS, "KR_TB", "DNN", ("TB",))
    assert spec.pull_paths(epoch_id) == [f"{epoch_id}/regressions/TB", f"{epoch_id}/tensorboard/TB",
                                         f"{epoch_id}/regression_batched_certificates/KR_TB.json"]

    # The trained workspace plays the server; a fresh one with the same config pulls from it.
    host = LocalHost(ServerConfig(name="here", root=str(small_epoch.root), python=sys.executable, local=True))
    await host.connect()
    local = tmp_path / "controller"
    (local / "config").mkdir(parents=True)
    (local / "config" / "epoch.json").write_bytes((small_epoch.root / "config" / "epoch.json").read_bytes())
    report = await sync.pull(host, "trained-regressions", local_root=local)
    assert not report.refused
    pulled = Workspace(local).epoch_paths(epoch_id)
    theirs = small_epoch.epoch()
    for name in ("regression_events_file", "regression_history_file"):
        assert getattr(pulled, name)("TB").read_bytes() == getattr(theirs, name)("TB").read_bytes()

    # A batch's own pull: only its regressions, tensorboard runs included; another batch's run stays behind.
    other = theirs.regression_tensorboard_dir("OTHER")
    other.mkdir(parents=True)
    (other / TENSORBOARD_EVENTS_FILE).write_bytes(b"not this batch's")
    batch_local = tmp_path / "batch-controller"
    (batch_local / "config").mkdir(parents=True)
    (batch_local / "config" / "epoch.json").write_bytes((small_epoch.root / "config" / "epoch.json").read_bytes())
    await sync.pull(host, spec.pull_paths(epoch_id), local_root=batch_local)
    batch_pulled = Workspace(batch_local).epoch_paths(epoch_id)
    assert batch_pulled.regression_events_file("TB").exists()
    assert not batch_pulled.regression_tensorboard_dir("OTHER").exists()
    await host.close()
