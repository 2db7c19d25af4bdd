"""Atomic writes: a temporary left by a writer killed with -9 is removed by the next write of the file."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from epoch_builder.storage import atomic_write_json

WRITER = (
    "import sys, time; from pathlib import Path; from epoch_builder.storage import atomic_write_with\n"
    "def write(tmp):\n"
    "    tmp.write_text('half'); print('writing', flush=True); time.sleep(600)\n"
    "atomic_write_with(Path(sys.argv[1]), write)\n"
)


def start_writer(target: Path) -> subprocess.Popen:
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"
    return writer


def temporaries(target: Path) -> list[str]:
    return sorted(p.name for p in target.parent.iterdir() if p.name.startswith(f".{target.name}."))


def test_a_killed_writers_temporary_goes_at_the_next_write_and_a_live_ones_stays(tmp_path: Path) -> None:
    target = tmp_path / "build.json"
    killed = start_writer(target)
    killed.send_signal(signal.SIGKILL)
    killed.wait(10)
    [left] = temporaries(target)
    assert f".build.json.{killed.pid}." in left
    live = start_writer(target)
    try:
        atomic_write_json(target, {"ok": True})
        assert json.loads(target.read_text()) == {"ok": True}
        [kept] = temporaries(target)  # the killed writer's is gone; the running writer's is its own business
        assert f".build.json.{live.pid}." in kept
    finally:
        live.kill()
        live.wait(10)
