"""An SSH server as a :class:`remote.hosts.Host`, reached with asyncssh.

One connection per server with keepalive on.  When the link drops it
reconnects in the background with exponential backoff and jitter (state
``reconnecting``); calls made meanwhile wait for the link up to their
timeout.  At most ``max_channels`` channels are open at once per connection
(OpenSSH's MaxSessions is 10).  Host keys are checked against known_hosts
(``ssh.host_key_policy``: ``strict`` refuses unknown keys, ``accept-new``
records the key of a host never seen; a changed key is refused by both).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Sequence

from remote.config import ServerConfig, SSHOptions
from remote.errors import HostKeyError, HostUnreachable, RemoteCommandFailed, RemoteError
from remote.hosts import (KILL_TAGGED_PROGRAM, Host, HostState, Result, TransferProgress, backoff_delay, feed_stdin,
                          quote_argv, read_output, tagged_argv)

if TYPE_CHECKING:  # pragma: no cover - typing only
    import asyncssh


class _QuietLostSocketWrites(logging.Filter):
    """asyncio logs "socket.send() raised exception." for every write to a socket whose peer vanished (dozens
    when a link drops mid-transfer); the lost link itself is reported once, as HostUnreachable."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("socket.send() raised exception")


logging.getLogger("asyncio").addFilter(_QuietLostSocketWrites())

# AES-GCM first: with AES-NI it moves bulk SFTP data ~30% faster than asyncssh's default ChaCha20
# (bench/bench_remote.py); the rest keep servers without GCM reachable.
CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
           "aes128-ctr", "aes192-ctr", "aes256-ctr")

