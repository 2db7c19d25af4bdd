"""Packed training (several models of a batch in one compiled step) on the bundled sample: complete
certificates, each model's own early stopping, the same seed giving the same models, and a kill -9 in the
middle of a pack resumed to exactly what an uninterrupted packed run gives."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from epoch_builder.errors import UsageError
from epoch_builder.regressions import training
from epoch_builder.regressions.batch import train_batch
from epoch_builder.regressions.options import TrainingOptions
from epoch_builder.workspace import REGRESSION_CHECKPOINTS_DIR as CHECKPOINTS_DIR
from epoch_builder.storage import read_json
from epoch_builder.workspace import Workspace
from tests.test_regressions_training import SECTION3_FIELDS, quiet, training_config, write_batch


def kill_at(command: list[str], marker: str, before: Callable[[int], None] | None = None) -> list[str]:
    """Run ``command``, SIGKILL it at the first stderr line holding ``marker``; returns the lines seen."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seen = []
    try:
        for line in proc.stderr:  # type: ignore[union-attr]
            seen.append(line)
            if marker in line:
                if before is not None:
                    before(proc.pid)
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    return seen


def dnn(ws: Workspace, model_id: str, **overrides) -> dict:
    return training_config(ws, model_id, "KR_DNN_S2", **overrides)


def pack_of_four(ws: Workspace) -> list[dict]:
    """Four DNNs that differ in optimizer, learning rate, loss and metric: one step must serve them all."""
    return [dnn(ws, "P1"), dnn(ws, "P2", optimizer="rmsprop", learning_rate=0.001),
            dnn(ws, "P3", loss="mean_squared_error", metric="mean_absolute_error", learning_rate=0.01),
            dnn(ws, "P4", optimizer="rmsprop", learning_rate=-1)]


def comparable(cert: dict) -> dict:
    """A certificate without its wall-clock fields."""
    return {k: v for k, v in cert.items() if k not in ("training_start", "training_end")}


