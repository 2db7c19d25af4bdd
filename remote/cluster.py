"""A cluster: one :class:`~remote.hosts.Host` per configured server, connected in parallel."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, TypeVar

from remote.config import ClusterConfig, load_cluster_config
from remote.host_factory import make_host
from remote.hosts import Host

T = TypeVar("T")


class Cluster:
    """Holds the hosts of a cluster config; the console and ``epoch-cluster`` share it.

    ``await cluster.connect_all()`` connects every host at once and returns
    ``{name: None | exception}``: a server that is down does not stop the others.
    """

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.hosts: dict[str, Host] = {s.name: make_host(s, config.ssh) for s in config.servers}

    @classmethod
    def from_file(cls, path: str | None = None, *, local_root: str | None = None) -> "Cluster":
        return cls(load_cluster_config(path, local_root=local_root))

    def host(self, name: str) -> Host:
        return self.hosts[self.config.server(name).name]

    def select(self, name: str | None) -> list[Host]:
        """``None`` / ``"all"``: every host; else the named ones (comma separated)."""
        return [self.hosts[s.name] for s in self.config.select(name)]

    async def connect_all(self, names: str | None = None) -> dict[str, BaseException | None]:
        results = await self.each(lambda h: h.connect(), names)
        return {name: (r if isinstance(r, BaseException) else None) for name, r in results.items()}

    async def each(self, action: Callable[[Host], Awaitable[T]], names: str | None = None) -> dict[str, T | BaseException]:
        """Run ``action(host)`` on the selected hosts in parallel; each result or exception by name."""
        hosts = self.select(names)
        results = await asyncio.gather(*(action(h) for h in hosts), return_exceptions=True)
        return {h.name: r for h, r in zip(hosts, results)}

    async def close(self) -> None:
        await asyncio.gather(*(h.close() for h in self.hosts.values()), return_exceptions=True)

    async def __aenter__(self) -> "Cluster":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
