"""The program that runs on a host: job control, file manifests and verified commits.

Runs on the server with the server's own Python and the standard library
only, and imports nothing of the project: the controller
(:mod:`remote.host_program_client`) sends this file's source on stdin with
the JSON request inside it (``python - <command>``), so the program needs no
install and always matches the controller.  Every answer is one JSON line on stdout:
``{"ok": ...}`` or ``{"error": {"kind": ..., "message": ...}}``; ``follow``
and ``send`` instead stream raw bytes (a log; a tar of files for a pull).
``receive`` (a push) is loaded by a small bootstrap (``python -c``, see
``remote.host_program_client.BOOTSTRAP``) so that stdin carries files after the
program; it prints its staging directory first, then its answer.

Job layout ``<root>/.jobs/<job-id>/``:

    argv.json     the epoch-builder arguments
    job.json      id, argv, pid (= process group id), start ticks, started_at
    pid           the wrapper's pid, which is also the job's process group id
    log           stdout + stderr of ``epoch-builder``
    events.jsonl  JSON-lines progress events (``--events``)
    exit_code     written by the wrapper when the process ends (atomic)
    stopped       written by ``stop`` (time of the request)

The wrapper is a forked copy of this program that calls ``setsid()`` (its pid
becomes the job's process group), reads stdin from /dev/null, runs
``python -m epoch_builder.cli <argv> --workspace <root> --events <job>/events.jsonl``
and writes ``exit_code`` when it ends.  A job is *running* while a process of
its group is alive (identified by the recorded start ticks or the
``EPOCH_BUILDER_JOB_ID`` in its environment, so a reused pid is never
mistaken for it), *exited k* once ``exit_code`` exists, *lost* otherwise.
"""

from __future__ import annotations

import concurrent.futures
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import threading
import time

# The job id's variable in a job's environment: epoch_builder.events.JOB_ENV, written out here because this
# program runs from its source text alone (tests/remote/test_jobs.py checks that the two are equal).
JOB_ENV = "EPOCH_BUILDER_JOB_ID"
# The controller sends this file on stdin with the line below replaced by the request's JSON (see
# ``remote.host_program_client.request_program``): a request of any size (20,000 paths) never meets the
# command line's limits. Run as a file, the request comes as the second argument instead.
STDIN_REQUEST = None  # request placeholder
CONTROL_CHARACTER_RE = re.compile(r"[\x00-\x1f\x7f]")
SUBCOMMAND_RE = re.compile(r"^[a-z][a-z0-9-]{0,63}$")
RESERVED_JOB_OPTIONS = ("--workspace", "--events")  # the job layout sets them; a caller's would fight it
JOB_ID_RE = re.compile(r"^[0-9]{8}T[0-9]{6}-[a-z0-9-]{1,64}-[0-9a-f]{6}$")
STAGING_DIR = ".sync-staging"
STAGING_LOCK = ".lock"  # flocked by the staging directory's owner (see Staging)
STAGING_NEW_PREFIX = ".new-"  # a staging directory before its lock is taken
STAGING_MAX_AGE_S = 3600  # a .new- directory older than this was cut short while being made