@pytest.mark.slow
def test_a_pack_trains_each_model_as_its_own_and_the_same_seed_gives_the_same_models(
        small_epoch: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configs = pack_of_four(small_epoch)
    # P5's steps are far too large: its val_loss stops improving at once and, with a patience of 2, it
    # leaves the pack early while the others go on.
    configs.append(dnn(small_epoch, "P5", learning_rate=0.9, optimizer="rmsprop"))
    monkeypatch.setattr(training, "PATIENCE", 2)
    write_batch(small_epoch, "DNN", "KR_PACK", configs)
    reference = Workspace(tmp_path / "again")
    shutil.copytree(small_epoch.root, reference.root)

    lines: list[str] = []
    certificates = train_batch(small_epoch, "DNN", "KR_PACK", TrainingOptions(max_epochs=8, pack=5), log=lines.append)
    assert any("training 5 models together: P1, P2, P3, P4, P5" in line for line in lines)
    assert [c["id"] for c in certificates] == ["P1", "P2", "P3", "P4", "P5"]
    paths = small_epoch.epoch()
    for cert, cfg in zip(certificates, configs):
        assert all(field in cert for field in SECTION3_FIELDS)
        assert cert["training_mode"]["pack_size"] == 5 and cert["training_mode"]["op_determinism"] is True
        assert (cert["learning_rate"], cert["optimizer"], cert["loss"]) == (
            cfg["learning_rate"], cfg["optimizer"], cfg["loss"])
        history = cert["training_history"]
        assert set(history) == {"loss", "val_loss", cfg["metric"], f"val_{cfg['metric']}"}
        assert all(len(values) == cert["epochs"] for values in history.values())
        assert read_json(paths.regression_certificate_file(cert["id"])) == cert
        assert (paths.regressions_dir / cert["id"] / "model.keras").is_file()
        assert paths.regression_history_file(cert["id"]).is_file()
    epochs = {c["id"]: c["epochs"] for c in certificates}
    assert epochs["P5"] < 8 and max(epochs.values()) == 8, epochs  # it stopped while others trained on
    assert all(c["best_epoch"] <= c["epochs"] for c in certificates)
    # Different configurations train differently, even though they shared every batch.
    assert len({json.dumps(c["training_history"]["loss"]) for c in certificates}) == 5
    assert not (paths.dir / CHECKPOINTS_DIR).exists()

    again = train_batch(reference, "DNN", "KR_PACK", TrainingOptions(max_epochs=8, pack=5), log=quiet)
    assert [comparable(c) for c in again] == [comparable(c) for c in certificates]


def test_pack_sizes_are_checked() -> None:
    for bad in (0, -2, 65):
        with pytest.raises(UsageError, match=f"^--pack {bad} out of range; allowed 1..64$"):
            TrainingOptions(pack=bad)


@pytest.mark.slow
def test_kill_9_in_a_pack_resumes_to_the_uninterrupted_packed_result(small_epoch: Workspace, tmp_path: Path) -> None:
    write_batch(small_epoch, "DNN", "KR_PACK", pack_of_four(small_epoch))
    reference = Workspace(tmp_path / "reference")
    shutil.copytree(small_epoch.root, reference.root)
    command = [sys.executable, "-m", "epoch_builder.cli", "train-regression-batch", "--workspace", str(small_epoch.root),
               "--category", "DNN", "--batch", "KR_PACK", "--max-epochs", "8", "--pack", "4"]
    kill_at(command, "P2 epoch 4/8")  # P1 and P2 have their epoch-4 checkpoints, P3 and P4 maybe not yet
    paths = small_epoch.epoch()
    states = {m: read_json(paths.dir / CHECKPOINTS_DIR / m / "state.json")["epoch"] for m in ("P1", "P2", "P3", "P4")}
    assert states["P1"] == states["P2"] == 4 and all(3 <= e <= 4 for e in states.values()), states
    assert not any(paths.regression_certificate_file(m).exists() for m in states)

    lines: list[str] = []
    resumed = train_batch(small_epoch, "DNN", "KR_PACK", TrainingOptions(max_epochs=8, pack=4), log=lines.append)
    for model_id, epoch in states.items():
        assert any(f"{model_id}: resumed at epoch {epoch}" in line for line in lines), lines
    assert [c["resumed_from_epochs"] for c in resumed] == [[states[m]] for m in ("P1", "P2", "P3", "P4")]
    uninterrupted = train_batch(reference, "DNN", "KR_PACK", TrainingOptions(max_epochs=8, pack=4), log=quiet)
    for ours, theirs in zip(resumed, uninterrupted):
        assert ours["training_history"] == theirs["training_history"], ours["id"]
        assert ours["test_evaluation"] == theirs["test_evaluation"] and ours["discovery"] == theirs["discovery"]
        assert ours["epochs"] == theirs["epochs"] == 8


def test_a_packed_model_is_the_model_trained_alone(small_epoch: Workspace, tmp_path: Path) -> None:
    """Packing changes the speed, not the model: same batches, same initial weights, same updates, so the
    weights, val_loss per epoch, test evaluation and discovery equal one-at-a-time training's. (The training
    loss is averaged in float64 here, in float32 by Keras, so it agrees to float32 precision only.)"""
    configs = pack_of_four(small_epoch)[1:3]
    write_batch(small_epoch, "DNN", "KR_PACK", configs)
    alone = Workspace(tmp_path / "alone")
    shutil.copytree(small_epoch.root, alone.root)
    packed = train_batch(small_epoch, "DNN", "KR_PACK", TrainingOptions(max_epochs=3, pack=2), log=quiet)
    single = train_batch(alone, "DNN", "KR_PACK", TrainingOptions(max_epochs=3, pack=1), log=quiet)
    for ours, theirs in zip(packed, single):
        assert ours["training_mode"]["pack_size"] == 2 and theirs["training_mode"]["pack_size"] == 1
        assert ours["training_history"]["val_loss"] == theirs["training_history"]["val_loss"]
        assert ours["training_history"]["loss"] == pytest.approx(theirs["training_history"]["loss"], rel=1e-6)
        assert ours["test_evaluation"] == theirs["test_evaluation"] and ours["discovery"] == theirs["discovery"]
        assert ours["test_ds_evaluation"] == theirs["test_ds_evaluation"]


def test_mixed_precision_trains_packed_and_alone_and_a_checkpoint_keeps_its_mode(small_epoch: Workspace) -> None:
    """--mixed-precision (meant for GPUs; Keras runs it on a CPU too, slowly): float16 compute with loss
    scaling, float32 predictions, certified; the process goes back to float32 for the next batch."""
    import keras

    from epoch_builder.errors import EpochBuilderError
    from epoch_builder.regressions.training import Checkpoint

    write_batch(small_epoch, "DNN", "KR_MIXED", pack_of_four(small_epoch)[:2])
    lines: list[str] = []
    packed = train_batch(small_epoch, "DNN", "KR_MIXED", TrainingOptions(max_epochs=2, pack=2, mixed_precision=True), log=lines.append)
    assert any("mixed_float16 (--mixed-precision)" in line for line in lines)
    write_batch(small_epoch, "DNN", "KR_MIXED_ALONE", [dnn(small_epoch, "M3")])
    alone = train_batch(small_epoch, "DNN", "KR_MIXED_ALONE", TrainingOptions(max_epochs=2, pack=1, mixed_precision=True), log=quiet)
    for cert in (*packed, *alone):
        assert cert["training_mode"]["mixed_precision"] is True
        assert cert["test_evaluation"]["loss"] is not None and all(
            v is not None for v in cert["training_history"]["loss"])
    write_batch(small_epoch, "DNN", "KR_FLOAT", [dnn(small_epoch, "M4")])
    plain = train_batch(small_epoch, "DNN", "KR_FLOAT", TrainingOptions(max_epochs=1), log=quiet)[0]
    assert plain["training_mode"]["mixed_precision"] is False and keras.mixed_precision.global_policy().name == "float32"

    # A checkpoint written in one mode is not resumed in the other (its optimizer holds a loss scale or not).
    state_dir = small_epoch.epoch().dir / CHECKPOINTS_DIR / "M5"
    write_batch(small_epoch, "DNN", "KR_SWITCH", [dnn(small_epoch, "M5")])
    Checkpoint(state_dir).dir.mkdir(parents=True)
    (state_dir / "state.json").write_text(json.dumps({"id": "M5", "epoch": 1, "mixed_precision": True,
                                                       "weights_file": "weights_e1.npz", "history": {}}))
    with pytest.raises(EpochBuilderError, match="checkpoint of M5 was written with --mixed-precision; rerun with it"):
        train_batch(small_epoch, "DNN", "KR_SWITCH", TrainingOptions(max_epochs=2), log=quiet)


@pytest.mark.slow
def test_processes_split_the_batch_and_die_with_a_killed_parent(small_epoch: Workspace, tmp_path: Path) -> None:
    """--processes 2: two spawned training processes, each its share of the batch (in packs); the batch's
    certificates file is written once both are done. A kill -9 of the parent takes the children with it,
    and the rerun resumes every model."""
    import time

    import psutil

    write_batch(small_epoch, "DNN", "KR_PROC", pack_of_four(small_epoch))
    single = Workspace(tmp_path / "single")
    shutil.copytree(small_epoch.root, single.root)
    command = [sys.executable, "-m", "epoch_builder.cli", "train-regression-batch", "--workspace", str(small_epoch.root),
               "--batch", "KR_PROC", "--max-epochs", "25", "--pack", "2", "--processes", "2"]
    children: list[tuple[psutil.Process, str]] = []

    def note_children(pid: int) -> None:  # before the kill: a dead process has no command line
        children.extend((c, " ".join(c.cmdline())) for c in psutil.Process(pid).children(recursive=True))

    seen = kill_at(command, " epoch 2/25 ", before=note_children)  # the children are training: 25 epochs to go
    assert any("4 model(s) in 2 training processes of 1 thread(s) each" in line for line in seen), "".join(seen)
    trainers = [c for c, line in children if "multiprocessing.spawn" in line]  # not the resource tracker
    assert len(trainers) == 2, children
    deadline = time.monotonic() + 30
    while any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in trainers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in trainers), "a trainer outlived its parent"

    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed at epoch" in done.stderr
    certificates = read_json(small_epoch.epoch().batched_certificates_file("KR_PROC"))
    assert [c["id"] for c in certificates] == ["P1", "P2", "P3", "P4"]
    assert all(c["training_mode"]["pack_size"] == 2 for c in certificates)
    # One process with both cores trains the same models (its thread count may change the last bits).
    alone = train_batch(single, "DNN", "KR_PROC", TrainingOptions(max_epochs=25, pack=2), log=quiet)
    for ours, theirs in zip(certificates, alone):
        assert ours["epochs"] == theirs["epochs"]
        assert ours["training_history"]["val_loss"] == pytest.approx(theirs["training_history"]["val_loss"], rel=1e-4)


