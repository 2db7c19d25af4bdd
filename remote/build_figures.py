"""The build's selection-bias figures for the console, which does not import ``epoch_builder.prediction``
(layers point one way: console -> remote -> epoch_builder)."""

from epoch_builder.prediction.build import load_summary as load_build_summary
from epoch_builder.prediction.build import luck_line

__all__ = ["load_build_summary", "luck_line"]
