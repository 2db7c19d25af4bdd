"""Subcommands. Each module: ``register(subparsers, common)`` + ``start_*`` functions
that import their heavy dependencies inside."""

from __future__ import annotations

import argparse

from epoch_builder.workspace import Workspace, resolve_root


def workspace_of(args: argparse.Namespace) -> Workspace:
    return Workspace(resolve_root(getattr(args, "workspace", None)))
