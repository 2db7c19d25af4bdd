"""Hosts: one async interface for this machine (:class:`LocalHost`) and SSH servers (:class:`SSHHost`).

The console and ``epoch-cluster`` treat every server alike::

    host = make_host(server_config, ssh_options)
    await host.connect()                      # raises HostUnreachable / HostKeyError
    result = await host.run(["uname", "-a"], timeout=10)
    job = await host.start_job(["train-regression-batch", "--batch", "KR_DNN_1_10"])
    async for offset, line in host.follow_log(job.job_id):
        ...
    async for snapshot in host.status_stream(interval_s=2):
        ...
    await host.close()

Primitives every implementation provides: ``run`` (argv -> :class:`Result`),
``stream`` (argv -> async iterator of stdout chunks), ``upload`` /
``download`` (one file), plus connection state.  Job control, manifests and
verified commits run the stdlib-only helper :mod:`remote.agent` with the
server's Python (its source is sent on stdin, so it always matches this
client), which keeps LocalHost and SSHHost on exactly the same code path.

``SSHHost`` keeps one asyncssh connection with keepalive on.  When the link
drops it reconnects in the background with exponential backoff and jitter
(state ``reconnecting``); calls made meanwhile wait for the link up to
their timeout.  At most ``max_channels`` channels are open at once per
connection (OpenSSH's MaxSessions is 10).  Every remote argument is quoted
with ``shlex.quote``; every wait has a timeout.
"""

from __future__ import annotations

import abc
import asyncio
import enum
import json
import os
import random
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Sequence

from remote.config import ServerConfig, SSHOptions
from remote.errors import HostKeyError, HostUnreachable, RemoteCommandFailed, RemoteError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import asyncssh

    from remote.jobs import JobInfo

# Progress of one file transfer: (bytes_done, bytes_total).
TransferProgress = Callable[[int, int], None]

AGENT_SOURCE = (Path(__file__).with_name("agent.py")).read_text(encoding="utf-8")
_REQUEST_PLACEHOLDER = "STDIN_REQUEST = None  # request placeholder\n"
assert AGENT_SOURCE.count(_REQUEST_PLACEHOLDER) == 1, "remote/agent.py lost its request placeholder"


def agent_program(request: dict[str, Any]) -> bytes:
    """The helper's source with the request in it, for ``python -`` on the host's stdin: the command
    line stays a few bytes whatever the request's size (a commit of 20,000 paths is megabytes)."""
    literal = repr(json.dumps(request, separators=(",", ":")))
    return AGENT_SOURCE.replace(_REQUEST_PLACEHOLDER, f"STDIN_REQUEST = {literal}\n").encode()

# AES-GCM first: with AES-NI it moves bulk SFTP data ~30% faster than asyncssh's default ChaCha20
# (bench/bench_remote.py); the rest keep servers without GCM reachable.
CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
           "aes128-ctr", "aes192-ctr", "aes256-ctr")

# A refused channel open is tried this often (0.01 s doubling: ~5 s in all) before it counts as a lost link.
RETRY_OPEN_ATTEMPTS = 10

# Backoff between reconnect attempts: base * 2**n, capped, with +-25% jitter.
RECONNECT_BASE_S = 0.25
RECONNECT_MAX_S = 30.0


class HostState(str, enum.Enum):
    OFFLINE = "offline"  # not connected (never, closed, or the first connect failed)
    CONNECTING = "connecting"
    ONLINE = "online"
    RECONNECTING = "reconnecting"  # the link dropped; trying again with backoff


@dataclass(frozen=True)
class Result:
    """Outcome of a finished command."""

    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


def quote_argv(argv: Sequence[str]) -> str:
    """One shell command line from an argument vector, every argument quoted."""
    if not argv:
        raise ValueError("empty command")
    for arg in argv:
        if "\x00" in arg:
            raise RemoteError(f"argument {arg!r} contains a NUL byte")
    return " ".join(shlex.quote(str(a)) for a in argv)


def backoff_delay(attempt: int, base: float = RECONNECT_BASE_S, cap: float = RECONNECT_MAX_S) -> float:
    """Exponential backoff with +-25% jitter (so many hosts do not retry in lockstep)."""
    delay = min(cap, base * (2 ** min(attempt, 16)))
    return delay * random.uniform(0.75, 1.25)


