"""A batch of regressions trained: the orchestrator above the building blocks.

``train_batch`` reads a batch file, skips the models already certified, and trains the rest one at a time
(``training.train_model``), in packs (``packed.train_pack``) or in several processes
(``processes.train_in_processes``, whose children run ``train_share``: this module again, on their share).
The building blocks import nothing from here, so the three never import each other in a loop.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from epoch_builder import events, output
from epoch_builder.errors import UsageError
from epoch_builder.regressions import packed
from epoch_builder.regressions.configs import MAX_PACK_SIZE, MAX_PROCESSES, read_batch
from epoch_builder.regressions.datasets import load_datasets
from epoch_builder.regressions.processes import ChildJob, train_in_processes
from epoch_builder.regressions.training import (FAST_FLAG, MIXED_POLICY, MIXED_PRECISION_FLAG, STAGE, batch_category,
                                                check_batch, resolve_batch_file, train_model)
from epoch_builder.storage import atomic_write_json, read_json
from epoch_builder.workspace import Workspace


def train_share(job: ChildJob) -> None:
    """A training process's work (``processes``): its models of the batch only."""
    train_batch(Workspace(Path(job.root)), job.category, job.batch_file, max_epochs=job.max_epochs, fast=job.fast,
                pack=job.pack, mixed_precision=job.mixed_precision, only=job.model_ids, log=output.info)


