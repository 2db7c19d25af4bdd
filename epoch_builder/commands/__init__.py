"""Subcommands. Each module: ``register(subparsers, common)`` + ``start_*`` functions
that import their heavy dependencies inside."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from epoch_builder.workspace import Workspace, resolve_root


def add_json_option(parser: argparse.ArgumentParser, what: str = "the result") -> None:
    """``--json``: the same flag on every command that prints a result."""
    parser.add_argument("--json", action="store_true", help=f"print {what} as JSON instead of text")


def add_hidden_alias(parser: argparse.ArgumentParser, old_name: str, dest: str, **kwargs: Any) -> None:
    """An option's former name keeps working but is not shown: one name per idea in the help."""
    parser.add_argument(old_name, dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)


def add_completion_option(parser: argparse.ArgumentParser) -> None:
    """``--print-completion bash|zsh|tcsh``: a shell completion script for the program (shtab)."""
    import shtab

    shtab.add_argument_to(parser, ["--print-completion"], help="print a shell completion script (bash, zsh or tcsh) "
                          "and exit; e.g. `eval \"$(%(prog)s --print-completion bash)\"`")


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
    from epoch_builder import output

    if as_json:
        output.result_json(rows)
    elif not rows:
        output.result(empty)
    else:
        print_table(header, [cells(number, row) for number, row in enumerate(rows, 1)], left)


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]], left: tuple[int, ...]) -> None:
    """Columns padded to their widest cell; the ``left`` columns left-aligned, the others right-aligned."""
    table = [header, *rows]
    widths = [max(len(row[c]) for row in table) for c in range(len(header))]
    from epoch_builder import output

    for row in table:
        output.result("  ".join(cell.ljust(w) if c in left else cell.rjust(w)
                        for c, (cell, w) in enumerate(zip(row, widths))).rstrip())