# A refused channel open is tried this often (0.01 s doubling: ~5 s in all) before it counts as a lost link.
RETRY_OPEN_ATTEMPTS = 10


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
        if self.config.key and not Path(self.config.key).expanduser().is_file():
            raise HostUnreachable(f"server {self.name} ({self.config.address}): key file {self.config.key} (servers[].key) "
                                  "not found; fix the path or create it with ssh-keygen")
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
            known_file = self.ssh.known_hosts or "~/.ssh/known_hosts"
            if self.ssh.host_key_policy == "accept-new":  # we get here only for a host known with another key
                advice = (f"its key differs from the one in known_hosts {known_file}; accept-new never replaces a "
                          "known key: if the server was reinstalled, remove its line (ssh-keygen -R) and connect again")
            else:
                advice = (f"check known_hosts {known_file} (ssh.host_key_policy: strict; accept-new records the "
                          "key of a host seen for the first time)")
            raise HostKeyError(f"server {self.name} ({self.config.address}): host key not verified "
                               f"({exc.reason}); {advice}") from None
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

    def _command(self, argv: Sequence[str], cwd: str | None, token: str) -> str:
        line = quote_argv(tagged_argv(argv, token))
        return f"cd {shlex.quote(cwd)} && exec {line}" if cwd else f"exec {line}"

    async def _stop_tagged(self, token: str) -> None:
        """Stop what is left of a command that timed out (best effort: the link may be the reason)."""
        try:
            await self._run([self.python, "-c", KILL_TAGGED_PROGRAM, token], timeout=self.ssh.connect_timeout_s,
                            input=None, cwd=None, stop_on_timeout=False)
        except RemoteError:
            pass

    async def run(
        self, argv: Sequence[str], *, timeout: float | None = None, input: bytes | None = None, cwd: str | None = None
    ) -> Result:
        return await self._run(argv, timeout=timeout, input=input, cwd=cwd, stop_on_timeout=True)

    async def _run(self, argv: Sequence[str], *, timeout: float | None, input: bytes | None, cwd: str | None,
                   stop_on_timeout: bool) -> Result:
        import asyncssh

        timeout = timeout or self.ssh.command_timeout_s
        token = secrets.token_hex(8)
        command = self._command(argv, cwd, token)
        deadline = time.monotonic() + timeout
        conn = await self._connection(timeout)
        try:
            async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                async with self._channels:
                    completed = await self._retry_open(conn, lambda: conn.run(
                        command, input=input, encoding=None, check=False,
                        # no input: the command sees end of file at once (a `sudo -S` prompt fails instead of hanging)
                        **({} if input else {"stdin": asyncssh.DEVNULL})))
        except TimeoutError:
            if stop_on_timeout:
                await self._stop_tagged(token)
            raise RemoteError(f"server {self.name}: `{quote_argv(argv)[:200]}` timed out after {timeout:g} s "
                              "(stopped on the server)") from None
        except (asyncssh.ConnectionLost, asyncssh.DisconnectError, asyncssh.ChannelOpenError, BrokenPipeError, ConnectionError) as exc:
            raise self._lost(exc) from None
        status = completed.exit_status
        if status is None:  # killed by a signal or the channel closed early
            status = 255 if completed.exit_signal is None else 128
        out = completed.stdout or b""
        err = completed.stderr or b""
        return Result(status, _text(out), _text(err))

    async def stream_with_stdin(self, argv: Sequence[str], chunks: AsyncIterator[bytes], *,
                                idle_timeout: float | None = None) -> AsyncIterator[bytes]:
        import asyncssh

        token = secrets.token_hex(8)
        command = self._command(argv, None, token)
        conn = await self._connection()
        async with self._channels:
            try:
                process = await self._retry_open(conn, lambda: conn.create_process(command, encoding=None, stdin=asyncssh.PIPE))
            except (asyncssh.ConnectionLost, asyncssh.DisconnectError, asyncssh.ChannelOpenError, ConnectionError) as exc:
                raise self._lost(exc) from None

            def end_stdin() -> None:
                try:
                    process.stdin.write_eof()
                except (asyncssh.Error, BrokenPipeError, ConnectionError, OSError):
                    pass

            stopped_reading = (asyncssh.Error, BrokenPipeError, ConnectionError)  # or the link is gone
            feeder = asyncio.ensure_future(feed_stdin(chunks, process.stdin.write, process.stdin.drain, end_stdin,
                                                      stopped_reading=stopped_reading))
            try:
                while chunk := await read_output(self, argv, process.stdout.read, idle_timeout,
                                                 lambda: self._stop_tagged(token), "stopped on the server"):
                    yield chunk
                await feeder
                if self._conn is not conn or conn.is_closed():
                    raise self._lost(ConnectionError("connection closed"))
                async with asyncio.timeout(self.ssh.command_timeout_s):
                    completed = await process.wait(check=False)
                if completed.exit_status is None and completed.exit_signal is None:
                    raise self._lost(ConnectionError("channel closed without exit status"))
                if completed.exit_status != 0:
                    err = _text(completed.stderr or b"").strip().splitlines()
                    ended = (f"exited {completed.exit_status}" if completed.exit_status is not None
                             else f"was killed (SIG{completed.exit_signal[0]})")
                    raise RemoteCommandFailed(
                        f"server {self.name}: `{quote_argv(argv)[:120]}` {ended}" + (f": {err[-1][:300]}" if err else "")
                    )
            except (asyncssh.ConnectionLost, asyncssh.DisconnectError, BrokenPipeError, ConnectionError) as exc:
                raise self._lost(exc) from None
            finally:
                feeder.cancel()
                process.close()
                await asyncio.gather(feeder, return_exceptions=True)

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
        sftp = await self.sftp()
        handler = (lambda _s, _d, done, total: progress(done, total)) if progress else None
        await self._transfer(f"upload to {remote_path}",
                             sftp.put(str(local_path), remote_path, max_requests=64, progress_handler=handler))

    async def download(self, remote_path: str, local_path: Path, progress: TransferProgress | None = None) -> None:
        sftp = await self.sftp()
        handler = (lambda _s, _d, done, total: progress(done, total)) if progress else None
        await self._transfer(f"download of {remote_path}",
                             sftp.get(remote_path, str(local_path), max_requests=64, progress_handler=handler))

    async def _transfer(self, what: str, transfer: Awaitable[Any]) -> None:
        """Await an SFTP put or get; a lost link is HostUnreachable, a refused request one RemoteError."""
        import asyncssh

        _claim_parallel_requests(asyncio.get_running_loop())
        try:
            await transfer
        except (asyncssh.ConnectionLost, asyncssh.DisconnectError, ConnectionError, BrokenPipeError,
                asyncssh.SFTPConnectionLost, asyncssh.SFTPNoConnection) as exc:  # the last two: SFTP saw the link go
            raise self._lost(exc) from None
        except asyncssh.SFTPError as exc:
            raise RemoteError(f"server {self.name}: {what} failed: {exc.reason}") from None


# asyncssh's parallel file I/O: one task per request in flight (up to max_requests)
_PARALLEL_REQUEST = "_SFTPParallelIO._start_task"


def _claim_parallel_requests(loop: asyncio.AbstractEventLoop) -> None:
    """Have every SFTP request task of this loop read its own outcome when it ends.

    asyncssh runs a transfer as one task per request in flight. When the link dies mid-transfer some of them
    are left behind on more than one path (a transfer cancelled while it waits on them, one whose first error
    ends it while others are still being started); each then fails too, and asyncio reports every failure
    nobody read ("Task exception was never retrieved") on stderr, long after the one clear error was shown.
    A snapshot of the tasks at the failure misses those created after it, so the claim is made where each
    task is created: a task factory on the loop (chained to any earlier one) adds the reader to the request
    tasks. Reading a task's exception changes nothing for whoever else awaits it."""
    if getattr(loop, "_claims_sftp_requests", False):
        return
    previous = loop.get_task_factory()

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> "asyncio.Future[Any]":
        task = previous(loop, coro, **kwargs) if previous is not None else asyncio.Task(coro, loop=loop, **kwargs)
        if getattr(coro, "__qualname__", "") == _PARALLEL_REQUEST:
            task.add_done_callback(_read_outcome)
        return task

    loop.set_task_factory(factory)
    loop._claims_sftp_requests = True  # type: ignore[attr-defined]


def _read_outcome(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _text(data: bytes | str) -> str:
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data
