"""The steps that combine the whole cluster's results, and the files each one reads and writes.

Dispatch trains and sweeps batch by batch on the servers and pulls every result back, so only the
controller's workspace holds all of them. The steps that read across batches -- initialize prediction
models, build, export, verify -- therefore run there by default (:data:`COMBINING_COMMANDS`). A user
may still run one on a server: :func:`run_on_server` first pushes exactly what the step reads, runs it
as a detached job, and pulls back what it wrote, so the controller ends with the step's output either way.

What a step reads is derived from the controller's own files (the regressions it was given, the
assets' regression ids, the exported model's regressions), never from a server's answer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable, Sequence

from epoch_builder.errors import EpochBuilderError
from epoch_builder.storage import read_json
from remote.errors import HostUnreachable, RemoteError
from epoch_builder.workspace import (CANDLESTICKS_DIR, CERTIFICATE_FILE, CONFIG_DIR, EPOCH_CONFIG_FILE, EpochPaths,
                                     Workspace)

if TYPE_CHECKING:  # pragma: no cover
    from remote.hosts import Host
    from remote.jobs import JobInfo
    from remote.sync import SyncReport

INITIALIZE = "initialize-prediction-models"
BUILD = "build-prediction-models"
EXPORT = "export-epoch"
VERIFY = "verify-epoch"
COMBINING_COMMANDS = (INITIALIZE, BUILD, EXPORT, VERIFY)
JOB_POLL_S = 1.0
EPOCH_CONFIG = f"{CONFIG_DIR}/{EPOCH_CONFIG_FILE}"
# Not in the assets' file list: written last, it marks them complete (epoch_builder.prediction.assets).
ASSETS_META_FILE = "assets.json"


@dataclass(frozen=True)
class StepFiles:
    """Workspace-relative paths (the same on every host) of one step's run."""

    command: str
    reads: tuple[str, ...]  # pushed before the step runs on a server
    writes: tuple[str, ...]  # pulled back after it
    required: tuple[str, ...]  # files that must be in the controller's workspace before it runs anywhere


def option_value(argv: Sequence[str], option: str) -> str | None:
    """The value following ``option`` in ``argv`` (``--top 20`` or ``--top=20``)."""
    for i, arg in enumerate(argv):
        if arg == option and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
    return None


def _trained_ids(epoch: EpochPaths) -> list[str]:
    directory = epoch.regressions_dir
    return sorted(p.parent.name for p in directory.glob(f"*/{CERTIFICATE_FILE}")) if directory.is_dir() else []


def _certificates(ws: Workspace, epoch: EpochPaths, ids: Sequence[str]) -> list[str]:
    return [ws.relative(epoch.regression_certificate_file(rid)) for rid in ids]


def _assets_regressions(epoch: EpochPaths) -> list[str]:
    meta_file = epoch.assets_dir / ASSETS_META_FILE
    if not meta_file.is_file():
        return []
    meta = read_json(meta_file)
    ids = meta.get("regression_ids") if isinstance(meta, dict) else None
    return [str(rid) for rid in ids] if isinstance(ids, list) else []


def _exported_regressions(epoch: EpochPaths, argv: Sequence[str]) -> list[str]:
    """The regression ids of the model an export names (``--model-id`` or ``--best``), from build.json."""
    if not epoch.build_file.is_file():
        return []
    build = read_json(epoch.build_file)
    models = [m for m in build if isinstance(m, dict)] if isinstance(build, list) else []
    wanted = option_value(argv, "--model-id")
    model = models[0] if "--best" in argv and models else next((m for m in models if m.get("id") == wanted), None)
    if model is None:
        return []
    inner = model.get("model")  # the certificate's model: its regressions, each {"id": ...} (SEMANTICS)
    regressions = inner.get("regressions") if isinstance(inner, dict) else None
    ids = [r.get("id") for r in regressions if isinstance(r, dict)] if isinstance(regressions, list) else []
    return [str(i) for i in ids if isinstance(i, str)]


def step_files(root: str | Path, argv: Sequence[str]) -> StepFiles:
    """What ``epoch-builder <argv>`` reads and writes, from the controller's workspace at ``root``."""
    ws = Workspace(Path(root))
    command = argv[0] if argv else ""
    if command == VERIFY:
        file = next((a for a in argv[1:] if not a.startswith("-")), "")
        return StepFiles(command, (file,), (), (file,))
    if command not in COMBINING_COMMANDS:
        raise EpochBuilderError(f"{command!r} is not a combining step; combining steps: {', '.join(COMBINING_COMMANDS)}")
    epoch = ws.epoch()
    rel = ws.relative
    inputs = (EPOCH_CONFIG, CANDLESTICKS_DIR)
    if command == INITIALIZE:
        listed = option_value(argv, "--regressions")
        ids = [i.strip() for i in listed.split(",") if i.strip()] if listed else _trained_ids(epoch)
        dirs = tuple(rel(epoch.regression_dir(rid)) for rid in ids)
        return StepFiles(command, inputs + dirs, (rel(epoch.assets_dir), rel(epoch.configs_dir)),
                         (EPOCH_CONFIG, *_certificates(ws, epoch, ids)))
    if command == BUILD:
        batches = sorted(epoch.configs_dir.glob("*.json")) if epoch.configs_dir.is_dir() else []
        wanted = tuple(rel(epoch.profitable_configs_file(b.stem)) for b in batches)
        certificates = tuple(_certificates(ws, epoch, _assets_regressions(epoch)))
        reads = inputs + (rel(epoch.assets_dir), rel(epoch.configs_dir), rel(epoch.profitable_configs_dir)) + certificates
        return StepFiles(command, reads, (rel(epoch.build_summary_file), rel(epoch.build_file)),
                         (EPOCH_CONFIG, rel(epoch.assets_dir / ASSETS_META_FILE), *wanted, *certificates))
    if command == EXPORT:
        ids = _exported_regressions(epoch, argv)
        dirs = tuple(rel(epoch.regression_dir(rid)) for rid in ids)
        reads = inputs + (rel(epoch.build_file), rel(epoch.build_summary_file)) + dirs
        return StepFiles(command, reads, (rel(epoch.epoch_file),),
                         (EPOCH_CONFIG, rel(epoch.build_file), *_certificates(ws, epoch, ids)))
    raise AssertionError(command)  # every combining command is handled above