def test_processes_are_checked() -> None:
    with pytest.raises(UsageError, match="^--processes 0 out of range; allowed 1..64$"):
        TrainingOptions(processes=0)


@pytest.mark.slow
def test_a_pack_on_a_cpu_runs_its_models_ops_side_by_side_and_the_certificate_says_so(
        small_epoch: Workspace, tmp_path: Path) -> None:
    """A packed batch's own process (no pool sizes in its environment) gives each op its share of the
    cores and runs the models' ops side by side; one model at a time keeps TensorFlow's default."""
    from epoch_builder.children import available_cores
    from epoch_builder.regressions.packed import cpu_thread_pools
    from epoch_builder.regressions.runtime import THREAD_POOL_VARIABLES

    assert cpu_thread_pools(8, 2) == (1, 2) and cpu_thread_pools(4, 16) == (4, 16) and cpu_thread_pools(1, 3) == (3, 3)
    write_batch(small_epoch, "DNN", "KR_PACK", [dnn(small_epoch, "P1"), dnn(small_epoch, "P2")])
    write_batch(small_epoch, "DNN", "KR_ALONE", [dnn(small_epoch, "A1")])
    env = {k: v for k, v in os.environ.items() if k not in THREAD_POOL_VARIABLES}
    cores = available_cores()

    def train(batch: str, pack: int) -> str:
        done = subprocess.run([sys.executable, "-m", "epoch_builder.cli", "train-regression-batch", "--workspace",
                               str(small_epoch.root), "--category", "DNN", "--batch", batch, "--max-epochs", "2",
                               "--pack", str(pack)], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stderr

    intra, inter = cpu_thread_pools(2, cores)
    assert f"up to 2 together (--pack 2); CPU: {inter} op(s) side by side, {intra} thread(s) each" in train("KR_PACK", 2)
    paths = small_epoch.epoch()
    for model_id in ("P1", "P2"):
        mode = read_json(paths.regression_certificate_file(model_id))["training_mode"]
        assert mode["threads"] == {"intra_op": intra, "inter_op": inter} and mode["pack_size"] == 2
    train("KR_ALONE", 1)
    alone = read_json(paths.regression_certificate_file("A1"))["training_mode"]
    assert alone["threads"] == {"intra_op": cores, "inter_op": cores} and alone["pack_size"] == 1