def train_batch(ws: Workspace, category: str | None, batch_file: str | os.PathLike, *, max_epochs: int | None = None,
                fast: bool = False, pack: int | None = None, mixed_precision: bool = False,
                processes: int | None = None, only: Sequence[str] | None = None,
                log: Callable[[str], None] = output.info) -> list[dict[str, Any]]:
    """Train every config of a batch that has no certificate yet; returns all the batch's certificates.
    ``fast``: op determinism off for this process (``--fast``). ``pack``: models trained together in one
    compiled step (``--pack``; default per family, ``packed.DEFAULT_PACK_SIZES``; 1: one at a time).
    ``processes``: that many training processes with the cores split between them (``--processes``).
    ``only``: train just these ids (a training process's share; no batch certificates file then)."""
    from epoch_builder import events as event_sink
    from epoch_builder.events import Eta
    from epoch_builder.children import available_cores
    from epoch_builder.regressions.runtime import configure_tensorflow, size_thread_pools, thread_pools

    if max_epochs is not None and max_epochs < 1:
        raise UsageError(f"--max-epochs {max_epochs} must be a positive integer")
    if pack is not None and not 1 <= pack <= MAX_PACK_SIZE:
        raise UsageError(f"--pack {pack} must be 1 to {MAX_PACK_SIZE} (models trained together)")
    if processes is not None and not 1 <= processes <= MAX_PROCESSES:
        raise UsageError(f"--processes {processes} must be 1 to {MAX_PROCESSES} (training processes)")
    config = ws.load_epoch_config()
    paths = ws.epoch()
    path = resolve_batch_file(ws, category, batch_file)
    batch = read_batch(path)
    category = category or batch_category(batch, path)  # the file says which; --category only checks it
    check_batch(batch, path, category, config.regression_lookback, config.regression_predictions)
    configs = batch["configs"]
    total = len(configs)

    def still_pending() -> list[dict[str, Any]]:
        return [c for c in configs if not paths.regression_certificate_file(c["id"]).exists()
                and (only is None or c["id"] in only)]

    pending = still_pending()
    if processes and processes > 1 and only is None and len(pending) > 1:
        train_in_processes(ws.root, category, path, [c["id"] for c in pending], processes, train_share, max_epochs=max_epochs,
                           fast=fast, pack=pack, mixed_precision=mixed_precision, events=event_sink.destination(),
                           log=lambda line: log(f"batch {batch['name']}: {line}"))
        pending = still_pending()  # none, unless a process failed (it raised then)
    pack_size = pack or packed.default_pack_size(category)
    if pending:  # TensorFlow only when there is something to train: a finished batch's rerun stays quick
        gpus = configure_tensorflow(op_determinism=not fast)
        if pack_size > 1 and not gpus:
            size_thread_pools(*packed.cpu_thread_pools(pack_size, available_cores()))
        import keras

        # Set for every batch (a process may train several): float16 compute only when asked for.
        keras.mixed_precision.set_global_policy(MIXED_POLICY if mixed_precision else "float32")
        mode = f"op determinism off ({FAST_FLAG}: not repeatable)" if fast else "op determinism on (repeatable)"
        if mixed_precision:
            mode += f", {MIXED_POLICY} ({MIXED_PRECISION_FLAG})" + ("" if gpus else ": no GPU, float16 on a CPU is slower")
        log(f"batch {batch['name']} ({category}): {total} model(s), device {'GPU ' + ', '.join(gpus) if gpus else 'CPU'}, "
            f"{mode}")
    else:
        log(f"batch {batch['name']} ({category}): {total} model(s), nothing left to train")
    data = load_datasets(ws, config.regression_lookback, config.regression_predictions) if pending else None
    if data is not None:
        log(f"datasets: {data.sizes['train_size']} train / {data.sizes['test_size']} test windows")
    eta = Eta(len(pending))
    if pending and pack_size > 1:
        pools = thread_pools()
        log(f"{len(pending)} model(s) to train, up to {pack_size} together (--pack {pack_size})"
            + ("" if gpus else f"; CPU: {pools['inter_op']} op(s) side by side, {pools['intra_op']} thread(s) each"))
    by_id: dict[str, dict[str, Any]] = {}
    trained = 0
    with output.progress_bars() as bars:
        models_bar = bars.add(f"batch {batch['name']} models", total)
        epochs_bar = bars.add("  epochs", None)
        todo: list[tuple[int, dict[str, Any]]] = []
        for number, cfg in enumerate(configs, 1):
            cert_path = paths.regression_certificate_file(cfg["id"])
            if only is not None and cfg["id"] not in only:
                continue  # another training process's model
            if cert_path.exists():
                log(f"[{number}/{total}] {cfg['id']}: certificate exists, skipped")
                by_id[cfg["id"]] = read_json(cert_path)
                events.emit(STAGE, done=number, total=total, model=cfg["id"], skipped=True)
                models_bar.advance()
            else:
                todo.append((number, cfg))
        for first in range(0, len(todo), pack_size):
            group = todo[first:first + pack_size]
            started = time.monotonic()
            if pack_size == 1:
                (number, cfg), = group
                done = [train_model(ws, cfg, data, seed=config.seed, validation_split=config.validation_split,
                                    max_epochs=max_epochs, position=(number, total), eta=eta, models_done=trained,
                                    log=log, bar=epochs_bar)]
            else:
                done = packed.train_pack(ws, group, data, seed=config.seed, validation_split=config.validation_split,
                                         max_epochs=max_epochs, total=total, eta=eta, models_done=trained, log=log,
                                         bar=epochs_bar)
            for (number, cfg), cert in zip(group, done):
                trained += 1
                by_id[cfg["id"]] = cert
                test_loss = cert["test_evaluation"]["loss"]
                log(f"[{number}/{total}] {cfg['id']}: done in {time.monotonic() - started:.1f}s"
                    f"{f' (a pack of {len(group)})' if pack_size > 1 else ''}, {cert['epochs']} epochs, "
                    f"test loss {'diverged' if test_loss is None else f'{test_loss:.6f}'}, "
                    f"accuracy {cert['discovery']['accuracy']}%")
                models_bar.advance(info=f"last {cfg['id']}")
    certificates = [by_id[cfg["id"]] for cfg in configs if cfg["id"] in by_id]
    if only is not None:
        return certificates  # the parent writes the batch's file once every process is done
    atomic_write_json(paths.batched_certificates_file(batch["name"]), certificates)
    log(f"batch {batch['name']}: {trained} trained, {total - trained} skipped")
    return certificates

