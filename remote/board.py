"""The batch board: every batch of the active epoch with its state, rebuilt on demand.

The board's truth comes from two places that survive any restart:

* the local workspace: regression batches under
  ``<epoch>/regression_training_configs/<CAT>/*.json`` (done once their
  batched certificate and every model's ``regressions/<id>/certificate.json``
  were pulled), config batches under ``prediction_models/configs/`` (done once
  ``profitable_configs/<batch>.json`` was pulled);
* the hosts' job directories (``<root>/.jobs/<id>/``): a job whose argv names
  a batch, started while the host's active epoch was this one, is that
  batch's job, running or exited.

A small local state file ``<root>/.board/<epoch>.json`` (atomically written)
adds only what cannot be derived: failed job ids per batch and host (job
directories may be cleaned), the host a batch was assigned / pushed to before
its job was seen (so a batch on an unreachable host is not started twice),
and whether auto-dispatch is on.

States: ``pending``, ``pushed``, ``running`` (on HOST, done/total, ETA),
``finished`` (exited 0, results not pulled yet), ``failed`` (exit code, last
log lines), ``done`` (results pulled).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from epoch_builder.storage import atomic_write_json
from epoch_builder.workspace import CANDLESTICKS_DIR, CONFIG_DIR, EpochPaths, Workspace
from remote import jobs as remote_jobs
from remote.errors import RemoteError

if TYPE_CHECKING:  # pragma: no cover
    from epoch_builder.regressions.options import TrainingOptions
    from remote.hosts import Host
    from remote.jobs import JobInfo

REGRESSIONS, PROFITABLE_CONFIGS = "regressions", "profitable-configs"
STAGES = (REGRESSIONS, PROFITABLE_CONFIGS)
# The steps of the stage gate (Board.next_step), and where each runs.
GENERATE_STEP = "generate regression training configs"
TRAIN_STEP = "train every regression batch"
INITIALIZE_STEP = "rank regressions and initialize prediction models"
SWEEP_STEP = "find profitable configs of every batch"
BUILD_STEP = "build prediction models"
EXPORT_STEP = "export the best model"
VERIFY_STEP = "verify the Epoch File"
SERVERS, CONTROLLER = "servers", "controller"
SUBCOMMANDS = {REGRESSIONS: "train-regression-batch", PROFITABLE_CONFIGS: "find-profitable-configs"}
PENDING, PUSHED, RUNNING, FINISHED, FAILED, DONE = "pending", "pushed", "running", "finished", "failed", "done"
SKIPPED_CATEGORIES = ("UNIT_TEST",)  # the smoke-test batch is run by hand, not dispatched
STATE_DIR = ".board"
RAY_STATE_FILE = "{epoch}.ray.json"  # in STATE_DIR: the rows of Ray-run batches (remote.ray_engine)
LOG_TAIL_LINES = 5
TAIL_BYTES = 4096


@dataclass(frozen=True)
class BatchSpec:
    """One batch of a stage and what a host needs to run it."""

    stage: str
    name: str
    category: str | None  # regression category; None for config batches
    model_ids: tuple[str, ...] = ()  # regression ids of the batch (empty for config batches)

    @property
    def key(self) -> str:
        return f"{self.stage}:{self.name}"

    def argv(self, *, training: TrainingOptions | None = None, workers: int | None = None) -> list[str]:
        """The job's epoch-builder command line; ``training`` (train-regression-batch's options, only those that
        differ from its defaults) applies to the regressions stage, ``workers`` to the profitable-configs one."""
        if self.stage == REGRESSIONS:
            argv = ["train-regression-batch", "--category", str(self.category), "--batch", self.name]
            return argv + (training.argv() if training is not None else [])
        return ["find-profitable-configs", "--batch", f"{self.name}.json"] + (["--workers", str(workers)] if workers else [])

    def push_paths(self, epoch_id: str) -> list[str]:
        """Workspace-relative paths the job reads (sent incrementally: unchanged files are skipped)."""
        epoch = _epoch_paths(epoch_id)
        if self.stage == REGRESSIONS:
            return [CONFIG_DIR, CANDLESTICKS_DIR, epoch.relative(epoch.regression_batch_file(str(self.category), self.name))]
        return [CONFIG_DIR, CANDLESTICKS_DIR, epoch.relative(epoch.assets_dir),
                epoch.relative(epoch.config_batch_file(self.name))]

    def pull_paths(self, epoch_id: str) -> list[str]:
        """Only this batch's results, so a host's leftovers of other batches never come back."""
        epoch = _epoch_paths(epoch_id)
        if self.stage == REGRESSIONS:
            return [epoch.relative(path) for model_id in self.model_ids
                    for path in (epoch.regression_dir(model_id), epoch.regression_tensorboard_dir(model_id))] + [
                epoch.relative(epoch.batched_certificates_file(self.name))]
        return [epoch.relative(epoch.profitable_configs_file(self.name))]

    def checkpoint_paths(self, epoch_id: str) -> list[str]:
        """What a run leaves to resume from, for an engine without a shared filesystem to ship back while
        the batch runs: the models done so far and the checkpoints of those in training; the sweep's journal."""
        epoch = _epoch_paths(epoch_id)
        if self.stage == REGRESSIONS:
            return [epoch.relative(path) for model_id in self.model_ids
                    for path in (epoch.regression_dir(model_id), epoch.regression_checkpoint_dir(model_id),
                                 epoch.regression_tensorboard_dir(model_id))]
        return [epoch.relative(epoch.sweep_journal_file(self.name))]

    def done_locally(self, root: Path, epoch_id: str) -> bool:
        """Whether this batch's results are in the local workspace, whole: a truncated or garbled file (a pull
        cut short, a full disk) means not done, so the batch is pulled or run again rather than shown done.

        Regressions: ``regression_batched_certificates/<name>.json`` is the list of the batch's certificates
        with exactly its ``model_ids`` in order (as train-regression-batch writes it) and each
        ``regressions/<id>/certificate.json`` is that model's certificate object.  Profitable configs:
        ``profitable_configs/<name>.json`` is a list of config objects.
        """
        epoch = Workspace(root).epoch_paths(epoch_id)
        if self.stage == REGRESSIONS:
            batched = _json_summary(epoch.batched_certificates_file(self.name), "batched-ids",
                                    lambda doc: tuple(cert["id"] for cert in doc) if isinstance(doc, list) else None)
            return batched == self.model_ids and all(
                _json_summary(epoch.regression_certificate_file(model_id), "certificate-id",
                              lambda doc: doc["id"] if isinstance(doc, dict) else None) == model_id
                for model_id in self.model_ids)
        return _json_summary(epoch.profitable_configs_file(self.name), "config-list",
                             lambda doc: isinstance(doc, list) and all(isinstance(c, dict) for c in doc)) is True


