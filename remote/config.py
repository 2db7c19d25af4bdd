"""Typed cluster configuration: ``config/cluster.json``.

Shape (see ``config/cluster.example.json``)::

    {
      "ssh": {
        "known_hosts": "~/.ssh/known_hosts",   # null: the OpenSSH default file
        "host_key_policy": "strict",           # "strict" | "accept-new" (never off)
        "keepalive_interval_s": 15,
        "keepalive_count_max": 3,
        "connect_timeout_s": 10,
        "command_timeout_s": 60,
        "max_channels": 8,                      # open channels per connection (OpenSSH MaxSessions is 10)
        "ssh_config": true                      # honour ~/.ssh/config
      },
      "servers": [
        {"name": "gpu-1", "host": "10.0.0.5", "port": 22, "user": "quant",  # port optional: see ServerConfig.port
         "key": "~/.ssh/id_ed25519",            # optional; the SSH agent and defaults are used otherwise
         "root": "/home/quant/epoch-builder",    # the server's workspace root
         "venv": "/home/quant/.venvs/epoch",     # or "python": "/usr/bin/python3"
         "project_dir": "/home/quant/epoch-builder-src",  # where bootstrap puts the project source
         "is_cluster": true,
         "reboot_command": ["sudo", "-n", "reboot"],
         "shutdown_command": ["sudo", "-n", "poweroff"],
         "local": false}                         # true: drive this machine without SSH
      ]
    }

Validated once by :func:`load_cluster_config`; every error names the file and
the key (``servers[1].port``) and the allowed values.  With no file, the
cluster is a single local server named ``localhost`` whose root is
``$EPOCH_BUILDER_HOME`` or the current directory.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from remote.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("config") / "cluster.json"  # under the workspace
CONFIG_ENV = "EPOCH_CLUSTER_CONFIG"
HOST_KEY_POLICIES = ("strict", "accept-new")
# A server's ``accelerator`` -> the project extra bootstrap installs there (pyproject.toml): the CPU or the
# CUDA build of TensorFlow, never both in one venv.
ACCELERATOR_EXTRAS = {"cpu": "cpu", "cuda": "gpu"}
DEFAULT_ACCELERATOR = "cpu"
DEFAULT_REBOOT_COMMAND = ("sudo", "-n", "reboot")
DEFAULT_SHUTDOWN_COMMAND = ("sudo", "-n", "poweroff")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


@dataclass(frozen=True)
class SSHOptions:
    """Connection options shared by every SSH server."""

    known_hosts: Path | None = None  # None: OpenSSH's default (~/.ssh/known_hosts)
    host_key_policy: str = "strict"
    keepalive_interval_s: float = 15.0
    keepalive_count_max: int = 3
    connect_timeout_s: float = 10.0
    command_timeout_s: float = 60.0
    max_channels: int = 8
    ssh_config: bool = True


@dataclass(frozen=True)
class ServerConfig:
    """One machine of the cluster."""

    name: str
    host: str = "localhost"
    # None: not in the cluster file, so asyncssh applies ~/.ssh/config's Port (else 22); a port given
    # here always wins, as ``ssh -p`` does over ssh_config.
    port: int | None = None
    user: str | None = None  # None: ~/.ssh/config or the current user
    key: Path | None = None
    root: str = "."  # workspace root on that machine (absolute for SSH servers)
    python: str = "python3"  # interpreter that has epoch_builder installed (the venv's python)
    venv: str | None = None  # when set, ``python`` is ``<venv>/bin/python`` and bootstrap creates it
    project_dir: str | None = None  # project source on the host (bootstrap target, unit tests cwd)
    is_cluster: bool = True
    reboot_command: tuple[str, ...] = DEFAULT_REBOOT_COMMAND
    shutdown_command: tuple[str, ...] = DEFAULT_SHUTDOWN_COMMAND
    local: bool = False  # drive this machine directly (LocalHost) instead of over SSH
    authorized_keys: str | None = None  # install-key target on the host (None: ~/.ssh/authorized_keys)
    accelerator: str = DEFAULT_ACCELERATOR  # one of ACCELERATOR_EXTRAS: which TensorFlow build bootstrap installs
    # The cores this server's jobs and calibration may use (None: all): a shared machine's share, or
    # servers of different speeds on one machine. Jobs get it as their CPU affinity, calibration runs under taskset.
    cpus: tuple[int, ...] | None = None

    @property
    def project_path(self) -> str:
        """Where the project source lives on the host (default ``<root>/.project``)."""
        return self.project_dir or f"{self.root.rstrip('/')}/.project"

    @property
    def address(self) -> str:
        """``user@host:port`` for messages and displays; user and port only where the cluster file sets them."""
        return f"{self.user + '@' if self.user else ''}{self.host}{'' if self.port is None else f':{self.port}'}"


@dataclass(frozen=True)
class ClusterConfig:
    servers: tuple[ServerConfig, ...]
    ssh: SSHOptions = field(default_factory=SSHOptions)
    source: Path | None = None  # the file it was read from (None: built-in default)

    def names(self) -> list[str]:
        return [s.name for s in self.servers]

    def server(self, name: str) -> ServerConfig:
        for server in self.servers:
            if server.name == name:
                return server
        raise ConfigError(f"unknown server {name!r}; configured: {', '.join(self.names())}")

    def select(self, name: str | None) -> list[ServerConfig]:
        """``None`` or ``"all"``: every server; otherwise the named one(s) (comma separated)."""
        if name in (None, "all"):
            return list(self.servers)
        return [self.server(part.strip()) for part in name.split(",") if part.strip()]


def default_local_server(root: str | os.PathLike | None = None) -> ServerConfig:
    """The single server used when there is no cluster file: this machine, no SSH."""
    root_path = Path(root or os.environ.get("EPOCH_BUILDER_HOME") or ".").expanduser().resolve()
    return ServerConfig(name="localhost", host="localhost", root=str(root_path), python=sys.executable, local=True)


CONTROLLER_NAME = "controller"  # the console's own workspace, when no configured server is it


def controller_server(config: ClusterConfig, workspace: str | os.PathLike) -> ServerConfig:
    """The server that is the controller's workspace: a ``local`` server rooted there (``localhost`` without a
    cluster file), else a new one named ``controller`` that dispatch leaves out (``is_cluster`` false). The
    steps that combine the cluster's results (initialize, build, export, verify) run there by default."""
    root = Path(workspace).expanduser().resolve()
    for server in config.servers:
        if server.local and Path(server.root).resolve() == root:
            return server
    if CONTROLLER_NAME in config.names():
        where = config.source or "the cluster file"
        raise ConfigError(f"{where}: servers: the name {CONTROLLER_NAME!r} is kept for this machine's workspace "
                          f"({root}); rename that server, or mark it local with root {root}")
    return ServerConfig(name=CONTROLLER_NAME, host="localhost", root=str(root), python=sys.executable,
                        is_cluster=False, local=True)


