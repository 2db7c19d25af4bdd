"""export-epoch and verify-epoch: the Epoch File ``<EPOCH>/<EPOCH>.zip``.

Members:

* ``prediction_model/certificate.json`` — the chosen model's certificate from build.json;
* ``regressions/<id>/...`` — every file of each regression the model uses
  (its certificate and its Keras model file);
* ``epoch.json`` — the epoch configuration;
* ``manifest.json`` — ``{"format": 1, "epoch_id", "model_id", "regression_ids",
  "created", "members": {name: {"sha256", "size"}}}`` over every other member.

The zip is written to a temporary file and renamed (atomic). Then, as the
original, ``candlesticks/`` and ``config/epoch.json`` move into ``<EPOCH>/``
(``<EPOCH>/candlesticks/``, ``<EPOCH>/epoch.json``) so the epoch directory is
archivable and reproducible; config/epoch.json goes last, so an interrupted
export can simply be run again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from epoch_builder.errors import EpochBuilderError
from epoch_builder.storage import atomic_write_with
from epoch_builder.workspace import EpochPaths, Workspace

MANIFEST = "manifest.json"
MODEL_CERTIFICATE = "prediction_model/certificate.json"
EPOCH_CONFIG = "epoch.json"
FORMAT = 1


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def find_model(paths: EpochPaths, model_id: str) -> dict[str, Any]:
    from epoch_builder.prediction.build import load_build

    build = load_build(paths)
    for certificate in build:
        if isinstance(certificate, dict) and certificate.get("id") == model_id:
            return certificate
    ids = [c.get("id") for c in build if isinstance(c, dict)]
    shown = ", ".join(ids[:5]) + (f" (+{len(ids) - 5} more)" if len(ids) > 5 else "")
    raise EpochBuilderError(f"model id {model_id!r} is not in {paths.build_file}; known: {shown or 'none'}")


def _regression_files(paths: EpochPaths, regression_id: str) -> list[Path]:
    directory = paths.regressions_dir / regression_id
    if not (directory / "certificate.json").is_file():
        raise EpochBuilderError(f"{directory}: regression {regression_id} (used by the model) has no certificate.json")
    files = sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith("."))
    if len(files) < 2:
        raise EpochBuilderError(f"{directory}: regression {regression_id} has no model file beside its certificate")
    return files


def export_epoch(ws: Workspace, model_id: str, log: Callable[[str], None] = print) -> Path:
    config_file = ws.epoch_config_file
    paths = ws.epoch()  # a clear error when there is no active epoch (e.g. it was exported already)
    config = ws.load_epoch_config()
    certificate = find_model(paths, model_id)
    regression_ids = [r["id"] for r in certificate["model"]["regressions"]]
    members: dict[str, bytes] = {
        MODEL_CERTIFICATE: json.dumps(certificate, indent=2).encode(),
        EPOCH_CONFIG: config_file.read_bytes(),
    }
    for rid in regression_ids:
        directory = paths.regressions_dir / rid
        for path in _regression_files(paths, rid):
            members[f"regressions/{rid}/{path.relative_to(directory).as_posix()}"] = path.read_bytes()
    manifest = {
        "format": FORMAT, "epoch_id": config.id, "model_id": model_id, "regression_ids": regression_ids,
        "created": int(time.time() * 1000),
        "members": {name: {"sha256": _sha256(data), "size": len(data)} for name, data in members.items()},
    }

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, data in members.items():
                archive.writestr(name, data)
            archive.writestr(MANIFEST, json.dumps(manifest, indent=2))

    atomic_write_with(paths.epoch_file, write)
    log(f"epoch file: {paths.epoch_file} ({len(members)} members, model {model_id})")
    archive_workspace(ws, paths)
    return paths.epoch_file


def archive_workspace(ws: Workspace, paths: EpochPaths) -> None:
    """Move candlesticks/ and config/epoch.json into the epoch directory (renames; the config last)."""
    target = paths.dir / "candlesticks"
    if ws.candlesticks_dir.exists():
        if target.exists():
            raise EpochBuilderError(f"{target}: already exists; cannot move {ws.candlesticks_dir} there")
        os.replace(ws.candlesticks_dir, target)
    os.replace(ws.epoch_config_file, paths.dir / EPOCH_CONFIG)


# --- verify ---------------------------------------------------------------------------


@dataclass
class Verification:
    epoch_id: str
    model_id: str
    members: int
    regressions: list[str]


def verify_epoch_file(path: Path, load_models: bool = True) -> Verification:
    """Check the manifest (every member present, no extra member, SHA-256 and size) and that
    every regression model loads."""
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise EpochBuilderError(f"{path}: file not found") from None
    except zipfile.BadZipFile:
        raise EpochBuilderError(f"{path}: not a valid zip file") from None
    with archive:
        names = set(archive.namelist())
        if MANIFEST not in names:
            raise EpochBuilderError(f"{path}: member {MANIFEST} is missing")
        try:
            manifest = json.loads(archive.read(MANIFEST))
            listed: dict[str, Any] = manifest["members"]
            regression_ids = list(manifest["regression_ids"])
        except (ValueError, KeyError, TypeError):
            raise EpochBuilderError(f"{path}: {MANIFEST} is malformed (needs members and regression_ids)") from None
        missing = sorted(set(listed) - names)
        if missing:
            raise EpochBuilderError(f"{path}: member {missing[0]} listed in the manifest is missing")
        extra = sorted(names - set(listed) - {MANIFEST})
        if extra:
            raise EpochBuilderError(f"{path}: member {extra[0]} is not listed in the manifest")
        for name, entry in listed.items():
            try:
                data = archive.read(name)
            except zipfile.BadZipFile as exc:
                raise EpochBuilderError(f"{path}: member {name} is corrupt ({exc})") from None
            if _sha256(data) != entry.get("sha256") or len(data) != entry.get("size"):
                raise EpochBuilderError(f"{path}: member {name} does not match its SHA-256 in the manifest")
        for required in (MODEL_CERTIFICATE, EPOCH_CONFIG):
            if required not in names:
                raise EpochBuilderError(f"{path}: member {required} is missing")
        certificate = json.loads(archive.read(MODEL_CERTIFICATE))
        model_regressions = [r["id"] for r in certificate["model"]["regressions"]]
        if model_regressions != regression_ids:
            raise EpochBuilderError(f"{path}: the manifest's regression_ids differ from the model certificate's")
        for rid in regression_ids:
            if f"regressions/{rid}/certificate.json" not in names:
                raise EpochBuilderError(f"{path}: member regressions/{rid}/certificate.json is missing")
        if load_models:
            _load_regressions(archive, regression_ids, path)
        return Verification(manifest.get("epoch_id", "?"), manifest.get("model_id", "?"), len(listed), regression_ids)


def _load_regressions(archive: zipfile.ZipFile, regression_ids: list[str], path: Path) -> None:
    from epoch_builder.regressions.inference import load_regression

    with tempfile.TemporaryDirectory(prefix="epoch-verify-") as tmp:
        for rid in regression_ids:
            prefix = f"regressions/{rid}/"
            for name in archive.namelist():
                if name.startswith(prefix) and not name.endswith("/"):
                    target = Path(tmp, rid, name[len(prefix):])
                    if ".." in Path(name).parts:
                        raise EpochBuilderError(f"{path}: member {name} leaves its directory")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(archive.read(name))
            try:
                load_regression(Path(tmp, rid))
            except EpochBuilderError as exc:
                raise EpochBuilderError(f"{path}: regression {rid} does not load ({exc})") from None
            except Exception as exc:  # noqa: BLE001 - any Keras failure means the file is unusable
                raise EpochBuilderError(f"{path}: regression {rid} does not load ({type(exc).__name__}: {exc})") from None