# (path, kind) -> (inode, mtime_ns, size, summary): done_locally re-reads every batch's results on each
# board build (every dispatch tick), and certificates are large; a file is parsed again only once it changed.
_SUMMARIES: dict[tuple[str, str], tuple[int, int, int, Any]] = {}


def _json_summary(path: Path, kind: str, summarize: Callable[[Any], Any]) -> Any:
    """``summarize(document)`` of a JSON file; None when it is missing, does not parse or has another shape."""
    try:
        stat = path.stat()
    except OSError:
        return None
    version = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
    cached = _SUMMARIES.get((str(path), kind))
    if cached is not None and cached[:3] == version:
        return cached[3]
    try:
        summary = summarize(json.loads(path.read_bytes()))
    except (OSError, ValueError, KeyError, TypeError):  # ValueError: not JSON (truncated, garbled, not UTF-8)
        summary = None
    _SUMMARIES[(str(path), kind)] = (*version, summary)
    return summary


def _epoch_paths(epoch_id: str) -> EpochPaths:
    """An epoch's paths relative to any workspace root (for the workspace-relative paths sent to servers)."""
    return Workspace(Path(".")).epoch_paths(epoch_id)


def verify_step(relative_file: str) -> dict[str, str]:
    return {"step": VERIFY_STEP, "command": f"epoch-builder verify-epoch {relative_file}", "where": CONTROLLER}


def exported_step(root: Path) -> dict[str, str] | None:
    """With no active epoch left (an export moves ``config/epoch.json`` into the epoch's directory): the
    newest Epoch File's verification, else None."""
    ws = Workspace(Path(root))
    files = ws.epoch_files()
    return verify_step(ws.relative(files[0])) if files else None


def epoch_id_of(root: Path) -> str:
    """The local workspace's active epoch (config/epoch.json, checked)."""
    return Workspace(Path(root)).active_epoch_id()


