"""Hosts as a transport: this machine (:class:`LocalHost`) and SSH servers (:class:`remote.ssh_host.SSHHost`).

A host only runs commands and copies files, like a command runner; what runs
*on* it is built elsewhere and uses these primitives::

    host = make_host(server_config, ssh_options)  # remote.host_factory
    await host.connect()                      # raises HostUnreachable / HostKeyError
    result = await host.run(["uname", "-a"], timeout=10)
    async for chunk in host.stream(argv): ...
    await host.upload(local_path, remote_path)
    await host.close()

- jobs (start, list, stop, follow log and events): :mod:`remote.jobs`
- helper calls (manifests, commits, job control on the host): :mod:`remote.host_program_client`
- status snapshots and their stream: :mod:`remote.status`
- file sync: :mod:`remote.sync`

Every remote argument is quoted with ``shlex.quote`` (:func:`quote_argv`);
every wait has a timeout.  A command that times out is stopped on the host
with its whole process group (each command runs in its own session there).
"""

from __future__ import annotations

import abc
import asyncio
import enum
import os
import random
import shlex
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable, Sequence

from epoch_builder.events import JOB_ENV
from remote.config import ServerConfig, SSHOptions
from remote.errors import RemoteCommandFailed, RemoteError

# Progress of one file transfer: (bytes_done, bytes_total).
TransferProgress = Callable[[int, int], None]

# Every command runs with this variable set to a fresh token, so a command that timed out can be found on
# the host with all its processes (children inherit the variable) and stopped: an SSH channel closing
# does not end a remote process. A process group holding a detached job's process (JOB_ENV) is spared:
# a start call that timed out must not take the job it started with it.
COMMAND_TAG_ENV = "EPOCH_BUILDER_COMMAND_TAG"
# Run with the host's Python as ``python -c KILL_TAGGED_PROGRAM TOKEN``.
KILL_TAGGED_PROGRAM = """
import os, signal, sys
tag, job_env = ("%s=" + sys.argv[1]).encode(), b"%s="
def environ(pid):
    try:
        with open("/proc/%%d/environ" %% pid, "rb") as fh:
            return fh.read().split(b"\\0")
    except OSError:
        return []
pids = [int(e) for e in os.listdir("/proc") if e.isdigit() and int(e) != os.getpid()]
groups = {}
for pid in pids:
    try:
        groups.setdefault(os.getpgid(pid), []).append(pid)
    except OSError:
        pass
for group, members in groups.items():
    variables = [environ(pid) for pid in members]
    if any(tag in v for v in variables) and not any(x.startswith(job_env) for v in variables for x in v):
        try:
            os.killpg(group, signal.SIGKILL)
        except OSError:
            pass
""" % (COMMAND_TAG_ENV, JOB_ENV)


def tagged_argv(argv: Sequence[str], token: str) -> list[str]:
    """``argv`` run through ``env`` with the command tag set (``env`` execs it: same pid, same group)."""
    return ["env", f"{COMMAND_TAG_ENV}={token}", *argv]


