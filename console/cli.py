"""`epoch-console [--config FILE] [--workspace DIR]`."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="epoch-console",
        description="Full-screen console for the Epoch Builder cluster: live status, logs, jobs and actions. "
        "Without a cluster config it drives this machine alone (localhost).",
    )
    from epoch_builder import __version__
    from epoch_builder.commands import add_completion_option

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_completion_option(parser)
    parser.add_argument("--config", metavar="FILE", help="cluster file (default: $EPOCH_CLUSTER_CONFIG, else config/cluster.json of the workspace; neither: localhost alone)")
    parser.add_argument("--workspace", metavar="DIR", help="local workspace (default: $EPOCH_BUILDER_HOME or the current directory)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from epoch_builder.errors import EpochBuilderError

    args = build_parser().parse_args(argv)
    try:
        from console.app import make_app

        app = make_app(args.config, args.workspace)
    except EpochBuilderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    app.run()
    return int(app.return_code or 0)


if __name__ == "__main__":
    sys.exit(main())
