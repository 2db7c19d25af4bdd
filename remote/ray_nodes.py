"""What runs on the nodes of a Ray cluster for ``epoch-cluster dispatch --engine ray``: the actors.

* ``CheckpointStore``: one per epoch, detached, on the head node: the stage's
  inputs, each batch's last checkpoint, and where each run of a batch started.
* ``BatchRunner``: one detached, named actor per batch: writes its inputs and
  last checkpoint into a fresh directory on its node, runs the batch's
  ``epoch-builder`` subcommand there in a child process that dies with it,
  ships the checkpoints back to the store every ``SNAPSHOT_EVERY_S``, and
  hands back the batch's results once it exited 0.

The dispatcher (:mod:`remote.ray_engine`, where the workspace is) makes them
with ``ray.remote(cls)``. No code travels with them (no ``runtime_env``,
``working_dir`` or ``py_modules``): Ray pickles these classes by reference,
module and name, and a node's worker imports this module from its own install
of the project (the ``ray`` extra, on the controller and on every node). At
import it needs only the standard library, :mod:`remote.host_program` and
:mod:`remote.board`; Ray and the pipeline's modules are imported inside the
methods that use them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from remote import board as boards
from remote import host_program

NAMESPACE = "epoch-builder"  # Ray namespace of the actors (the dispatcher's too)
SNAPSHOT_EVERY_S = 2.0  # a running batch ships its checkpoints back at most this often
LOG_CHUNK_BYTES = 64 * 1024  # of a runner's log per call
CALL_TIMEOUT_S = 300.0  # any other call to an actor (inputs, results: possibly large); a hung call is an error
EVENTS_FILE = ".ray-events.jsonl"  # in a runner's directory
LOG_FILE = ".ray-job.log"

Files = dict[str, list]  # workspace-relative path -> [content bytes, mtime_ns]


# --- files in and out ------------------------------------------------------------------------------


def _regular_files(root: Path, rel: str) -> Iterable[Path]:
    """Regular files at or under ``root/rel``; links (to files or directories) are never followed."""
    path = root / rel
    if path.is_symlink():
        return
    if path.is_file():
        yield path
    elif path.is_dir():
        for directory, subdirs, names in os.walk(path):  # followlinks=False: linked directories stay out
            subdirs.sort()
            for name in sorted(names):
                file = Path(directory) / name
                if file.is_file() and not file.is_symlink():
                    yield file


def read_files(root: Path, rels: Iterable[str]) -> Files:
    """Every regular file under the workspace-relative ``rels`` (files or directories), links skipped."""
    files: Files = {}
    for rel in rels:
        for path in _regular_files(root, rel):
            files[path.relative_to(root).as_posix()] = [path.read_bytes(), path.stat().st_mtime_ns]
    return files


def write_files(root: Path, files: Files) -> None:
    """The controller's own inputs (trusted) or stored checkpoints into a runner's directory."""
    for rel, (data, mtime_ns) in files.items():
        path = root / host_program.safe_relpath(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, ns=(int(mtime_ns), int(mtime_ns)))


def fingerprint_of(files: Files) -> str:
    """The identity of a file map: its paths and contents (mtimes aside)."""
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(rel.encode() + b"\0" + hashlib.sha256(files[rel][0]).digest())
    return digest.hexdigest()


# --- the actors ------------------------------------------------------------------------------------


class CheckpointStore:
    """On the dispatcher's node (it survives a worker node's loss), detached (it survives the dispatcher):
    the batches' inputs, each batch's last checkpoint, and where each of its runs started (a restarted
    runner counts one more start). Runners fetch their inputs from here, so their constructor arguments
    are names only and a runner restarts even after the dispatcher that created it is gone (Ray cannot
    restart an actor whose arguments were objects owned by a dead driver)."""

    def __init__(self) -> None:
        self.inputs: dict[str, Files] = {}
        self.saved: dict[str, Files] = {}
        self.starts: dict[str, list[str]] = {}

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def put_inputs(self, name: str, files: Files) -> None:
        self.inputs[name] = files

    def has_inputs(self, name: str) -> bool:
        return name in self.inputs

    def inputs_of(self, name: str) -> Files:
        return self.inputs[name]

    def save(self, key: str, files: Files) -> None:
        self.saved[key] = files

    def checkpoint(self, key: str) -> Files | None:
        return self.saved.get(key)

    def started(self, key: str, node: str) -> int:
        self.starts.setdefault(key, []).append(node)
        return len(self.starts[key])

    def starts_of(self, key: str) -> list[str]:
        return list(self.starts.get(key, []))

    def drop(self, key: str) -> None:
        """A batch done: its checkpoint and its own inputs go (its starts stay, for the record)."""
        self.saved.pop(key, None)
        for name in [n for n in self.inputs if n.startswith(f"{key}:")]:
            del self.inputs[name]

    def drop_inputs(self, prefix: str) -> None:
        for name in [n for n in self.inputs if n.startswith(prefix)]:
            del self.inputs[name]


class BatchRunner:
    """One batch on one node: its inputs and last checkpoint written into a fresh directory, the batch's
    ``epoch-builder`` subcommand run there in a child process; status and, once done, its results."""

    def __init__(self, key: str, argv: list[str], pull_paths: list[str], checkpoint_paths: list[str],
                 inputs: list[str], store: str) -> None:
        import ray

        self.key, self.argv = key, list(argv)
        self.pull_paths, self.checkpoint_paths = list(pull_paths), list(checkpoint_paths)
        self.node = ray.get_runtime_context().get_node_id()
        self.store_name = store
        self.store = ray.get_actor(store, namespace=NAMESPACE)
        self.workdir = Path(tempfile.mkdtemp(prefix="epoch-builder-ray-"))
        for name in inputs:  # the stage's common inputs, then the batch's own
            write_files(self.workdir, ray.get(self.store.inputs_of.remote(name)))
        saved = ray.get(self.store.checkpoint.remote(key))
        self.resumed_files = len(saved or {})
        if saved:
            write_files(self.workdir, saved)
        self.start = ray.get(self.store.started.remote(key, self.node))
        self.state, self.exit_code, self.result_files = "running", None, None
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()
        threading.Thread(target=self._run, name=f"batch {key}", daemon=True).start()

    def _find_store(self) -> None:
        import ray

        try:
            self.store = ray.get_actor(self.store_name, namespace=NAMESPACE)  # a new one the dispatcher made
        except ValueError:
            pass

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "epoch_builder", self.argv[0], "--workspace", str(self.workdir), "--no-progress",
                *self.argv[1:]]

    def _run(self) -> None:
        try:
            self._run_batch()
        except Exception as exc:  # noqa: BLE001 - reported as the batch's failure, never a silent hang
            with self._lock:
                self.state, self.exit_code = "failed", self.exit_code if self.exit_code is not None else -1
            with open(self.workdir / LOG_FILE, "a", encoding="utf-8") as log:
                log.write(f"ray runner: {type(exc).__name__}: {exc}\n")

    def _run_batch(self) -> None:
        import ray

        from epoch_builder.children import die_with_parent
        from epoch_builder.events import EVENTS_ENV, JOB_ENV

        env = {**os.environ, EVENTS_ENV: str(self.workdir / EVENTS_FILE), JOB_ENV: f"{self.key}#{self.start}"}
        parent = os.getpid()
        with open(self.workdir / LOG_FILE, "ab") as log:
            self._process = subprocess.Popen(self._command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                                             cwd=self.workdir, preexec_fn=lambda: die_with_parent(parent))
            shipped = ""
            while True:
                try:
                    code = self._process.wait(timeout=SNAPSHOT_EVERY_S)
                    break
                except subprocess.TimeoutExpired:
                    pass
                snapshot = read_files(self.workdir, self.checkpoint_paths)
                fingerprint = fingerprint_of(snapshot)
                if snapshot and fingerprint != shipped:  # the store keeps the last complete one
                    try:
                        ray.get(self.store.save.remote(self.key, snapshot), timeout=CALL_TIMEOUT_S)
                        shipped = fingerprint
                    except Exception:  # noqa: BLE001 - the store is gone or slow: the batch goes on, unshipped
                        self._find_store()
        with self._lock:
            self.exit_code = code
            if code == 0:
                self.result_files = read_files(self.workdir, self.pull_paths)
                self.state = "done"
            else:
                self.state = "failed"

    def _last_event(self) -> dict[str, Any] | None:
        import json

        try:
            lines = (self.workdir / EVENTS_FILE).read_bytes().splitlines()
        except OSError:
            return None
        for line in reversed(lines[-20:]):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                return event
        return None

    def status(self) -> dict[str, Any]:
        with self._lock:
            state, code = self.state, self.exit_code
        tail: list[str] = []
        if state == "failed":
            try:
                text = (self.workdir / LOG_FILE).read_text(encoding="utf-8", errors="replace")
                tail = text.splitlines()[-boards.LOG_TAIL_LINES:]
            except OSError:
                pass
        return {"state": state, "node": self.node, "exit_code": code, "event": self._last_event(),
                "log_tail": tail, "start": self.start, "resumed_files": self.resumed_files}

    def result(self) -> Files | None:
        return self.result_files

    def log_since(self, offset: int) -> list:
        """``[the job log's bytes from offset (at most LOG_CHUNK_BYTES), the next offset, still running]``."""
        try:
            with open(self.workdir / LOG_FILE, "rb") as handle:
                handle.seek(max(0, int(offset)))
                data = handle.read(LOG_CHUNK_BYTES)
        except OSError:
            data = b""
        with self._lock:
            running = self.state == "running"
        return [data, int(offset) + len(data), running]

    def stop(self) -> None:
        """End the child (if it still runs) and remove the directory: before the dispatcher kills the actor."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)
