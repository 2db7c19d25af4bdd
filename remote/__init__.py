"""Remote layer: drive the cluster's hosts over SSH (or this machine directly).

Modules: ``config`` (cluster.json), ``hosts`` (Host / LocalHost / SSHHost),
``cluster`` (all hosts), ``jobs`` (detached epoch-builder jobs), ``sync``
(incremental push/pull), ``power`` (reboot, shutdown, keys, ssh, unit tests),
``bootstrap`` (install the project on a host), ``host_program`` (the
program that runs on a host), ``host_program_client`` (the controller's side
of it), ``cli`` (``epoch-cluster``).  Never imports textual or console.
"""
