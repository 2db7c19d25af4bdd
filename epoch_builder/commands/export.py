"""`epoch-builder export-epoch | verify-epoch`."""

from __future__ import annotations

import argparse
from pathlib import Path

from epoch_builder.commands import workspace_of


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    export = subparsers.add_parser(
        "export-epoch", parents=[common], help="write the Epoch File <EPOCH>/<EPOCH>.zip for one built model",
        description="Zip the model's certificate, its regressions (model files + certificates), the epoch config and a "
        "SHA-256 manifest; then move candlesticks/ and config/epoch.json into the epoch directory.",
    )
    export.add_argument("--model-id", required=True, metavar="ID", help="a model id from build.json")
    export.set_defaults(func=start_export)

    verify = subparsers.add_parser(
        "verify-epoch", parents=[common], help="check an Epoch File: manifest checksums and that every regression loads",
    )
    verify.add_argument("file", metavar="FILE", help="the Epoch File (.zip)")
    verify.add_argument("--skip-models", action="store_true", help="check checksums only, do not load the Keras models")
    verify.set_defaults(func=start_verify)


def start_export(args: argparse.Namespace) -> int:
    from epoch_builder.export import export_epoch

    export_epoch(workspace_of(args), args.model_id)
    return 0


def start_verify(args: argparse.Namespace) -> int:
    from epoch_builder.export import verify_epoch_file

    result = verify_epoch_file(Path(args.file), load_models=not args.skip_models)
    print(f"{args.file}: OK — epoch {result.epoch_id}, model {result.model_id}, {result.members} members, "
          f"{len(result.regressions)} regression(s) {'checked' if args.skip_models else 'loaded'}")
    return 0