def with_controller(config: ClusterConfig, workspace: str | os.PathLike) -> tuple[ClusterConfig, str]:
    """``config`` with the controller's workspace among its servers (first, when it is added), and its name."""
    controller = controller_server(config, workspace)
    if controller in config.servers:
        return config, controller.name
    return ClusterConfig(servers=(controller, *config.servers), ssh=config.ssh, source=config.source), controller.name


def load_cluster_config(path: str | os.PathLike | None = None, *, local_root: str | os.PathLike | None = None) -> ClusterConfig:
    """Read and validate the cluster file.

    Lookup: ``path`` (``--config``), then ``$EPOCH_CLUSTER_CONFIG``, then ``config/cluster.json`` of the
    workspace (``local_root``, ``$EPOCH_BUILDER_HOME`` or the current directory). A file named by the
    first two must exist; without the third, the cluster is a single local server named ``localhost``
    rooted at the workspace.
    """
    named = path if path is not None else (os.environ.get(CONFIG_ENV) or None)
    workspace = Path(local_root or os.environ.get("EPOCH_BUILDER_HOME") or ".").expanduser()
    file = Path(named).expanduser() if named is not None else workspace / DEFAULT_CONFIG_PATH
    if not file.exists():
        if named is not None:
            given = "--config" if path is not None else f"${CONFIG_ENV}"
            raise ConfigError(f"{file}: cluster file not found (given by {given}); omit it to use "
                              f"{DEFAULT_CONFIG_PATH} of the workspace, or localhost alone without one")
        return ClusterConfig(servers=(default_local_server(local_root),), source=None)
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{file}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        from epoch_builder.storage import not_utf8_message

        raise ConfigError(not_utf8_message(file, exc)) from None
    return parse_cluster_config(raw, file)


