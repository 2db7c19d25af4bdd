"""`epoch-builder status [--watch SECONDS] [--json]`."""

from __future__ import annotations

import argparse
import sys

from epoch_builder.commands import workspace_of
from epoch_builder.errors import UsageError


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "status", parents=[common], help="machine snapshot: cpu, memory, disk, load, uptime, GPU, running jobs",
        description="Print a light snapshot of this machine and the jobs running in the workspace. "
        "With --watch, print one every SECONDS until interrupted (one line each; JSON lines with --json).",
    )
    parser.add_argument("--watch", type=float, metavar="SECONDS", help="repeat every SECONDS (0.1..3600)")
    parser.add_argument("--count", type=int, metavar="N", help="with --watch: stop after N snapshots")
    parser.add_argument("--json", action="store_true", help="JSON output (one object a line)")
    parser.set_defaults(func=start_status)


def start_status(args: argparse.Namespace) -> int:
    import json

    from epoch_builder import status

    root = workspace_of(args).root
    if args.watch is not None and not 0.1 <= args.watch <= 3600:
        raise UsageError(f"--watch {args.watch} out of range; allowed 0.1..3600 seconds")
    if args.count is not None and args.count < 1:
        raise UsageError(f"--count {args.count} out of range; allowed >= 1")

    def write(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    try:
        if args.watch is None:
            snap = status.snapshot(root, cpu_interval=0.1)
            write(json.dumps(snap, separators=(",", ":")) if args.json else status.describe(snap))
        else:
            status.watch(root, args.watch, write, as_json=args.json, count=args.count)
    except BrokenPipeError:  # the reader went away (a closed SSH channel): a normal end
        try:
            sys.stdout = None  # type: ignore[assignment]  # keep the interpreter from flushing a dead pipe
        finally:
            return 0
    return 0
