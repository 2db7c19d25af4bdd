"""Remote layer: drive the cluster's hosts over SSH (or this machine directly).

Modules: ``config`` (cluster.json), ``hosts`` (Host / LocalHost / SSHHost),
``cluster`` (all hosts), ``jobs`` (detached epoch-builder jobs), ``sync``
(incremental push/pull), ``power`` (reboot, shutdown, keys, ssh, unit tests),
``bootstrap`` (install the project on a host), ``agent`` (host-side helper),
``cli`` (``epoch-cluster``).  Never imports textual or console.
"""
