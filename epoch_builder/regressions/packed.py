"""Packed training: several models of a batch trained together, one compiled step updating all of them.

Small models (the DNN and CDNN families) spend most of a ``model.fit`` step in TensorFlow's per-step
dispatch, not in arithmetic. Here K models of one batch share each batch of windows: one compiled step
runs every model's forward pass, loss, gradients and optimizer update, so the dispatch is paid once for K
models, and one call runs a whole epoch's steps in the graph (``bench/bench_training.py`` measures the
factor per family; docs/benchmarks.md "Training throughput").

Each model stays its own: its own optimizer and learning rate, loss and metric, early stopping (a model
that stops leaves the pack while the others go on; the step is rebuilt for those left), best weights,
checkpoint after every epoch and certificate, exactly as in one-at-a-time training
(``training.train_model``). All models of a batch share the epoch's seed, so epoch ``e``'s batches are the
same for every model of the pack (the stateless shuffle of ``(seed, e)``). A model's weights depend only
on its own configuration and those batches, which makes a resumed pack equal an uninterrupted one: after
a kill -9 each model resumes from its own last checkpoint, and a model that is ahead of the others waits
(it is not stepped) until they reach its epoch.

The losses and metrics of an epoch are sample-weighted means over its batches, as Keras reports them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from epoch_builder import events, output
from epoch_builder.errors import EpochBuilderError
from epoch_builder.regressions.configs import DEFAULT_MAX_EPOCHS, DEFAULT_PACK_SIZES
from epoch_builder.regressions.datasets import RegressionDatasets
from epoch_builder.regressions import training
from epoch_builder.workspace import Workspace

def default_pack_size(category: str) -> int:
    """``--pack`` when not given: configs.DEFAULT_PACK_SIZES, else one model at a time."""
    return DEFAULT_PACK_SIZES.get(category, 1)


def cpu_thread_pools(pack_size: int, cores: int) -> tuple[int, int]:
    """(intra-op, inter-op) threads for a process training packs of ``pack_size`` on ``cores`` CPU cores.

    A pack's models are independent, so their ops can run side by side (``cores`` of them at once), each
    op on its share of the cores: the ops of these small models are too short to gain from being split
    between threads, which costs a hand-over each time (a warm epoch of 8 default-grid DNNs on 2 cores:
    0.8 s this way, 1.1 s with TensorFlow's default of every core for each op). The convolutional families'
    kernels split their work by the thread count, so a model trained this way differs from one trained with
    other pools by float rounding (each certificate records its process's pools)."""
    return max(1, cores // pack_size), cores


@dataclass
class Member:
    """One model of a pack and what its training carries from epoch to epoch."""

    cfg: dict[str, Any]
    number: int  # 1-based place in the batch, for log lines
    model: Any
    checkpoint: training.Checkpoint
    state: dict[str, Any]
    stopping: training.EarlyStoppingState
    loss: Any  # keras loss function of the config
    metric: Any  # keras metric function (a loss-like function of y_true, y_pred)

    @property
    def id(self) -> str:
        return self.cfg["id"]

    def wants(self, epoch: int, limit: int) -> bool:
        """Whether epoch ``epoch`` (0-based) is this model's next one."""
        return not self.state["stopped"] and self.state["epoch"] == epoch < limit


def _loss_function(name: str) -> Any:
    import keras

    return keras.losses.get(name)


def _open_member(ws: Workspace, cfg: dict[str, Any], number: int, seed: int, deterministic: bool,
                 log: Callable[[str], None], total: int, stage: training.Stage) -> Member:
    from epoch_builder.regressions.architectures import build_model
    from epoch_builder.regressions.runtime import seed_everything

    model_id = cfg["id"]
    checkpoint = training.Checkpoint(ws.epoch().regression_checkpoint_dir(model_id))
    checkpoint.lock()
    try:
        seed_everything(seed)  # each model's initial weights from the seed alone, as when trained on its own
        model = build_model(cfg["keras_model"], cfg["lookback"], cfg["predictions"], name=model_id)
        training.compile_model(model, cfg)
        state, best_weights = training.start_or_resume(checkpoint, model, model_id, deterministic,
                                                       lambda note: log(f"[{number}/{total}] {model_id}: {note}"),
                                                       stage.mode, stage.continuing_at)
    except BaseException:
        checkpoint.unlock()  # the pack's other members are unlocked by train_pack; this one is not one yet
        raise
    return Member(cfg, number, model, checkpoint, state, training.EarlyStoppingState(state, best_weights),
                  _loss_function(cfg["loss"]), _loss_function(cfg["metric"]))


def _loss_and_metric(member: Member, x: Any, y: Any, training: bool) -> tuple[Any, Any]:
    """The batch's mean loss (as compile's, regularisation included) and mean metric for one model."""
    import tensorflow as tf

    predicted = member.model(x, training=training)
    # keras.losses.get(name) gives the per-window function; compile's loss is its batch mean
    loss = tf.reduce_mean(member.loss(y, predicted))
    if member.model.losses:
        loss = loss + tf.add_n(member.model.losses)
    return loss, tf.reduce_mean(member.metric(y, predicted))


def _row(loss: Any, metric: Any) -> Any:
    import tensorflow as tf

    return tf.stack([tf.cast(loss, tf.float64), tf.cast(metric, tf.float64)])


def _train_rows(members: Sequence[Member], x: Any, y: Any) -> Any:
    """One step for ``members`` on a batch: each model's loss and metric, its gradients applied by its own
    optimizer. Returns a (models, 2) tensor of the batch's mean loss and metric."""
    import tensorflow as tf

    rows = []
    for member in members:
        model = member.model
        with tf.GradientTape() as tape:
            loss, metric = _loss_and_metric(member, x, y, training=True)
            # under --mixed-precision the optimizer is a LossScaleOptimizer: it scales here, unscales in apply
            scaled = model.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, model.trainable_variables)
        model.optimizer.apply(gradients, model.trainable_variables)
        rows.append(_row(loss, metric))
    return tf.stack(rows)


def _eval_rows(members: Sequence[Member], x: Any, y: Any) -> Any:
    """The same figures without training (the validation windows)."""
    import tensorflow as tf

    return tf.stack([_row(*_loss_and_metric(member, x, y, training=False)) for member in members])


def _epoch_function(members: Sequence[Member], rows_of: Callable[[Sequence[Member], Any, Any], Any]) -> Any:
    """One compiled call for a whole pass: ``steps`` batches from ``batches`` (an iterator or a dataset),
    each through ``rows_of``, and the sample-weighted means of every model's (loss, metric), as Keras
    reports an epoch's figures. The loop runs inside the graph: a pack's step is a few milliseconds of
    arithmetic, and a call from Python per step (and a read of its result) costs a share of that."""
    import tensorflow as tf

    @tf.function
    def run(batches: Any, steps: Any) -> Any:
        totals = tf.zeros((len(members), 2), tf.float64)
        windows = tf.constant(0.0, tf.float64)
        for _ in tf.range(steps):
            x, y = next(batches)
            size = tf.cast(tf.shape(x)[0], tf.float64)
            totals += rows_of(members, x, y) * size
            windows += size
        return totals / tf.maximum(windows, 1.0)

    return run


def train_pack(ws: Workspace, configs: Sequence[tuple[int, dict[str, Any]]], data: RegressionDatasets, *, seed: int,
               validation_split: float, max_epochs: int | None, total: int, eta: Any,
               log: Callable[[str], None] = output.info, bar: output.Bar | None = None,
               stage: training.Stage | None = None, pack_size: int | None = None) -> list[dict[str, Any] | None]:
    """Train (or resume) the ``(number, config)`` pairs together; returns their certificates in that order.
    With a search's ``stage``: up to its ``until`` epoch only; a model not done then keeps its checkpoint and
    gets None. ``pack_size``: what the certificates record (default: the models trained here; a search
    records the size of the pack its stage formed, which a resumed stage may open smaller)."""
    import tensorflow as tf

    from epoch_builder.regressions.architectures import model_summary

    limits = {int(max_epochs or cfg.get("max_epochs", DEFAULT_MAX_EPOCHS)) for _, cfg in configs}
    if len(limits) != 1:
        raise EpochBuilderError(f"a pack needs one epoch limit; {', '.join(c['id'] for _, c in configs)} differ")
    limit = limits.pop()
    stage = stage or training.Stage()
    cap = stage.cap(limit)  # the last epoch trained here: the limit, or the search's rung
    deterministic = training.op_determinism_enabled()
    training.fresh_session()
    members: list[Member] = []
    try:
        for number, cfg in configs:
            members.append(_open_member(ws, cfg, number, seed, deterministic, log, total, stage))
        ids = ", ".join(m.id for m in members)
        log(f"[{members[0].number}-{members[-1].number}/{total}] training {len(members)} models together: {ids}")
        cut = training.validation_cut(len(data.train_x), validation_split)
        validation = tf.data.Dataset.from_tensor_slices((data.train_x[cut:], data.train_y[cut:])).batch(
            training.BATCH_SIZE)
        validation_steps = int(validation.cardinality())
        first = min((m.state["epoch"] for m in members if m.wants(m.state["epoch"], cap)), default=cap)
        if bar is not None:
            bar.reset(total=limit, description=f"  {len(members)} models epochs")
            bar.update(first)
        if first < cap:
            batches, steps = training.epoch_batches(data.train_x[:cut], data.train_y[:cut], seed, first, cap)
            iterator = iter(batches)
            steps_for: dict[tuple[str, ...], tuple[Any, Any]] = {}
            for epoch in range(first, cap):
                active = [m for m in members if m.wants(epoch, cap)]
                key = tuple(m.id for m in active)
                if active and key not in steps_for:  # a model left (or joined): a step for those left
                    steps_for[key] = (_epoch_function(active, _train_rows), _epoch_function(active, _eval_rows))
                started = time.monotonic()
                if not active:
                    for _ in range(steps):
                        next(iterator)  # every model still training is ahead of this epoch (a resumed pack)
                    continue
                train_epoch, validate = steps_for[key]
                trained = train_epoch(iterator, tf.constant(steps)).numpy()
                validated = validate(iter(validation), tf.constant(validation_steps)).numpy()
                seconds = time.monotonic() - started
                # progress in models: the pack's share of the epochs its models are expected to take
                eta_s = eta.remaining(len(members) * eta.fraction(epoch + 1, limit)) if eta else None
                for index, member in enumerate(active):
                    _end_epoch(member, epoch, trained[index], validated[index], limit, seconds, total, eta_s, log,
                               eta.finished if eta else 0)
                if bar is not None:
                    bar.update(epoch + 1, info=f"{len(active)} training")
                if all(m.state["stopped"] or m.state["epoch"] >= cap for m in members):
                    break  # every model stopped early (or reached the search's rung)
        certificates: list[dict[str, Any] | None] = []
        for member in members:
            if not training.finished(member.state, limit):
                certificates.append(None)  # at the search's rung: its checkpoint waits for the ranking
                continue
            certificates.append(_finish(ws, member, data, limit, seed, pack_size or len(members),
                                        model_summary(member.model, member.cfg), stage.record(member.id)))
        return certificates
    finally:
        for member in members:
            member.checkpoint.unlock()


def _end_epoch(member: Member, epoch: int, trained: np.ndarray, validated: np.ndarray, limit: int, seconds: float,
               total: int, eta_s: float | None, log: Callable[[str], None], done: int) -> None:
    """What ``training.train_model``'s epoch callback does, for one model of the pack (``done``: the batch's
    models finished so far, for the progress event)."""
    state, metric = member.state, member.cfg["metric"]
    logs = {"loss": float(trained[0]), metric: float(trained[1]), "val_loss": float(validated[0]),
            f"val_{metric}": float(validated[1])}
    for key, value in logs.items():
        state["history"].setdefault(key, []).append(value)
    state["epoch"] = epoch + 1
    current = logs["val_loss"]
    changed = member.stopping.update(epoch, current, member.model.get_weights)
    if not math.isfinite(logs["loss"]):
        state["stopped"] = True  # diverged: keep the best finite epoch
    member.checkpoint.save(state, member.model.get_weights(),
                           [v.numpy() for v in member.model.optimizer.variables], changed)
    log(f"[{member.number}/{total}] {member.id} epoch {state['epoch']}/{limit} loss={logs['loss']:.6f} "
        f"val_loss={current:.6f} ({seconds:.2f}s for the pack)" + (f" eta {eta_s:.0f}s" if eta_s is not None else ""))
    events.emit(training.STAGE, done=done, total=total, model=member.id, number=member.number, epoch=state["epoch"],
                max_epochs=limit, loss=logs["loss"], val_loss=current, eta_s=eta_s)


def _finish(ws: Workspace, member: Member, data: RegressionDatasets, limit: int, seed: int, pack_size: int,
            summary: dict[str, Any], search: dict[str, Any] | None = None) -> dict[str, Any]:
    """Best weights back, certificate (with the pack size), model file, histories; the checkpoint goes."""
    model = member.model
    if member.stopping.best_weights is not None:
        model.set_weights(member.stopping.best_weights)
    cert = training.certificate_for(member.cfg, data, model, member.state, limit, seed, summary, pack_size, search)
    return training.store_trained(ws, member.id, model, cert, member.checkpoint)