def parse_cluster_config(raw: Any, file: Path | str = "cluster.json") -> ClusterConfig:
    """Validate an already-parsed cluster document (errors name ``file`` and the key)."""
    reader = _Reader(str(file))
    doc = reader.mapping(raw, "")
    reader.no_unknown(doc, "", {"ssh", "servers"})
    ssh = _parse_ssh(reader, doc.get("ssh", {}))
    servers_raw = doc.get("servers")
    if not isinstance(servers_raw, list) or not servers_raw:
        raise reader.error("servers", "must be a non-empty list of server objects")
    servers = tuple(_parse_server(reader, item, f"servers[{i}]") for i, item in enumerate(servers_raw))
    seen: set[str] = set()
    for i, server in enumerate(servers):
        if server.name in seen:
            raise reader.error(f"servers[{i}].name", f"duplicate server name {server.name!r}; names must be unique")
        seen.add(server.name)
    return ClusterConfig(servers=servers, ssh=ssh, source=Path(file))


# --------------------------------------------------------------------------- parsing helpers


class _Reader:
    def __init__(self, file: str) -> None:
        self.file = file

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.file}: {key}: {message}")

    def mapping(self, value: Any, key: str) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.error(key or "(top level)", "must be a JSON object")
        return value

    def no_unknown(self, doc: Mapping[str, Any], key: str, allowed: set[str]) -> None:
        unknown = sorted(set(doc) - allowed)
        if unknown:
            where = f"{key}.{unknown[0]}" if key else unknown[0]
            raise self.error(where, f"unknown key; allowed: {', '.join(sorted(allowed))}")

    def string(self, doc: Mapping[str, Any], key: str, where: str, default: Any = None, *, required: bool = False) -> Any:
        if key not in doc or doc[key] is None:
            if required:
                raise self.error(f"{where}.{key}", "is required (a non-empty string)")
            return default
        value = doc[key]
        if not isinstance(value, str) or not value.strip() or any(ord(c) < 32 for c in value):
            raise self.error(f"{where}.{key}", "must be a non-empty string without control characters")
        return value

    def number(self, doc: Mapping[str, Any], key: str, where: str, default: float | None, low: float, high: float, *, integer: bool = False) -> Any:
        if key not in doc:
            return default
        value = doc[key]
        kind = "an integer" if integer else "a number"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
            raise self.error(f"{where}.{key}", f"must be {kind} in {low}..{high}")
        if not low <= value <= high:
            raise self.error(f"{where}.{key}", f"{value} out of range; allowed {low}..{high}")
        return value

    def boolean(self, doc: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
        if key not in doc:
            return default
        if not isinstance(doc[key], bool):
            raise self.error(f"{where}.{key}", "must be true or false")
        return doc[key]

    def cores(self, doc: Mapping[str, Any], key: str, where: str) -> tuple[int, ...] | None:
        """A list of distinct CPU core numbers (0 to MAX_CORE), or None when absent."""
        value = doc.get(key)
        if value is None:
            return None
        if (not isinstance(value, list) or not value or len(set(map(repr, value))) != len(value)
                or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_CORE for v in value)):
            raise self.error(f"{where}.{key}", f"must be a non-empty list of distinct core numbers 0 to {MAX_CORE}, "
                             "e.g. [0, 1]")
        return tuple(value)

    def command(self, doc: Mapping[str, Any], key: str, where: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """A command as a list of arguments, or a string split like a shell would."""
        if key not in doc or doc[key] is None:
            return default
        value = doc[key]
        if isinstance(value, str):
            try:
                value = shlex.split(value)
            except ValueError as exc:
                raise self.error(f"{where}.{key}", f"cannot split command: {exc}") from None
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise self.error(f"{where}.{key}", "must be a command: a non-empty list of strings or a string")
        return tuple(value)


def _parse_ssh(reader: _Reader, raw: Any) -> SSHOptions:
    doc = reader.mapping(raw, "ssh")
    reader.no_unknown(doc, "ssh", {f for f in SSHOptions.__dataclass_fields__})
    policy = reader.string(doc, "host_key_policy", "ssh", "strict")
    if policy not in HOST_KEY_POLICIES:
        raise reader.error("ssh.host_key_policy", f"{policy!r} not allowed; allowed: {', '.join(HOST_KEY_POLICIES)}")
    known_hosts = reader.string(doc, "known_hosts", "ssh")
    return SSHOptions(
        known_hosts=Path(known_hosts).expanduser() if known_hosts else None,
        host_key_policy=policy,
        keepalive_interval_s=float(reader.number(doc, "keepalive_interval_s", "ssh", 15.0, 0, 3600)),
        keepalive_count_max=reader.number(doc, "keepalive_count_max", "ssh", 3, 1, 100, integer=True),
        connect_timeout_s=float(reader.number(doc, "connect_timeout_s", "ssh", 10.0, 0.1, 600)),
        command_timeout_s=float(reader.number(doc, "command_timeout_s", "ssh", 60.0, 0.1, 86_400)),
        max_channels=reader.number(doc, "max_channels", "ssh", 8, 1, 64, integer=True),
        ssh_config=reader.boolean(doc, "ssh_config", "ssh", True),
    )


_SERVER_KEYS = {
    "name", "host", "port", "user", "key", "root", "python", "venv", "project_dir", "is_cluster",
    "reboot_command", "shutdown_command", "local", "authorized_keys", "accelerator", "cpus",
}
MAX_CORE = 4095


def _parse_server(reader: _Reader, raw: Any, where: str) -> ServerConfig:
    doc = reader.mapping(raw, where)
    reader.no_unknown(doc, where, _SERVER_KEYS)
    name = reader.string(doc, "name", where, required=True)
    if not _NAME_RE.match(name) or name == "all":
        raise reader.error(f"{where}.name", f"{name!r} not allowed; use 1-63 of A-Z a-z 0-9 . _ - (not 'all')")
    local = reader.boolean(doc, "local", where, False)
    host = reader.string(doc, "host", where, "localhost" if local else None, required=not local)
    if host.startswith("-") or any(c.isspace() for c in host):
        raise reader.error(f"{where}.host", f"{host!r} is not a host name or address")
    user = reader.string(doc, "user", where)
    if user is not None and (user.startswith("-") or any(c.isspace() or c in "@:" for c in user)):
        raise reader.error(f"{where}.user", f"{user!r} is not a user name")
    root = reader.string(doc, "root", where, required=True)
    if local:
        root = str(Path(root).expanduser().resolve())
    elif not root.startswith("/"):
        raise reader.error(f"{where}.root", f"{root!r} must be an absolute path on the server")
    venv = reader.string(doc, "venv", where)
    python = reader.string(doc, "python", where)
    if venv and python:
        raise reader.error(f"{where}.python", "give either 'venv' or 'python', not both")
    if venv:
        python = f"{venv.rstrip('/')}/bin/python"
    key = reader.string(doc, "key", where)
    accelerator = reader.string(doc, "accelerator", where, DEFAULT_ACCELERATOR)
    if accelerator not in ACCELERATOR_EXTRAS:
        raise reader.error(f"{where}.accelerator", f"{accelerator!r} not allowed; allowed: {', '.join(ACCELERATOR_EXTRAS)}")
    return ServerConfig(
        name=name,
        host=host,
        port=None if doc.get("port") is None else reader.number(doc, "port", where, None, 1, 65535, integer=True),
        user=user,
        key=Path(key).expanduser() if key else None,
        root=root.rstrip("/") or "/",
        python=python or (sys.executable if local else "python3"),
        venv=venv,
        project_dir=reader.string(doc, "project_dir", where),
        authorized_keys=reader.string(doc, "authorized_keys", where),
        is_cluster=reader.boolean(doc, "is_cluster", where, True),
        reboot_command=reader.command(doc, "reboot_command", where, DEFAULT_REBOOT_COMMAND),
        shutdown_command=reader.command(doc, "shutdown_command", where, DEFAULT_SHUTDOWN_COMMAND),
        local=local,
        accelerator=accelerator,
        cpus=reader.cores(doc, "cpus", where),
    )
