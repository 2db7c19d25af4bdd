"""`train-regression-batch`: train every config of a batch (SEMANTICS §3), resumably.

Per config (skipped when ``regressions/<id>/certificate.json`` exists):

* seeded from the epoch seed (Python, NumPy, TensorFlow) with TF op determinism,
  or without it under ``--fast`` (faster, not repeatable; the certificate's
  ``training_mode`` says which, see ``_resume_mode`` for resuming across modes);
* one ``model.fit`` over a tf.data pipeline whose epoch e is a stateless
  shuffle drawn from ``(seed, e)``, with Keras' validation split (the last
  ``validation_split`` of the train windows), batch 512. Drawing the order from
  the epoch number makes a resumed run identical to an uninterrupted one;
* early stopping on val_loss (patience 10, best weights restored), as Keras'
  ``EarlyStopping`` but with its state in the checkpoint;
* after every epoch a checkpoint under ``<epoch>/.regression_checkpoints/<id>/``:
  weights + optimizer variables (``.npz``), best weights, and ``state.json``
  (epoch, history, early-stopping state, op determinism) written last and
  atomically. After a kill -9 the next run resumes from the last completed epoch
  (the same result as an uninterrupted run with op determinism; under ``--fast``
  it completes, but not necessarily with the same numbers);
* then: ``regressions/<id>/model.keras`` (Keras native format; id, description,
  lookback and predictions are in ``certificate.json`` beside it), the history
  as ``regressions/<id>/history.csv`` and as a TensorBoard event file under
  ``tensorboard/<id>/`` (one scalar per history key, step = the 1-based epoch),
  and the certificate, written last (it marks the model done), and the
  checkpoint is removed.

Under ``--search halving`` (``search.py``) a training call goes only as far as the search's rung (a
``Stage``), leaving a model that is not done with its checkpoint for the rung's ranking; a model the search
stops is certified from its checkpoint (``certify_from_checkpoint``); every checkpoint records the search it
was written under and goes on only under it (``check_search``).

The batch's certificates are combined in ``regression_batched_certificates/<batch>.json``.
"""

from __future__ import annotations

import csv
import fcntl
import io
import math
import os
import shutil
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from epoch_builder import events, output
from epoch_builder.discovery import build_discovery
from epoch_builder.errors import EpochBuilderError, UsageError
from epoch_builder.regressions.configs import (
    BATCH_CATEGORIES, DEFAULT_MAX_EPOCHS, MAX_PACK_SIZE, MAX_PROCESSES, UNIT_TEST, category_of, read_batch,
)
from epoch_builder.regressions.datasets import RegressionDatasets, load_datasets
from epoch_builder.regressions.signals import pct_changes
from epoch_builder.storage import atomic_write_json, atomic_write_text, atomic_write_with, read_json
from epoch_builder.workspace import CERTIFICATE_FILE, REGRESSION_CHECKPOINTS_DIR, EpochPaths, Workspace

STAGE = "train-regression-batch"
BATCH_SIZE = 512
PATIENCE = 10
INVERSE_TIME_DECAY = {"initial_learning_rate": 0.005, "decay_steps": 10, "decay_rate": 0.15}
MODEL_FILE = "model.keras"
STATE_FILE = "state.json"
EVENTS_SCRATCH_DIR = ".tensorboard"  # in the model's checkpoint directory: never pulled, removed with it
FAST_FLAG = "--fast"  # train-regression-batch's switch for op determinism off; errors and log lines name it
MIXED_PRECISION_FLAG = "--mixed-precision"  # float16 compute (float32 weights and outputs), for GPUs
MIXED_POLICY = "mixed_float16"


def fresh_session() -> None:
    """``keras.backend.clear_session()`` (a model's graph does not pile onto the last one's), keeping the
    dtype policy this batch runs with: clearing the session resets it to float32."""
    import keras

    policy = keras.mixed_precision.global_policy().name
    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(policy)


def mixed_precision_enabled() -> bool:
    """Whether Keras' global dtype policy computes in float16 now (``train_batch`` sets it per batch)."""
    import keras

    return keras.mixed_precision.global_policy().name == MIXED_POLICY


# --- batch files ----------------------------------------------------------------------

