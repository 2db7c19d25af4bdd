"""`epoch-builder export-epoch | verify-epoch`."""

from __future__ import annotations

import argparse
from pathlib import Path

from epoch_builder.commands import add_json_option, workspace_of
from epoch_builder.errors import EpochBuilderError, UsageError


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    export = subparsers.add_parser(
        "export-epoch", parents=[common], help="write the Epoch File <EPOCH>/<EPOCH>.zip for one built model",
        description="Write the Epoch File the platform installs: epoch.json, prediction_model_certificate.json, "
        "regression_certificates.json and one TensorFlow 2.10-loadable <regression id>.h5 per regression at the zip "
        "root, plus a SHA-256 manifest. The file is verified before it is moved into place; only then do "
        "candlesticks/ and config/epoch.json move into the epoch directory.",
    )
    which = export.add_mutually_exclusive_group(required=True)
    which.add_argument("--model-id", metavar="ID", help="a model id from build.json (`epoch-builder models list`)")
    which.add_argument("--best", action="store_true", help="the most profitable model of the build")
    add_json_option(export, "the file, its model and members")
    export.set_defaults(func=start_export)

    verify = subparsers.add_parser(
        "verify-epoch", parents=[common], help="check an Epoch File against the platform's installer rules, the manifest, and that every .h5 loads",
        description="Exit status: 0 the file passes, 2 bad usage or no such file, 3 the file fails a rule (the "
        "message names the member and the rule; with --json the failure is a JSON document on stdout too).",
    )
    verify.add_argument("file", metavar="FILE", help="the Epoch File (.zip)")
    verify.add_argument("--skip-models", action="store_true", help="check members, fields, attributes and checksums; do not load the Keras models")
    verify.add_argument("--epoch-id", metavar="ID", help="the epoch id the platform will be asked to install (default: the file name without .zip)")
    add_json_option(verify, "the verification (ok, epoch, model, members, regressions, families or the failure)")
    verify.set_defaults(func=start_verify)


def start_export(args: argparse.Namespace) -> int:
    from epoch_builder import output
    from epoch_builder.export import export_epoch

    ws = workspace_of(args)
    model_id = args.model_id
    if args.best:
        from epoch_builder.prediction.build import load_build

        build = load_build(ws.epoch())
        if not build:
            raise EpochBuilderError(f"{ws.epoch().build_file}: the build holds no model to export")
        model_id = build[0]["id"]  # build.json is sorted by profit, best first
    epoch_file = export_epoch(ws, model_id)
    document = {"file": str(epoch_file), "model_id": model_id, "bytes": epoch_file.stat().st_size,
                "verified": "installs in Epoca's platform; every .h5 loads and predicts what its trained model predicts"}
    if args.json:
        output.result_json(document)
    else:
        output.result(f"{epoch_file}: model {model_id}, {document['bytes']:,} bytes; {document['verified']}")
    return 0


def start_verify(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from epoch_builder import output
    from epoch_builder.errors import VerificationFailed
    from epoch_builder.export import verify_epoch_file

    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"{path}: file not found")
    try:
        result = verify_epoch_file(path, load_models=not args.skip_models, epoch_id=args.epoch_id)
    except EpochBuilderError as exc:  # the file exists: whatever is wrong with it is a failed verification
        failure = exc if isinstance(exc, VerificationFailed) else VerificationFailed(str(exc))
        if args.json:
            output.result_json({"file": str(path), "ok": False, "error": str(failure)})
        raise failure from None
    if args.json:
        output.result_json({"file": str(path), "ok": True, "models_loaded": not args.skip_models, **asdict(result)})
        return 0
    output.result(f"{args.file}: OK — installs in Epoca's platform: epoch {result.epoch_id}, model {result.model_id}, "
          f"{result.members} members, {len(result.regressions)} regression(s) ({', '.join(result.families)}) "
          f"{'checked, models not loaded' if args.skip_models else 'checked, every .h5 loaded'}")
    return 0
