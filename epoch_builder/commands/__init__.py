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
    return Workspace.open(resolve_root(getattr(args, "workspace", None)))


def add_group(subparsers: argparse._SubParsersAction, name: str, help: str) -> argparse._SubParsersAction:
    """A command of actions (``regressions rank``, ``models list``); alone, it prints its help (exit 2)."""
    group = subparsers.add_parser(name, help=help)
    group.set_defaults(func=lambda _args: (group.print_help(), 2)[1])
    return group.add_subparsers(dest=f"{name}_command", metavar="ACTION")


def add_wide_option(parser: argparse.ArgumentParser) -> None:
    """``--wide``: a table's ids whole, however wide the terminal (else shortened to fit it, still unique)."""
    parser.add_argument("--wide", action="store_true", help="show ids whole (they are shortened to fit the terminal)")


def print_rows(rows: list[dict[str, Any]], as_json: bool, empty: str, header: tuple[str, ...],
               cells: Callable[[int, dict[str, Any]], tuple[str, ...]], left: tuple[int, ...], *,
               id_column: int | None = None, wide: bool = True, aliases: dict[int, dict[str, str]] | None = None) -> None:
    """A listing command's output: JSON (``--json``), ``empty`` when there is nothing, else a table of
    ``cells(number, row)`` under ``header``. Unless ``wide``, a table wider than the terminal first writes the
    cells of ``aliases``' columns by their short names, then shortens the ``id_column``."""
    from epoch_builder import output

    if as_json:
        output.result_json(rows)
    elif not rows:
        output.result(empty)
    else:
        table = [cells(number, row) for number, row in enumerate(rows, 1)]
        columns = None if wide else terminal_columns()
        if columns is not None and table_width(header, table) > columns:  # short names, the header's too
            header, *table = [tuple((aliases or {}).get(c, {}).get(cell, cell) for c, cell in enumerate(row))
                              for row in (header, *table)]
        if id_column is not None:
            table = fit_ids(header, table, id_column, columns)
        print_table(header, table, left)


def terminal_columns() -> int | None:
    """The terminal's width (``$COLUMNS`` first, as the shell sets it); None when the output is no terminal: a
    pipe or a file gets whole ids."""
    import shutil
    import sys

    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def table_width(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> int:
    return sum(max(len(row[c]) for row in (header, *rows)) for c in range(len(header))) + 2 * (len(header) - 1)


def fit_ids(header: tuple[str, ...], rows: list[tuple[str, ...]], column: int, columns: int | None) -> list[tuple[str, ...]]:
    """The rows with the ids of ``column`` cut to their shortest unique prefixes plus an ellipsis, as far as the
    table needs to fit ``columns`` (a note on stderr says so); unchanged when it fits or the width is unknown."""
    if columns is None or table_width(header, rows) <= columns:
        return rows
    from epoch_builder import output

    ids = [row[column] for row in rows]
    longest = max(len(i) for i in ids)
    unique = next(n for n in range(1, longest + 1) if len({i[:n] for i in ids}) == len(ids))
    room = longest - (table_width(header, rows) - columns)
    keep = max(unique, room - 1, len(header[column]) - 1)
    if keep + 1 >= longest:
        return rows
    output.info(f"ids shortened to fit {columns} columns (unique prefixes); --wide or --json shows them whole")
    return [(*row[:column], row[column] if len(row[column]) <= keep + 1 else row[column][:keep] + "…", *row[column + 1:])
            for row in rows]


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]], left: tuple[int, ...]) -> None:
    """Columns padded to their widest cell; the ``left`` columns left-aligned, the others right-aligned."""
    table = [header, *rows]
    widths = [max(len(row[c]) for row in table) for c in range(len(header))]
    from epoch_builder import output

    for row in table:
        output.result("  ".join(cell.ljust(w) if c in left else cell.rjust(w)
                        for c, (cell, w) in enumerate(zip(row, widths))).rstrip())
