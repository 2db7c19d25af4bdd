"""Subcommands. Each module: ``register(subparsers, common)`` + ``start_*`` functions
that import their heavy dependencies inside."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from epoch_builder.workspace import Workspace, resolve_root


def workspace_of(args: argparse.Namespace) -> Workspace:
    return Workspace(resolve_root(getattr(args, "workspace", None)))


def add_group(subparsers: argparse._SubParsersAction, name: str, help: str) -> argparse._SubParsersAction:
    """A command of actions (``regressions rank``, ``models list``); alone, it prints its help (exit 2)."""
    group = subparsers.add_parser(name, help=help)
    group.set_defaults(func=lambda _args: (group.print_help(), 2)[1])
    return group.add_subparsers(dest=f"{name}_command", metavar="ACTION")


def print_rows(rows: list[dict[str, Any]], as_json: bool, empty: str, header: tuple[str, ...],
               cells: Callable[[int, dict[str, Any]], tuple[str, ...]], left: tuple[int, ...]) -> None:
    """A listing command's output: JSON (``--json``), ``empty`` when there is nothing, else a table of
    ``cells(number, row)`` under ``header``."""
    if as_json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print(empty)
    else:
        print_table(header, [cells(number, row) for number, row in enumerate(rows, 1)], left)


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]], left: tuple[int, ...]) -> None:
    """Columns padded to their widest cell; the ``left`` columns left-aligned, the others right-aligned."""
    table = [header, *rows]
    widths = [max(len(row[c]) for row in table) for c in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) if c in left else cell.rjust(w)
                        for c, (cell, w) in enumerate(zip(row, widths))).rstrip())
