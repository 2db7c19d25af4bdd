"""A batch of regressions trained: the orchestrator above the building blocks.

``train_batch`` reads a batch file, skips the models already certified, and trains the rest one at a time
(``training.train_model``), in packs (``packed.train_pack``) or in several processes
(``processes.train_in_processes``, whose children run ``train_share``: this module again, on their share);
under ``--search halving`` rung by rung (``search.run_halving``, which trains through ``BatchTrainer``).
How is one object, ``options.TrainingOptions``. The building blocks import nothing from here, so they
never import each other in a loop.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from epoch_builder import events, output
from epoch_builder.errors import EpochBuilderError, UsageError
from epoch_builder.regressions import cost, packed, search
from epoch_builder.regressions.architectures import FAMILIES
from epoch_builder.regressions.configs import DEFAULT_MAX_EPOCHS, read_batch
from epoch_builder.regressions.datasets import RegressionDatasets, load_datasets
from epoch_builder.regressions.options import TrainingOptions, describe_search, search_mode
from epoch_builder.regressions.processes import ChildJob, train_in_processes
from epoch_builder.regressions.training import (FAST_FLAG, MIXED_POLICY, MIXED_PRECISION_FLAG, STAGE, STATE_FILE,
                                                Checkpoint, Stage, batch_category, certify_from_checkpoint,
                                                check_batch, resolve_batch_file, train_model)
from epoch_builder.storage import atomic_write_json, read_json
from epoch_builder.workspace import EpochPaths, Workspace


def train_share(job: ChildJob) -> None:
    """A training process's work (``processes``): its models of the batch only."""
    train_batch(Workspace(Path(job.root)), job.category, job.batch_file, job.options, only=job.model_ids,
                log=output.info)


class BatchTrainer:
    """Trains a batch's models in groups (packs, or one at a time) for ``train_batch`` and the search: the
    log lines, the progress bars and events, and the certificates gathered."""

    def __init__(self, paths: EpochPaths, ws: Workspace, configs: Sequence[dict[str, Any]], data: RegressionDatasets,
                 *, seed: int, validation_split: float, max_epochs: int | None, pack_size: int, eta: Any,
                 log: Callable[[str], None], models_bar: Any, epochs_bar: Any) -> None:
        self.paths, self.ws, self.data = paths, ws, data
        self.by_id = {cfg["id"]: cfg for cfg in configs}
        self.numbers = {cfg["id"]: number for number, cfg in enumerate(configs, 1)}
        self.total = len(configs)
        self.seed, self.validation_split, self.max_epochs = seed, validation_split, max_epochs
        self.pack_size, self.eta, self.log = pack_size, eta, log
        self.models_bar, self.epochs_bar = models_bar, epochs_bar
        self.certificates: dict[str, dict[str, Any]] = {}

    def certified(self, model_id: str) -> bool:
        return model_id in self.certificates or self.paths.regression_certificate_file(model_id).exists()

    def checkpoint_state(self, model_id: str) -> dict[str, Any] | None:
        return Checkpoint(self.paths.regression_checkpoint_dir(model_id)).load()

    def limit(self, cfg: dict[str, Any]) -> int:
        return int(self.max_epochs or cfg.get("max_epochs", DEFAULT_MAX_EPOCHS))

    def _nothing_to_do(self, ids: Sequence[str], stage: Stage) -> bool:
        """A rung's pack whose models all wait at the rung already (a resumed stage): not opened again."""
        if stage.until is None:
            return False
        for model_id in ids:
            state = self.checkpoint_state(model_id)
            if state is None or state.get("stopped") or state.get("epoch", 0) < stage.cap(self.limit(self.by_id[model_id])):
                return False
        return True

    def train(self, ids: Sequence[str], stage: Stage) -> None:
        """Train ``ids`` (in the batch's order) in groups of the pack size, as far as ``stage`` says; the
        certified ones are left out (a model of a group that finished earlier)."""
        for first in range(0, len(ids), self.pack_size):
            group = list(ids[first:first + self.pack_size])
            todo = [model_id for model_id in group if not self.certified(model_id)]
            if not todo or self._nothing_to_do(todo, stage):
                continue
            pairs = [(self.numbers[model_id], self.by_id[model_id]) for model_id in todo]
            started = time.monotonic()
            if self.pack_size == 1:
                (number, cfg), = pairs
                done = [train_model(self.ws, cfg, self.data, seed=self.seed, validation_split=self.validation_split,
                                    max_epochs=self.max_epochs, position=(number, self.total), eta=self.eta,
                                    log=self.log, bar=self.epochs_bar, stage=stage)]
            else:
                done = packed.train_pack(self.ws, pairs, self.data, seed=self.seed,
                                         validation_split=self.validation_split, max_epochs=self.max_epochs,
                                         total=self.total, eta=self.eta, log=self.log,
                                         bar=self.epochs_bar, stage=stage, pack_size=len(group))
            for (number, cfg), cert in zip(pairs, done):
                if cert is not None:
                    self._done(number, cfg["id"], cert, time.monotonic() - started,
                               f" (a pack of {len(group)})" if self.pack_size > 1 else "")

    def certify_stopped(self, model_id: str, record: dict[str, Any], pack_size: int) -> None:
        """A model the search stopped: certified from its checkpoint's best weights."""
        started = time.monotonic()
        cfg = self.by_id[model_id]
        cert = certify_from_checkpoint(self.ws, cfg, self.data, seed=self.seed, limit=self.limit(cfg),
                                       pack_size=pack_size, record=record)
        self._done(self.numbers[model_id], model_id, cert, time.monotonic() - started,
                   f" (stopped by the search at rung {record['rung']}, rank {record['rank']} of {record['ranked']})",
                   stopped_by_search=record["rung"])

    def _done(self, number: int, model_id: str, cert: dict[str, Any], seconds: float, note: str, **event: Any) -> None:
        self.eta.finish()  # what the progress events report as done: grows, whatever order models finish in
        events.emit(STAGE, done=self.eta.finished, total=self.total, model=model_id, number=number,
                    certified=True, epochs=cert["epochs"], eta_s=self.eta.remaining(), **event)
        self.certificates[model_id] = cert
        test_loss = cert["test_evaluation"]["loss"]
        self.log(f"[{number}/{self.total}] {model_id}: done in {seconds:.1f}s{note}, {cert['epochs']} epochs, "
                 f"test loss {'diverged' if test_loss is None else f'{test_loss:.6f}'}, "
                 f"accuracy {cert['discovery']['accuracy']}%")
        self.models_bar.advance(info=f"last {model_id}")


