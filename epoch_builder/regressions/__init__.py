"""Regression factory (SEMANTICS §3): architectures, the hyperparameter grid,
resumable batch training, certificates, inference and ranking.

Modules import TensorFlow/Keras only inside functions, so importing this
package (and the CLI) stays light.
"""
