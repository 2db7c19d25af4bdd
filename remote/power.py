"""Power and access actions: reboot, shutdown, install an SSH key, interactive ssh, unit tests.

Reboot and shutdown run the server's configured command (default
``sudo -n reboot`` / ``sudo -n poweroff``; ``-n`` so sudo fails instead of
waiting for a password that nobody can type).  When sudo wants a password
the action raises SudoPasswordRequired naming the server and the config key
to change.  A link that drops while the command runs counts as success (the
machine is going down).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from remote import host_program_client
from remote.config import ServerConfig, SSHOptions
from remote.errors import HostUnreachable, RemoteCommandFailed, RemoteError, SudoPasswordRequired
from remote.hosts import Result, quote_argv

if TYPE_CHECKING:  # pragma: no cover
    from remote.hosts import Host

POWER_ACTIONS = ("reboot", "shutdown")
# What sudo prints when it wants a password: -n, no terminal, no askpass, or -S reading an empty stdin.
_SUDO_PASSWORD_MARKERS = ("a password is required", "a terminal is required", "no askpass program",
                          "no password was provided", "[sudo] password for")


def power_command(server: ServerConfig, action: str) -> tuple[str, ...]:
    """The argv an action sends to the server (from ``reboot_command`` / ``shutdown_command``)."""
    if action not in POWER_ACTIONS:
        raise RemoteError(f"power action {action!r} not allowed; allowed: {', '.join(POWER_ACTIONS)}")
    return server.reboot_command if action == "reboot" else server.shutdown_command


async def power(host: "Host", action: str, *, timeout: float = 30.0) -> Result:
    """Send the reboot or shutdown command; SudoPasswordRequired when sudo asks for a password."""
    argv = power_command(host.config, action)
    try:
        result = await host.run(list(argv), timeout=timeout)
    except HostUnreachable:
        return Result(0, "", "link dropped while the command ran (expected when the machine goes down)")
    if result.ok:
        return result
    text = (result.stderr + result.stdout).lower()
    if any(marker in text for marker in _SUDO_PASSWORD_MARKERS):
        key = "reboot_command" if action == "reboot" else "shutdown_command"
        raise SudoPasswordRequired(
            f"server {host.name}: `{quote_argv(argv)}` needs a sudo password; allow it without a password "
            f"(sudoers NOPASSWD for this command) or set servers[].{key} in the cluster config"
        )
    last = (result.stderr.strip() or result.stdout.strip()).splitlines()
    raise RemoteCommandFailed(
        f"server {host.name}: `{quote_argv(argv)}` exited {result.exit_status}" + (f": {last[-1][:300]}" if last else "")
    )


async def reboot(host: "Host", *, timeout: float = 30.0) -> Result:
    return await power(host, "reboot", timeout=timeout)


async def shutdown(host: "Host", *, timeout: float = 30.0) -> Result:
    return await power(host, "shutdown", timeout=timeout)


def read_public_key(path: str | os.PathLike) -> str:
    file = Path(path).expanduser()
    try:
        key = file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise RemoteError(f"{file}: public key file not found") from None
    if "\n" in key or len(key.split()) < 2 or not key.split()[0].startswith(("ssh-", "ecdsa-", "sk-")):
        raise RemoteError(f"{file}: not an OpenSSH public key (one line like 'ssh-ed25519 AAAA... comment')")
    return key


async def install_key(
    server: ServerConfig, ssh: SSHOptions, public_key_path: str | os.PathLike, *, password: str | None = None,
    authorized_keys: str | None = None,
) -> bool:
    """Append the public key to the server's ``~/.ssh/authorized_keys`` unless present.

    Returns True when it was added.  ``password`` allows password
    authentication for this one connection (the first contact with a server);
    ``authorized_keys`` overrides the file (default: the server's configured
    ``authorized_keys``, else ``~/.ssh/authorized_keys``).
    """
    from remote.hosts import LocalHost
    from remote.ssh_host import SSHHost

    key = read_public_key(public_key_path)
    host: Host = LocalHost(server, ssh) if server.local else SSHHost(server, ssh, password=password)
    async with host:
        path = authorized_keys or server.authorized_keys
        answer = await host_program_client.call(host, "append_key", {"key": key, "path": path})
    return isinstance(answer, dict) and answer.get("added") is True


def connect_argv(server: ServerConfig, ssh: SSHOptions) -> list[str]:
    """The interactive ``ssh`` command that opens a shell in the server's workspace."""
    if server.local:
        return [os.environ.get("SHELL", "/bin/sh"), "-l"]
    argv = ["ssh", "-t", "-o", f"ServerAliveInterval={int(ssh.keepalive_interval_s) or 15}"]
    if server.port is not None:  # unset: ssh takes ~/.ssh/config's Port, as the asyncssh connections do
        argv += ["-p", str(server.port)]
    if ssh.known_hosts is not None:
        argv += ["-o", f"UserKnownHostsFile={ssh.known_hosts}"]
    argv += ["-o", "StrictHostKeyChecking=" + ("accept-new" if ssh.host_key_policy == "accept-new" else "yes")]
    if server.key is not None:
        argv += ["-i", str(server.key)]
    if server.user:
        argv += ["-l", server.user]
    argv += ["--", server.host, f"cd {shlex.quote(server.root)} 2>/dev/null; exec \"${{SHELL:-/bin/sh}}\" -l"]
    return argv


