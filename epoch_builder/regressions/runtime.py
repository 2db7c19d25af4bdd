"""TensorFlow/Keras process setup: quiet logs, GPU memory growth, seeds, determinism.

On a machine where TensorFlow sees a GPU, training runs there with memory
growth on (TensorFlow then takes GPU memory as needed instead of all of it at
start, so other jobs can share the card). Op determinism makes CPU runs
repeatable bit for bit for a seed; on GPUs it also selects deterministic
kernels (slower, still repeatable).
"""

from __future__ import annotations

import os

_configured = False


def configure_tensorflow() -> list[str]:
    """Once per process; returns the GPU device names TensorFlow sees."""
    global _configured
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not _configured:
        for gpu in gpus:
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:  # already initialised by an earlier import in this process
                pass
        tf.config.experimental.enable_op_determinism()
        _configured = True
    return [gpu.name for gpu in gpus]


def seed_everything(seed: int) -> None:
    """Python, NumPy and TensorFlow from one seed (keras.utils.set_random_seed does all three)."""
    import keras

    configure_tensorflow()
    keras.utils.set_random_seed(seed)
