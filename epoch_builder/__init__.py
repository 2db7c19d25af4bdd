"""Epoch Builder: headless pipeline from 1-minute candles to an Epoch File.

This package never imports textual, asyncssh, ``remote`` or ``console``
(tests/test_layers.py enforces it), and keeps module import light: TensorFlow
and pandas are imported inside the functions that need them.
"""

__version__ = "0.1.0"

import os as _os

# Keras 3 picks its backend from this variable at first import. Every model here is trained, checkpointed
# and exported through TensorFlow (the legacy HDF5 export and the platform's loader are TensorFlow's), so a
# host whose environment names another backend (jax, torch) must not silently train with it.
_os.environ["KERAS_BACKEND"] = "tensorflow"