def missing_inputs(root: str | Path, files: StepFiles) -> list[str]:
    """The required files of a step that the controller's workspace lacks."""
    base = Path(root)
    return [path for path in files.required if not (base / path).exists()]


async def holders(hosts: Sequence["Host"], paths: Sequence[str], timeout: float = 15.0) -> dict[str, list[str]]:
    """Which servers hold each of ``paths`` (a server that does not answer is left out)."""
    from remote import sync

    async def one(host: "Host") -> list[str]:
        async with asyncio.timeout(timeout):
            return await sync.held_files(host, paths)

    answers = await asyncio.gather(*(one(h) for h in hosts), return_exceptions=True)
    found: dict[str, list[str]] = {path: [] for path in paths}
    for host, answer in zip(hosts, answers):
        if isinstance(answer, BaseException):
            continue
        for path in answer:
            if path in found:
                found[path].append(host.name)
    return found


# How the console and the CLI name the pulls that bring a missing input (remote.sync's pull groups).
PULL_HINTS = {"regressions": "pull trained regressions (console: key R; `epoch-cluster pull trained-regressions`)",
              "profitable_configs": "pull prediction models (console: key M; `epoch-cluster pull prediction-models`)"}


def missing_input_message(command: str, missing: Sequence[str], held: dict[str, list[str]]) -> str:
    """One line: what the step lacks, which server has it, and the pull or step that brings it."""
    first = missing[0]
    more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
    servers = sorted({name for path in missing for name in held.get(path, [])})
    kind = next((k for k in PULL_HINTS if f"/{k}/" in first), None)
    if servers and kind:
        fix = f"{', '.join(servers)} {'has' if len(servers) == 1 else 'have'} it: {PULL_HINTS[kind]} from there"
    elif servers:
        fix = f"{', '.join(servers)} {'has' if len(servers) == 1 else 'have'} it: pull it from there"
    elif kind == "profitable_configs":
        fix = "no server has it: find the profitable configs of that batch first (dispatch --stage profitable-configs)"
    elif kind == "regressions":
        fix = "no server has it: train its batch first (dispatch --stage regressions)"
    elif first == EPOCH_CONFIG:
        fix = "no active epoch here: run `epoch-builder create-epoch` first"
    elif first.endswith(ASSETS_META_FILE):
        fix = "run `epoch-builder initialize-prediction-models` first"
    else:
        fix = "no server has it"
    return f"{command} needs {first}{more}, not in the controller's workspace; {fix}"


@dataclass
class ServerRun:
    """A combining step run on a server: what went there, the job, what came back."""

    pushed: "SyncReport"
    job: "JobInfo"
    pulled: "SyncReport | None"  # None: the job failed, nothing was pulled

    def account(self) -> str:
        """The one-line account of both transfers."""
        line = (f"{self.job.argv[0]} on {self.job.server}: pushed {self.pushed.files_sent} of "
                f"{self.pushed.files_checked} file(s) it reads ({self.pushed.bytes_sent / 1e6:.1f} MB)")
        if self.pulled is None:
            return line + f"; the job ended with exit code {self.job.exit_code}, nothing pulled back"
        return line + (f", pulled back {self.pulled.files_sent} of {self.pulled.files_checked} file(s) it wrote "
                       f"({self.pulled.bytes_sent / 1e6:.1f} MB)")


async def run_on_server(host: "Host", argv: Sequence[str], root: str | Path, *,
                        started: Callable[["JobInfo"], Awaitable[None] | None] | None = None) -> ServerRun:
    """Push what ``argv``'s step reads to ``host``, run it there as a detached job, wait for its end and pull
    back what it wrote into the controller's workspace ``root``. ``started`` is told the job once it runs."""
    from remote import jobs, sync

    files = step_files(root, argv)
    missing = missing_inputs(root, files)
    if missing:
        raise EpochBuilderError(missing_input_message(files.command, missing, {}))
    pushed = await sync.push(host, [p for p in files.reads if (Path(root) / p).exists()], local_root=root)
    job = await jobs.start_job(host, list(argv))
    if started is not None:
        maybe = started(job)
        if asyncio.iscoroutine(maybe):
            await maybe
    while job.state == jobs.RUNNING:
        await asyncio.sleep(JOB_POLL_S)
        try:
            job = await jobs.job_info(host, job.job_id)
        except (HostUnreachable, RemoteError):  # a dropped link: the detached job goes on; ask again once back
            await host.wait_online(timeout=None)
    if job.exit_code != 0:
        return ServerRun(pushed, job, None)
    pulled = (await sync.pull(host, list(files.writes), local_root=root) if files.writes
              else sync.SyncReport(host.name, "pull"))
    return ServerRun(pushed, job, pulled)