def exec_connect(server: ServerConfig, ssh: SSHOptions) -> None:
    """Replace this process with the interactive ssh (hands the terminal over)."""
    argv = connect_argv(server, ssh)
    os.execvp(argv[0], argv)


async def _check_test_runner(host: "Host", project_dir: str) -> None:
    """Why the suite cannot run, before running it: no project source, or a Python without pytest."""
    probe = await host.run(["sh", "-c", f"test -d {shlex.quote(project_dir)}/tests || echo no-tests; "
                            f"{quote_argv([host.python, '-c', 'import pytest'])} >/dev/null 2>&1 || echo no-pytest"],
                           timeout=60)
    missing = probe.stdout.split()
    if "no-tests" in missing:
        raise RemoteError(f"server {host.name}: no test suite at {project_dir}/tests; run `epoch-cluster bootstrap "
                          f"--server {host.name}` (pushes the project source there)")
    if "no-pytest" in missing:
        raise RemoteError(f"server {host.name}: {host.python} has no pytest; run `epoch-cluster bootstrap --server "
                          f"{host.name}` (installs the project with its test extras)")


async def unit_tests(
    host: "Host", pytest_args: Sequence[str] = (), *, on_output: Callable[[str], None] | None = None,
    timeout: float = 3600.0,
) -> int:
    """Run the project's test suite on the host (``python -m pytest`` in its project directory).

    Output lines go to ``on_output`` as they arrive; returns pytest's exit status.
    """
    import asyncio

    argv = [host.python, "-m", "pytest", "-q", *pytest_args]
    cwd = host.config.project_path
    await _check_test_runner(host, cwd)
    # pytest's own errors (a bad argument, a failed import of a test module) go to stderr: they are part
    # of what the user must see, in order with the rest.
    script = ["sh", "-c", f"cd {shlex.quote(cwd)} && exec {quote_argv(argv)} 2>&1"]
    pending = b""
    try:
        async with asyncio.timeout(timeout):
            async for chunk in host.stream(script + [], input=None):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if on_output:
                        on_output(line.decode("utf-8", "replace"))
    except RemoteCommandFailed as exc:
        if pending and on_output:
            on_output(pending.decode("utf-8", "replace"))
        text = str(exc)
        marker = " exited "
        if marker in text:
            try:
                return int(text.split(marker, 1)[1].split(":", 1)[0].split()[0])
            except ValueError:
                pass
        raise
    if pending and on_output:
        on_output(pending.decode("utf-8", "replace"))
    return 0