class HostProgramError(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


# --------------------------------------------------------------------------- small helpers


def _atomic_write(path: str, data: bytes) -> None:
    """Readers see the old file or the new one, never a part (no fsync: job metadata is not precious)."""
    tmp = f"{path}.{secrets.token_hex(4)}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, start ticks) of a live process, None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode("utf-8", "replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw[raw.rfind(")") + 2:].split()
    return fields[0], int(fields[2]), int(fields[19])


def _has_job_env(pid: int, job_id: str) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return f"{JOB_ENV}={job_id}".encode() in fh.read().split(b"\0")
    except OSError:
        return False


def _job_members(job: dict) -> list[int]:
    """Live (non-zombie) processes of the job's process group that belong to this job."""
    pgid = int(job["pid"])
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        info = _proc_stat(pid)
        if info is None or info[1] != pgid or info[0] in ("Z", "X"):
            continue
        if (pid == pgid and info[2] == job.get("start_ticks")) or _has_job_env(pid, job["id"]):
            members.append(pid)
    return members


def _jobs_dir(root: str) -> str:
    return os.path.join(root, ".jobs")


def _job_dir(root: str, job_id: str) -> str:
    if not JOB_ID_RE.match(job_id or ""):
        raise HostProgramError("not_found", f"job id {job_id!r} is not a job id (like 20240501T101112-train-regression-batch-a1b2c3)")
    path = os.path.join(_jobs_dir(root), job_id)
    if not os.path.isdir(path):
        raise HostProgramError("not_found", f"no job {job_id} under {_jobs_dir(root)}")
    return path


def _job_info(root: str, job_id: str) -> dict:
    directory = os.path.join(_jobs_dir(root), job_id)
    raw = _read(os.path.join(directory, "job.json"))
    damaged = None
    job = None
    if raw is not None:
        try:
            job = json.loads(raw)
        except ValueError:
            job = None
        if not isinstance(job, dict) or job.get("id") != job_id:
            damaged, job = f"{os.path.join(directory, 'job.json')}: not a job record (garbled or cut short)", None
    if job is None:  # not written yet, or damaged: what argv.json says, with no process to follow
        try:
            argv = json.loads(_read(os.path.join(directory, "argv.json")) or "[]")
        except ValueError:
            argv = []
        job = {"id": job_id, "argv": argv if isinstance(argv, list) else [], "pid": None, "start_ticks": None,
               "started_at": None}
        if damaged:
            job["damaged"] = damaged
    exit_raw = _read(os.path.join(directory, "exit_code"))
    info = dict(job)
    info["exit_code"] = None
    info["ended_at"] = None
    info["stopped"] = os.path.exists(os.path.join(directory, "stopped"))
    exit_code = None
    if exit_raw is not None and exit_raw.strip():
        try:
            exit_code = int(exit_raw.strip())
        except ValueError:
            info["damaged"] = f"{os.path.join(directory, 'exit_code')}: not an exit status"
    if exit_code is not None:
        info["state"] = "exited"
        info["exit_code"] = exit_code
        info["ended_at"] = os.stat(os.path.join(directory, "exit_code")).st_mtime
    elif job.get("pid") and _job_members(job):
        info["state"] = "running"
    else:
        info["state"] = "lost"
    for name, key in (("log", "log_size"), ("events.jsonl", "events_size")):
        try:
            info[key] = os.stat(os.path.join(directory, name)).st_size
        except FileNotFoundError:
            info[key] = 0
    return info


def _all_jobs(root: str) -> list[dict]:
    directory = _jobs_dir(root)
    if not os.path.isdir(directory):
        return []
    ids = sorted(name for name in os.listdir(directory) if JOB_ID_RE.match(name))
    return [_job_info(root, job_id) for job_id in ids]


# --------------------------------------------------------------------------- commands: jobs


def cmd_hello(req: dict) -> dict:
    root = req.get("root")
    return {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": sys.platform,
        "root_exists": bool(root) and os.path.isdir(root),
        "time": time.time(),
    }


def check_job_argv(argv: object) -> list:
    """The rules for a job's epoch-builder arguments, in one place: the controller runs them for an early
    clear error (remote.jobs) and the host again before it starts anything."""
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise HostProgramError("invalid", "job arguments must be a list of strings")
    if not argv or not SUBCOMMAND_RE.match(argv[0]):
        raise HostProgramError("invalid", f"job command {argv[0] if argv else ''!r} is not an epoch-builder "
                                          "subcommand (lowercase letters, digits, '-')")
    for arg in argv[1:]:
        if "\0" in arg:
            raise HostProgramError("invalid", f"job argument {arg!r} contains a NUL byte")
        if arg.split("=", 1)[0] in RESERVED_JOB_OPTIONS:
            raise HostProgramError("invalid", f"job argument {arg!r} not allowed: the job sets --workspace and --events itself")
    return argv


def new_job_id(command: str) -> str:
    """A fresh job id: the time, the subcommand, six random hex digits (JOB_ID_RE)."""
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{command}-{secrets.token_hex(3)}"


def cmd_start(req: dict) -> dict:
    """Start a job. The caller names it (``job_id``) before asking: a start whose answer was lost is asked
    again with the same id, and the host answers with the job it already started instead of a second one."""
    root, argv, python = req["root"], check_job_argv(req.get("argv")), req["python"]
    cpus = req.get("cpus")
    if cpus is not None and (not isinstance(cpus, list) or not cpus
                             or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in cpus)):
        raise HostProgramError("invalid", f"cpus must be a list of core numbers, got {str(cpus)[:80]}")
    job_id = req.get("job_id") or new_job_id(argv[0])
    if not isinstance(job_id, str) or not JOB_ID_RE.match(job_id):
        raise HostProgramError("invalid", f"job id {job_id!r} is not a job id (like 20240501T101112-train-regression-batch-a1b2c3)")
    directory = os.path.join(_jobs_dir(root), job_id)
    os.makedirs(_jobs_dir(root), exist_ok=True)
    with open(os.path.join(_jobs_dir(root), ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # check + create as one step against concurrent starts
        if os.path.isdir(directory):  # asked again: the answer is the job this id already names
            existing = _job_info(root, job_id)
            if list(existing.get("argv") or []) != argv:
                raise HostProgramError("conflict", f"job {job_id} exists with another command: {' '.join(existing.get('argv') or [])}")
            return existing
        running = [j["id"] for j in _all_jobs(root) if j["state"] == "running"]
        if running and not req.get("force"):
            raise HostProgramError("conflict", f"job {running[-1]} is running on this host; stop it or start with force")
        os.makedirs(directory)
        _atomic_write(os.path.join(directory, "argv.json"), json.dumps(argv).encode())
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the wrapper
            try:
                os.close(read_fd)
                _run_wrapper(root, directory, job_id, argv, python, write_fd, _active_epoch(root), cpus)
            finally:
                os._exit(0)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as pipe:
            ready = pipe.read()
        os.waitpid(pid, os.WNOHANG)
    if not ready:
        raise HostProgramError("start_failed", f"job {job_id} did not start (see {directory}/log)")
    return _job_info(root, job_id)


def _active_epoch(root: str) -> str | None:
    """The epoch a job works on (``config/epoch.json`` id at start): batch names repeat across epochs."""
    try:
        epoch = json.loads(_read(os.path.join(root, "config", "epoch.json")) or "{}").get("id")
    except (ValueError, AttributeError):
        return None
    return epoch if isinstance(epoch, str) else None


def _run_wrapper(root: str, directory: str, job_id: str, argv: list, python: str, ready_fd: int, epoch: str | None,
                 cpus: list | None = None) -> None:
    os.setsid()  # own session and process group: stop signals exactly this group
    devnull = os.open(os.devnull, os.O_RDONLY)
    log = os.open(os.path.join(directory, "log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    # Drop every other inherited descriptor (the SSH channel, the jobs lock) but the ready pipe.
    os.closerange(3, ready_fd)
    os.closerange(ready_fd + 1, 65536)
    # A Python handler (unlike SIG_IGN) is reset by exec, so the job still gets SIGTERM
    # while the wrapper survives it long enough to record the exit code.
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGHUP, lambda *_: None)
    env = dict(os.environ, PYTHONUNBUFFERED="1", EPOCH_BUILDER_JOB_ID=job_id)
    env.pop("EPOCH_BUILDER_EVENTS", None)
    env.pop("EPOCH_BUILDER_COMMAND_TAG", None)  # the start call's tag (remote.hosts): a job outlives its call
    events = os.path.join(directory, "events.jsonl")
    command = [python, "-m", "epoch_builder.cli", *argv, "--workspace", root, "--events", events]
    me = os.getpid()
    info = _proc_stat(me)
    job = {"id": job_id, "argv": argv, "command": command, "pid": me, "start_ticks": info[2] if info else None,
           "started_at": time.time(), "epoch": epoch}
    try:
        if cpus:  # the server's share of the cores (cluster file "cpus"): the job inherits the wrapper's affinity
            try:
                os.sched_setaffinity(0, cpus)
            except OSError as exc:
                raise OSError(exc.errno, f"cannot run on cores {cpus}: {exc.strerror}") from None
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=1, stderr=2, cwd=root, env=env)
    except OSError as exc:
        os.write(2, f"cannot start {python}: {exc.strerror}\n".encode())
        _atomic_write(os.path.join(directory, "job.json"), json.dumps(job).encode())
        _atomic_write(os.path.join(directory, "pid"), str(me).encode())
        _atomic_write(os.path.join(directory, "exit_code"), b"127")
        os.write(ready_fd, b"1")
        os.close(ready_fd)
        return
    job["child_pid"] = child.pid
    _atomic_write(os.path.join(directory, "job.json"), json.dumps(job).encode())
    _atomic_write(os.path.join(directory, "pid"), str(me).encode())
    os.write(ready_fd, b"1")
    os.close(ready_fd)
    code = child.wait()
    _atomic_write(os.path.join(directory, "exit_code"), str(code).encode())


def cmd_list(req: dict) -> list:
    return _all_jobs(req["root"])


def cmd_info(req: dict) -> dict:
    _job_dir(req["root"], req["job_id"])
    return _job_info(req["root"], req["job_id"])


def cmd_stop(req: dict) -> dict:
    root, job_id, grace = req["root"], req["job_id"], float(req.get("grace_s", 10))
    directory = _job_dir(root, job_id)
    info = _job_info(root, job_id)
    if info["state"] != "running":
        return info
    _atomic_write(os.path.join(directory, "stopped"), str(time.time()).encode())
    pgid = int(info["pid"])
    if _job_members(info):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _job_members(info):
        time.sleep(0.05)
    killed = bool(_job_members(info))
    if killed:
        os.killpg(pgid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _job_members(info):
            time.sleep(0.05)
    exit_file = os.path.join(directory, "exit_code")
    # after SIGTERM the wrapper writes the exit code right after the job ends; after SIGKILL nobody will
    deadline = time.monotonic() + (0 if killed else 2)
    while time.monotonic() < deadline and not os.path.exists(exit_file):
        time.sleep(0.05)
    if not os.path.exists(exit_file):  # the wrapper was killed too
        _atomic_write(exit_file, str(-signal.SIGKILL).encode())
    return _job_info(root, job_id)


def cmd_follow(req: dict) -> None:
    """Stream ``<job>/<file>`` from ``offset`` until the job has ended and all is sent."""
    root, job_id, name = req["root"], req["job_id"], req["file"]
    if name not in ("log", "events.jsonl"):
        raise HostProgramError("invalid", f"file {name!r} not allowed; allowed: log, events.jsonl")
    directory = _job_dir(root, job_id)
    path = os.path.join(directory, name)
    offset = int(req.get("offset", 0))
    poll = float(req.get("poll_s", 0.2))
    keep_following = bool(req.get("follow", True))
    parent = os.getppid()
    out = sys.stdout.buffer
    handle = None
    while True:
        if handle is None and os.path.exists(path):
            handle = open(path, "rb")
            handle.seek(offset)
        data = handle.read(1 << 16) if handle else b""
        if data:
            out.write(data)
            out.flush()
            continue
        if not keep_following:
            return
        if _job_info(root, job_id)["state"] != "running":
            if handle is None and os.path.exists(path):
                continue
            data = handle.read() if handle else b""
            if data:
                out.write(data)
                out.flush()
            return
        if os.getppid() != parent:  # the SSH session is gone: stop reading
            return
        time.sleep(poll)


# --------------------------------------------------------------------------- commands: files


def safe_relpath(rel: str) -> str:
    """Normalise a workspace-relative POSIX path; refuse anything that could leave the root."""
    if not isinstance(rel, str) or not rel or rel.startswith("/") or "\\" in rel:
        raise HostProgramError("unsafe_path", f"path {rel!r} refused: must be relative to the workspace")
    if CONTROL_CHARACTER_RE.search(rel):
        raise HostProgramError("unsafe_path", f"path {rel!r} refused: control characters")
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise HostProgramError("unsafe_path", f"path {rel!r} refused: '..' would leave the workspace")
    return "/".join(parts)


def under_requested(rel: str, paths: list) -> bool:
    """Whether a clean workspace-relative path is one of ``paths`` or lies under one (the trust rule of
    what a host may hand back)."""
    return any(rel == p or rel.startswith(p.rstrip("/") + "/") for p in paths)


def _inside(root: str, path: str) -> bool:
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root.rstrip("/") + "/")


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def manifest(root: str, paths: list, exclude: list | None = None) -> dict:
    """``{"files": {rel: [size, mtime_ns]}, "refused": [..], "unsendable": [..]}`` for files under the paths.

    Symlinks are followed only when they stay inside the root; others are
    listed in ``refused``.  A file or directory whose name holds a control
    character (a newline) or a backslash cannot be named to the other side
    safely: it is listed in ``unsendable`` and left out, so the rest of its
    group still syncs.  Staging and job directories are skipped.
    """
    files: dict = {}
    refused: list = []
    unsendable: list = []
    skip_dirs = {STAGING_DIR, ".jobs", "__pycache__", ".pytest_cache", ".git", ".venv", ".hypothesis"}
    excluded = tuple(exclude or ())
    root = os.path.abspath(root)
    for rel in paths:
        rel = safe_relpath(rel)
        top = os.path.join(root, rel)
        if not os.path.lexists(top):
            continue
        if not _inside(root, top):
            refused.append(rel)
            continue
        if os.path.isfile(top):
            st = os.stat(top)
            files[rel] = [st.st_size, st.st_mtime_ns]
            continue
        for current, dirs, names in os.walk(top, followlinks=False):
            rel_dir = os.path.relpath(current, root)
            keep = []
            for d in sorted(dirs):
                full = os.path.join(current, d)
                if d in skip_dirs or d.endswith(".egg-info") or (d.startswith(".") and d.endswith(".tmp")):
                    continue
                if os.path.islink(full):
                    refused.append(os.path.join(rel_dir, d))  # never descend through a link
                    continue
                if _unsendable_name(d):
                    unsendable.append(os.path.normpath(os.path.join(rel_dir, d)) + "/")
                    continue
                keep.append(d)
            dirs[:] = keep
            for name in sorted(names):
                full = os.path.join(current, name)
                rel_file = os.path.normpath(os.path.join(rel_dir, name))
                if name.endswith(".tmp") and name.startswith("."):
                    continue  # an atomic write in progress
                if excluded and any(rel_file == e or rel_file.startswith(e.rstrip("/") + "/") for e in excluded):
                    continue
                if os.path.islink(full) and not _inside(root, full):
                    refused.append(rel_file)
                    continue
                if _unsendable_name(name):
                    unsendable.append(rel_file)
                    continue
                try:
                    st = os.stat(full)
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    files[rel_file] = [st.st_size, st.st_mtime_ns]
    return {"files": files, "refused": sorted(refused), "unsendable": sorted(unsendable)}


def _unsendable_name(name: str) -> bool:
    return bool(CONTROL_CHARACTER_RE.search(name)) or "\\" in name


def cmd_manifest(req: dict) -> dict:
    if req.get("remove_stale_staging"):  # every sync lists both ends first: a killed one's copies go then
        remove_stale_staging(req["root"])
    return manifest(req["root"], req["paths"], req.get("exclude"))


class _Within:
    """Whether paths resolve inside ``root``, with one lstat per directory: a sync of 20,000 files would
    otherwise resolve every component of every path twice (``os.path.realpath``)."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.real_root = os.path.realpath(self.root)
        self._prefix = self.real_root.rstrip("/") + "/"
        self._real_dirs = {self.root: self.real_root}

    def _real_dir(self, directory: str) -> str:
        real = self._real_dirs.get(directory)
        if real is None:
            parent, name = os.path.split(directory)
            if parent == directory or not (directory + "/").startswith(self.root.rstrip("/") + "/"):
                real = os.path.realpath(directory)  # not below the root: resolve it whole
            elif os.path.islink(directory):
                real = os.path.realpath(directory)
            else:
                real = os.path.join(self._real_dir(parent), name)
            self._real_dirs[directory] = real
        return real

    def __call__(self, path: str) -> bool:
        parent, name = os.path.split(os.path.abspath(path))
        real = os.path.realpath(path) if os.path.islink(path) else os.path.join(self._real_dir(parent), name)
        return real == self.real_root or real.startswith(self._prefix)

    def directory(self, directory: str) -> bool:
        """Whether an absolute, normalised directory path resolves inside the root (cached per directory)."""
        real = self._real_dir(directory)
        return real == self.real_root or real.startswith(self._prefix)


def cmd_hash(req: dict) -> dict:
    root = req["root"]
    within = _Within(root)
    out = {}
    for rel in req["paths"]:
        rel = safe_relpath(rel)
        path = os.path.join(root, rel)
        if not within(path):
            raise HostProgramError("unsafe_path", f"path {rel!r} refused: leaves the workspace")
        out[rel] = _sha256(path) if os.path.isfile(path) else None
    return out


# --------------------------------------------------------------------------- staging


class Staging:
    """A fresh staging directory ``<root>/.sync-staging/<name>``, owned by this process until :meth:`remove`.

    Its ``.lock`` is flocked before the directory gets its visible name (it is made as ``.new-<name>``
    and renamed), so every visible staging directory whose lock can be taken belongs to a sync that was
    killed, and :func:`remove_stale_staging` removes it; one a live sync writes to is never touched.
    The owner is the ``receive`` that writes into it: on the host for a push, on the controller's
    machine for a pull.
    """

    def __init__(self, root: str) -> None:
        base = os.path.join(root, STAGING_DIR)
        os.makedirs(base, exist_ok=True)
        name = f"{int(time.time())}-{os.getpid()}-{secrets.token_hex(4)}"
        unnamed = os.path.join(base, STAGING_NEW_PREFIX + name)
        os.mkdir(unnamed, 0o700)
        self._lock = os.open(os.path.join(unnamed, STAGING_LOCK), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX)  # nobody else knows this name yet: never waits
        self.path = os.path.join(base, name)
        os.rename(unnamed, self.path)

    def remove(self) -> None:
        """Remove the directory with whatever is left in it, then give up the lock."""
        _remove_tree(self.path)
        os.close(self._lock)


def _remove_tree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)  # never follows links out of the directory


def remove_stale_staging(root: str) -> list:
    """Remove the staging directories under ``root`` that no live sync owns (their lock is free); the names removed.

    A ``.new-*`` directory is one whose creation was cut short before its lock was taken (or is being
    made this instant): it is removed only once it is older than STAGING_MAX_AGE_S.
    """
    base = os.path.join(root, STAGING_DIR)
    try:
        names = os.listdir(base)
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    for name in names:
        path = os.path.join(base, name)
        if name.startswith(STAGING_NEW_PREFIX):
            try:
                if time.time() - os.lstat(path).st_mtime > STAGING_MAX_AGE_S:
                    _remove_tree(path)
                    removed.append(name)
            except OSError:
                pass
            continue
        try:
            lock = os.open(os.path.join(path, STAGING_LOCK), os.O_RDWR | os.O_NOFOLLOW)
        except FileNotFoundError:  # no lock: another sync is removing it right now, or an older helper made it
            _remove_tree(path)
            removed.append(name)
            continue
        except OSError:  # e.g. a plain file where a directory should be
            continue
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)  # a live sync holds it
            continue
        try:
            _remove_tree(path)
            removed.append(name)
        finally:
            os.close(lock)
    return removed


# --------------------------------------------------------------------------- file streams (tar)
#
# Small files travel many to a stream: a ustar archive whose members are named ``<index>.part`` (never
# by workspace path) followed by a JSON trailer. Either end may be the untrusted one, so the reader
# below writes only regular-file members with a name of that form, each once, inside its staging
# directory; nothing in a header can name a path, a link or a directory there.

TAR_BLOCK = 512
TAR_END = b"\0" * (2 * TAR_BLOCK)
PART_NAME_RE = re.compile(r"^[0-9]{1,9}\.part$")
TAR_BATCH_BYTES = 1 << 20  # one chunk of a stream: files are read and hashed this much at a time
TAR_BATCH_FILES = 256


def part_name(index: int) -> str:
    return f"{int(index)}.part"


# A ustar header: name 0-100, mode 100, uid 108, gid 116, size 124-136, mtime 136, checksum 148-156,
# type flag 156, link name 157-257, magic 257-263, version 263, user and group names, devices, prefix 345-500.
# Written and read here rather than with tarfile: its general headers cost ~25 us each way, a second
# per 20,000 files on each side, and these streams only ever carry short names and regular files.
_USTAR_TEMPLATE = bytearray(TAR_BLOCK)
_USTAR_TEMPLATE[100:108] = b"0000600\0"
_USTAR_TEMPLATE[108:116] = _USTAR_TEMPLATE[116:124] = b"0000000\0"
_USTAR_TEMPLATE[136:148] = b"00000000000\0"
_USTAR_TEMPLATE[148:156] = b" " * 8  # the checksum counts its own field as spaces
_USTAR_TEMPLATE[156:157] = tarfile.REGTYPE
_USTAR_TEMPLATE[257:265] = b"ustar\x0000"
_USTAR_TEMPLATE_SUM = sum(_USTAR_TEMPLATE)
_USTAR_MAX_SIZE = 8 ** 11 - 1  # 11 octal digits


def tar_header(name: str, size: int) -> bytes:
    """The ustar header of a regular file ``name`` (ASCII, under 100 bytes) of ``size`` bytes."""
    raw_name, raw_size = name.encode("ascii"), b"%011o" % size
    if len(raw_name) >= 100 or not 0 <= size <= _USTAR_MAX_SIZE:
        raise ValueError(f"tar member {name!r} of {size} bytes does not fit a ustar header")
    header = bytearray(_USTAR_TEMPLATE)
    header[:len(raw_name)] = raw_name
    header[124:135] = raw_size
    header[148:155] = b"%06o\0" % (_USTAR_TEMPLATE_SUM + sum(raw_name) + sum(raw_size))
    return bytes(header)


def parse_tar_header(block: bytes) -> tuple:
    """``(type flag, name, size)`` of a ustar (or GNU tar) header block; ValueError when it is not one."""
    if block[257:262] != b"ustar":
        raise ValueError("no ustar magic")
    if int(block[148:156].split(b"\0", 1)[0].strip() or b"-", 8) != sum(block[:148]) + 8 * ord(" ") + sum(block[156:]):
        raise ValueError("checksum mismatch")
    if block[124] & 0x80:
        raise ValueError("a size in base-256")
    size = int(block[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
    if size < 0:
        raise ValueError("a negative size")
    name, prefix = block[:100].split(b"\0", 1)[0], block[345:500].split(b"\0", 1)[0]
    name = prefix + b"/" + name if prefix else name
    return block[156:157], name.decode("utf-8", "surrogateescape"), size


def pack_files(root: str, members: list):
    """Yield ``(tar bytes, {member name: [size, sha256, mode]})`` for ``members`` (``[[index, rel], ...]``),
    a chunk of at most TAR_BATCH_FILES files / about TAR_BATCH_BYTES at a time (the stream's end, TAR_END,
    is the caller's). A file that is gone, not a regular file, or resolves outside ``root`` is left out."""
    root = os.path.abspath(root)
    within = _Within(root)
    chunk, sent = [], {}
    size_in_chunk = 0
    for index, rel in members:
        path = os.path.join(root, safe_relpath(rel))
        if not within(path):
            continue
        try:  # non-blocking open: a FIFO swapped in for the file must not hang the stream
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except (FileNotFoundError, NotADirectoryError):
            continue
        with open(fd, "rb") as fh:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                continue
            data = fh.read()
        name = part_name(index)
        chunk += (tar_header(name, len(data)), data, b"\0" * (-len(data) % TAR_BLOCK))
        sent[name] = [len(data), hashlib.sha256(data).hexdigest(), st.st_mode & 0o777]
        size_in_chunk += len(data) + TAR_BLOCK
        if size_in_chunk >= TAR_BATCH_BYTES or len(sent) >= TAR_BATCH_FILES:
            yield b"".join(chunk), sent
            chunk, sent, size_in_chunk = [], {}, 0
    if sent:
        yield b"".join(chunk), sent


class TarReceiver:
    """Unpacks a ustar stream into ``staging`` as its bytes arrive, in chunks of any size (:meth:`feed`).

    A member is written only when it is a regular file named ``<index>.part`` (and, with ``expected``
    ``{name: size}``, one of those names with exactly that size), the first of its name; its sha256 is
    taken from the bytes as they are written (``digests``, for the commit). Any other member -- another
    name, ``..``, an absolute name, a link, a directory, a device, a wrong size, a repeat -- writes
    nothing: its data is skipped and it is named in ``refused`` (a repeat also takes back the first).
    A block that is not a ustar header stops the reading (``broken`` says why). ``finished`` once the
    archive's end is read; :meth:`feed` then returns the bytes that follow it (the stream's trailer).
    """

    def __init__(self, staging: str, expected: dict | None = None) -> None:
        self.staging = staging
        self.expected = expected
        self.digests: dict = {}  # name -> sha256 of a member written whole
        self.completed: list = []  # names written whole, in stream order (for progress; see digests)
        self.refused: list = []  # (name as offered, why)
        self.broken: str | None = None
        self.finished = False
        self._header = bytearray()
        self._zero_blocks = 0
        self._seen: set = set()
        self._name: str | None = None  # member being written
        self._buffer = bytearray()  # its data not yet written: a small file takes one create and one write
        self._fd: int | None = None  # its staged file, once created
        self._digest = None
        self._data_left = 0  # bytes of the current member's data still to come
        self._padding_left = 0

    def feed(self, data: bytes) -> bytes:
        view = memoryview(data)
        pos, end = 0, len(data)
        while pos < end and not self.finished and self.broken is None:
            if self._data_left:
                take = min(self._data_left, end - pos)
                if self._name is not None:
                    self._buffer += view[pos:pos + take]
                    if len(self._buffer) >= TAR_BATCH_BYTES:
                        self._write_buffer()
                pos += take
                self._data_left -= take
                if not self._data_left:
                    self._end_member()
            elif self._padding_left:
                take = min(self._padding_left, end - pos)
                pos += take
                self._padding_left -= take
            else:
                take = min(TAR_BLOCK - len(self._header), end - pos)
                self._header += view[pos:pos + take]
                pos += take
                if len(self._header) == TAR_BLOCK:
                    block = bytes(self._header)
                    self._header.clear()
                    self._start_member(block)
        return bytes(view[pos:]) if self.finished else b""

    def _start_member(self, block: bytes) -> None:
        if block == b"\0" * TAR_BLOCK:
            self._zero_blocks += 1
            self.finished = self._zero_blocks == 2
            return
        if self._zero_blocks:
            self.broken = "a member after the archive's end marker"
            return
        try:
            kind, name, size = parse_tar_header(block)
        except ValueError as exc:
            self.broken = f"not a tar header ({exc})"
            return
        self._data_left, self._padding_left = size, -size % TAR_BLOCK
        why = None
        if kind not in (tarfile.REGTYPE, tarfile.AREGTYPE):
            why = "not a regular file"
        elif not PART_NAME_RE.match(name):
            why = "not a staging name"
        elif name in self._seen:
            why = "sent twice"
            self._take_back(name)
        elif self.expected is not None and name not in self.expected:
            why = "not asked for"
        elif self.expected is not None and self.expected[name] != size:
            why = f"{size} bytes, {self.expected[name]} expected"
        self._seen.add(name)
        if why is not None:
            self.refused.append((name, why))
            return
        self._name = name
        self._digest = hashlib.sha256()
        if not size:
            self._end_member()

    def _write_buffer(self) -> None:
        if self._fd is None:  # O_EXCL: never through an existing name or link
            self._fd = os.open(os.path.join(self.staging, self._name),
                               os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        self._digest.update(self._buffer)
        with memoryview(self._buffer) as data:
            written = 0
            while written < len(data):
                written += os.write(self._fd, data[written:])
        self._buffer.clear()

    def _end_member(self) -> None:
        if self._name is None:
            return
        self._write_buffer()
        os.close(self._fd)
        self.digests[self._name] = self._digest.hexdigest()
        self.completed.append(self._name)
        self._fd = self._name = self._digest = None

    def _take_back(self, name: str) -> None:
        if self.digests.pop(name, None) is not None:
            os.unlink(os.path.join(self.staging, name))

    def close(self) -> None:
        """End the reading; a member cut short is removed (it was never complete)."""
        if self._fd is not None:
            os.close(self._fd)
            os.unlink(os.path.join(self.staging, self._name))
        self._buffer.clear()
        self._fd = self._name = self._digest = None


def cmd_receive(req: dict) -> dict:
    """The receiving end of a file stream, into ``root``: on the host for a push, on the controller for a pull.

    ``items``: the commit items of every file (see :func:`commit`), the sha256 only of those that do
    not travel in the stream. Prints ``{"ok": {"staging": dir}}`` at once (large files are copied there
    over SFTP meanwhile), then reads stdin after the program: a ustar stream of ``<index>.part`` members,
    then ``{member name: sha256}`` as JSON up to the end of input; commits the files and answers the
    result. This process owns the staging directory until it ends (see :class:`Staging`).

    A stream from the controller (a push) is refused whole at the first member that is no staged file.
    ``untrusted`` (a pull: the stream is a host's): only members named and sized as the items ask are
    written, every other one is skipped and named in the answer's ``refused`` (``[name, why]``), a
    block that is no tar header ends the reading, and the files that came whole with their sha256 are
    committed (the others fail as missing or mismatched).
    """
    root = os.path.abspath(req["root"])
    items = req["items"]
    untrusted = bool(req.get("untrusted"))
    rels = [safe_relpath(item["path"]) for item in items]  # a hostile path refuses the push before any data
    staging = Staging(root)
    # Directories are made while the files arrive (a mkdir costs ~0.1 ms here: 7,000 of them for
    # 20,000 files); only those inside the root, and the commit checks every destination again.
    directories = threading.Thread(target=make_parent_dirs, args=(root, rels), daemon=True)
    directories.start()
    try:
        print(json.dumps({"ok": {"staging": staging.path}}), flush=True)
        receiver = TarReceiver(staging.path, {item["tmp"]: item["size"] for item in items} if untrusted else None)
        flush = BackgroundFlush(staging.path)
        trailer = bytearray()
        trailer_limit = 100 * len(items) + 65536  # a sha256 per file as JSON, with room to spare
        stdin = sys.stdin.buffer
        try:
            while chunk := stdin.read1(1 << 16):
                trailer += chunk if receiver.finished else receiver.feed(chunk)
                flush.staged(len(chunk))
                if receiver.broken and not untrusted:
                    raise HostProgramError("invalid", f"file stream refused: {receiver.broken}; nothing was committed")
                if untrusted and (receiver.broken or len(trailer) > trailer_limit):
                    break  # the host sends something else than asked: read no further
        finally:
            receiver.close()
            flush.close()
        if not untrusted and not receiver.finished:
            raise HostProgramError("truncated", "the file stream ended before the archive's end (the controller "
                                                "stopped?); nothing was committed")
        if not untrusted and receiver.refused:
            name, why = receiver.refused[0]
            raise HostProgramError("invalid", f"file stream refused: member {name!r}: {why} "
                                              f"({len(receiver.refused)} in all); nothing was committed")
        try:
            sent = json.loads(bytes(trailer)) if receiver.finished and len(trailer) <= trailer_limit else None
        except ValueError:
            sent = None
        if not isinstance(sent, dict):
            if not untrusted:
                raise HostProgramError("invalid", "the sha256s after the file stream are not a JSON object; nothing was committed")
            sent = {}
        directories.join()
        result = commit(root, staging.path, [dict(item, sha256=item.get("sha256") or sent.get(item["tmp"])) for item in items],
                        receiver.digests)
        if untrusted:
            result["refused"] = receiver.refused
        return result
    finally:
        staging.remove()


def make_parent_dirs(root: str, rels: list) -> None:
    """Make the directories that files at ``rels`` will be renamed into, where they resolve inside ``root``
    (a file in the way is left for the commit to report)."""
    root = os.path.abspath(root)
    within = _Within(root)
    for parent in sorted({os.path.dirname(os.path.join(root, rel)) for rel in rels}):
        if within.directory(parent):
            try:
                os.makedirs(parent, exist_ok=True)
            except OSError:
                pass


def cmd_send(req: dict) -> None:
    """The sending end of a pull: the files ``[[index, rel], ...]`` as a ustar stream on stdout (member
    ``<index>.part``), then one JSON line ``{member name: sha256}`` of what was sent. A file that is gone
    or no longer a regular file inside the root is left out (the controller refuses it)."""
    out = sys.stdout.buffer
    digests = {}
    for chunk, sent in pack_files(req["root"], req["files"]):
        out.write(chunk)
        digests.update((name, meta[1]) for name, meta in sent.items())
    out.write(TAR_END + json.dumps(digests).encode() + b"\n")
    out.flush()


# --------------------------------------------------------------------------- commit

STAGED_MISSING = "staged file missing"
STAGED_MISMATCH = "size or sha256 mismatch after transfer"
STAGING_FAILURES = (STAGED_MISSING, STAGED_MISMATCH)  # a file that did not arrive as it was sent
FSYNC_EACH_UP_TO = 256  # files; more are flushed with one syncfs of their filesystem
FLUSH_EVERY_BYTES = 32 << 20  # staged data written out while a sync goes on (BackgroundFlush)


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _syncfs(path: str) -> bool:
    """syncfs(2) of the filesystem holding ``path``; False where it is not available (not Linux) or fails."""
    try:
        import ctypes

        syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        return syncfs(fd) == 0
    finally:
        os.close(fd)


class BackgroundFlush:
    """Writes staged data to disk while more arrives: a thread runs syncfs of the staging directory's
    filesystem each time FLUSH_EVERY_BYTES more were staged (:meth:`staged`). The kernel would
    otherwise hold a whole sync's data in memory (its writeback starts at 10% of RAM) and the commit's
    flush would wait for all of it at the end; this way the disk works while the network does."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._unflushed = 0
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def staged(self, size: int) -> None:
        self._unflushed += size
        if self._unflushed >= FLUSH_EVERY_BYTES:
            self._unflushed = 0
            self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closed or not _syncfs(self._path):
                return

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._thread.join()


def make_durable(paths: list, anchor: str) -> None:
    """Flush files or directories to disk: a fsync each, or for many of them one syncfs of the filesystem
    holding ``anchor``. A fsync costs ~0.1 ms on the build machine even 8 at a time (a journal commit
    each: 2 s for 20,000 files); one syncfs writes the same data with a few (0.05 s for 5,000 files of
    16 KB). syncfs also writes out other processes' pending data on that filesystem, which they would
    have to write anyway."""
    if len(paths) > FSYNC_EACH_UP_TO and _syncfs(anchor):
        return
    # fsync releases the GIL: flushing files side by side overlaps their disk waits.
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(_fsync_path, paths))


def commit(root: str, staging: str, items: list, staged_digests: dict | None = None) -> dict:
    """Verify each staged file (size, sha256), set its mtime and mode, flush it to disk and rename it into place.

    ``items``: ``[{"tmp": name in staging, "path": rel, "size", "sha256", "mtime_ns"[, "mode"]}]``.
    ``staged_digests`` ``{tmp name: sha256}``: digests of staged files taken from the very bytes
    written into them (:class:`TarReceiver`); other staged files are read and hashed here.
    A file whose check fails is left out (reported in ``failed``); the destination then still holds
    its previous complete version. Staged files are on disk before any is renamed, and the renames
    are on disk before this returns: a committed sync survives a crash.
    """
    root = os.path.abspath(root)
    staging = os.path.abspath(staging)
    if not _inside(root, staging):
        raise HostProgramError("unsafe_path", f"staging directory {staging} is outside the workspace")
    rels = [safe_relpath(item["path"]) for item in items]  # a hostile path refuses the whole commit up front
    tmps = [os.path.join(staging, os.path.basename(item["tmp"])) for item in items]
    digests = dict(staged_digests or {})
    unhashed = [tmp for tmp in tmps if os.path.basename(tmp) not in digests]
    # Hashing releases the GIL: reading files side by side overlaps their disk waits.
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        digests.update(zip((os.path.basename(t) for t in unhashed), pool.map(_sha256_if_file, unhashed)))
    within = _Within(root)
    committed, failed, ready = [], [], []
    for item, rel, tmp in zip(items, rels, tmps):
        try:
            size = os.stat(tmp).st_size
        except FileNotFoundError:
            failed.append({"path": rel, "reason": STAGED_MISSING})
            continue
        if size != item["size"] or digests.get(os.path.basename(tmp)) != item["sha256"]:
            os.unlink(tmp)
            failed.append({"path": rel, "reason": STAGED_MISMATCH})
            continue
        mtime_ns = int(item["mtime_ns"])
        os.utime(tmp, ns=(mtime_ns, mtime_ns))
        os.chmod(tmp, item.get("mode", 0o644) & 0o777)
        ready.append((item, rel, tmp))
    make_durable([tmp for _item, _rel, tmp in ready], staging)
    made_dirs: set = set()
    for item, rel, tmp in ready:
        dest = os.path.join(root, rel)
        parent = os.path.dirname(dest)
        if not within.directory(parent) or _is_link_or_dir(dest):
            failed.append({"path": rel, "reason": "destination leaves the workspace or is not a regular file"})
            continue
        if parent not in made_dirs:
            os.makedirs(parent, exist_ok=True)
            made_dirs.add(parent)
        os.replace(tmp, dest)
        committed.append(rel)
    make_durable(sorted({os.path.dirname(os.path.join(root, rel)) for rel in committed}), root)
    return {"committed": committed, "failed": failed}


def _sha256_if_file(path: str) -> str | None:
    try:
        return _sha256(path)
    except (FileNotFoundError, IsADirectoryError):
        return None


def _is_link_or_dir(path: str) -> bool:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    return stat.S_ISLNK(mode) or stat.S_ISDIR(mode)


def cmd_touch(req: dict) -> dict:
    """Set mtimes of files whose content already matches (hash-equal, mtime differs)."""
    root = req["root"]
    for rel, mtime_ns in req["items"].items():
        path = os.path.join(root, safe_relpath(rel))
        if _inside(root, path) and os.path.isfile(path):
            os.utime(path, ns=(int(mtime_ns), int(mtime_ns)))
    return {"touched": len(req["items"])}


def cmd_append_key(req: dict) -> dict:
    """Append a public key to ~/.ssh/authorized_keys (or ``path``) unless already there (idempotent)."""
    key = req["key"].strip()
    if "\n" in key or not key:
        raise HostProgramError("invalid", "public key must be one non-empty line")
    path = req.get("path") or os.path.join(os.path.expanduser("~/.ssh"), "authorized_keys")
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    existing = _read(path) or ""
    fields = key.split()
    wanted = tuple(fields[:2])
    for line in existing.splitlines():
        if tuple(line.split()[:2]) == wanted or (len(line.split()) > 2 and tuple(line.split()[1:3]) == wanted):
            return {"added": False, "path": path}
    with open(path, "a", encoding="utf-8") as fh:
        if existing and not existing.endswith("\n"):
            fh.write("\n")
        fh.write(key + "\n")
    os.chmod(path, 0o600)
    return {"added": True, "path": path}


RAW_OUTPUT_COMMANDS = ("follow", "send")
COMMANDS = {
    "hello": cmd_hello,
    "start": cmd_start,
    "list": cmd_list,
    "info": cmd_info,
    "stop": cmd_stop,
    "follow": cmd_follow,
    "manifest": cmd_manifest,
    "hash": cmd_hash,
    "receive": cmd_receive,
    "send": cmd_send,
    "touch": cmd_touch,
    "append_key": cmd_append_key,
}


def main(argv: list) -> int:
    if len(argv) == 1 and STDIN_REQUEST is not None:
        argv = [argv[0], STDIN_REQUEST]
    if len(argv) != 2 or argv[0] not in COMMANDS:
        print(json.dumps({"error": {"kind": "invalid", "message": f"usage: agent {{{','.join(COMMANDS)}}} JSON"}}))
        return 2
    try:
        answer = COMMANDS[argv[0]](json.loads(argv[1]))
    except (HostProgramError, OSError) as exc:
        kind = exc.kind if isinstance(exc, HostProgramError) else "os"
        message = str(exc) if isinstance(exc, HostProgramError) else f"{exc.filename or ''}: {exc.strerror}".strip(": ")
        # follow and send stream raw bytes on stdout, so their errors go to stderr
        print(json.dumps({"error": {"kind": kind, "message": message}}),
              file=sys.stderr if argv[0] in RAW_OUTPUT_COMMANDS else sys.stdout)
        return 1
    if argv[0] not in RAW_OUTPUT_COMMANDS:
        print(json.dumps({"ok": answer}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
