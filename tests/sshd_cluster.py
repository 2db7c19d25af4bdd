"""Real OpenSSH servers on loopback for tests: ``import sshd_cluster`` from any test directory.

    keys = sshd_cluster.UserKey.generate(tmp_dir)
    cluster = sshd_cluster.SSHDCluster.start(tmp_dir, count=3, user_key=keys)
    cluster.servers[0].port, .root, .kill(), .restart()
    cluster.cluster_config(python=sys.executable)   # a remote.config.ClusterConfig
    cluster.stop()

Each server is its own ``sshd -D -e -f <config>`` on 127.0.0.1 and a random
port, with its own host key, an authorized_keys holding the test user key,
and its own empty root directory used as that server's workspace.  A
known_hosts file lists every server, so clients use strict host key
checking.  Logins are as the current user (root in CI containers: sshd
allows key logins for root by default).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = shutil.which("sshd", path="/usr/sbin:/usr/local/sbin:/sbin:" + os.environ.get("PATH", "")) or "/usr/sbin/sshd"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"


def sshd_available() -> bool:
    return os.path.exists(SSHD) and os.path.exists(SSH_KEYGEN)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def keygen(path: Path, kind: str = "ed25519") -> Path:
    """A new key pair without passphrase at ``path`` / ``path.pub``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([SSH_KEYGEN, "-q", "-t", kind, "-N", "", "-C", "epoch-builder-test", "-f", str(path)], check=True)
    return path


@dataclass(frozen=True)
class UserKey:
    private: Path

    @property
    def public(self) -> Path:
        return self.private.with_name(self.private.name + ".pub")

    @classmethod
    def generate(cls, directory: Path) -> "UserKey":
        return cls(keygen(Path(directory) / "id_ed25519"))


@dataclass
class SSHServer:
    """One sshd process; ``kill`` simulates a crash (listener and every session), ``restart`` brings it back."""

    name: str
    directory: Path
    port: int
    user_key: UserKey
    root: Path = field(init=False)
    host_key: Path = field(init=False)
    home: Path = field(init=False)
    process: subprocess.Popen | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.root = self.directory / "root"
        self.root.mkdir(parents=True, exist_ok=True)
        self.home = self.directory / "home"
        self.home.mkdir(exist_ok=True)
        self.host_key = self.directory / "ssh_host_ed25519_key"
        if not self.host_key.exists():
            keygen(self.host_key)
        authorized = self.directory / "authorized_keys"
        authorized.write_text(self.user_key.public.read_text())
        authorized.chmod(0o600)
        (self.directory / "sshd_config").write_text(
            "\n".join([
                f"Port {self.port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {self.host_key}",
                f"PidFile {self.directory / 'sshd.pid'}",
                f"AuthorizedKeysFile {authorized}",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "PermitRootLogin prohibit-password",
                "UsePAM no",
                "StrictModes no",
                "MaxSessions 10",
                "MaxStartups 100:30:200",
                "LogLevel ERROR",
                "Subsystem sftp internal-sftp",
                "AcceptEnv LANG LC_*",
                # Its own home, as on a machine of its own: the login shell reads this server's
                # (empty) rc files, never the shared ~/.bashrc, whose `pyenv init` lock a killed
                # session of another server could leave behind and stall every server's commands.
                f'SetEnv "HOME={self.home}"',
                "",
            ])
        )

    def known_hosts_line(self) -> str:
        kind, blob = self.host_key.with_name(self.host_key.name + ".pub").read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {blob}"

    def start(self, timeout: float = 10.0) -> None:
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
        log = open(self.directory / "sshd.log", "ab")
        self.process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.directory / "sshd_config")], stdin=subprocess.DEVNULL, stdout=log,
            stderr=log, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd {self.name} exited {self.process.returncode}: {(self.directory / 'sshd.log').read_text()[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.settimeout(1)
                    if sock.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"sshd {self.name} did not listen on port {self.port} within {timeout} s")

    def session_pids(self) -> list[int]:
        """Every process forked from this sshd (sessions and the commands they run)."""
        if self.process is None:
            return []
        import psutil

        try:
            return [p.pid for p in psutil.Process(self.process.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL the listener and all its sessions: every client link drops at once.

        Detached jobs survive: they left the session's process tree when they started.
        """
        if self.process is None:
            return
        pids = self.session_pids()
        for pid in [self.process.pid, *pids]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        self.kill()

    def restart(self) -> None:
        self.kill()
        self.start()


@dataclass
class SSHDCluster:
    directory: Path
    user_key: UserKey
    servers: list[SSHServer]
    known_hosts: Path

    @classmethod
    def start(cls, directory: Path, count: int = 2, user_key: UserKey | None = None) -> "SSHDCluster":
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        key = user_key or UserKey.generate(directory / "client")
        servers = [SSHServer(f"srv{i + 1}", directory / f"srv{i + 1}", free_port(), key) for i in range(count)]
        known_hosts = directory / "known_hosts"
        known_hosts.write_text("".join(s.known_hosts_line() + "\n" for s in servers))
        cluster = cls(directory, key, servers, known_hosts)
        try:
            for server in servers:
                server.start()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def config_dict(self, python: str | None = None, **ssh_overrides: object) -> dict:
        """A cluster.json document for these servers (strict host keys with this known_hosts)."""
        ssh = {"known_hosts": str(self.known_hosts), "host_key_policy": "strict", "connect_timeout_s": 5,
               "command_timeout_s": 60, "keepalive_interval_s": 2, "ssh_config": False}
        ssh.update(ssh_overrides)
        return {
            "ssh": ssh,
            "servers": [
                {"name": s.name, "host": "127.0.0.1", "port": s.port, "user": current_user(), "key": str(self.user_key.private),
                 "root": str(s.root), "python": python or sys.executable,
                 # install-key writes the file this sshd reads, never the login user's real one
                 "authorized_keys": str(s.directory / "authorized_keys")}
                for s in self.servers
            ],
        }

    def cluster_config(self, python: str | None = None, **ssh_overrides: object):
        from remote.config import parse_cluster_config

        return parse_cluster_config(self.config_dict(python, **ssh_overrides), self.directory / "cluster.json")

    def stop(self) -> None:
        for server in self.servers:
            try:
                server.kill()
            except Exception:
                pass


def current_user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name