def _check_checkpoints(paths: EpochPaths, ids: Sequence[str], mode: dict[str, Any]) -> None:
    """Before anything trains (or a search state is written): every pending model's checkpoint must be of this
    run's search, so that a refused rerun leaves the batch as it found it."""
    from epoch_builder.regressions.training import check_search

    for model_id in ids:
        state = Checkpoint(paths.regression_checkpoint_dir(model_id)).load()
        if state is not None:
            check_search(state, mode, paths.regression_checkpoint_dir(model_id) / STATE_FILE, model_id)


def _search_limit(path: Path, configs: Sequence[dict[str, Any]], max_epochs: int | None) -> int:
    """The one epoch limit the rungs are measured against."""
    limits = sorted({int(max_epochs or cfg.get("max_epochs", DEFAULT_MAX_EPOCHS)) for cfg in configs})
    if len(limits) != 1:
        raise UsageError(f"{path}: --search halving needs one epoch limit for the batch; its configs have max_epochs "
                         f"{', '.join(map(str, limits))} (pass --max-epochs)")
    return limits[0]


def _remove_search_state(path: Path) -> None:
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()  # the epoch's checkpoints folder, when nothing else trains there
    except OSError:
        pass


def expected_epochs(paths: EpochPaths, category: str) -> cost.Epochs:
    """The epochs a model of ``category`` is expected to train, for the batch's ETA: the mean of the family's
    certificates in this epoch, else the cost model's stated assumption (``cost.DEFAULT_EPOCHS``)."""
    family = category if category in FAMILIES else "DNN"  # the UNIT_TEST batch's model is a DNN
    observed = cost.observed_epochs(cost.read_certificates(paths.regressions_dir, family))
    return observed.get(family, cost.DEFAULT_EPOCHS)


def eta_line(expected: cost.Epochs, max_epochs: int | None) -> str:
    """The batch log's one line on what its ETA expects of each model, and where that figure comes from."""
    if expected.observed:
        source = f"observed: the mean of {expected.models} certificates of the family in this epoch"
    else:
        source = "assumed: none of the family is trained in this epoch yet; the cost model's measured figure"
    capped = f", capped at --max-epochs {max_epochs}" if max_epochs and max_epochs < expected.epochs else ""
    return f"ETA: {float(expected.epochs):g} epochs per model expected ({source}{capped})"