def regression_batches(root: Path, epoch_id: str) -> list[BatchSpec]:
    base = Workspace(root).epoch_paths(epoch_id).regression_training_configs_dir
    specs = []
    for path in sorted(base.glob("*/*.json")):
        category = path.parent.name
        if category in SKIPPED_CATEGORIES:
            continue
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            ids = tuple(str(cfg["id"]) for cfg in doc["configs"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RemoteError(f"{path}: not a regression batch file (needs configs[].id): {exc}") from None
        specs.append(BatchSpec(REGRESSIONS, path.stem, category, ids))
    return specs


def config_batches(root: Path, epoch_id: str) -> list[BatchSpec]:
    base = Workspace(root).epoch_paths(epoch_id).configs_dir
    return [BatchSpec(PROFITABLE_CONFIGS, path.stem, None) for path in sorted(base.glob("*.json"))]


def stage_batches(root: Path, epoch_id: str, stage: str) -> list[BatchSpec]:
    if stage not in STAGES:
        raise RemoteError(f"unknown stage {stage!r}; allowed: {', '.join(STAGES)}")
    return regression_batches(root, epoch_id) if stage == REGRESSIONS else config_batches(root, epoch_id)


def batch_of_job(argv: Sequence[str]) -> tuple[str, str] | None:
    """``(stage, batch name)`` of a job's argv, or None when it runs no batch."""
    if not argv:
        return None
    stage = next((s for s, sub in SUBCOMMANDS.items() if sub == argv[0]), None)
    if stage is None:
        return None
    args = list(argv[1:])
    for i, arg in enumerate(args):
        value = arg.split("=", 1)[1] if arg.startswith("--batch=") else (args[i + 1] if arg == "--batch" and i + 1 < len(args) else None)
        if value is not None:
            return stage, Path(value).name.removesuffix(".json")
    return None


# ---------------------------------------------------------------------- local state file

class BoardStateFile:
    """What cannot be derived, in ``<root>/.board/<epoch>.json`` (rewritten atomically on every change)."""

    def __init__(self, root: Path, epoch_id: str) -> None:
        self.path = Path(root) / STATE_DIR / f"{epoch_id}.json"
        # reasons: why the dispatcher sent each batch where it runs (cost-aware order), shown in its row
        self.data: dict[str, Any] = {"failed_jobs": {}, "assigned": {}, "dispatch": {}, "reasons": {}}
        if self.path.exists():
            try:
                loaded = json.loads(self.path.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise RemoteError(f"{self.path}: invalid board state ({exc}); delete it to start over") from None
            if isinstance(loaded, dict):
                self.data.update(loaded)

    def save(self) -> None:
        atomic_write_json(self.path, self.data, indent=1)

    def failed_jobs(self, key: str) -> dict[str, list[str]]:
        return self.data["failed_jobs"].get(key, {})

    def record_failure(self, key: str, host: str, job_id: str) -> bool:
        """Remember a failed job once (a restart sees the same job again); True when it is new."""
        ids = self.data["failed_jobs"].setdefault(key, {}).setdefault(host, [])
        if job_id in ids:
            return False
        ids.append(job_id)
        self.save()
        return True

    def assigned(self, key: str) -> dict[str, Any] | None:
        return self.data["assigned"].get(key)

    def assign(self, key: str, host: str, job_id: str | None = None, pushed: bool = False) -> None:
        self.data["assigned"][key] = {"host": host, "job_id": job_id, "pushed": pushed}
        self.save()

    def record_reason(self, key: str, reason: str) -> None:
        self.data["reasons"][key] = reason
        self.save()

    def reason(self, key: str) -> str | None:
        found = self.data["reasons"].get(key)
        return found if isinstance(found, str) else None

    def release(self, key: str) -> None:
        if self.data["assigned"].pop(key, None) is not None:
            self.save()

    def set_dispatch(self, stage: str | None) -> None:
        self.data["dispatch"] = {"stage": stage}
        self.save()


def write_ray_rows(root: Path, epoch_id: str, rows: dict[str, dict[str, Any]], address: str | None = None) -> None:
    """The Ray engine's view of its batches (``{batch key: {state, host, done, total, ...}}``) for the board,
    with the address of the cluster they run on."""
    atomic_write_json(Path(root) / STATE_DIR / RAY_STATE_FILE.format(epoch=epoch_id),
                      {"time": time.time(), "address": address, "rows": rows})


def _ray_document(root: Path, epoch_id: str) -> dict[str, Any]:
    try:
        document = json.loads((Path(root) / STATE_DIR / RAY_STATE_FILE.format(epoch=epoch_id)).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def read_ray_rows(root: Path, epoch_id: str) -> dict[str, dict[str, Any]]:
    rows = _ray_document(root, epoch_id).get("rows")
    return {k: v for k, v in rows.items() if isinstance(v, dict)} if isinstance(rows, dict) else {}


def read_ray_address(root: Path, epoch_id: str) -> str | None:
    """The cluster the Ray engine last ran this epoch's batches on."""
    address = _ray_document(root, epoch_id).get("address")
    return address if isinstance(address, str) and address else None


# ---------------------------------------------------------------------- board rows

@dataclass
class BatchRow:
    spec: BatchSpec
    state: str
    host: str | None = None
    job_id: str | None = None
    done: int | None = None  # models / configs done, from the job's last progress event
    total: int | None = None
    eta_s: float | None = None
    exit_code: int | None = None
    log_tail: list[str] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    jobs: list[dict[str, Any]] = field(default_factory=list)  # every job of this batch: host, id, label
    reason: str | None = None  # why it was sent to its host (cost-aware dispatch), while it is there

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.spec.stage, "batch": self.spec.name, "category": self.spec.category, "state": self.state,
            "host": self.host, "job_id": self.job_id, "done": self.done, "total": self.total, "eta_s": self.eta_s,
            "exit_code": self.exit_code, "log_tail": self.log_tail, "failures": self.failures, "jobs": self.jobs,
            "reason": self.reason,
        }

    @property
    def label(self) -> str:
        if self.state == RUNNING:
            progress = f" {self.done}/{self.total}" if self.total else ""
            eta = f" ETA {_duration(self.eta_s)}" if self.eta_s is not None else ""
            return f"running on {self.host}{progress}{eta}"
        if self.state == FAILED:
            return f"failed on {self.host} (exit {self.exit_code})"
        if self.state in (PUSHED, FINISHED):
            return f"{self.state} ({self.host})"
        return self.state


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


@dataclass
class Board:
    epoch_id: str
    rows: list[BatchRow]
    hosts: dict[str, str]  # host -> "online" / error text
    host_jobs: dict[str, list["JobInfo"]]
    stages: tuple[str, ...] = STAGES  # the stages read into this board

    def stage_rows(self, stage: str) -> list[BatchRow]:
        return [r for r in self.rows if r.spec.stage == stage]

    def totals(self) -> dict[str, dict[str, int]]:
        """Counts per state for every regression category, each stage and the epoch."""
        groups: dict[str, dict[str, int]] = {}
        for row in self.rows:
            names = [row.spec.stage, "epoch"]
            if row.spec.category:
                names.insert(0, f"{row.spec.stage}/{row.spec.category}")
            for name in names:
                counts = groups.setdefault(name, {"batches": 0})
                counts["batches"] += 1
                counts[row.state] = counts.get(row.state, 0) + 1
        return groups

    def stage_done(self, stage: str) -> bool:
        rows = self.stage_rows(stage)
        return bool(rows) and all(r.state == DONE for r in rows)

    def next_step(self, root: Path) -> dict[str, str] | None:
        """The stage gate: what the epoch needs next, the command that does it, and where it runs
        (``where``: ``servers`` for a dispatched stage, ``controller`` for a step that combines the
        cluster's results, which only the controller's workspace holds: ``remote.steps``)."""
        epoch = Workspace(Path(root)).epoch_paths(self.epoch_id)
        on_servers, on_controller = {"where": SERVERS}, {"where": CONTROLLER}
        if REGRESSIONS not in self.stages:
            pass  # a board of the later stage only: the regressions are behind it
        elif not self.stage_rows(REGRESSIONS):
            return {"step": GENERATE_STEP, "command": "epoch-builder generate-regression-training-configs", **on_controller}
        elif not self.stage_done(REGRESSIONS):
            return {"step": TRAIN_STEP, "command": "epoch-cluster dispatch --stage regressions", **on_servers}
        if not self.stage_rows(PROFITABLE_CONFIGS):  # not generated yet (or a regressions-only board)
            return {"step": INITIALIZE_STEP,
                    "command": "epoch-builder regressions rank --by test_loss --top 20 && "
                               "epoch-builder initialize-prediction-models --top 20 --by test_loss", **on_controller}
        if not self.stage_done(PROFITABLE_CONFIGS):
            return {"step": SWEEP_STEP, "command": "epoch-cluster dispatch --stage profitable-configs", **on_servers}
        if not epoch.build_file.is_file():
            return {"step": BUILD_STEP, "command": "epoch-builder build-prediction-models", **on_controller}
        if not epoch.epoch_file.is_file():
            return {"step": EXPORT_STEP, "command": "epoch-builder models list && epoch-builder export-epoch --best",
                    **on_controller}
        return verify_step(epoch.relative(epoch.epoch_file))

    def to_dict(self, root: Path) -> dict[str, Any]:
        return {"epoch": self.epoch_id, "hosts": self.hosts, "batches": [r.to_dict() for r in self.rows],
                "totals": self.totals(), "next": self.next_step(root)}


_abandoned: set[asyncio.Task] = set()  # calls left behind by a timeout, kept referenced until they end


async def collect_jobs(hosts: Iterable["Host"], timeout: float = 10.0) -> tuple[dict[str, list["JobInfo"]], dict[str, str]]:
    """Every host's jobs; a host that does not answer in ``timeout`` (or is reconnecting) is reported, not waited for."""
    from remote.hosts import HostState

    hosts = list(hosts)

    async def one(host: "Host") -> list["JobInfo"]:
        if host.state is HostState.RECONNECTING:
            raise RemoteError(host.last_error or "reconnecting")
        async with asyncio.timeout(timeout):
            if host.state is HostState.OFFLINE:
                await host.connect()
            return await remote_jobs.list_jobs(host)

    # asyncio.wait, not a cancellation-based timeout: a call stuck on a dropped link must not hold the board.
    tasks = [asyncio.ensure_future(one(h)) for h in hosts]
    if tasks:
        await asyncio.wait(tasks, timeout=timeout + 1)
    jobs: dict[str, list[JobInfo]] = {}
    status: dict[str, str] = {}
    for host, task in zip(hosts, tasks):
        if not task.done():
            task.cancel()
            _abandoned.add(task)
            task.add_done_callback(_abandoned.discard)
            status[host.name] = f"unreachable: no answer within {timeout:g} s"
            continue
        result = task.exception() or task.result()
        if isinstance(result, BaseException):
            if not isinstance(result, (RemoteError, OSError, TimeoutError)):
                raise result
            status[host.name] = f"unreachable: {result}" if str(result) else "unreachable"
        else:
            jobs[host.name] = result
            status[host.name] = "online"
    return jobs, status


async def _tail(host: "Host", job: "JobInfo", name: str, size: int) -> list[str]:
    lines: list[str] = []
    try:
        async with asyncio.timeout(10):
            async for _offset, line in remote_jobs.follow_file(host, job.job_id, name, max(0, size - TAIL_BYTES), follow=False):
                lines.append(line)
    except (RemoteError, TimeoutError):
        return []
    return lines[1:] if size > TAIL_BYTES and lines else lines  # the first line may be cut


async def build_board(root: Path, hosts: Sequence["Host"], state: BoardStateFile | None = None,
                      stages: Sequence[str] = STAGES, *, details: bool = True) -> Board:
    """The board from the local workspace, the hosts' job directories and the state file.

    ``details`` reads the last progress event of running jobs and the log tail of failed ones.
    """
    root = Path(root).resolve()
    epoch_id = epoch_id_of(root)
    state = state or BoardStateFile(root, epoch_id)
    specs = [spec for stage in stages for spec in stage_batches(root, epoch_id, stage)]
    host_jobs, host_status = await collect_jobs(hosts)
    by_name = {h.name: h for h in hosts}
    jobs_of: dict[str, list[JobInfo]] = {}
    for jobs in host_jobs.values():
        for job in jobs:
            batch = batch_of_job(job.argv)
            # Batch names repeat from epoch to epoch: a job of another epoch is not this batch's job.
            if batch is not None and job.epoch in (None, epoch_id):
                jobs_of.setdefault(f"{batch[0]}:{batch[1]}", []).append(job)
    ray_rows = read_ray_rows(root, epoch_id)
    rows = []
    for spec in specs:
        jobs = sorted(jobs_of.get(spec.key, []), key=lambda j: j.started_at or 0)
        row = BatchRow(spec, PENDING, jobs=[{"host": j.server, "job_id": j.job_id, "label": j.label} for j in jobs])
        failed = {h: set(ids) for h, ids in state.failed_jobs(spec.key).items()}
        for job in jobs:
            if job.state != "running" and job.exit_code != 0:
                failed.setdefault(job.server, set()).add(job.job_id)
        row.failures = {h: len(ids) for h, ids in failed.items() if ids}
        running = [j for j in jobs if j.state == "running"]
        assigned = state.assigned(spec.key)
        if spec.done_locally(root, epoch_id):
            row.state = DONE
            winner = next((j for j in reversed(jobs) if j.exit_code == 0), None)
            row.host, row.job_id = (winner.server, winner.job_id) if winner else (None, None)
        elif running:
            job = running[-1]
            row.state, row.host, row.job_id = RUNNING, job.server, job.job_id
            if details:
                await _progress(by_name[job.server], job, row)
        elif not jobs and spec.key in ray_rows and ray_rows[spec.key].get("state") in (PUSHED, RUNNING, FAILED):
            _apply_ray_row(row, ray_rows[spec.key])
        elif assigned and assigned["host"] not in host_jobs:
            # Assigned to a host we cannot see now: its job may be running there; never start it twice.
            row.state = RUNNING if assigned.get("job_id") else PUSHED
            row.host, row.job_id = assigned["host"], assigned.get("job_id")
        elif jobs:
            job = jobs[-1]
            row.host, row.job_id, row.exit_code = job.server, job.job_id, job.exit_code
            if job.exit_code == 0:
                row.state = FINISHED
            else:
                row.state = FAILED
                if details:
                    row.log_tail = (await _tail(by_name[job.server], job, "log", job.log_size))[-LOG_TAIL_LINES:]
        elif assigned and assigned.get("pushed"):
            row.state, row.host = PUSHED, assigned["host"]
        if row.state in (PUSHED, RUNNING, FINISHED):
            row.reason = state.reason(spec.key)
        rows.append(row)
    return Board(epoch_id, rows, host_status, host_jobs, tuple(stages))


def _apply_ray_row(row: BatchRow, ray_row: dict[str, Any]) -> None:
    """A Ray-run batch's row as the Ray dispatcher last saw it (numbers checked: the file is ours, but edited
    files happen)."""
    def number(key: str) -> float | None:
        value = ray_row.get(key)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    row.state = str(ray_row["state"])
    row.host = str(ray_row.get("host") or "ray")[:80]
    row.job_id = str(ray_row["job_id"])[:200] if ray_row.get("job_id") else None
    row.done, row.total, row.eta_s = number("done"), number("total"), number("eta_s")
    exit_code = number("exit_code")
    row.exit_code = int(exit_code) if exit_code is not None else None
    tail = ray_row.get("log_tail")
    row.log_tail = [str(line)[:300] for line in tail[-LOG_TAIL_LINES:]] if isinstance(tail, list) else []


async def _progress(host: "Host", job: "JobInfo", row: BatchRow) -> None:
    for line in reversed(await _tail(host, job, "events.jsonl", job.events_size)):
        try:
            event = remote_jobs.checked_event(json.loads(line))
        except ValueError:
            continue
        if event is not None and "done" in event:
            row.done, row.total, row.eta_s = event["done"], event.get("total"), event.get("eta_s")
            return


def format_board(board: Board, root: Path) -> str:
    """The board as text: one line per batch, totals, and the next step."""
    lines = [f"epoch {board.epoch_id}"]
    lines += [f"  host {name}: {status}" for name, status in sorted(board.hosts.items())]
    for stage in STAGES:
        rows = board.stage_rows(stage)
        if not rows:
            continue
        lines.append(f"{stage}:")
        width = max(len(r.spec.name) for r in rows)
        for row in rows:
            extra = f"  failures {row.failures}" if row.failures else ""
            lines.append(f"  {row.spec.name.ljust(width)}  {row.label}{extra}")
            lines += [f"      why: {row.reason}"] if row.reason else []
            lines += [f"      | {tail}" for tail in row.log_tail] if row.state == FAILED else []
    totals = board.totals()
    for name in sorted(totals):
        counts = totals[name]
        lines.append(f"total {name}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    step = board.next_step(root)
    if step:
        lines.append(f"next: {step['step']}: {step['command']}")
    return "\n".join(lines)
