"""Training a batch in several processes, the host's cores split between them (``--processes N``).

On a few CPU cores TensorFlow spreads one small model's matmuls thinly over its threads; N processes of
cores/N threads each keep the cores busier (bench/bench_training.py ``--processes`` measures it; docs/benchmarks.md
"Training throughput"). The batch's pending models are cut into N contiguous groups, each trained by one
spawned process with ``train_batch`` (so each group still trains in packs, checkpoints every epoch and
writes its own certificates); the parent waits for all, then writes the batch's certificates file from
the certificates on disk. A child dies with its parent (``PR_SET_PDEATHSIG``): after a kill -9 nothing
keeps training, and the rerun resumes every model from its checkpoint. Under ``--search full`` only: a
halving rung ranks the whole batch, which would need every process at the rung (``TrainingOptions``
refuses the pair).
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from epoch_builder.children import available_cores, die_with_parent
from epoch_builder.errors import EpochBuilderError
from epoch_builder.regressions.options import TrainingOptions


@dataclass(frozen=True)
class ChildJob:
    """What one training process needs (picklable: the process is spawned, not forked)."""

    root: str
    category: str
    batch_file: str
    model_ids: tuple[str, ...]
    threads: int
    parent_pid: int
    options: TrainingOptions  # the parent's, whole (a child never spawns more: it trains only its share)
    events: str | None  # the parent's events destination ("-" for stdout)
    verbosity: int  # the parent's log level, as output.configure takes it


def split(ids: Sequence[str], parts: int) -> list[tuple[str, ...]]:
    """``ids`` in ``parts`` contiguous groups whose sizes differ by at most one (no empty group)."""
    parts = max(1, min(parts, len(ids)))
    size, extra = divmod(len(ids), parts)
    groups, start = [], 0
    for index in range(parts):
        stop = start + size + (1 if index < extra else 0)
        groups.append(tuple(ids[start:stop]))
        start = stop
    return groups


def _run_child(body: Callable[[ChildJob], None], job: ChildJob) -> None:
    """A child's life: its share of the cores, its parent's logging, then ``body(job)`` (the batch's training of
    its models only: ``batch.train_share``, handed over by the caller so that this module imports it not)."""
    die_with_parent(job.parent_pid)
    # Before TensorFlow starts: its thread pools are sized once, at start-up.
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(job.threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    from epoch_builder import events, output

    events.configure(job.events)
    # The parent's log lines, on the stderr they share; no progress bars (two would fight over the terminal).
    output.configure(verbosity=job.verbosity, progress=False, events_on_stdout=events.on_stdout())
    try:
        from epoch_builder.regressions.runtime import configure_tensorflow

        configure_tensorflow()  # TensorFlow's start-up noise dropped, as in the parent
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(job.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        body(job)
    except EpochBuilderError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)


def train_in_processes(root: Path, category: str, batch_file: Path, model_ids: Sequence[str], processes: int,
                       body: Callable[[ChildJob], None], *, options: TrainingOptions, events: str | None,
                       log: Callable[[str], None]) -> None:
    """Train ``model_ids`` of the batch in ``processes`` spawned processes, each running ``body`` (a module-level
    function: the child imports it by name) on its share; raises when any of them failed (after all have
    ended: the others' models are done and certified)."""
    import logging

    from epoch_builder import output

    level = output.log.getEffectiveLevel()
    verbosity = -1 if level >= logging.WARNING else 1 if level <= logging.DEBUG else 0
    groups = split(list(model_ids), processes)
    threads = max(1, available_cores() // len(groups))
    log(f"{len(model_ids)} model(s) in {len(groups)} training processes of {threads} thread(s) each "
        f"(--processes {processes})")
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no TensorFlow state copied
    children = []
    for group in groups:
        job = ChildJob(str(root), category, str(batch_file), group, threads, os.getpid(), options, events, verbosity)
        child = context.Process(target=functools.partial(_run_child, body), args=(job,),
                                name=f"train {group[0]}..{group[-1]}")
        child.start()
        children.append((group, child))
    failed = []
    for group, child in children:
        child.join()
        if child.exitcode != 0:
            failed.append(f"{group[0]}..{group[-1]} ({len(group)} model(s)): exit code {child.exitcode}")
    if failed:
        raise EpochBuilderError(f"{batch_file}: {len(failed)} of {len(groups)} training process(es) failed: "
                                + "; ".join(failed) + " (their errors are above; rerun to resume)")
