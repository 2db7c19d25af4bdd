"""Auto-dispatch: keep every idle cluster server busy with the pending batches of one stage.

Each tick (every ``interval_s``) rebuilds the :mod:`remote.board` and then, per host in parallel:

* a batch whose job exited 0 has its results pulled (only that batch's files)
  and is done once they are all here;
* a failed job (non-zero exit, lost) is recorded once in the state file; the
  batch is retried, on the same host until it failed ``max_failures`` times
  there, then on another host; a batch that failed that often everywhere is
  left for the user;
* an idle server (reachable, ``is_cluster``, no running job of any kind) gets
  the next pending batch: push what it needs (incrementally), record the
  assignment, start the job;
* with ``reassign_after_s``, a batch whose server has been unreachable that
  long moves to another server; its old job is stopped when the server
  answers again.

Never two jobs on one host (the host program refuses a second one as well), never the
same batch twice at once: a batch running, or assigned to a host that cannot
be reached right now, is not started elsewhere.  A restarted dispatcher adopts
running jobs from the job directories instead of restarting them.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Sequence

from epoch_builder.errors import EpochBuilderError
# train-regression-batch's options: the console's forms take the table and the object from here (the console
# imports nothing of epoch_builder.regressions: tests/test_layers.py)
from epoch_builder.regressions.options import OPTIONS as TRAINING_OPTIONS, TrainingOptions
from remote import board as boards
from remote import jobs
from remote.plan import COST, DEFAULT_ORDER, ORDERS, CostPlanner
from remote.errors import JobConflict, RemoteError
from remote.hosts import HostState

if TYPE_CHECKING:  # pragma: no cover
    from remote.hosts import Host

Log = Callable[[str], None]

ENGINES = ("ssh", "ray")
# Failure id of a batch whose server went away before its job was asked for (during its push), or in a
# board state written before job ids were chosen by the dispatcher.
UNREACHABLE_JOB = "unreachable-"
# How long a moved batch's old job gets to stop (SIGTERM, then SIGKILL) before it is killed.
STOP_GRACE_S = 10.0


@dataclass
class DispatchOptions:
    stage: str
    interval_s: float = 5.0
    max_failures: int = 2  # failures of a batch on one host before it moves to another host
    workers: int | None = None  # find-profitable-configs --workers
    # train-regression-batch's options (regressions stage), checked by TrainingOptions itself
    training: TrainingOptions = field(default_factory=TrainingOptions)
    until_done: bool = True  # stop once every batch of the stage is done
    # regressions: which pending batch a free server takes (remote.plan.ORDERS): cost, the longest batches to
    # the servers that finish them first (remote.schedule); file, the next batch file (the original's order)
    order: str = DEFAULT_ORDER
    stall_s: float = 120.0  # a push / pull that moves no byte for this long is abandoned and retried
    # A batch whose server stays unreachable this long moves to another server (None: it waits for its
    # server, the safe default: the job may still be running there). Its old job is stopped if it returns.
    reassign_after_s: float | None = None
    engine: str = "ssh"  # ssh: the cluster file's servers; ray: a Ray cluster (remote.ray_engine)
    ray_address: str | None = None  # ray: the cluster to join (None: $RAY_ADDRESS or this machine's)
    cpus_per_batch: float | None = None  # ray: CPUs a batch holds (None: 1, the sweep's --workers when given)
    gpus_per_batch: float = 0.0  # ray, regressions: GPUs a batch holds (a fraction shares a GPU)
    # ray: how long the dispatcher waits for the cluster (to connect, for the store, for a node that can run a
    # batch while none runs) before it gives up with one line; what it waits for is said within WAIT_NOTICE_S.
    ray_wait_s: float = 600.0

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise RemoteError(f"--order {self.order!r} unknown; allowed: {', '.join(ORDERS)}")
        if self.engine not in ENGINES:
            raise RemoteError(f"--engine {self.engine!r} unknown; allowed: {', '.join(ENGINES)}")
        if self.cpus_per_batch is not None and not 0 < self.cpus_per_batch <= 1024:
            raise RemoteError(f"--cpus-per-batch {self.cpus_per_batch} out of range; allowed above 0 up to 1024")
        if not 5 <= self.ray_wait_s <= 7 * 86400:
            raise RemoteError(f"--ray-wait {self.ray_wait_s} out of range; allowed 5..604800 seconds")
        if not 0 <= self.gpus_per_batch <= 64:
            raise RemoteError(f"--gpus-per-batch {self.gpus_per_batch} out of range; allowed 0..64")
        if self.stage not in boards.STAGES:
            raise RemoteError(f"--stage {self.stage!r} unknown; allowed: {', '.join(boards.STAGES)}")
        if not 0.05 <= self.interval_s <= 3600:
            raise RemoteError(f"--interval {self.interval_s} out of range; allowed 0.05..3600 seconds")
        if not 1 <= self.max_failures <= 100:
            raise RemoteError(f"--max-failures {self.max_failures} out of range; allowed 1..100")
        if not 1 <= self.stall_s <= 86400:
            raise RemoteError(f"--stall {self.stall_s} out of range; allowed 1..86400 seconds")
        if self.reassign_after_s is not None and not 1 <= self.reassign_after_s <= 30 * 86400:
            raise RemoteError(f"--reassign-after {self.reassign_after_s} out of range; allowed 1..2592000 seconds")
        if self.workers is not None and not 1 <= self.workers <= 1024:
            raise RemoteError(f"--workers {self.workers} out of range; allowed 1..1024")


@dataclass
class TickReport:
    started: list[tuple[str, str]] = field(default_factory=list)  # (batch, host)
    pulled: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class DispatcherLock:
    """One dispatcher per epoch: an exclusive ``flock`` on ``<root>/.board/<epoch>.dispatch.lock``, with
    the holder (host, pid, since) written in the file for the error a second one gets. The kernel drops
    the lock when its process dies, even by ``kill -9``: the next dispatcher simply takes it (and adopts
    the running jobs from the board, as after any restart)."""

    def __init__(self, root: Path, epoch_id: str) -> None:
        self.path = Path(root) / boards.STATE_DIR / f"{epoch_id}.dispatch.lock"
        self.epoch_id = epoch_id
        self._fd: int | None = None

    def __enter__(self) -> "DispatcherLock":
        import fcntl
        import socket

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode("utf-8", "replace")
            os.close(fd)
            raise RemoteError(f"epoch {self.epoch_id}: another dispatcher is running ({_describe_holder(holder)}; "
                              f"lock {self.path}); stop it first, or let it finish") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                 "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        self._fd = fd
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock; the file stays (its content is only a description)
            self._fd = None


async def end_of_round(board: boards.Board, options: DispatchOptions, stop: asyncio.Event, *, label: str,
                       given_up: Callable[[boards.BatchRow], bool], where: str = "", busy: bool = False) -> bool:
    """The end of a dispatch round, for both engines (this module's and :mod:`remote.ray_engine`'s).

    When every open batch of the stage has given up (``given_up``: failed ``max_failures`` times wherever
    it may run) and nothing is under way (``busy``), raise RemoteError naming them (``label``, then the
    batches, ``where`` they failed). Else wait ``interval_s`` for ``stop``: True when it was set (the
    dispatcher returns its last board), False when the next round is due."""
    open_rows = [r for r in board.stage_rows(options.stage) if r.state != boards.DONE]
    failed = [r for r in open_rows if given_up(r)]
    if open_rows and len(failed) == len(open_rows) and not busy:
        raise RemoteError(f"{label}: batch(es) {', '.join(r.spec.name for r in failed)} failed {options.max_failures} "
                          f"times{where}; see `epoch-cluster board` for their logs")
    try:
        await asyncio.wait_for(stop.wait(), options.interval_s)
        return True
    except TimeoutError:
        return False


def _describe_holder(text: str) -> str:
    try:
        holder = json.loads(text)
        return f"host {holder['host']}, pid {holder['pid']}, since {holder['since']}"
    except (ValueError, KeyError, TypeError):
        return "holder unknown"


class Dispatcher:
    """Drives one stage of the active epoch across the cluster's ``is_cluster`` servers."""

    def __init__(self, hosts: Sequence["Host"], local_root: Path, options: DispatchOptions, log: Log = print,
                 alert: Log | None = None) -> None:
        """``log`` gets every message; ``alert`` (default ``log``) instead gets those that need a look:
        failures, errors, servers going away, batches moved."""
        self.hosts = [h for h in hosts if h.config.is_cluster]
        if not self.hosts:
            raise RemoteError("dispatch: no server has is_cluster true in the cluster file")
        self.root = Path(local_root).resolve()
        self.options = options
        self.log = log
        self.alert = alert or log
        self.epoch_id = boards.epoch_id_of(self.root)
        self.state = boards.BoardStateFile(self.root, self.epoch_id)
        self._stop = asyncio.Event()
        # Per host, the task running its pull / push + start: never awaited past a short wait, so a host
        # whose link hangs holds only itself, not the other hosts' rounds.
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._host_status: dict[str, str] = {}  # last reported per host, so each change is logged once
        self._down_since: dict[str, float] = {}  # host -> when this dispatcher first saw it unreachable
        self._planner = (CostPlanner(self.root, [h.name for h in self.hosts])
                         if options.order == COST and options.stage == boards.REGRESSIONS else None)
        self._said: dict[str, str] = {}  # host -> the last reason logged for it (each new one is logged once)

    def stop(self) -> None:
        self._stop.set()

    async def board(self, details: bool = False) -> boards.Board:
        return await boards.build_board(self.root, self.hosts, self.state, (self.options.stage,), details=details)

    async def run(self) -> boards.Board:
        """Tick until every batch of the stage is done (``until_done``) or :meth:`stop`; returns the last board.
        Holds the epoch's dispatcher lock meanwhile: a second dispatcher (another shell, the console's
        auto-dispatch) is refused, so no batch is ever started twice."""
        with DispatcherLock(self.root, self.epoch_id):
            return await self._run()

    async def _run(self) -> boards.Board:
        self.state.set_dispatch(self.options.stage)
        self.log(f"dispatch {self.options.stage}: epoch {self.epoch_id}, servers {', '.join(h.name for h in self.hosts)}")
        try:
            while True:
                board = await self.tick()
                if self.options.until_done and board.stage_done(self.options.stage):
                    for host, job_ids in self._moved_jobs_on_silent_hosts(board).items():
                        self.alert(f"server {host} did not answer: job(s) {', '.join(job_ids)} of a batch that moved "
                                   "away, if still running there, are stopped by the next dispatch once it answers")
                    self.log(f"dispatch {self.options.stage}: every batch done")
                    return board
                if not board.stage_rows(self.options.stage):
                    raise RemoteError(f"dispatch {self.options.stage}: the epoch {self.epoch_id} has no batches for this stage")
                if await end_of_round(board, self.options, self._stop, label=f"dispatch {self.options.stage}",
                                      given_up=self._given_up, where=" on every server", busy=bool(self._inflight)):
                    return board
        finally:
            self.state.set_dispatch(None)
            pending = [t for t in self._inflight.values() if not t.done()]
            if pending:  # e.g. the stop of a moved batch's old job: let it finish and say so (each is bounded)
                bound = max(self.options.interval_s, STOP_GRACE_S + max((h.ssh.command_timeout_s for h in self.hosts),
                                                                        default=30.0)) + 10
                await asyncio.wait(pending, timeout=bound)

    def _given_up(self, row: boards.BatchRow) -> bool:
        """A failed batch that failed ``max_failures`` times on every server."""
        return row.state == boards.FAILED and all(
            row.failures.get(h.name, 0) >= self.options.max_failures for h in self.hosts)

    async def tick(self) -> boards.Board:
        board = await self.board()
        report = TickReport()
        for name, status in board.hosts.items():
            if self._host_status.get(name, "online") != status:
                (self.log if status == "online" else self.alert)(f"server {name}: {status}")
            self._host_status[name] = status
            if status == "online":
                self._down_since.pop(name, None)
            else:
                self._down_since.setdefault(name, time.monotonic())
        self._inflight = {name: task for name, task in self._inflight.items() if not task.done()}
        online = [h for h in self.hosts if board.hosts.get(h.name) == "online" and h.name not in self._inflight]
        rows = board.stage_rows(self.options.stage)
        work: dict[str, list] = {h.name: [] for h in online}
        for row in rows:
            if row.state == boards.FINISHED and row.host in work:
                work[row.host].append(self._pull(row, report))
            elif row.state == boards.FAILED and row.job_id and row.host:
                if self.state.record_failure(row.spec.key, row.host, row.job_id):
                    report.failed.append((row.spec.name, row.host))
                    self.alert(f"{row.spec.name}: job {row.job_id} on {row.host} failed (exit {row.exit_code}); will retry")
                if (assigned := self.state.assigned(row.spec.key)) and assigned.get("job_id") == row.job_id:
                    self.state.release(row.spec.key)
        self._reassign_from_lost_hosts(rows)
        for row in rows:  # a moved batch's old job, on a server that answers again, must not run on
            for job in row.jobs:
                failed_here = self.state.failed_jobs(row.spec.key).get(job["host"], [])
                assigned = self.state.assigned(row.spec.key)
                # The host may have gone before its start answer arrived: then the failure was counted
                # without the job id, and any running job of the batch there (not assigned to it) is the old one.
                moved_away = job["job_id"] in failed_here or (
                    any(str(j).startswith(UNREACHABLE_JOB) for j in failed_here)
                    and (assigned is None or assigned.get("host") != job["host"]))
                if moved_away and job["label"] == "running" and job["host"] in work:
                    work[job["host"]].append(self._stop_moved(row, job["host"], job["job_id"]))
        # An assignment ends when its batch is done, or when its host answers, nothing of this dispatcher is under
        # way there, the batch runs nowhere there, and the host holds no job under the assigned id: the start never
        # happened (a dispatcher killed during the push, an answer lost before the job was made) or its job
        # directory was removed. A batch whose earlier jobs there failed is no exception: such a stale
        # assignment once kept it from ever starting again.
        for row in rows:
            assigned = self.state.assigned(row.spec.key)
            if not assigned:
                continue
            host = assigned["host"]
            if row.state == boards.DONE:
                self.state.release(row.spec.key)
            elif host in board.host_jobs and host not in self._inflight and not (
                    row.state == boards.RUNNING and row.host == host):
                ids_there = {job["job_id"] for job in row.jobs if job["host"] == host}
                if assigned.get("job_id") is None or assigned["job_id"] not in ids_there:
                    self.state.release(row.spec.key)
        busy_hosts = {h for h, jobs in board.host_jobs.items() if any(j.state == "running" for j in jobs)}
        busy_hosts |= {a["host"] for a in self.state.data["assigned"].values()}
        idle = [h for h in online if h.name not in busy_hosts and not work[h.name]]
        candidates = [r for r in rows if r.state in (boards.PENDING, boards.PUSHED, boards.FAILED)
                      and not self.state.assigned(r.spec.key)]
        if self._planner is not None and idle and candidates:
            try:
                self._planner.refresh(board, [h.name for h in online], time.time())
            except (EpochBuilderError, OSError, ValueError) as exc:  # e.g. a garbled rates file: one line, go on
                self.alert(f"dispatch: cost-aware order unavailable ({exc}); batches go in file order")
                self._planner = None
        for host in idle:
            row, reason = self._choose(candidates, host.name)
            if row is None:
                continue
            candidates.remove(row)
            if reason:
                self.state.record_reason(row.spec.key, reason)
            self.state.assign(row.spec.key, host.name)
            work[host.name].append(self._start(host, row, report))
        tasks = []
        for name, actions in work.items():
            if actions:
                self._inflight[name] = task = asyncio.ensure_future(self._run_host(name, actions, report))
                tasks.append(task)
        if tasks:
            await asyncio.wait(tasks, timeout=max(30.0, self.options.interval_s))
        if report.started or report.pulled:
            board = await self.board()
        return board

    def _moved_jobs_on_silent_hosts(self, board: boards.Board) -> dict[str, list[str]]:
        """The jobs, by host, of batches that moved away from hosts not answering now: named (job ids are
        chosen before a start), so the next dispatch stops them when their host answers."""
        mine = {h.name for h in self.hosts}
        found: dict[str, list[str]] = {}
        for row in board.stage_rows(self.options.stage):
            for host, job_ids in self.state.failed_jobs(row.spec.key).items():
                if host in mine and board.hosts.get(host) != "online":
                    found.setdefault(host, []).extend(job_ids)
        return {host: sorted(set(ids)) for host, ids in sorted(found.items())}

    def _reassign_from_lost_hosts(self, rows: list[boards.BatchRow]) -> None:
        """``reassign_after_s``: a batch held by a server unreachable that long counts one failure there
        and becomes pending again, so an idle server takes it."""
        limit = self.options.reassign_after_s
        if limit is None:
            return
        now = time.monotonic()
        for row in rows:
            assigned = self.state.assigned(row.spec.key)
            host = assigned["host"] if assigned else None
            if host is None or row.state not in (boards.RUNNING, boards.PUSHED) or now - self._down_since.get(host, now) < limit:
                continue
            job_id = assigned.get("job_id") or f"{UNREACHABLE_JOB}{int(time.time())}"
            self.state.record_failure(row.spec.key, host, job_id)
            self.state.release(row.spec.key)
            row.state, row.failures = boards.PENDING, {**row.failures, host: row.failures.get(host, 0) + 1}
            self.alert(f"{row.spec.name}: server {host} unreachable for {now - self._down_since[host]:.0f} s; "
                     "the batch moves to another server (its job there is stopped if the server returns)")

    async def _stop_moved(self, row: boards.BatchRow, host_name: str, job_id: str) -> None:
        host = next(h for h in self.hosts if h.name == host_name)
        await jobs.stop_job(host, job_id, grace_s=STOP_GRACE_S)
        self.log(f"{row.spec.name}: stopped job {job_id} on {host_name} (the batch had moved to another server)")

    def _choose(self, candidates: list[boards.BatchRow], host: str) -> tuple[boards.BatchRow | None, str | None]:
        """Of the batches that failed fewer than ``max_failures`` times on this host: the first (``--order
        file``, and the sweep's batches), or the cost-aware choice, which may be none (``--order cost``); with
        the cost-aware choice's reason."""
        allowed = [row for row in candidates if row.failures.get(host, 0) < self.options.max_failures]
        if self._planner is None or not allowed:
            return (allowed[0] if allowed else None), None
        name, reason = self._planner.choose([row.spec.name for row in allowed], host)
        if self._said.get(host) != (name or "idle"):  # a start is news; staying idle is said once, not each tick
            self._said[host] = name or "idle"
            self.log(reason)
        return next((row for row in allowed if row.spec.name == name), None), reason

    async def _run_host(self, name: str, actions: list, report: TickReport) -> None:
        for action in actions:  # one host's actions in order; hosts run in parallel
            try:
                await action
            except (RemoteError, OSError, TimeoutError) as exc:
                report.errors.append(f"{name}: {exc}")
                self.alert(f"server {name}: {exc}")

    async def _pull(self, row: boards.BatchRow, report: TickReport) -> None:
        from remote import sync

        host = next(h for h in self.hosts if h.name == row.host)
        pulled = await self._transfer(host, "pull", lambda progress: sync.pull(
            host, row.spec.pull_paths(self.epoch_id), local_root=self.root, progress=progress))
        if pulled.refused:
            self.alert(f"{row.spec.name}: server {host.name} offered {len(pulled.refused)} path(s) outside the batch's "
                       f"results, refused: {', '.join(pulled.refused[:5])}")
        if row.spec.done_locally(self.root, self.epoch_id):
            self.state.release(row.spec.key)
            report.pulled.append((row.spec.name, host.name))
            self.log(f"{row.spec.name}: done on {host.name}, pulled {pulled.files_sent} file(s)")
        else:
            self.alert(f"{row.spec.name}: job {row.job_id} on {host.name} exited 0 but its results are incomplete there")
            self.state.record_failure(row.spec.key, host.name, str(row.job_id))

    async def _transfer(self, host: "Host", direction: str, call: Callable[[Callable[[Any], None]], Awaitable[Any]]) -> Any:
        """Run a push / pull; abandon it when no byte moved for ``stall_s`` (a stuck transfer must not hold
        its host forever: keepalive ends dead links, this ends live ones that stopped moving)."""
        last_progress = time.monotonic()

        def progress(_update: Any) -> None:
            nonlocal last_progress
            last_progress = time.monotonic()

        task = asyncio.ensure_future(call(progress))
        while True:
            done, _ = await asyncio.wait({task}, timeout=min(1.0, self.options.stall_s / 4))
            if done:
                return task.result()
            if time.monotonic() - last_progress > self.options.stall_s:
                task.cancel()
                await asyncio.wait({task}, timeout=10)
                raise RemoteError(f"server {host.name}: {direction} moved nothing for {self.options.stall_s:g} s; "
                                  "abandoned (a later round tries again)")

    async def _start(self, host: "Host", row: boards.BatchRow, report: TickReport) -> None:
        from remote import sync

        key = row.spec.key
        try:
            pushed = await self._transfer(host, "push", lambda progress: sync.push(
                host, row.spec.push_paths(self.epoch_id), local_root=self.root, progress=progress))
            argv = row.spec.argv(training=self.options.training, workers=self.options.workers)
            # The job's id is chosen and recorded before the host is asked: if the answer is lost, the board
            # still names the job, a retry of the start finds it, and a moved batch's old job can be stopped.
            job_id = jobs.new_job_id(argv)
            self.state.assign(key, host.name, job_id, pushed=True)
            job = await jobs.start_job(host, argv, job_id=job_id)
        except JobConflict as exc:
            self.state.release(key)  # someone else started a job there meanwhile: try again next tick
            raise RemoteError(str(exc)) from None
        except RemoteError:
            if host.state is HostState.ONLINE:
                self.state.release(key)  # the host answered: nothing was started
            raise
        self.state.assign(key, host.name, job.job_id, pushed=True)
        report.started.append((row.spec.name, host.name))
        self.log(f"{row.spec.name}: started job {job.job_id} on {host.name} (sent {pushed.files_sent} file(s))")


async def dispatch(hosts: Sequence["Host"], local_root: Path, options: DispatchOptions, log: Log = print) -> boards.Board:
    started = time.monotonic()
    board = await Dispatcher(hosts, local_root, options, log).run()
    log(f"dispatch {options.stage}: {time.monotonic() - started:.1f} s")
    return board
