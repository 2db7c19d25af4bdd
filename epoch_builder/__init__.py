"""Epoch Builder: headless pipeline from 1-minute candles to an Epoch File.

This package never imports textual, asyncssh, ``remote`` or ``console``
(tests/test_layers.py enforces it), and keeps module import light: TensorFlow
and pandas are imported inside the functions that need them.
"""

__version__ = "0.1.0"