def resolve_batch_file(ws: Workspace, category: str | None, batch: str | os.PathLike) -> Path:
    """A path (absolute, relative to the workspace root or to the current directory) or a batch
    name under ``regression_training_configs/<category>/`` (with or without ``.json``); without a
    category, the one category folder that holds that name."""
    raw = Path(batch)
    configs_dir = ws.epoch().regression_training_configs_dir
    candidates = [raw] if raw.is_absolute() else [ws.root / raw, Path.cwd() / raw]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    if not raw.is_absolute():
        in_folders = [configs_dir / folder / name for folder in ([category] if category else BATCH_CATEGORIES)
                      for name in (raw, f"{raw}.json")]
        candidates += in_folders
        named = [p for p in in_folders if p.is_file()]
        if len(named) > 1:
            raise UsageError(f"batch {str(batch)!r} exists in several categories "
                                    f"({', '.join(p.parent.name for p in named)}); pass --category")
        if named:
            return named[0].resolve()
    raise UsageError(
        f"batch {str(batch)!r} not found: looked in {', '.join(str(c) for c in candidates)} "
        "(run `epoch-builder generate-regression-training-configs` first)")


def batch_category(batch: dict[str, Any], path: Path) -> str:
    """The category a batch file declares (or, for a file without one, that of its configs)."""
    declared = batch.get("category")
    if declared is None:
        found = {category_of(cfg) for cfg in batch["configs"]}
        if len(found) != 1:
            raise EpochBuilderError(f"{path}: the batch declares no category and mixes {', '.join(sorted(found))}; "
                                    "pass --category")
        declared = found.pop()
    if declared not in BATCH_CATEGORIES:
        raise EpochBuilderError(f"{path}: batch category {declared!r} is unknown; allowed {', '.join(BATCH_CATEGORIES)}")
    return declared


def check_batch(batch: dict[str, Any], path: Path, category: str, lookback: int, predictions: int) -> None:
    if category not in BATCH_CATEGORIES:
        raise UsageError(f"--category {category!r} is unknown; allowed {', '.join(BATCH_CATEGORIES)}")
    declared = batch.get("category")
    if declared is not None and declared != category:
        raise UsageError(f"{path}: batch category is {declared}, not --category {category}")
    for cfg in batch["configs"]:
        if category != UNIT_TEST and category_of(cfg) != category:
            raise EpochBuilderError(f"{path}: config {cfg['id']} is a {category_of(cfg)} model, not {category}")
        if (cfg["lookback"], cfg["predictions"]) != (lookback, predictions):
            raise EpochBuilderError(
                f"{path}: config {cfg['id']} has lookback {cfg['lookback']} / predictions {cfg['predictions']} but the "
                f"epoch has {lookback} / {predictions} (regenerate the training configs for this epoch)")


# --- checkpoints ----------------------------------------------------------------------