class Host(abc.ABC):
    """A server of the cluster, reached locally or over SSH."""

    def __init__(self, config: ServerConfig, ssh: SSHOptions | None = None) -> None:
        self.config = config
        self.ssh = ssh or SSHOptions()
        self.state: HostState = HostState.OFFLINE
        self.latency_s: float | None = None  # last measured round trip of a tiny command
        self.last_error: str | None = None
        self.reconnects = 0  # completed reconnects since connect()
        self._listeners: list[Callable[[Host], None]] = []

    # ------------------------------------------------------------------ identity
    @property
    def name(self) -> str:
        return self.config.name

    @property
    def root(self) -> str:
        """The server's workspace root (absolute path on that machine)."""
        return self.config.root

    @property
    def python(self) -> str:
        return self.config.python

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.state.value}>"

    def on_state_change(self, callback: Callable[["Host"], None]) -> None:
        """Call ``callback(host)`` whenever :attr:`state` changes (console refresh)."""
        self._listeners.append(callback)

    def _set_state(self, state: HostState, error: str | None = None) -> None:
        if error is not None:
            self.last_error = error
        if state is self.state:
            return
        self.state = state
        for callback in list(self._listeners):
            try:
                callback(self)
            except Exception:  # a listener must never break the host
                pass

    # ------------------------------------------------------------------ lifecycle
    @abc.abstractmethod
    async def connect(self) -> None:
        """Open the link (idempotent).  Raises HostUnreachable or HostKeyError."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the link and wait until it is closed; stops reconnecting."""

    async def __aenter__(self) -> "Host":
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def ping(self, timeout: float | None = None) -> float:
        """Round trip of a no-op command in seconds; updates :attr:`latency_s`."""
        started = time.perf_counter()
        await self.run(["true"], timeout=timeout or self.ssh.connect_timeout_s)
        self.latency_s = time.perf_counter() - started
        return self.latency_s

    # ------------------------------------------------------------------ primitives
    @abc.abstractmethod
    async def run(
        self, argv: Sequence[str], *, timeout: float | None = None, input: bytes | None = None, cwd: str | None = None
    ) -> Result:
        """Run ``argv`` to completion (default timeout: ``ssh.command_timeout_s``)."""

    @abc.abstractmethod
    def stream(self, argv: Sequence[str], *, input: bytes | None = None, idle_timeout: float | None = None) -> AsyncIterator[bytes]:
        """Run ``argv`` and yield its stdout in chunks as they arrive.

        Ends when the command exits 0; raises RemoteCommandFailed for a non-zero
        exit, HostUnreachable when the link drops, RemoteError when nothing
        arrives for ``idle_timeout`` seconds.  Closing the iterator ends the command.
        """

    @abc.abstractmethod
    async def upload(self, local_path: Path, remote_path: str, progress: TransferProgress | None = None) -> None:
        """Copy a local file to ``remote_path`` (its directory must exist)."""

    @abc.abstractmethod
    async def download(self, remote_path: str, local_path: Path, progress: TransferProgress | None = None) -> None:
        """Copy ``remote_path`` to a local file (its directory must exist)."""

    async def check_run(self, argv: Sequence[str], *, timeout: float | None = None, input: bytes | None = None,
                        cwd: str | None = None) -> Result:
        """:meth:`run`, raising RemoteCommandFailed (with stderr's last line) on a non-zero exit."""
        result = await self.run(argv, timeout=timeout, input=input, cwd=cwd)
        if not result.ok:
            detail = (result.stderr.strip() or result.stdout.strip()).splitlines()
            raise RemoteCommandFailed(
                f"server {self.name}: `{quote_argv(argv)[:200]}` exited {result.exit_status}"
                + (f": {detail[-1][:300]}" if detail else "")
            )
        return result

    # ------------------------------------------------------------------ agent
    def agent_argv(self, command: str) -> list[str]:
        """The command line of a helper call: the program and its request come on stdin (agent_program)."""
        return [self.python, "-", command]

    async def agent(self, command: str, request: dict[str, Any], *, timeout: float | None = None) -> Any:
        """Run one :mod:`remote.agent` command on the host and return its JSON answer."""
        result = await self.run(self.agent_argv(command), timeout=timeout, input=agent_program(request))
        return self._agent_answer(command, result)

    def _agent_answer(self, command: str, result: Result) -> Any:
        from remote import agent

        lines = result.stdout.strip().splitlines()
        try:
            answer = json.loads(lines[-1]) if lines else None
        except json.JSONDecodeError:
            answer = None
        if not isinstance(answer, dict) or ("ok" not in answer and "error" not in answer):
            detail = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()[-1][:300]
            raise RemoteCommandFailed(
                f"server {self.name}: helper `{command}` failed with {self.python} (exit {result.exit_status}): {detail}"
            )
        if "error" in answer:
            raise agent.error_from_answer(answer["error"], self.name)
        return answer["ok"]

    def agent_stream(self, command: str, request: dict[str, Any], *, idle_timeout: float | None = None) -> AsyncIterator[bytes]:
        """Stream the raw stdout of a long-running agent command (``follow``)."""
        return self.stream(self.agent_argv(command), input=agent_program(request), idle_timeout=idle_timeout)

    # ------------------------------------------------------------------ jobs (see remote.jobs)
    async def start_job(self, argv: Sequence[str], *, force: bool = False) -> "JobInfo":
        """Start ``epoch-builder <argv>`` detached in ``<root>/.jobs/<job-id>/``.

        Refused (JobConflict) while another job runs on this host, unless ``force``.
        """
        from remote import jobs

        return await jobs.start_job(self, argv, force=force)

    async def list_jobs(self) -> list["JobInfo"]:
        """Every job under ``<root>/.jobs``, oldest first, with state running / exited / lost."""
        from remote import jobs

        return await jobs.list_jobs(self)

    async def job(self, job_id: str) -> "JobInfo":
        from remote import jobs

        return await jobs.job_info(self, job_id)

    async def stop_job(self, job_id: str, *, grace_s: float = 10.0) -> "JobInfo":
        """SIGTERM the job's process group, SIGKILL after ``grace_s``; touches no other process."""
        from remote import jobs

        return await jobs.stop_job(self, job_id, grace_s=grace_s)

    def follow_log(self, job_id: str, offset: int = 0, *, follow: bool = True) -> AsyncIterator[tuple[int, str]]:
        """Yield ``(next_offset, line)`` for each log line from byte ``offset``.

        ``next_offset`` is where the following line starts: pass it back to resume
        after a restart.  Survives reconnects without losing or repeating lines;
        ends when the job has ended and the log is read (or at the end of the file
        when ``follow`` is False).
        """
        from remote import jobs

        return jobs.follow_file(self, job_id, "log", offset, follow=follow)

    def follow_events(self, job_id: str, offset: int = 0, *, follow: bool = True) -> AsyncIterator[tuple[int, dict[str, Any]]]:
        """Like :meth:`follow_log` for ``events.jsonl``, yielding parsed event dicts."""
        from remote import jobs

        return jobs.follow_events(self, job_id, offset, follow=follow)

    # ------------------------------------------------------------------ status
    def epoch_builder_argv(self, argv: Sequence[str]) -> list[str]:
        """``epoch-builder <argv>`` with the server's Python (no console script needed on PATH)."""
        return [self.python, "-m", "epoch_builder.cli", *argv]

    async def status(self, timeout: float | None = None) -> dict[str, Any]:
        """One status snapshot (``epoch-builder status --json``)."""
        result = await self.check_run(
            self.epoch_builder_argv(["status", "--json", "--workspace", self.root]), timeout=timeout
        )
        snapshot = json.loads(result.stdout.strip().splitlines()[-1])
        snapshot["server"] = self.name
        return snapshot

    async def status_stream(self, interval_s: float = 2.0) -> AsyncIterator[dict[str, Any]]:
        """Snapshots from ``epoch-builder status --watch`` over one long-lived channel.

        Each item is the snapshot dict plus ``server`` and ``state: "online"``.
        When the link drops it yields ``{"server", "state": "reconnecting",
        "error"}`` once, waits for the host to come back and resumes.  Runs
        until the consumer stops iterating or the host is closed.
        """
        argv = self.epoch_builder_argv(["status", "--watch", str(interval_s), "--json", "--workspace", self.root])
        announced_gap = False
        while True:
            buffer = b""
            try:
                async for chunk in self.stream(argv, idle_timeout=max(30.0, interval_s * 5)):
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for raw in lines:
                        if not raw.strip():
                            continue
                        try:
                            snapshot = json.loads(raw)
                        except json.JSONDecodeError:
                            continue
                        snapshot["server"] = self.name
                        snapshot["state"] = "online"
                        announced_gap = False
                        yield snapshot
                return
            except HostUnreachable as exc:
                if self.state is HostState.OFFLINE:
                    raise
                if not announced_gap:
                    announced_gap = True
                    yield {"server": self.name, "state": "reconnecting", "error": str(exc)}
                await self.wait_online(timeout=None)

    async def wait_online(self, timeout: float | None) -> None:
        """Return when the host is online; HostUnreachable if it is closed or ``timeout`` passes."""
        return None


