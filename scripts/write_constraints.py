"""Write constraints.txt: the exact versions of this venv's packages, which every host installs with.

`make install` and `epoch-cluster bootstrap` both install with ``pip install -c constraints.txt``, so the
controller and every server train with the same TensorFlow, Keras and NumPy (certificates record them).
Run it (``make constraints``) after changing a dependency in pyproject.toml, then commit the file.

The GPU build (``tensorflow[and-cuda]``) is pinned to the CPU build's version: a GPU server trains with
the same TensorFlow release as a CPU one.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

TARGET = Path(__file__).resolve().parents[1] / "constraints.txt"
NOT_PINNED = {"epoch-builder", "pyflakes"}  # the project itself; a lint tool some checkouts add by hand
HEADER = ("# Exact versions every host installs with (pip install -c constraints.txt); written by\n"
          "# `make constraints` (scripts/write_constraints.py) from the project's venv. Do not edit by hand.\n")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main() -> int:
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable", "--disable-pip-version-check"],
                            capture_output=True, text=True, check=True).stdout.splitlines()
    pins: dict[str, str] = {}
    for line in frozen:
        name, sep, version = line.partition("==")
        if not sep or canonical(name) in NOT_PINNED:
            continue  # a direct URL or path, or not ours to pin
        pins[canonical(name)] = version.strip()
    cpu_build = pins.get("tensorflow-cpu") or pins.get("tensorflow")
    if cpu_build is None:
        print("error: no tensorflow-cpu or tensorflow in this venv; run `make install` first", file=sys.stderr)
        return 1
    pins.setdefault("tensorflow", cpu_build)  # the GPU build ([gpu] extra) at the same release
    text = HEADER + "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))
    temporary = TARGET.with_name(f".{TARGET.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, TARGET)
    print(f"{TARGET}: {len(pins)} pins (tensorflow {cpu_build})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
