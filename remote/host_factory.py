"""Which transport a server gets: above both (``remote.hosts`` is the interface and this machine,
``remote.ssh_host`` SSH), so neither imports the other's module back."""

from __future__ import annotations

from remote.config import ServerConfig, SSHOptions
from remote.hosts import Host, LocalHost


def make_host(config: ServerConfig, ssh: SSHOptions | None = None) -> Host:
    """The right implementation for a server: LocalHost for ``local`` servers, SSHHost otherwise."""
    if config.local:
        return LocalHost(config, ssh)
    from remote.ssh_host import SSHHost  # asyncssh loads only for SSH servers

    return SSHHost(config, ssh)
