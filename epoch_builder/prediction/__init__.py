"""Prediction models (SEMANTICS §5-§7).

Kept import-light on purpose: the engine (``engine.py``, Numba) is imported
only by the code that evaluates configurations.
"""
