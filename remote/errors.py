"""Errors of the remote layer.

All derive from ``EpochBuilderError`` so every front end (``epoch-cluster``,
the console) shows them as one line: which server, file or key, and what is
allowed.
"""

from __future__ import annotations

from epoch_builder.errors import EpochBuilderError


class RemoteError(EpochBuilderError):
    """A failed remote action (names the server)."""


class ConfigError(RemoteError):
    """``config/cluster.json`` is invalid (names the file and key)."""


class HostUnreachable(RemoteError):
    """The host could not be reached, or the link dropped and did not come back in time."""


class HostKeyError(RemoteError):
    """The server's host key is unknown or changed: refused."""


class JobConflict(RemoteError):
    """A pipeline job is already running on the host (use force to start anyway)."""


class JobNotFound(RemoteError):
    """No job with that id under ``<root>/.jobs``."""


class UnsafePath(RemoteError):
    """A path that would leave the workspace (``..``, absolute, symlink out, control characters)."""


class SudoPasswordRequired(RemoteError):
    """``sudo -n`` refused because it needs a password."""


class RemoteCommandFailed(RemoteError):
    """A remote command exited non-zero where success was required."""
