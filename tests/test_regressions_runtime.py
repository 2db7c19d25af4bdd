"""TensorFlow set-up: its native start-up lines are dropped, anything else written meanwhile is kept."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import os
from epoch_builder.regressions import runtime
with runtime._without_startup_noise():
    os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n")
    os.write(2, b"I0000 00:00:1795841548.511728    6569 port.cc:153] oneDNN custom operations are on.\\n")
    os.write(2, b"E0000 something real went wrong\\n")
runtime.configure_tensorflow()
import keras
print("devices ok")
"""


def test_tensorflow_start_up_is_quiet_but_real_errors_remain() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "devices ok"
    assert done.stderr == "E0000 something real went wrong\n"


def test_a_venv_without_tensorflow_says_which_extra_to_install() -> None:
    """TensorFlow comes from the `cpu` or `gpu` extra: without it, one line that says so (a None entry in
    sys.modules makes `import tensorflow` fail as in a venv that lacks it)."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['tensorflow'] = None\n"
            "from epoch_builder.errors import EpochBuilderError\n"
            "from epoch_builder.regressions.runtime import configure_tensorflow\n"
            "try:\n    configure_tensorflow()\nexcept EpochBuilderError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout.strip()
    assert out.startswith(f"TensorFlow cannot be imported by {sys.executable}")
    assert "'epoch-builder[cpu]'" in out and "epoch-cluster bootstrap" in out