# A streamed command's stdout is read at most this much at a time.
STREAM_CHUNK_BYTES = 65536

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

    def stream(self, argv: Sequence[str], *, input: bytes | None = None, idle_timeout: float | None = None) -> AsyncIterator[bytes]:
        """Run ``argv`` and yield its stdout in chunks as they arrive.

        Ends when the command exits 0; raises RemoteCommandFailed for a non-zero
        exit, HostUnreachable when the link drops, RemoteError when nothing
        arrives for ``idle_timeout`` seconds.  Closing the iterator ends the command.
        """
        return self.stream_with_stdin(argv, _chunks_of(input), idle_timeout=idle_timeout)

    @abc.abstractmethod
    def stream_with_stdin(self, argv: Sequence[str], chunks: AsyncIterator[bytes], *,
                          idle_timeout: float | None = None) -> AsyncIterator[bytes]:
        """:meth:`stream`, with stdin fed from ``chunks`` while stdout is read, and closed after the last.

        A command that stops reading ends the feeding quietly (its output and exit status tell why);
        an exception from ``chunks`` closes stdin and is raised once stdout has ended.
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
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=cwd, start_new_session=True,
            )
        except OSError as exc:
            return Result(127, "", f"{argv[0]}: {exc.strerror}")
        try:
            async with asyncio.timeout(timeout):
                out, err = await proc.communicate(input)
        except TimeoutError:
            await _kill_group(proc)
            raise RemoteError(f"server {self.name}: `{quote_argv(argv)[:200]}` timed out after {timeout:g} s "
                              "(stopped)") from None
        return Result(proc.returncode or 0, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

    async def stream_with_stdin(self, argv: Sequence[str], chunks: AsyncIterator[bytes], *,
                                idle_timeout: float | None = None) -> AsyncIterator[bytes]:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        stdin, stdout = proc.stdin, proc.stdout
        stderr_task = asyncio.ensure_future(proc.stderr.read())
        feeder = asyncio.ensure_future(feed_stdin(chunks, stdin.write, stdin.drain, stdin.close,
                                                  stopped_reading=(BrokenPipeError, ConnectionResetError)))
        try:
            while chunk := await read_output(self, argv, stdout.read, idle_timeout, lambda: _kill_group(proc),
                                             "stopped"):
                yield chunk
            await feeder
            async with asyncio.timeout(self.ssh.command_timeout_s):
                code = await proc.wait()
                err = await stderr_task
            if code != 0:
                last = err.decode("utf-8", "replace").strip().splitlines()
                raise RemoteCommandFailed(
                    f"server {self.name}: `{quote_argv(argv)[:120]}` exited {code}" + (f": {last[-1][:300]}" if last else "")
                )
        finally:
            feeder.cancel()
            if proc.returncode is None:
                await _kill_group(proc)
            await asyncio.gather(feeder, return_exceptions=True)
            stderr_task.cancel()

    async def upload(self, local_path: Path, remote_path: str, progress: TransferProgress | None = None) -> None:
        await asyncio.to_thread(_copy_file, Path(local_path), Path(remote_path), progress)

    async def download(self, remote_path: str, local_path: Path, progress: TransferProgress | None = None) -> None:
        await asyncio.to_thread(_copy_file, Path(remote_path), Path(local_path), progress)


# =========================================================================== streams (both transports)


async def feed_stdin(chunks: AsyncIterator[bytes], write: Callable[[bytes], None], drain: Callable[[], Awaitable[None]],
                     end: Callable[[], None], *, stopped_reading: tuple[type[BaseException], ...]) -> None:
    """Feed a streamed command's stdin (:meth:`Host.stream_with_stdin`): each chunk written and drained
    before the next is taken (never more than the pipe's or channel's window ahead of the command), then
    ``end`` (close stdin, or send its end of file). An error of ``stopped_reading`` (the command stopped
    reading, or the link went) ends the feeding quietly: the command's output and exit status tell why.
    ``chunks`` is closed at the end: its own clean-up now, not at garbage collection."""
    try:
        async for chunk in chunks:
            write(chunk)
            await drain()
    except stopped_reading:
        pass
    finally:
        end()
        if hasattr(chunks, "aclose"):
            await chunks.aclose()


async def read_output(host: Host, argv: Sequence[str], read: Callable[[int], Awaitable[bytes]],
                      idle_timeout: float | None, stop: Callable[[], Awaitable[None]], stopped: str) -> bytes:
    """The next chunk of a streamed command's stdout (``b""`` at its end). When nothing arrives for
    ``idle_timeout`` seconds: ``stop`` the command, then RemoteError (``stopped`` says where it was stopped)."""
    try:
        async with asyncio.timeout(idle_timeout):
            return await read(STREAM_CHUNK_BYTES)
    except TimeoutError:
        await stop()
        raise RemoteError(f"server {host.name}: no output from `{quote_argv(argv)[:120]}` for "
                          f"{idle_timeout:g} s ({stopped})") from None


async def _chunks_of(data: bytes | None) -> AsyncIterator[bytes]:
    """``data`` as a stream of one chunk (none: stdin ends at once)."""
    if data:
        yield data


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL a command started in its own session, with every process of its group."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    await proc.wait()


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