def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    atomic_write_with(path, write)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:  # truncated or garbled
        raise EpochBuilderError(f"{path}: unreadable checkpoint ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                                f"delete {path.parent} to restart this model") from None


def _pack(prefix: str, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
    return {f"{prefix}{i:04d}": np.asarray(a) for i, a in enumerate(arrays)}


def _unpack(prefix: str, data: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [data[k] for k in sorted(k for k in data if k.startswith(prefix))]


def _finite(values: list[Any]) -> list[float | None]:
    return [float(v) if v is not None and math.isfinite(v) else None for v in values]


class Checkpoint:
    """Per-model checkpoint directory; a file lock keeps two trainers off one model."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self._lock_handle: Any = None

    def lock(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_handle = open(self.dir / ".lock", "w")
        try:
            fcntl.flock(self._lock_handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_handle.close()
            raise EpochBuilderError(f"{self.dir}: this model is being trained by another process") from None

    def unlock(self) -> None:
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None

    def load(self) -> dict[str, Any] | None:
        path = self.dir / STATE_FILE
        return read_json(path) if path.exists() else None

    def save(self, state: dict[str, Any], weights: list[np.ndarray], optimizer_vars: list[np.ndarray],
             best_weights: list[np.ndarray] | None) -> None:
        """Write this epoch's files, then ``state.json`` (which names them), then drop older files.
        ``state`` gains the file names; ``best_weights`` is None when the best epoch did not change."""
        epoch = state["epoch"]
        state["weights_file"] = f"weights_e{epoch}.npz"
        _write_npz(self.dir / state["weights_file"], {**_pack("w", weights), **_pack("o", optimizer_vars)})
        if best_weights is not None:
            state["best_file"] = f"best_e{epoch}.npz"
            _write_npz(self.dir / state["best_file"], _pack("w", best_weights))
        best = state.get("best")
        document = {**state, "best": best if best is not None and math.isfinite(best) else None,
                    "history": {k: _finite(v) for k, v in state["history"].items()}}
        atomic_write_json(self.dir / STATE_FILE, document)  # last: the checkpoint is complete
        keep = {STATE_FILE, state["weights_file"], state.get("best_file")}
        for path in self.dir.iterdir():
            if path.name not in keep and not path.name.startswith("."):
                path.unlink(missing_ok=True)

    def remove(self) -> None:
        self.unlock()
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.dir.parent.name == REGRESSION_CHECKPOINTS_DIR:
            try:
                self.dir.parent.rmdir()  # the last model of the epoch leaves no empty folder behind
            except OSError:
                pass


# --- op determinism -------------------------------------------------------------------

def op_determinism_enabled() -> bool:
    """Whether TensorFlow op determinism is on in this process now: the certificate records what TensorFlow
    says, not what a caller asked for (``runtime.configure_tensorflow`` switches it)."""
    from tensorflow.python.framework import config as tf_config  # not exported under tf.config

    return bool(tf_config.is_op_determinism_enabled())


def _resume_mode(state: dict[str, Any], deterministic: bool, where: Path, model_id: str) -> str:
    """Check a checkpoint's mode against this run's; returns a note for the resume log line.

    A certificate's ``op_determinism: true`` claims every epoch was deterministic (so the model can be
    reproduced), ``false`` claims nothing. So a checkpoint written with ``--fast`` is refused without
    ``--fast`` (its weights would be certified deterministic), while a deterministic checkpoint may go on
    under ``--fast``: the model becomes a fast one (``deterministic_epochs`` keeps how many came first),
    and the epochs already trained are not thrown away.
    """
    written = bool(state.get("op_determinism", True))  # checkpoints from before --fast were all deterministic
    if written == deterministic:
        return ""
    if deterministic:
        raise EpochBuilderError(f"{where}: checkpoint of {model_id} was written with {FAST_FLAG} (op determinism off); "
                                f"rerun with {FAST_FLAG} to resume it, or delete {where.parent} to retrain it deterministically")
    state["op_determinism"], state["deterministic_epochs"] = False, state["epoch"]
    return f"; its {state['epoch']} epoch(s) so far were deterministic, {FAST_FLAG} from here on"


def training_mode(state: dict[str, Any], pack_size: int = 1, search: dict[str, Any] | None = None) -> dict[str, Any]:
    """The certificate's ``training_mode``: ``op_determinism`` true only if every epoch ran with it;
    ``deterministic_epochs`` how many of the first epochs did (all of them, none, or those before a
    deterministic checkpoint was resumed with --fast); ``threads`` the CPU thread pools of the process
    that finished the model (``runtime.thread_pools``: the same seed gives the same model with the same pools);
    ``search`` only under ``--search halving`` (``search.certificate_record``): a full run's certificate is
    what it was before the search existed."""
    from epoch_builder.regressions.runtime import thread_pools

    deterministic = bool(state.get("op_determinism", True))
    mode = {"op_determinism": deterministic,
            "deterministic_epochs": state["epoch"] if deterministic else int(state.get("deterministic_epochs", 0)),
            "pack_size": pack_size, "mixed_precision": bool(state.get("mixed_precision", False)),
            "threads": thread_pools()}
    if search is not None:
        mode["search"] = search
    return mode


def check_search(state: dict[str, Any], search: dict[str, Any], where: Path, model_id: str) -> None:
    """A checkpoint goes on only under the search it was written with (``--search``, and halving's eta and first
    rung): a rung's ranking must see every model trained to it, and a model promoted by one search must not be
    certified by another. Checkpoints from before ``--search`` existed were full runs."""
    from epoch_builder.regressions.options import describe_search

    written = state.get("search") or {"method": "full"}
    if written != search:
        raise EpochBuilderError(f"{where}: checkpoint of {model_id} was written with {describe_search(written)}, not "
                                f"{describe_search(search)}; rerun with {describe_search(written)} to resume it, or "
                                f"delete {where.parent} to restart this model")


# --- one model --------------------------------------------------------------------------

FULL_SEARCH = {"method": "full"}  # options.search_mode of --search full


@dataclass(frozen=True)
class Stage:
    """What a search asks of one training call (``search.py``); the default is a full run.

    ``mode``: the search recorded in and checked against each checkpoint (``options.search_mode``);
    ``until``: train up to this epoch only (a rung), None: to the early stop or the epoch limit;
    ``continuing_at``: the epoch the models were promoted at (a checkpoint there is no interruption);
    ``records``: the certificate's ``training_mode.search`` of each model that finishes in this call."""

    mode: dict[str, Any] = field(default_factory=lambda: dict(FULL_SEARCH))
    until: int | None = None
    continuing_at: int | None = None
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    def cap(self, limit: int) -> int:
        """The last epoch this call trains to."""
        return limit if self.until is None else min(self.until, limit)

    def record(self, model_id: str) -> dict[str, Any] | None:
        return self.records.get(model_id)


def start_or_resume(checkpoint: Checkpoint, model: Any, model_id: str, deterministic: bool,
                    note: Callable[[str], None], search: dict[str, Any] | None = None,
                    continuing_at: int | None = None) -> tuple[dict[str, Any], list[np.ndarray] | None]:
    """A new training state, or the checkpoint's: the compiled ``model`` (and its optimizer) get the saved
    weights and variables. Returns ``(state, best weights or None)``; ``note`` gets the resume line.
    ``search``: the run's ``options.search_mode`` (recorded in a new state, checked against a checkpoint's).
    ``continuing_at``: the epoch a search promoted this model at; a checkpoint there is the search going on,
    not an interruption, so it is not counted in ``resumed_from``."""
    search = search or FULL_SEARCH
    state = checkpoint.load()
    if state is None:
        return {"id": model_id, "epoch": 0, "history": {}, "wait": 0, "best": None, "best_epoch": 0,
                "stopped": False, "started": int(time.time() * 1000), "resumed_from": [],
                "op_determinism": deterministic, "deterministic_epochs": 0,
                "mixed_precision": mixed_precision_enabled(), "search": search}, None
    if state.get("id") != model_id:
        raise EpochBuilderError(f"{checkpoint.dir / STATE_FILE}: checkpoint of {state.get('id')!r}, not {model_id}")
    if bool(state.get("mixed_precision", False)) != mixed_precision_enabled():
        written = "with" if state.get("mixed_precision") else "without"
        raise EpochBuilderError(f"{checkpoint.dir / STATE_FILE}: checkpoint of {model_id} was written {written} "
                                f"{MIXED_PRECISION_FLAG}; rerun {written} it to resume, or delete {checkpoint.dir} "
                                "to restart this model")
    check_search(state, search, checkpoint.dir / STATE_FILE, model_id)
    mode_note = _resume_mode(state, deterministic, checkpoint.dir / STATE_FILE, model_id)
    saved = _read_npz(checkpoint.dir / state["weights_file"])
    weights, opt_values = _unpack("w", saved), _unpack("o", saved)
    if len(weights) != len(model.get_weights()) or len(opt_values) != len(model.optimizer.variables):
        raise EpochBuilderError(f"{checkpoint.dir}: checkpoint does not match config {model_id}; delete it to restart")
    model.set_weights(weights)
    for variable, value in zip(model.optimizer.variables, opt_values):
        variable.assign(value)
    best_weights = _unpack("w", _read_npz(checkpoint.dir / state["best_file"])) if state.get("best_file") else None
    if continuing_at is not None and state["epoch"] == continuing_at:
        note(f"goes on from epoch {state['epoch']} (promoted by the search){mode_note}")
    else:
        state["resumed_from"].append(state["epoch"])
        note(f"resumed at epoch {state['epoch']} from checkpoint{mode_note}")
    return state, best_weights


def finished(state: dict[str, Any], limit: int) -> bool:
    """Whether a model is done training: stopped early (or diverged), or at its epoch limit."""
    return bool(state["stopped"]) or state["epoch"] >= limit


def compile_model(model: Any, cfg: dict[str, Any]) -> None:
    import keras

    lr: Any = cfg["learning_rate"]
    if lr == -1:
        lr = keras.optimizers.schedules.InverseTimeDecay(**INVERSE_TIME_DECAY)
    optimizer = keras.optimizers.Adam(learning_rate=lr) if cfg["optimizer"] == "adam" else keras.optimizers.RMSprop(learning_rate=lr)
    model.compile(optimizer=optimizer, loss=cfg["loss"], metrics=[cfg["metric"]])
    # variables exist before a checkpoint is restored; model.optimizer: compile wraps the optimizer in a
    # LossScaleOptimizer under --mixed-precision
    model.optimizer.build(model.trainable_variables)


def validation_cut(rows: int, validation_split: float) -> int:
    """Keras' ``validation_split``: the last share of the (unshuffled) train windows validates."""
    cut = int(math.floor(rows * (1.0 - validation_split)))
    if cut <= 0 or cut >= rows:
        raise EpochBuilderError(f"validation_split {validation_split} of {rows} train windows leaves no train or validation data")
    return cut


def epoch_batches(x: np.ndarray, y: np.ndarray, seed: int, first_epoch: int, last_epoch: int) -> tuple[Any, int]:
    """A tf.data pipeline of the epochs ``first_epoch .. last_epoch - 1``, each a shuffle drawn
    statelessly from ``(seed, epoch)`` and cut in batches of 512; returns it with the steps per epoch.

    The order of an epoch depends on nothing else, so a run resumed at epoch k sees the
    same batches as an uninterrupted one, and one ``model.fit`` call covers every epoch.
    """
    import tensorflow as tf

    rows = len(x)
    with tf.device("/CPU:0"):  # the input pipeline runs on the host; batches go to the GPU, if any, from there
        xs, ys = tf.constant(x), tf.constant(y)
        indices = tf.range(rows, dtype=tf.int64)

    def one_epoch(epoch: Any) -> Any:
        order = tf.random.experimental.stateless_shuffle(indices, seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
        return tf.data.Dataset.from_tensor_slices(order).batch(BATCH_SIZE)

    dataset = (tf.data.Dataset.range(first_epoch, last_epoch).flat_map(one_epoch)
               .map(lambda idx: (tf.gather(xs, idx), tf.gather(ys, idx))).prefetch(2))
    return dataset, math.ceil(rows / BATCH_SIZE)


class EarlyStoppingState:
    """keras.callbacks.EarlyStopping(monitor="val_loss", patience=10, restore_best_weights=True),
    with its state kept in the checkpoint."""

    def __init__(self, state: dict[str, Any], best_weights: list[np.ndarray] | None) -> None:
        self.state = state
        self.best_weights = best_weights

    def update(self, epoch: int, val_loss: float, weights: Any) -> list[np.ndarray] | None:
        """Record epoch ``epoch`` (0-based); returns the new best weights when they changed."""
        state = self.state
        changed = None
        if self.best_weights is None:  # the first epoch is the best so far whatever its loss
            self.best_weights, state["best_epoch"] = weights(), epoch
            changed = self.best_weights
        state["wait"] += 1
        if state["best"] is None or val_loss < state["best"]:
            state["best"], state["best_epoch"], state["wait"] = val_loss, epoch, 0
            self.best_weights = changed = weights()
        elif state["wait"] >= PATIENCE and epoch > 0:
            state["stopped"] = True
        return changed


def train_model(ws: Workspace, cfg: dict[str, Any], data: RegressionDatasets, *, seed: int, validation_split: float,
                max_epochs: int | None, position: tuple[int, int], eta: Any,
                log: Callable[[str], None] = output.info, bar: output.Bar | None = None,
                stage: Stage | None = None) -> dict[str, Any] | None:
    """Train (or resume) one config, write its model and certificate; returns the certificate. With a search's
    ``stage``: train up to its ``until`` epoch only; a model that is not done then keeps its checkpoint and
    returns None (the search decides whether it goes on)."""
    import keras
    import tensorflow as tf

    from epoch_builder.regressions.architectures import build_model, model_summary
    from epoch_builder.regressions.runtime import seed_everything

    number, total = position
    model_id = cfg["id"]
    limit = int(max_epochs or cfg.get("max_epochs", DEFAULT_MAX_EPOCHS))
    checkpoint = Checkpoint(ws.epoch().regression_checkpoint_dir(model_id))
    checkpoint.lock()
    try:
        fresh_session()
        seed_everything(seed)
        model = build_model(cfg["keras_model"], cfg["lookback"], cfg["predictions"], name=model_id)
        compile_model(model, cfg)
        stage = stage or Stage()
        state, best_weights = start_or_resume(checkpoint, model, model_id, op_determinism_enabled(),
                                              lambda note: log(f"[{number}/{total}] {model_id}: {note}"),
                                              stage.mode, stage.continuing_at)
        stopping = EarlyStoppingState(state, best_weights)
        cap = stage.cap(limit)
        if bar is not None:
            bar.reset(total=limit, description=f"  {model_id} epochs")
            bar.update(state["epoch"])

        class EpochEnd(keras.callbacks.Callback):
            """History, early stopping, checkpoint, log line and progress event after each epoch."""

            def __init__(self) -> None:
                super().__init__()
                self.started = time.monotonic()

            def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
                logs = dict(logs or {})
                for key, value in logs.items():
                    state["history"].setdefault(key, []).append(float(value))
                state["epoch"] = epoch + 1
                current = float(logs.get("val_loss", float("nan")))
                changed = stopping.update(epoch, current, self.model.get_weights)
                if not math.isfinite(float(logs.get("loss", float("nan")))):
                    state["stopped"] = True  # diverged: keep the best finite epoch
                checkpoint.save(state, self.model.get_weights(), [v.numpy() for v in self.model.optimizer.variables],
                                changed)
                if state["stopped"]:
                    self.model.stop_training = True
                seconds, self.started = time.monotonic() - self.started, time.monotonic()
                eta_s = eta.remaining(eta.fraction(state["epoch"], limit)) if eta else None
                epoch_log = output.log.debug if bar is not None and bar.visible else log  # the bar shows it
                epoch_log(f"[{number}/{total}] {model_id} epoch {state['epoch']}/{limit} loss={logs.get('loss', float('nan')):.6f} "
                    f"val_loss={current:.6f} ({seconds:.2f}s)" + (f" eta {eta_s:.0f}s" if eta_s is not None else ""))
                if bar is not None:
                    bar.update(state["epoch"], info=f"loss {logs.get('loss', float('nan')):.6f} val {current:.6f}")
                events.emit(STAGE, done=eta.finished if eta else 0, total=total, model=model_id,
                            number=number, epoch=state["epoch"], max_epochs=limit,
                            loss=logs.get("loss"), val_loss=current, eta_s=eta_s)

        if not state["stopped"] and state["epoch"] < cap:
            cut = validation_cut(len(data.train_x), validation_split)
            batches, steps = epoch_batches(data.train_x[:cut], data.train_y[:cut], seed, state["epoch"], cap)
            # Validation as a tf.data dataset, in order, batches of BATCH_SIZE (what Keras does with arrays, but
            # its array adapter makes TensorFlow log a native NodeDef error for every model under op determinism).
            validation = tf.data.Dataset.from_tensor_slices((data.train_x[cut:], data.train_y[cut:])).batch(BATCH_SIZE)
            model.fit(batches, steps_per_epoch=steps, epochs=cap, initial_epoch=state["epoch"],
                      validation_data=validation, shuffle=False, callbacks=[EpochEnd()], verbose=0)
        if not finished(state, limit):
            return None  # at the search's rung: its checkpoint waits for the ranking
        if stopping.best_weights is not None:
            model.set_weights(stopping.best_weights)
        cert = certificate_for(cfg, data, model, state, limit, seed, model_summary(model, cfg),
                               search=stage.record(model_id))
        return store_trained(ws, model_id, model, cert, checkpoint)
    finally:
        checkpoint.unlock()


def certify_from_checkpoint(ws: Workspace, cfg: dict[str, Any], data: RegressionDatasets, *, seed: int, limit: int,
                            pack_size: int, record: dict[str, Any]) -> dict[str, Any]:
    """A model the search stopped (``search.py``): certified from its checkpoint's best weights, with the epochs it
    trained, as a model whose training ended there (``record``: its ``training_mode.search``); then its model file,
    histories and certificate are written and the checkpoint goes, as for any trained model. Always from the
    checkpoint, never from a model in memory: a run resumed after a kill certifies it the same way."""
    from epoch_builder.regressions.architectures import build_model, model_summary
    from epoch_builder.regressions.runtime import seed_everything

    model_id = cfg["id"]
    checkpoint = Checkpoint(ws.epoch().regression_checkpoint_dir(model_id))
    checkpoint.lock()
    try:
        state = checkpoint.load()
        if state is None or state.get("id") != model_id:
            raise EpochBuilderError(f"{checkpoint.dir / STATE_FILE}: no checkpoint of {model_id} to certify (the search "
                                    f"stopped it at epoch {record.get('epochs')}); delete the batch's search state to "
                                    "train it again")
        fresh_session()
        seed_everything(seed)
        model = build_model(cfg["keras_model"], cfg["lookback"], cfg["predictions"], name=model_id)
        compile_model(model, cfg)
        weights = _unpack("w", _read_npz(checkpoint.dir / (state.get("best_file") or state["weights_file"])))
        if len(weights) != len(model.get_weights()):
            raise EpochBuilderError(f"{checkpoint.dir}: checkpoint does not match config {model_id}; delete it to restart")
        model.set_weights(weights)
        cert = certificate_for(cfg, data, model, state, limit, seed, model_summary(model, cfg), pack_size, record)
        return store_trained(ws, model_id, model, cert, checkpoint)
    finally:
        checkpoint.unlock()


def store_trained(ws: Workspace, model_id: str, model: Any, cert: dict[str, Any], checkpoint: Checkpoint) -> dict[str, Any]:
    """A finished model's files, in the order that keeps a kill harmless: the model file and histories, then the
    certificate (its presence means done), then the checkpoint goes. Returns ``cert``."""
    out_dir = ws.epoch().regressions_dir / model_id
    save_model(model, out_dir / MODEL_FILE)
    write_history(ws.epoch(), model_id, cert["training_history"], checkpoint.dir / EVENTS_SCRATCH_DIR)
    atomic_write_json(out_dir / CERTIFICATE_FILE, cert, indent=2)  # last: the model is done
    checkpoint.remove()
    return cert


def save_model(model: Any, target: Path) -> None:
    """Keras insists on a ``.keras`` name: save to a sibling, then let the atomic writer move it."""
    def write(tmp: Path) -> None:
        staging = tmp.with_name(tmp.name + ".keras")
        try:
            model.save(staging)
            os.replace(staging, tmp)
        finally:
            staging.unlink(missing_ok=True)
    atomic_write_with(target, write)


# --- history exports: CSV and TensorBoard -----------------------------------------------
#
# Both are written once, when the model is trained, from the final history (the checkpoint's, which a resume
# carries over), not epoch by epoch: a per-epoch events file runs ahead of the checkpoint (a kill after an
# epoch was logged but before it was checkpointed makes the resume log it again: a duplicate step), so it
# would have to be rewritten on resume anyway. Written whole and moved into place atomically, a kill leaves
# no file (the resume, which must still write the certificate, writes it) or the complete one, which the
# resume rewrites the same. The events go to a fixed file name (workspace.TENSORBOARD_EVENTS_FILE), so a
# rewrite replaces the old file rather than adding a second run of the same steps beside it.

History = dict[str, list[float | None]]


def _history_epochs(history: History) -> int:
    return max((len(values) for values in history.values()), default=0)


def history_csv(history: History) -> str:
    """``epoch,<keys...>`` then one row per epoch (1-based); ``repr`` keeps every float exact and a
    non-finite value (None in the certificate) is an empty cell."""
    keys = list(history)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["epoch", *keys])
    for epoch in range(_history_epochs(history)):
        cells = [history[key][epoch] if epoch < len(history[key]) else None for key in keys]
        writer.writerow([epoch + 1, *("" if value is None else repr(float(value)) for value in cells)])
    return out.getvalue()


def _scalar_metadata() -> Any:
    """What ``tensorboard.summary.scalar`` attaches, built from TensorFlow's own protos: ``tf.summary.scalar``
    needs the ``tensorboard`` package, which the project does not depend on; ``tf.summary.write`` does not."""
    from tensorflow.core.framework import summary_pb2

    plugin = summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars", content=b"")  # ScalarPluginData v0
    return summary_pb2.SummaryMetadata(plugin_data=plugin, data_class=summary_pb2.DATA_CLASS_SCALAR)


def write_history_events(target: Path, scratch: Path, history: History) -> None:
    """One float32 scalar per key and epoch (step = the 1-based epoch; a non-finite value is NaN), written
    with TensorFlow's summary writer into ``scratch`` and then moved atomically to ``target``."""
    import tensorflow as tf

    shutil.rmtree(scratch, ignore_errors=True)  # a killed run's leftovers (the model's lock is held)
    scratch.mkdir(parents=True)
    metadata = _scalar_metadata()
    with tf.device("/CPU:0"):
        writer = tf.summary.create_file_writer(str(scratch))
        with writer.as_default():
            for key, values in history.items():
                for epoch, value in enumerate(values, 1):
                    number = float("nan") if value is None else float(value)
                    tf.summary.write(key, tf.constant(number, tf.float32), step=epoch, metadata=metadata)
        writer.close()  # flushed and closed before the file moves
    produced = [path for path in scratch.iterdir() if "tfevents" in path.name]
    if len(produced) != 1:
        raise EpochBuilderError(f"{scratch}: the summary writer left {len(produced)} event files, expected 1")
    atomic_write_with(target, lambda tmp: shutil.move(produced[0], tmp))
    shutil.rmtree(scratch, ignore_errors=True)


def write_history(paths: EpochPaths, model_id: str, history: History, scratch: Path) -> None:
    """The CSV beside the certificate and the TensorBoard run of ``model_id``; before the certificate."""
    atomic_write_text(paths.regression_history_file(model_id), history_csv(history))
    write_history_events(paths.regression_events_file(model_id), scratch, history)


def regression_discovery(data: RegressionDatasets, predictions: np.ndarray) -> dict[str, Any]:
    """§3 discovery on the test set: predicted = pct_change(x[-1], pred[-1]) vs the sign of pct_change(x[-1], y[-1])."""
    predicted = pct_changes(data.test_last_x, predictions[:, -1].astype(np.float64))
    real = np.sign(pct_changes(data.test_last_x, data.test_last_y)).astype(np.int64)
    return build_discovery(predicted, real)


def _test_errors(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float | None]:
    difference = np.asarray(predictions, dtype=np.float64) - np.asarray(labels, dtype=np.float64)
    mae, mse = _finite([float(np.mean(np.abs(difference))), float(np.mean(difference ** 2))])
    return {"mean_absolute_error": mae, "mean_squared_error": mse}


def evaluation_from_predictions(cfg: dict[str, Any], model: Any, predictions: np.ndarray,
                                labels: np.ndarray) -> tuple[float, float]:
    """The test set's loss and metric as ``model.evaluate`` reports them (the means over every window, the
    loss with the model's regularisation terms), computed from the predictions the discovery uses: a
    second pass over the test windows (and a traced evaluation function per model) costs as much as the
    predictions themselves. Equal to ``model.evaluate``'s to float32 rounding (it sums batch means)."""
    import keras

    def mean(name: str) -> float:
        return float(np.mean(np.asarray(keras.losses.get(name)(labels, predictions), dtype=np.float64)))

    regularisation = sum(float(term) for term in model.losses)
    return mean(cfg["loss"]) + regularisation, mean(cfg["metric"])


def certificate_for(cfg: dict[str, Any], data: RegressionDatasets, model: Any, state: dict[str, Any], limit: int,
                 seed: int, summary: dict[str, Any], pack_size: int = 1,
                 search: dict[str, Any] | None = None) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    from epoch_builder.regressions.inference import predict

    preds = predict(model, data.test_x)
    test_loss, test_metric = _finite(list(evaluation_from_predictions(cfg, model, preds, data.test_y)))  # None if diverged
    history = {k: _finite(v) for k, v in state["history"].items()}
    category = category_of(cfg)
    return {
        "id": cfg["id"],
        "description": cfg.get("description", ""),
        "category": category,
        "training_data_start": data.start,
        "training_data_end": data.end,
        **data.sizes,
        "training_data_summary": data.summary,
        "lookback": cfg["lookback"],
        "predictions": cfg["predictions"],
        "learning_rate": cfg["learning_rate"],
        "optimizer": cfg["optimizer"],
        "loss": cfg["loss"],
        "metric": cfg["metric"],
        "keras_model_config": cfg["keras_model"],
        "training_params": {"batch_size": BATCH_SIZE, "max_epochs": limit, "early_stopping_patience": PATIENCE,
                            "inverse_time_decay": INVERSE_TIME_DECAY if cfg["learning_rate"] == -1 else None,
                            "seed": seed, "shuffle": "stateless per-epoch shuffle from (seed, epoch)"},
        "training_start": state["started"],
        "training_end": int(time.time() * 1000),
        "epochs": state["epoch"],
        "best_epoch": state["best_epoch"] + 1,
        "resumed_from_epochs": state.get("resumed_from", []),
        "training_mode": training_mode(state, pack_size, search),
        "training_history": history,
        # The platform's ITestDatasetEvaluation: both errors, whichever pair trained the model.
        "test_ds_evaluation": _test_errors(preds, data.test_y),
        "test_evaluation": {"loss": test_loss, "metric": test_metric},
        "discovery": regression_discovery(data, preds),
        "regression_config": {"id": cfg["id"], "description": cfg.get("description", ""), "lookback": cfg["lookback"],
                              "predictions": cfg["predictions"], "summary": summary},
        "model_file": MODEL_FILE,
        "runtime": {"keras": keras.__version__, "tensorflow": tf.__version__,
                    "devices": [d.name for d in tf.config.list_logical_devices()]},
    }
