"""TensorFlow/Keras process setup: quiet logs, GPU memory growth, seeds, determinism.

On a machine where TensorFlow sees a GPU, training runs there with memory
growth on (TensorFlow then takes GPU memory as needed instead of all of it at
start, so other jobs can share the card). Op determinism makes CPU runs
repeatable bit for bit for a seed; on GPUs it also selects deterministic
kernels (slower, still repeatable).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from typing import Iterator

from epoch_builder.errors import EpochBuilderError

_configured = False


# TensorFlow's native start-up lines: written before absl logging is set up, so TF_CPP_MIN_LOG_LEVEL
# cannot silence them. Only these are dropped; anything else TensorFlow writes meanwhile is kept.
_STARTUP_NOISE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|I\d{4} [\d:.]+ +\d+ (port|cpu_feature_guard)\.cc:\d+\] .*"
    rb"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\.)$")


@contextlib.contextmanager
def _without_startup_noise() -> Iterator[None]:
    """Capture the process's native stderr (fd 2) meanwhile; write back all but the start-up noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().splitlines(keepends=True) if not _STARTUP_NOISE.match(line.rstrip(b"\n"))]
            if kept:
                os.write(2, b"".join(kept))


def _expected_retracing(record: logging.LogRecord) -> bool:
    """Drop TensorFlow's "N out of the last M calls ... triggered tf.function retracing" warning: every
    model a process trains or loads has its own train/predict functions, traced once each, which
    TensorFlow's heuristic counts as retracing. Any other TensorFlow message passes."""
    return "triggered tf.function retracing" not in record.getMessage()


def configure_tensorflow(op_determinism: bool | None = None) -> list[str]:
    """Once per process; returns the GPU device names TensorFlow sees.

    Op determinism is on from the first call. ``op_determinism`` True or False switches it for the
    whole process from here on (``train-regression-batch --fast`` passes False: faster, not
    repeatable); None leaves it as it is, so a later plain call (``seed_everything``) does not
    undo a ``--fast``."""
    global _configured
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        if "tensorflow" not in sys.modules:
            with _without_startup_noise():
                import tensorflow as tf

                tf.config.list_physical_devices("GPU")  # initialises the devices (prints the same lines again)
        import tensorflow as tf
    except ImportError as exc:  # the project's TensorFlow comes from its `cpu` or `gpu` extra
        raise EpochBuilderError(
            f"TensorFlow cannot be imported by {sys.executable} ({exc}): install the project with its "
            "TensorFlow build, `pip install -c constraints.txt 'epoch-builder[cpu]'` (or [gpu]; `make "
            "install` does it), or on a server `epoch-cluster bootstrap`") from None

    gpus = tf.config.list_physical_devices("GPU")
    if not _configured:
        for gpu in gpus:
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:  # already initialised by an earlier import in this process
                pass
        tf.config.experimental.enable_op_determinism()
        logging.getLogger("tensorflow").addFilter(_expected_retracing)
        _configured = True
    if op_determinism is not None:
        # tf.config.experimental exports only the switch on; the switch off lives beside it.
        from tensorflow.python.framework import config as tf_config

        (tf_config.enable_op_determinism if op_determinism else tf_config.disable_op_determinism)()
    return [gpu.name for gpu in gpus]


THREAD_POOL_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def size_thread_pools(intra_op: int, inter_op: int) -> None:
    """Size TensorFlow's CPU thread pools: ``intra_op`` threads share one op, ``inter_op`` ops run side by
    side. Only before the process's first op (TensorFlow sizes them once; later it keeps what it has, which
    ``thread_pools`` reports); a variable of ``THREAD_POOL_VARIABLES`` set in the environment wins."""
    if any(os.environ.get(name) for name in THREAD_POOL_VARIABLES):
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError:  # an op ran already: the pools are sized
        pass


def thread_pools() -> dict[str, int]:
    """The process's pool sizes (``intra_op``, ``inter_op``), TensorFlow's default (every core) spelled out."""
    import tensorflow as tf

    from epoch_builder.children import available_cores

    def size(configured: int, variable: str) -> int:
        return configured or int(os.environ.get(variable) or 0) or available_cores()

    return {"intra_op": size(tf.config.threading.get_intra_op_parallelism_threads(), THREAD_POOL_VARIABLES[0]),
            "inter_op": size(tf.config.threading.get_inter_op_parallelism_threads(), THREAD_POOL_VARIABLES[1])}


def seed_everything(seed: int) -> None:
    """Python, NumPy and TensorFlow from one seed (keras.utils.set_random_seed does all three)."""
    import keras

    configure_tensorflow()
    keras.utils.set_random_seed(seed)
