"""Host-side helper: job control, file manifests and verified commits.

Runs on the server with the server's own Python and the standard library
only.  The controller (:mod:`remote.agent_client`) sends this file on stdin
with the JSON request inside it (``python - <command>``), so the helper needs
no install and always matches the controller.  Every answer is one JSON line on stdout:
``{"ok": ...}`` or ``{"error": {"kind": ..., "message": ...}}``; ``follow``
instead streams raw file bytes.

Job layout ``<root>/.jobs/<job-id>/``:

    argv.json     the epoch-builder arguments
    job.json      id, argv, pid (= process group id), start ticks, started_at
    pid           the wrapper's pid, which is also the job's process group id
    log           stdout + stderr of ``epoch-builder``
    events.jsonl  JSON-lines progress events (``--events``)
    exit_code     written by the wrapper when the process ends (atomic)
    stopped       written by ``stop`` (time of the request)

The wrapper is a forked copy of this helper that calls ``setsid()`` (its pid
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
import signal
import stat
import subprocess
import sys
import time

JOB_ENV = "EPOCH_BUILDER_JOB_ID"
# The controller sends this file on stdin with the line below replaced by the request's JSON (see
# ``remote.agent_client.agent_program``): a request of any size (20,000 paths) never meets the command
# line's limits. Run as a file, the request comes as the second argument instead.
STDIN_REQUEST = None  # request placeholder
SUBCOMMAND_RE = re.compile(r"^[a-z][a-z0-9-]{0,63}$")
RESERVED_JOB_OPTIONS = ("--workspace", "--events")  # the job layout sets them; a caller's would fight it
JOB_ID_RE = re.compile(r"^[0-9]{8}T[0-9]{6}-[a-z0-9-]{1,64}-[0-9a-f]{6}$")
STAGING_DIR = ".sync-staging"
STAGING_MAX_AGE_S = 3600


class AgentError(Exception):
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
        raise AgentError("not_found", f"job id {job_id!r} is not a job id (like 20240501T101112-train-regression-batch-a1b2c3)")
    path = os.path.join(_jobs_dir(root), job_id)
    if not os.path.isdir(path):
        raise AgentError("not_found", f"no job {job_id} under {_jobs_dir(root)}")
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
        raise AgentError("invalid", "job arguments must be a list of strings")
    if not argv or not SUBCOMMAND_RE.match(argv[0]):
        raise AgentError("invalid", f"job command {argv[0] if argv else ''!r} is not an epoch-builder subcommand "
                                    "(lowercase letters, digits, '-')")
    for arg in argv[1:]:
        if "\0" in arg:
            raise AgentError("invalid", f"job argument {arg!r} contains a NUL byte")
        if arg.split("=", 1)[0] in RESERVED_JOB_OPTIONS:
            raise AgentError("invalid", f"job argument {arg!r} not allowed: the job sets --workspace and --events itself")
    return argv


def cmd_start(req: dict) -> dict:
    root, argv, python = req["root"], check_job_argv(req.get("argv")), req["python"]
    os.makedirs(_jobs_dir(root), exist_ok=True)
    with open(os.path.join(_jobs_dir(root), ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # check + create as one step against concurrent starts
        running = [j["id"] for j in _all_jobs(root) if j["state"] == "running"]
        if running and not req.get("force"):
            raise AgentError("conflict", f"job {running[-1]} is running on this host; stop it or start with force")
        job_id = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{argv[0]}-{secrets.token_hex(3)}"
        directory = os.path.join(_jobs_dir(root), job_id)
        os.makedirs(directory)
        _atomic_write(os.path.join(directory, "argv.json"), json.dumps(argv).encode())
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the wrapper
            try:
                os.close(read_fd)
                _run_wrapper(root, directory, job_id, argv, python, write_fd, _active_epoch(root))
            finally:
                os._exit(0)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as pipe:
            ready = pipe.read()
        os.waitpid(pid, os.WNOHANG)
    if not ready:
        raise AgentError("start_failed", f"job {job_id} did not start (see {directory}/log)")
    return _job_info(root, job_id)


def _active_epoch(root: str) -> str | None:
    """The epoch a job works on (``config/epoch.json`` id at start): batch names repeat across epochs."""
    try:
        epoch = json.loads(_read(os.path.join(root, "config", "epoch.json")) or "{}").get("id")
    except (ValueError, AttributeError):
        return None
    return epoch if isinstance(epoch, str) else None


def _run_wrapper(root: str, directory: str, job_id: str, argv: list, python: str, ready_fd: int, epoch: str | None) -> None:
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
        raise AgentError("invalid", f"file {name!r} not allowed; allowed: log, events.jsonl")
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
        raise AgentError("unsafe_path", f"path {rel!r} refused: must be relative to the workspace")
    if any(ord(c) < 32 or c == "\x7f" for c in rel):
        raise AgentError("unsafe_path", f"path {rel!r} refused: control characters")
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise AgentError("unsafe_path", f"path {rel!r} refused: '..' would leave the workspace")
    return "/".join(parts)


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
    """``{"files": {rel: [size, mtime_ns]}, "refused": [..]}`` for files under the given paths.

    Symlinks are followed only when they stay inside the root; others are
    listed in ``refused``.  Staging and job directories are skipped.
    """
    files: dict = {}
    refused: list = []
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
                try:
                    st = os.stat(full)
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    files[rel_file] = [st.st_size, st.st_mtime_ns]
    return {"files": files, "refused": sorted(refused)}


def cmd_manifest(req: dict) -> dict:
    return manifest(req["root"], req["paths"], req.get("exclude"))


def cmd_hash(req: dict) -> dict:
    root = req["root"]
    out = {}
    for rel in req["paths"]:
        rel = safe_relpath(rel)
        path = os.path.join(root, rel)
        if not _inside(root, path):
            raise AgentError("unsafe_path", f"path {rel!r} refused: leaves the workspace")
        out[rel] = _sha256(path) if os.path.isfile(path) else None
    return out


def stage(root: str) -> str:
    """Create a fresh staging directory under the root; remove stale ones."""
    base = os.path.join(root, STAGING_DIR)
    os.makedirs(base, exist_ok=True)
    now = time.time()
    for name in os.listdir(base):
        full = os.path.join(base, name)
        try:
            if now - os.stat(full).st_mtime > STAGING_MAX_AGE_S:
                for f in os.listdir(full):
                    os.unlink(os.path.join(full, f))
                os.rmdir(full)
        except OSError:
            pass
    directory = os.path.join(base, f"{int(now)}-{secrets.token_hex(4)}")
    os.makedirs(directory)
    return directory


def cmd_stage(req: dict) -> dict:
    return {"dir": stage(req["root"])}


def commit(root: str, staging: str, items: list) -> dict:
    """Verify each staged file (size, sha256), set its mtime, fsync and rename it into place.

    ``items``: ``[{"tmp": name in staging, "path": rel, "size", "sha256", "mtime_ns"}]``.
    A file whose check fails is left out (reported in ``failed``); the
    destination then still holds its previous complete version.
    """
    root = os.path.abspath(root)
    staging = os.path.abspath(staging)
    if not _inside(root, staging):
        raise AgentError("unsafe_path", f"staging directory {staging} is outside the workspace")
    committed, failed = [], []
    rels = [safe_relpath(item["path"]) for item in items]  # a hostile path refuses the whole commit up front

    def verify(item: dict) -> str | None:
        """Why the staged file cannot be committed, or None once it is checked and on disk (fsynced)."""
        tmp = os.path.join(staging, os.path.basename(item["tmp"]))
        try:
            size = os.stat(tmp).st_size
        except FileNotFoundError:
            return "staged file missing"
        if size != item["size"] or _sha256(tmp) != item["sha256"]:
            os.unlink(tmp)
            return "size or sha256 mismatch after transfer"
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        return None

    # Hashing and fsync release the GIL: checking files side by side overlaps their disk waits.
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        problems = list(pool.map(verify, items))
    for item, rel, problem in zip(items, rels, problems):
        tmp = os.path.join(staging, os.path.basename(item["tmp"]))
        dest = os.path.join(root, rel)
        parent = os.path.dirname(dest)
        if problem is not None:
            failed.append({"path": rel, "reason": problem})
            continue
        if not _inside(root, parent) or os.path.islink(dest) or os.path.isdir(dest):
            failed.append({"path": rel, "reason": "destination leaves the workspace or is not a regular file"})
            continue
        os.makedirs(parent, exist_ok=True)
        mtime_ns = int(item["mtime_ns"])
        os.utime(tmp, ns=(mtime_ns, mtime_ns))
        os.chmod(tmp, item.get("mode", 0o644) & 0o777)
        os.replace(tmp, dest)
        committed.append(rel)
    for d in {os.path.dirname(os.path.join(root, c)) for c in committed}:
        try:
            fd = os.open(d, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        except OSError:
            pass
    try:
        for leftover in os.listdir(staging):
            os.unlink(os.path.join(staging, leftover))
        os.rmdir(staging)
    except OSError:
        pass
    return {"committed": committed, "failed": failed}


def cmd_commit(req: dict) -> dict:
    return commit(req["root"], req["staging"], req["items"])


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
        raise AgentError("invalid", "public key must be one non-empty line")
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


COMMANDS = {
    "hello": cmd_hello,
    "start": cmd_start,
    "list": cmd_list,
    "info": cmd_info,
    "stop": cmd_stop,
    "follow": cmd_follow,
    "manifest": cmd_manifest,
    "hash": cmd_hash,
    "stage": cmd_stage,
    "commit": cmd_commit,
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
    except (AgentError, OSError) as exc:
        kind = exc.kind if isinstance(exc, AgentError) else "os"
        message = str(exc) if isinstance(exc, AgentError) else f"{exc.filename or ''}: {exc.strerror}".strip(": ")
        # follow streams raw bytes on stdout, so its errors go to stderr
        print(json.dumps({"error": {"kind": kind, "message": message}}), file=sys.stderr if argv[0] == "follow" else sys.stdout)
        return 1
    if argv[0] != "follow":
        print(json.dumps({"ok": answer}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