def train_batch(ws: Workspace, category: str | None, batch_file: str | os.PathLike,
                options: TrainingOptions | None = None, *, only: Sequence[str] | None = None,
                log: Callable[[str], None] = output.info) -> list[dict[str, Any]]:
    """Train every config of a batch that has no certificate yet; returns all the batch's certificates.
    ``options``: how (``TrainingOptions``: epochs, --fast, --pack, --mixed-precision, --processes, --search).
    ``only``: train just these ids (a training process's share; no batch certificates file then)."""
    from epoch_builder import events as event_sink
    from epoch_builder.children import available_cores
    from epoch_builder.events import Eta
    from epoch_builder.regressions.runtime import configure_tensorflow, size_thread_pools, thread_pools

    options = options or TrainingOptions()
    config = ws.load_epoch_config()
    paths = ws.epoch()
    path = resolve_batch_file(ws, category, batch_file)
    batch = read_batch(path)
    category = category or batch_category(batch, path)  # the file says which; --category only checks it
    check_batch(batch, path, category, config.regression_lookback, config.regression_predictions)
    configs = batch["configs"]
    total = len(configs)
    mode = search_mode(options)
    state_file = paths.search_state_file(batch["name"])

    def still_pending() -> list[dict[str, Any]]:
        return [c for c in configs if not paths.regression_certificate_file(c["id"]).exists()
                and (only is None or c["id"] in only)]

    pending = still_pending()
    if pending and only is None:  # a refused rerun leaves the batch as it found it: checked before anything else
        if state_file.exists():
            limit = _search_limit(path, pending, options.max_epochs) if options.halving else None
            search.check_recorded(state_file, batch["name"], read_json(state_file), mode, limit)
        _check_checkpoints(paths, [c["id"] for c in pending], mode)
    if options.processes and options.processes > 1 and only is None and len(pending) > 1:
        train_in_processes(ws.root, category, path, [c["id"] for c in pending], options.processes, train_share,
                           options=options, events=event_sink.destination(),
                           log=lambda line: log(f"batch {batch['name']}: {line}"))
        pending = still_pending()  # none, unless a process failed (it raised then)
    search_state = None
    if pending and options.halving:
        search_state = search.SearchState.start_or_resume(state_file, batch["name"], mode,
                                                          _search_limit(path, pending, options.max_epochs),
                                                          [c["id"] for c in pending])
    pack_size = options.pack or packed.default_pack_size(category)
    if pending:  # TensorFlow only when there is something to train: a finished batch's rerun stays quick
        gpus = configure_tensorflow(op_determinism=not options.fast)
        if pack_size > 1 and not gpus:
            size_thread_pools(*packed.cpu_thread_pools(pack_size, available_cores()))
        import keras

        # Set for every batch (a process may train several): float16 compute only when asked for.
        keras.mixed_precision.set_global_policy(MIXED_POLICY if options.mixed_precision else "float32")
        how = f"op determinism off ({FAST_FLAG}: not repeatable)" if options.fast else "op determinism on (repeatable)"
        if options.mixed_precision:
            how += f", {MIXED_POLICY} ({MIXED_PRECISION_FLAG})" + ("" if gpus else ": no GPU, float16 on a CPU is slower")
        if options.halving:
            how += f", {describe_search(mode)}"
        log(f"batch {batch['name']} ({category}): {total} model(s), device {'GPU ' + ', '.join(gpus) if gpus else 'CPU'}, "
            f"{how}")
    else:
        log(f"batch {batch['name']} ({category}): {total} model(s), nothing left to train")
    data = load_datasets(ws, config.regression_lookback, config.regression_predictions) if pending else None
    if data is not None:
        log(f"datasets: {data.sizes['train_size']} train / {data.sizes['test_size']} test windows")
        expected = expected_epochs(paths, category)
        log(eta_line(expected, options.max_epochs))
    if pending and pack_size > 1:
        pools = thread_pools()
        log(f"{len(pending)} model(s) to train, up to {pack_size} together (--pack {pack_size})"
            + ("" if gpus else f"; CPU: {pools['inter_op']} op(s) side by side, {pools['intra_op']} thread(s) each"))
    skipped: dict[str, dict[str, Any]] = {}
    with output.progress_bars() as bars:
        models_bar = bars.add(f"batch {batch['name']} models", total)
        epochs_bar = bars.add("  epochs", None)
        for number, cfg in enumerate(configs, 1):
            if only is not None and cfg["id"] not in only:
                continue  # another training process's model
            cert_path = paths.regression_certificate_file(cfg["id"])
            if cert_path.exists():
                log(f"[{number}/{total}] {cfg['id']}: certificate exists, skipped")
                skipped[cfg["id"]] = read_json(cert_path)
                events.emit(STAGE, done=len(skipped), total=total, model=cfg["id"], number=number, skipped=True)
                models_bar.advance()
        trainer = None
        if data is not None:
            eta = Eta(len(pending), expected.epochs, finished=len(skipped))
            trainer = BatchTrainer(paths, ws, configs, data, seed=config.seed, validation_split=config.validation_split,
                                   max_epochs=options.max_epochs, pack_size=pack_size, eta=eta, log=log,
                                   models_bar=models_bar, epochs_bar=epochs_bar)
            if search_state is not None:
                search.run_halving(search_state, trainer, pack_size, log)
            else:
                trainer.train([c["id"] for c in pending], Stage())
    trained = trainer.certificates if trainer is not None else {}
    missing = [c["id"] for c in pending if c["id"] not in trained]
    if missing:  # every pending model is certified by now, whichever way it was trained
        raise EpochBuilderError(f"{path}: {len(missing)} model(s) left without a certificate ({', '.join(missing[:5])}); "
                                "rerun to resume them")
    by_id = {**skipped, **trained}
    certificates = [by_id[cfg["id"]] for cfg in configs if cfg["id"] in by_id]
    if only is not None:
        return certificates  # the parent writes the batch's file once every process is done
    atomic_write_json(paths.batched_certificates_file(batch["name"]), certificates)
    if state_file.exists():
        _remove_search_state(state_file)  # the search is over: every model of the batch is certified
    log(f"batch {batch['name']}: {len(trained)} trained, {total - len(trained)} skipped")
    return certificates
