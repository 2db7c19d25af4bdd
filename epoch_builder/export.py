"""export-epoch and verify-epoch: the Epoch File ``<EPOCH>/<EPOCH>.zip`` (docs/platform.md).

Members, all at the zip root, as the platform's installer reads them
(epoch_builder.platform holds the names and the field schemas):

* ``epoch.json`` — the epoch configuration;
* ``prediction_model_certificate.json`` — the chosen model's certificate from build.json;
* ``regression_certificates.json`` — the certificates of the model's regressions, in model order;
* ``<regression id>.h5`` — each regression as a Keras 2 HDF5 model that TensorFlow 2.10 loads
  (epoch_builder.regressions.legacy_h5), with its id, description, lookback and predictions;
* ``manifest.json`` — ``{"format": 2, "epoch_id", "model_id", "regression_ids", "created",
  "members": {name: {"sha256", "size"}}}`` over every other member (the platform ignores it).

Export order: every ``.h5`` is written and read back with our Keras, its predictions compared with
the trained model's; the zip is written to a temporary file and checked by ``verify_epoch_file``
(the platform's installer rules and every model loading) *before* it is renamed into place. Only
then, as the original, do ``candlesticks/`` and ``config/epoch.json`` move into ``<EPOCH>/``
(config/epoch.json last), so a failed export leaves the workspace as it was and can be rerun.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from epoch_builder import output, platform
from epoch_builder.errors import EpochBuilderError, UsageError
from epoch_builder.storage import atomic_write_with
from epoch_builder.workspace import EpochPaths, Workspace

MANIFEST = "manifest.json"
FORMAT = 2
# Our Keras 3 reading the written file must predict what the trained model predicts: the same
# float32 operations in the same runtime, so equal to round-off.
PREDICTION_TOLERANCE = 1e-5
CHECKED_WINDOWS = 4096  # windows of the epoch each written model must predict like the trained one


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, indent=2).encode()


def find_model(paths: EpochPaths, model_id: str) -> dict[str, Any]:
    from epoch_builder.prediction.build import load_build

    build = load_build(paths)
    for certificate in build:
        if isinstance(certificate, dict) and certificate.get("id") == model_id:
            return certificate
    ids = [c.get("id") for c in build if isinstance(c, dict)]
    shown = ", ".join(ids[:5]) + (f" (+{len(ids) - 5} more)" if len(ids) > 5 else "")
    raise UsageError(f"model id {model_id!r} is not in {paths.build_file}; known: {shown or 'none'}")


def _model_file(paths: EpochPaths, regression_id: str, tmp: Path, normalized_close: np.ndarray) -> tuple[bytes, dict]:
    """(the ``<id>.h5`` bytes, the regression's certificate as exported) after checking the written
    file reads back with the platform's attributes and predicts what the trained model predicts."""
    from epoch_builder.regressions import legacy_h5
    from epoch_builder.regressions.datasets import input_windows
    from epoch_builder.regressions.inference import load_regression

    directory = paths.regressions_dir / regression_id
    if not (directory / "certificate.json").is_file():
        raise EpochBuilderError(f"{directory}: regression {regression_id} (used by the model) has no certificate.json "
                                "(pull the trained regressions first)")
    regression = load_regression(directory)
    target = tmp / platform.model_file_member(regression_id)
    legacy_h5.write_legacy_h5(regression.model, target, regression_id=regression.id,
                              description=regression.description, lookback=regression.lookback,
                              predictions=regression.predictions)
    written = legacy_h5.load_legacy_h5(target)  # the attributes are checked with the whole file, below
    windows = input_windows(np.asarray(normalized_close, dtype=np.float64), regression.lookback, regression.predictions)
    if len(windows) > CHECKED_WINDOWS:  # multi-year epochs: evenly spread windows, first and last included
        windows = windows[np.linspace(0, len(windows) - 1, CHECKED_WINDOWS).astype(np.int64)]
    legacy_h5.verify_predictions(regression.model, written, windows, target.name, atol=PREDICTION_TOLERANCE)
    certificate = {**regression.certificate, "model_file": target.name}
    return target.read_bytes(), certificate


def build_members(ws: Workspace, paths: EpochPaths, certificate: dict[str, Any], log: Callable[[str], None]) -> dict[str, bytes]:
    """Every member but the manifest, in the order they are written."""
    from epoch_builder import candles

    regression_ids = [r["id"] for r in certificate["model"]["regressions"]]
    normalized_close = candles.read_candles(ws.normalized_prediction_candlesticks_file)["c"].to_numpy()
    members: dict[str, bytes] = {
        platform.EPOCH_CONFIG_MEMBER: ws.epoch_config_file.read_bytes(),
        platform.MODEL_CERTIFICATE_MEMBER: _json_bytes(certificate),
    }
    certificates = []
    with tempfile.TemporaryDirectory(prefix="epoch-export-") as tmp:
        with output.progress_bars() as bars:
            bar = bars.add("model files (written, loaded, compared)", len(regression_ids))
            for number, rid in enumerate(regression_ids, 1):
                data, regression_certificate = _model_file(paths, rid, Path(tmp), normalized_close)
                members[platform.model_file_member(rid)] = data
                certificates.append(regression_certificate)
                log(f"model file {number}/{len(regression_ids)}: {platform.model_file_member(rid)} ({len(data)} bytes)")
                bar.advance(info=rid)
    members[platform.REGRESSION_CERTIFICATES_MEMBER] = _json_bytes(certificates)
    return members


def export_epoch(ws: Workspace, model_id: str, log: Callable[[str], None] = output.info) -> Path:
    paths = ws.epoch()  # a clear error when there is no active epoch (e.g. it was exported already)
    if _interrupted_archive(ws, paths):
        return _finish_archive(ws, paths, model_id, log)
    config = ws.load_epoch_config()
    certificate = find_model(paths, model_id)
    regression_ids = [r["id"] for r in certificate["model"]["regressions"]]
    if config.normalization != "global":
        output.warning(f"epoch {config.id} uses {config.normalization} normalisation; the platform scales live "
            "SMAs with the epoch's highest and lowest SMA (global), so its live features will differ from the "
            "ones this model was backtested on")
    members = build_members(ws, paths, certificate, log)
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
        # The whole contract, on the very bytes about to be renamed into place (every model was already
        # loaded and compared with the trained one above, so not loaded again here).
        verify_epoch_file(tmp, load_models=False, epoch_id=config.id, where=str(paths.epoch_file))

    atomic_write_with(paths.epoch_file, write)
    log(f"epoch file {paths.epoch_file} verified; moving candlesticks/ and config/epoch.json into {paths.dir}")
    archive_workspace(ws, paths)
    return paths.epoch_file


def _interrupted_archive(ws: Workspace, paths: EpochPaths) -> bool:
    """An export killed between its two final moves: candlesticks/ already moved, epoch.json not."""
    return not ws.candlesticks_dir.exists() and (paths.dir / "candlesticks").is_dir() and paths.epoch_file.is_file()


def _finish_archive(ws: Workspace, paths: EpochPaths, model_id: str, log: Callable[[str], None]) -> Path:
    exported = verify_epoch_file(paths.epoch_file, load_models=False, epoch_id=paths.id)
    if exported.model_id != model_id:
        raise EpochBuilderError(f"{paths.epoch_file}: an interrupted export of model {exported.model_id} is being "
                                f"finished; export that model (or move the file away to export {model_id})")
    log(f"finishing an interrupted export of {paths.epoch_file} (candlesticks/ was already moved)")
    archive_workspace(ws, paths)
    return paths.epoch_file


def archive_workspace(ws: Workspace, paths: EpochPaths) -> None:
    """Move candlesticks/ and config/epoch.json into the epoch directory (renames; the config last), under the
    workspace lock: no import or create-epoch between the moves."""
    from epoch_builder.bundle import workspace_lock

    with workspace_lock(ws.root):
        target = paths.dir / "candlesticks"
        if ws.candlesticks_dir.exists():
            if target.exists():
                raise EpochBuilderError(f"{target}: already exists; cannot move {ws.candlesticks_dir} there")
            os.replace(ws.candlesticks_dir, target)
        os.replace(ws.epoch_config_file, paths.dir / platform.EPOCH_CONFIG_MEMBER)


# --- verify ---------------------------------------------------------------------------


@dataclass
class Verification:
    epoch_id: str
    model_id: str
    members: int
    regressions: list[str]
    families: list[str]  # the regressions' families, in model order, each once


def _read(archive: zipfile.ZipFile, name: str, where: str) -> bytes:
    try:
        return archive.read(name)
    except KeyError:
        raise EpochBuilderError(f"{where}: member {name} is missing") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise EpochBuilderError(f"{where}: member {name} is corrupt or truncated ({exc})") from None


def _read_json(archive: zipfile.ZipFile, name: str, where: str) -> Any:
    try:
        return json.loads(_read(archive, name, where))
    except ValueError as exc:
        raise EpochBuilderError(f"{where}: member {name} is not valid JSON ({exc})") from None


def _check_manifest(archive: zipfile.ZipFile, where: str) -> dict[str, Any]:
    names = set(archive.namelist())
    manifest = _read_json(archive, MANIFEST, where)
    try:
        listed: dict[str, Any] = dict(manifest["members"])
        list(manifest["regression_ids"])
    except (KeyError, TypeError, ValueError):
        raise EpochBuilderError(f"{where}: {MANIFEST} is malformed (needs members and regression_ids)") from None
    missing = sorted(set(listed) - names)
    if missing:
        raise EpochBuilderError(f"{where}: member {missing[0]} listed in the manifest is missing")
    extra = sorted(names - set(listed) - {MANIFEST})
    if extra:
        raise EpochBuilderError(f"{where}: member {extra[0]} is not listed in the manifest")
    for name, entry in listed.items():
        data = _read(archive, name, where)
        if not isinstance(entry, dict) or _sha256(data) != entry.get("sha256") or len(data) != entry.get("size"):
            raise EpochBuilderError(f"{where}: member {name} does not match its SHA-256 and size in the manifest")
    return manifest


def verify_epoch_file(path: Path, load_models: bool = True, epoch_id: str | None = None,
                      where: str | None = None) -> Verification:
    """The platform's contract (docs/platform.md): root members, field schemas, epoch id (``epoch_id``,
    default: the file name without ``.zip``, which is how the platform fetches it), one ``<id>.h5`` and one
    certificate per model regression, the ``.h5`` attributes; our manifest's checksums; and (``load_models``)
    every ``.h5`` loading with our Keras with the certified input and output sizes. A failure names the member
    and the rule."""
    path = Path(path)
    where = where or str(path)
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise EpochBuilderError(f"{where}: file not found") from None
    except (zipfile.BadZipFile, OSError):
        raise EpochBuilderError(f"{where}: not a valid zip file (truncated or not an Epoch File)") from None
    with archive:
        names = archive.namelist()
        for name in names:
            if "/" in name or "\\" in name or name in ("", ".", ".."):
                raise EpochBuilderError(f"{where}: member {name} is not at the zip root (the platform unzips "
                                        "every member into one directory)")
        manifest = _check_manifest(archive, where)
        epoch_config = _read_json(archive, platform.EPOCH_CONFIG_MEMBER, where)
        model_certificate = _read_json(archive, platform.MODEL_CERTIFICATE_MEMBER, where)
        regression_certificates = _read_json(archive, platform.REGRESSION_CERTIFICATES_MEMBER, where)
        expected_id = epoch_id or path.name.removesuffix(".zip")
        model_files = [n for n in names if n.endswith(platform.MODEL_FILE_SUFFIX)]
        ids = platform.check_installable(expected_id, epoch_config, model_certificate, regression_certificates,
                                         model_files, where)
        if [c["id"] for c in regression_certificates] != ids:
            raise EpochBuilderError(f"{where}: {platform.REGRESSION_CERTIFICATES_MEMBER} must list the model's "
                                    f"regressions in model order: {', '.join(ids)}")
        if list(manifest["regression_ids"]) != ids:
            raise EpochBuilderError(f"{where}: the manifest's regression_ids differ from the model certificate's")
        with tempfile.TemporaryDirectory(prefix="epoch-verify-") as tmp:
            for rid, certificate in zip(ids, regression_certificates):
                member = platform.model_file_member(rid)
                target = Path(tmp, member)
                target.write_bytes(_read(archive, member, where))
                _check_model_file(target, rid, certificate, epoch_config, load_models, where)
        families = list(dict.fromkeys(str(c.get("category", "?")) for c in regression_certificates))
        return Verification(str(epoch_config["id"]), str(model_certificate["id"]), len(names), ids, families)


def _check_model_file(target: Path, rid: str, certificate: dict[str, Any], epoch_config: dict[str, Any],
                      load_model: bool, where: str) -> None:
    from epoch_builder.regressions import legacy_h5

    member = target.name
    try:
        attributes = legacy_h5.read_platform_attributes(target)
    except EpochBuilderError as exc:
        raise EpochBuilderError(f"{where}: member {exc}") from None
    if attributes["id"] != rid:
        raise EpochBuilderError(f"{where}: member {member}: attribute id is {attributes['id']!r}, expected {rid!r}")
    for key, epoch_key in (("lookback", "regression_lookback"), ("predictions", "regression_predictions")):
        if attributes[key] != certificate.get(key, attributes[key]) or attributes[key] != epoch_config[epoch_key]:
            raise EpochBuilderError(f"{where}: member {member}: attribute {key} is {attributes[key]}; the certificate "
                                    f"says {certificate.get(key)} and epoch.json's {epoch_key} {epoch_config[epoch_key]}")
    if attributes["description"] != certificate["description"]:
        raise EpochBuilderError(f"{where}: member {member}: attribute description differs from the certificate's")
    if load_model:
        try:
            model = legacy_h5.load_legacy_h5(target)
        except EpochBuilderError as exc:
            raise EpochBuilderError(f"{where}: member {exc}") from None
        shapes = (list(model.inputs[0].shape), list(model.outputs[0].shape))
        if shapes != ([None, attributes["lookback"]], [None, attributes["predictions"]]):
            raise EpochBuilderError(f"{where}: member {member}: the model maps {shapes[0]} to {shapes[1]}, expected "
                                    f"[None, {attributes['lookback']}] to [None, {attributes['predictions']}]")