# =========================================================================== local


class LocalHost(Host):
    """This machine, without SSH: asyncio subprocesses and local file copies."""

    async def connect(self) -> None:
        started = time.perf_counter()
        Path(self.root).mkdir(parents=True, exist_ok=True)
        self.latency_s = time.perf_counter() - started
        self._set_state(HostState.ONLINE)

    async def close(self) -> None:
        self._set_state(HostState.OFFLINE)

    async def run(
        self, argv: Sequence[str], *, timeout: float | None = None, input: bytes | None = None, cwd: str | None = None
    ) -> Result:
        timeout = timeout or self.ssh.command_timeout_s
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=cwd,
            )
        except OSError as exc:
            return Result(127, "", f"{argv[0]}: {exc.strerror}")
        try:
            async with asyncio.timeout(timeout):
                out, err = await proc.communicate(input)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise RemoteError(f"server {self.name}: `{quote_argv(argv)[:200]}` timed out after {timeout:g} s") from None
        return Result(proc.returncode or 0, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

    async def stream(self, argv: Sequence[str], *, input: bytes | None = None, idle_timeout: float | None = None) -> AsyncIterator[bytes]:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        stderr_task = asyncio.ensure_future(proc.stderr.read())
        try:
            if input is not None:
                assert proc.stdin is not None
                proc.stdin.write(input)
                await proc.stdin.drain()
                proc.stdin.close()
            while True:
                try:
                    async with asyncio.timeout(idle_timeout):
                        chunk = await proc.stdout.read(65536)
                except TimeoutError:
                    raise RemoteError(f"server {self.name}: no output from `{quote_argv(argv)[:120]}` for {idle_timeout:g} s") from None
                if not chunk:
                    break
                yield chunk
            async with asyncio.timeout(self.ssh.command_timeout_s):
                code = await proc.wait()
                err = await stderr_task
            if code != 0:
                last = err.decode("utf-8", "replace").strip().splitlines()
                raise RemoteCommandFailed(
                    f"server {self.name}: `{quote_argv(argv)[:120]}` exited {code}" + (f": {last[-1][:300]}" if last else "")
                )
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            stderr_task.cancel()

    async def upload(self, local_path: Path, remote_path: str, progress: TransferProgress | None = None) -> None:
        await asyncio.to_thread(_copy_file, Path(local_path), Path(remote_path), progress)

    async def download(self, remote_path: str, local_path: Path, progress: TransferProgress | None = None) -> None:
        await asyncio.to_thread(_copy_file, Path(remote_path), Path(local_path), progress)


def _copy_file(src: Path, dst: Path, progress: TransferProgress | None) -> None:
    total = src.stat().st_size
    done = 0
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while block := fin.read(1 << 20):
            fout.write(block)
            done += len(block)
            if progress:
                progress(done, total)
    if progress and total == 0:
        progress(0, 0)


# =========================================================================== SSH


class SSHHost(Host):
    """An SSH server reached with asyncssh (one connection, keepalive, reconnect, channel limit)."""

    def __init__(self, config: ServerConfig, ssh: SSHOptions | None = None, *, password: str | None = None) -> None:
        super().__init__(config, ssh)
        self._password = password  # only for install-key's first connection
        self._conn: asyncssh.SSHClientConnection | None = None
        self._online = asyncio.Event()
        self._closing = False
        self._reconnect_task: asyncio.Task[None] | None = None
        self._connect_lock = asyncio.Lock()
        self._channels = asyncio.Semaphore(self.ssh.max_channels)
        self._sftp: Any = None
        self._sftp_lock = asyncio.Lock()

    # ------------------------------------------------------------------ connection
    def _options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {
            "keepalive_interval": self.ssh.keepalive_interval_s,
            "keepalive_count_max": self.ssh.keepalive_count_max,
            "connect_timeout": self.ssh.connect_timeout_s,
            "login_timeout": self.ssh.connect_timeout_s,
            "config": () if self.ssh.ssh_config else None,
            "encryption_algs": CIPHERS,
        }
        if self.config.port is not None:  # unset: asyncssh takes ~/.ssh/config's Port, else 22
            opts["port"] = self.config.port
        if self.ssh.known_hosts is not None:
            opts["known_hosts"] = str(self.ssh.known_hosts)
        if self.config.user:
            opts["username"] = self.config.user
        if self.config.key:
            opts["client_keys"] = [str(self.config.key)]
        if self._password is not None:
            opts["password"] = self._password
        else:
            opts["password_auth"] = False
            opts["kbdint_auth"] = False
        return opts

    async def _open(self) -> "asyncssh.SSHClientConnection":
        import asyncssh

        host = self

        class _Client(asyncssh.SSHClient):
            def connection_lost(self, exc: Exception | None) -> None:
                host._on_connection_lost(self, exc)

        self._client_marker = None
        known = self.ssh.known_hosts
        if known is not None and not known.exists():
            if self.ssh.host_key_policy == "accept-new" and await self._accept_new_host_key():
                return await self._open()
            raise HostKeyError(
                f"server {self.name} ({self.config.address}): known_hosts file {known} does not exist; "
                "add the host key or set ssh.host_key_policy to accept-new for first contact"
            )
        try:
            conn, client = await asyncssh.create_connection(_Client, self.config.host, **self._options())
        except asyncssh.HostKeyNotVerifiable as exc:
            if self.ssh.host_key_policy == "accept-new" and await self._accept_new_host_key():
                return await self._open()
            raise HostKeyError(
                f"server {self.name} ({self.config.address}): host key not verified ({exc.reason}); "
                f"check known_hosts {self.ssh.known_hosts or '~/.ssh/known_hosts'} (ssh.host_key_policy: strict)"
            ) from None
        except asyncssh.PermissionDenied as exc:
            raise HostUnreachable(
                f"server {self.name} ({self.config.address}): authentication refused ({exc.reason}); "
                "install a key with `epoch-cluster install-key` or set servers[].key"
            ) from None
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise HostUnreachable(f"server {self.name} ({self.config.address}): cannot connect: {reason}") from None
        self._client_marker = client
        return conn

    def _target(self) -> tuple[str, int]:
        """The host name and port asyncssh connects to and checks known_hosts for: the cluster file's port,
        else ~/.ssh/config's HostName / Port (when ssh.ssh_config), else 22."""
        import asyncssh

        options = asyncssh.SSHClientConnectionOptions(
            host=self.config.host, port=() if self.config.port is None else self.config.port,
            config=() if self.ssh.ssh_config else None, client_keys=None, agent_path=None)
        return options.host, options.port

    async def _accept_new_host_key(self) -> bool:
        """``accept-new``: record the key of a host that is not in known_hosts at all (never a changed key)."""
        import asyncssh

        known_path = self.ssh.known_hosts or Path("~/.ssh/known_hosts").expanduser()
        host, port = self._target()
        names = [host if port == 22 else f"[{host}]:{port}"]
        if known_path.exists():
            known = asyncssh.read_known_hosts(str(known_path))
            host_keys = known.match(host, "", None if port == 22 else port)[0]
            if host_keys:
                return False  # the host is known with another key: a changed key is never accepted
        opts = self._options()
        opts["known_hosts"] = None
        try:
            conn = await asyncssh.connect(self.config.host, **opts)
        except (OSError, asyncssh.Error):
            return False
        key = conn.get_server_host_key()
        conn.close()
        await conn.wait_closed()
        if key is None:
            return False
        known_path.parent.mkdir(parents=True, exist_ok=True)
        with open(known_path, "a", encoding="utf-8") as fh:
            fh.write(f"{','.join(names)} {key.export_public_key('openssh').decode().strip()}\n")
        return True

    async def connect(self) -> None:
        async with self._connect_lock:
            if self._conn is not None and self.state is HostState.ONLINE:
                return
            self._closing = False
            self._set_state(HostState.CONNECTING)
            started = time.perf_counter()
            try:
                self._conn = await self._open()
            except RemoteError as exc:
                self._set_state(HostState.OFFLINE, str(exc))
                raise
            self.latency_s = time.perf_counter() - started
            self._online.set()
            self._set_state(HostState.ONLINE)

    def _on_connection_lost(self, client: Any, exc: Exception | None) -> None:
        if client is not getattr(self, "_client_marker", None):
            return  # an older connection's late callback
        self._online.clear()
        self._conn = None
        self._sftp = None
        if self._closing:
            self._set_state(HostState.OFFLINE)
            return
        self._set_state(HostState.RECONNECTING, f"link lost: {exc}" if exc else "link closed by the server")
        if self._reconnect_task is None or self._reconnect_task.done():
            self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        attempt = 0
        while not self._closing:
            await asyncio.sleep(backoff_delay(attempt))
            attempt += 1
            if self._closing:
                return
            try:
                conn = await self._open()
            except HostKeyError as exc:
                self._set_state(HostState.OFFLINE, str(exc))  # never retry past a changed key
                return
            except RemoteError as exc:
                self.last_error = str(exc)
                continue
            if self._closing:
                conn.close()
                return
            self._conn = conn
            self.reconnects += 1
            self._online.set()
            self._set_state(HostState.ONLINE)
            return

    async def wait_online(self, timeout: float | None) -> None:
        if self.state is HostState.OFFLINE or self._closing:
            raise HostUnreachable(f"server {self.name} ({self.config.address}): offline" + (f" ({self.last_error})" if self.last_error else ""))
        try:
            async with asyncio.timeout(timeout):
                await self._online.wait()
        except TimeoutError:
            raise HostUnreachable(
                f"server {self.name} ({self.config.address}): not reachable within {timeout:g} s"
                + (f" ({self.last_error})" if self.last_error else "")
            ) from None

    async def _connection(self, timeout: float | None = None) -> "asyncssh.SSHClientConnection":
        if self.state is HostState.OFFLINE and not self._closing:
            await self.connect()
        await self.wait_online(timeout if timeout is not None else self.ssh.connect_timeout_s * 3)
        assert self._conn is not None
        return self._conn

    async def close(self) -> None:
        self._closing = True
        self._online.clear()
        task, self._reconnect_task = self._reconnect_task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        conn, self._conn = self._conn, None
        self._sftp = None
        if conn is not None:
            conn.close()
            try:
                async with asyncio.timeout(self.ssh.connect_timeout_s):
                    await conn.wait_closed()
            except (TimeoutError, Exception):
                pass
        self._set_state(HostState.OFFLINE)

    def _lost(self, exc: BaseException) -> HostUnreachable:
        return HostUnreachable(f"server {self.name} ({self.config.address}): link lost ({type(exc).__name__}: {exc})")

    # ------------------------------------------------------------------ commands
    @staticmethod
    async def _retry_open(conn: "asyncssh.SSHClientConnection", open_channel: Callable[[], Awaitable[Any]]) -> Any:
        """Retry a refused channel open on a live link: the server frees a finished session's slot
        (MaxSessions) a moment after the client sees it close. Nothing ran, so trying again is safe."""
        import asyncssh

        for attempt in range(RETRY_OPEN_ATTEMPTS):
            try:
                return await open_channel()
            except asyncssh.ChannelOpenError:
                if conn.is_closed() or attempt == RETRY_OPEN_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.01 * 2**attempt)

    def _command(self, argv: Sequence[str], cwd: str | None) -> str:
        line = quote_argv(argv)
        return f"cd {shlex.quote(cwd)} && exec {line}" if cwd else line

    async def run(
        self, argv: Sequence[str], *, timeout: float | None = None, input: bytes | None = None, cwd: str | None = None
    ) -> Result:
        import asyncssh

        timeout = timeout or self.ssh.command_timeout_s
        command = self._command(argv, cwd)
        deadline = time.monotonic() + timeout
        conn = await self._connection(timeout)
        try:
            async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                async with self._channels:
                    completed = await self._retry_open(conn, lambda: conn.run(command, input=input, encoding=None, check=False))
        except TimeoutError:
            raise RemoteError(f"server {self.name}: `{command[:200]}` timed out after {timeout:g} s") from None
        except (asyncssh.ConnectionLost, asyncssh.DisconnectError, asyncssh.ChannelOpenError, BrokenPipeError, ConnectionError) as exc:
            raise self._lost(exc) from None
        status = completed.exit_status
        if status is None:  # killed by a signal or the channel closed early
            status = 255 if completed.exit_signal is None else 128
        out = completed.stdout or b""
        err = completed.stderr or b""
        return Result(status, _text(out), _text(err))

    async def stream(self, argv: Sequence[str], *, input: bytes | None = None, idle_timeout: float | None = None) -> AsyncIterator[bytes]:
        import asyncssh

        command = self._command(argv, None)
        conn = await self._connection()
        async with self._channels:
            try:
                process = await self._retry_open(conn, lambda: conn.create_process(
                    command, encoding=None, stdin=asyncssh.PIPE if input is not None else asyncssh.DEVNULL))
            except (asyncssh.ConnectionLost, asyncssh.DisconnectError, asyncssh.ChannelOpenError, ConnectionError) as exc:
                raise self._lost(exc) from None
            try:
                if input is not None:
                    process.stdin.write(input)
                    process.stdin.write_eof()
                while True:
                    try:
                        async with asyncio.timeout(idle_timeout):
                            chunk = await process.stdout.read(65536)
                    except TimeoutError:
                        raise RemoteError(f"server {self.name}: no output from `{command[:120]}` for {idle_timeout:g} s") from None
                    if not chunk:
                        break
                    yield chunk
                if self._conn is not conn or conn.is_closed():
                    raise self._lost(ConnectionError("connection closed"))
                async with asyncio.timeout(self.ssh.command_timeout_s):
                    completed = await process.wait(check=False)
                if completed.exit_status is None and completed.exit_signal is None:
                    raise self._lost(ConnectionError("channel closed without exit status"))
                if completed.exit_status != 0:
                    err = _text(completed.stderr or b"").strip().splitlines()
                    raise RemoteCommandFailed(
                        f"server {self.name}: `{command[:120]}` exited {completed.exit_status}" + (f": {err[-1][:300]}" if err else "")
                    )
            except (asyncssh.ConnectionLost, asyncssh.DisconnectError, BrokenPipeError, ConnectionError) as exc:
                raise self._lost(exc) from None
            finally:
                process.close()

    # ------------------------------------------------------------------ files (SFTP)
    async def sftp(self) -> Any:
        """The host's SFTP client (one channel, opened on first use, reopened after a reconnect)."""
        import asyncssh

        async with self._sftp_lock:
            if self._sftp is None:
                conn = await self._connection()
                try:
                    await self._channels.acquire()
                    try:
                        self._sftp = await asyncio.wait_for(conn.start_sftp_client(), self.ssh.connect_timeout_s)
                    finally:
                        self._channels.release()  # SFTP is long-lived: it does not hold a slot for runs
                except (asyncssh.Error, OSError, TimeoutError) as exc:
                    raise self._lost(exc) from None
            return self._sftp

    async def upload(self, local_path: Path, remote_path: str, progress: TransferProgress | None = None) -> None:
        import asyncssh

        sftp = await self.sftp()
        handler = (lambda _s, _d, done, total: progress(done, total)) if progress else None
        try:
            await sftp.put(str(local_path), remote_path, max_requests=64, progress_handler=handler)
        except (asyncssh.ConnectionLost, asyncssh.DisconnectError, ConnectionError, BrokenPipeError) as exc:
            raise self._lost(exc) from None
        except asyncssh.SFTPError as exc:
            raise RemoteError(f"server {self.name}: upload to {remote_path} failed: {exc.reason}") from None

    async def download(self, remote_path: str, local_path: Path, progress: TransferProgress | None = None) -> None:
        import asyncssh

        sftp = await self.sftp()
        handler = (lambda _s, _d, done, total: progress(done, total)) if progress else None
        try:
            await sftp.get(remote_path, str(local_path), max_requests=64, progress_handler=handler)
        except (asyncssh.ConnectionLost, asyncssh.DisconnectError, ConnectionError, BrokenPipeError) as exc:
            raise self._lost(exc) from None
        except asyncssh.SFTPError as exc:
            raise RemoteError(f"server {self.name}: download of {remote_path} failed: {exc.reason}") from None


def _text(data: bytes | str) -> str:
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


def make_host(config: ServerConfig, ssh: SSHOptions | None = None) -> Host:
    """The right implementation for a server: LocalHost for ``local`` servers, SSHHost otherwise."""
    return LocalHost(config, ssh) if config.local else SSHHost(config, ssh)
