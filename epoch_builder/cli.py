"""`epoch-builder` CLI: one thin ``start_*`` function per subcommand.

Each module in ``epoch_builder.commands`` exposes ``register(subparsers,
common)``; heavy imports (TensorFlow, pandas) happen inside the ``start_*``
functions so ``epoch-builder --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from epoch_builder import __version__

# Order is the order of the help listing (the pipeline's order).
COMMAND_MODULES = (
    "epoch_builder.commands.candlesticks",
    "epoch_builder.commands.create_epoch",
    "epoch_builder.commands.regressions",
    "epoch_builder.commands.prediction_models",
    "epoch_builder.commands.export",
    "epoch_builder.commands.report",
    "epoch_builder.commands.status",
)


def common_options() -> argparse.ArgumentParser:
    """Options every subcommand takes, declared once."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--workspace",
        metavar="DIR",
        help="workspace root (default: $EPOCH_BUILDER_HOME or the current directory)",
    )
    common.add_argument(
        "--events",
        metavar="FILE",
        help="append JSON-lines progress events to FILE ('-': stdout, and results move to stderr; "
        "default: $EPOCH_BUILDER_EVENTS)",
    )
    loudness = common.add_mutually_exclusive_group()
    loudness.add_argument("-v", "--verbose", action="store_const", const=1, dest="verbosity", default=0,
                          help="also debug messages")
    loudness.add_argument("-q", "--quiet", action="store_const", const=-1, dest="verbosity",
                          help="only warnings and errors (results are still printed)")
    common.add_argument("--no-progress", action="store_true",
                        help="no progress bars (they are drawn only on a terminal anyway)")
    return common


def build_parser() -> argparse.ArgumentParser:
    from epoch_builder.commands import add_completion_option
    from epoch_builder.errors import EXIT_STATUS_HELP

    parser = argparse.ArgumentParser(
        prog="epoch-builder",
        description="Turn 1-minute candles into an Epoch File: import, create an epoch, train regressions, "
        "sweep prediction models, build and export.",
        epilog=EXIT_STATUS_HELP,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_completion_option(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = common_options()
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from epoch_builder import events, output
    from epoch_builder.errors import EXIT_USAGE, EpochBuilderError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        events.configure(getattr(args, "events", None))
        output.configure(verbosity=getattr(args, "verbosity", 0),
                         progress=False if getattr(args, "no_progress", False) else None,
                         events_on_stdout=events.on_stdout())
        return int(args.func(args) or 0)
    except BrokenPipeError:
        return output.reader_went_away()
    except EpochBuilderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a full disk in a write no atomic writer wraps: still one line naming the file
        from epoch_builder.errors import EXIT_FAILED
        from epoch_builder.storage import disk_full_message, is_disk_full

        if not is_disk_full(exc):
            raise
        print(f"error: {disk_full_message(exc.filename or getattr(args, 'workspace', None) or '.')}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
