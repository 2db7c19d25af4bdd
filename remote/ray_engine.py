"""Run a stage's batches on a Ray cluster: ``epoch-cluster dispatch --engine ray [--address ADDRESS]``.

The same board, the same results, on the user's Ray cluster instead of our SSH
dispatcher: Ray places the work (CPUs per sweep batch; CPUs or a fraction of a
GPU per training batch), restarts it when a node is lost, and needs no shared
filesystem.

This module is the side that runs where the workspace is: the dispatcher
(:class:`RayDispatcher`), the commit of the runners' answers, and following a
runner's log. What runs on the cluster's nodes (the actors) is
:mod:`remote.ray_nodes`.

* **One detached, named actor per batch** (:class:`remote.ray_nodes.BatchRunner`, named
  ``<epoch>/<stage>:<batch>`` in namespace ``epoch-builder``): Ray schedules it
  with the stage's resources; it writes the batch's inputs (shipped through the
  object store: the epoch's common inputs once per stage, the batch file per
  batch) into a fresh directory on its node and runs the very ``epoch-builder``
  subcommand an SSH server would run, in a child process that dies with it.
  Detached, it outlives the dispatcher: a restarted dispatcher finds it by name
  (adopts it) and never starts the batch a second time (creation by name is
  atomic in Ray's control store, and the dispatcher lock holds as for SSH).
* **Checkpoints travel back while it runs**: every ``SNAPSHOT_EVERY_S`` the
  runner sends the batch's resume state (``BatchSpec.checkpoint_paths``: the
  models done so far and those in training's checkpoints, the sweep's journal)
  to a :class:`remote.ray_nodes.CheckpointStore` actor on the dispatcher's node. When a worker node
  dies, Ray restarts the runner elsewhere (``max_restarts``); it starts from the
  stored checkpoints, so the batch resumes, and both stages' resume is exact.
* **Answers are untrusted** (as an SFTP pull): the finished runner hands back
  the files of ``BatchSpec.pull_paths``; :func:`commit_answer` keeps only clean
  paths under them and commits them atomically and verified
  (``host_program.Staging`` + ``host_program.commit``); anything else is
  refused and named.
* **The board**: each tick writes the Ray rows (``board.RAY_STATE_FILE``) that
  ``build_board`` shows: pending, pushed (waiting for a node), running on
  ``ray:<node>`` with the job's last progress event, failed with its log tail.
  A runner that exits non-zero, or that Ray gives up on, counts one failure
  (server name ``ray``); the batch is tried again up to ``--max-failures``.

Ray is an optional extra (``pip install .[ray]``); nothing here imports it
before a dispatch runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from epoch_builder.errors import EpochBuilderError
from remote import board as boards
from remote import host_program
from remote.errors import RemoteError
from remote.plan import COST
from remote.ray_nodes import CALL_TIMEOUT_S, NAMESPACE, BatchRunner, CheckpointStore, fingerprint_of, read_files

RAY_HOST = "ray"  # the server name of Ray-run batches on the board and in the failure counts
STATUS_WAIT_S = 1.0  # per tick, how long the runners get to answer (one still waiting for a node never does)
HEAD_RESOURCE = "node:__internal_head__"  # Ray's marker resource of the head node
WAIT_NOTICE_S = 10.0  # what a dispatch waits for on the cluster is said after this long (then every this long)


def is_ray_host(host: str | None) -> bool:
    """Whether a board row's server is the Ray engine (``ray``, ``ray:<node>``, ``ray (waiting for a node)``)."""
    return bool(host) and (host == RAY_HOST or host.startswith((f"{RAY_HOST}:", f"{RAY_HOST} (")))


def ray_module() -> Any:
    try:
        import ray
    except ImportError:
        raise RemoteError("the ray engine needs Ray: pip install 'epoch-builder[ray]' (or `pip install ray`)") from None
    return ray


def actor_name(epoch_id: str, spec: boards.BatchSpec) -> str:
    return f"{epoch_id}/{spec.key}"


def store_name(epoch_id: str) -> str:
    return f"{epoch_id}/checkpoints"


# --- answers in ----------------------------------------------------------------------------------


def commit_answer(root: Path, allowed: list[str], answer: Any) -> tuple[list[str], list[str]]:
    """Write a runner's answer into the local workspace: (committed, refused) paths.

    The answer is untrusted: an entry is kept only when its path is a clean workspace-relative path
    under one of ``allowed`` (the batch's results) and its value is ``[bytes, non-negative int]``;
    everything else is refused, never written. Kept files are staged, verified and renamed into
    place by the same commit as a pull (a destination only ever holds a complete file)."""
    if not isinstance(answer, dict):
        return [], [f"(the answer is a {type(answer).__name__}, not a file map)"]
    refused: list[str] = []
    items: list[dict[str, Any]] = []
    staging = host_program.Staging(str(root))
    try:
        for index, (rel, entry) in enumerate(answer.items()):
            try:
                clean = host_program.safe_relpath(rel) if isinstance(rel, str) else None
            except host_program.HostProgramError:
                clean = None
            well_formed = (isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], bytes)
                           and isinstance(entry[1], int) and not isinstance(entry[1], bool) and entry[1] >= 0)
            if clean != rel or not host_program.under_requested(rel, allowed) or not well_formed:
                refused.append(rel if isinstance(rel, str) and clean == rel else repr(rel)[:200])
                continue
            name = host_program.part_name(index)
            with open(os.path.join(staging.path, name), "wb") as handle:
                handle.write(entry[0])
            items.append({"tmp": name, "path": rel, "size": len(entry[0]),
                          "sha256": hashlib.sha256(entry[0]).hexdigest(), "mtime_ns": entry[1]})
        result = host_program.commit(str(root), staging.path, items) if items else {"committed": [], "failed": []}
    finally:
        staging.remove()
    refused += [f"{failure['path']} ({failure['reason']})" for failure in result["failed"]]
    return result["committed"], refused


async def follow_log(job_id: str, *, address: str | None = None, offset: int = 0,
                     poll_s: float = 0.5) -> AsyncIterator[tuple[int, str]]:
    """``(offset, line)`` of the job log of the Ray-run batch whose runner is ``job_id`` (the board's job
    id), from ``offset``, as ``remote.jobs.follow_log`` gives an SSH job's; it ends when the run ends.
    ``address``: the cluster (default: the one this process joined, else ``auto``: never a new one)."""
    ray = ray_module()
    if not ray.is_initialized():
        await asyncio.to_thread(ray.init, address=address or "auto", namespace=NAMESPACE, log_to_driver=False,
                                configure_logging=False)
    try:
        actor = ray.get_actor(job_id, namespace=NAMESPACE)
    except ValueError:
        yield offset, "--- no Ray runner of this batch now (it is done, or not started yet) ---"
        return
    pending = b""
    while True:
        try:
            data, offset, running = await asyncio.to_thread(ray.get, actor.log_since.remote(offset),
                                                            timeout=CALL_TIMEOUT_S)
        except ray.exceptions.RayActorError:
            yield offset, "--- the runner is gone (the batch ended, or its node was lost: Ray runs it again) ---"
            return
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield offset, line.decode("utf-8", "replace")
        if not data:
            if not running:
                if pending:
                    yield offset, pending.decode("utf-8", "replace")
                return
            await asyncio.sleep(poll_s)


# --- the dispatcher (runs where the workspace is) ---------------------------------------------------------


# The families that need a GPU most (recurrent stacks: 45-68 GFLOP/s on CPUs): with --order cost only their
# batches hold one, so a DNN batch never waits for a GPU it hardly uses.
GPU_FAMILIES = ("LSTM", "CLSTM", "GRU")


def batch_resources(spec: boards.BatchSpec, cpus: float | None, gpus: float,
                    gpu_families: tuple[str, ...] | None = None) -> dict[str, float]:
    """Ray resources of one batch: the sweep uses ``--workers`` CPUs (default 1); a training batch
    ``cpus`` (default 1) and ``gpus`` (a fraction lets several small-model batches share a GPU), only for
    ``gpu_families`` when given."""
    wants_gpu = spec.stage == boards.REGRESSIONS and (gpu_families is None or spec.category in gpu_families)
    return {"num_cpus": cpus if cpus is not None else 1.0, "num_gpus": gpus if wants_gpu else 0.0}


class RayDispatcher:
    """Drives one stage of the active epoch on a Ray cluster (see the module docstring)."""

    def __init__(self, local_root: Path, options: Any, *, log: Callable[[str], None] = print,
                 alert: Callable[[str], None] | None = None) -> None:
        """``options``: a DispatchOptions (checked there), with the engine's ``ray_address``,
        ``cpus_per_batch`` and ``gpus_per_batch``."""
        self.root = Path(local_root).resolve()
        self.options = options
        self.address = options.ray_address
        self.cpus = options.cpus_per_batch if options.cpus_per_batch is not None else (
            float(options.workers) if options.stage == boards.PROFITABLE_CONFIGS and options.workers else None)
        self.gpus = options.gpus_per_batch
        cost_aware = options.order == COST and options.stage == boards.REGRESSIONS
        self.gpu_families = GPU_FAMILIES if cost_aware else None
        self._longest_first: dict[str, int] | None = {} if cost_aware else None  # batch -> LPT rank, once priced
        self.log, self.alert = log, alert or log
        self.epoch_id = boards.epoch_id_of(self.root)
        self.state = boards.BoardStateFile(self.root, self.epoch_id)
        self._stop = asyncio.Event()
        self._ray: Any = None
        self._store: Any = None
        self._common: str | None = None  # name of the stage's common inputs in the store, put once
        self._told: set[tuple[str, int]] = set()  # (batch, run) restarts already logged
        self._address_joined: str | None = None  # for the board's readers (the console follows logs there)
        self._waiting_since: dict[str, float] = {}  # batch key -> when it was first seen waiting for a node
        self._said: set[tuple[str, str]] = set()  # (batch, reason) waits already told

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> boards.Board:
        from remote.dispatch import DispatcherLock, end_of_round

        with DispatcherLock(self.root, self.epoch_id):
            self.log(f"dispatch {self.options.stage} (ray): connecting to {self.address or 'the cluster of $RAY_ADDRESS or this machine'}")
            await self._bounded(f"connect to the Ray cluster at {self.address or 'auto'} and start its checkpoint store",
                                self._connect)
            self.state.set_dispatch(self.options.stage)
            try:
                while True:
                    board = await self.tick()
                    if board.stage_done(self.options.stage):  # the common inputs are no longer needed
                        await asyncio.to_thread(self._store_call, "drop_inputs", f"{self.options.stage}:")
                        self._common = None
                    if self.options.until_done and board.stage_done(self.options.stage):
                        self.log(f"dispatch {self.options.stage} (ray): every batch done")
                        return board
                    if await end_of_round(board, self.options, self._stop, label=f"dispatch {self.options.stage} (ray)",
                                          given_up=lambda r: r.failures.get(RAY_HOST, 0) >= self.options.max_failures):
                        return board
            finally:
                self.state.set_dispatch(None)

    async def _bounded(self, what: str, call: Callable[[], Any]) -> Any:
        """``call()`` in a thread of its own (a daemon: a Ray call stuck for good must not keep the process
        alive), saying every WAIT_NOTICE_S what it waits for, and giving up after ``ray_wait_s`` with one line."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def settle(outcome: Any, failed: bool) -> None:
            if not future.done():
                (future.set_exception if failed else future.set_result)(outcome)

        def target() -> None:
            try:
                result = call()
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting side as it is
                loop.call_soon_threadsafe(settle, exc, True)
            else:
                loop.call_soon_threadsafe(settle, result, False)

        threading.Thread(target=target, name=f"ray: {what}"[:60], daemon=True).start()
        started = time.monotonic()
        while True:
            left = self.options.ray_wait_s - (time.monotonic() - started)
            try:
                return await asyncio.wait_for(asyncio.shield(future), max(0.1, min(WAIT_NOTICE_S, left)))
            except TimeoutError:
                waited = time.monotonic() - started
                if waited >= self.options.ray_wait_s:
                    raise RemoteError(f"dispatch {self.options.stage} (ray): could not {what} in {waited:.0f} s; "
                                      "giving up (--ray-wait)") from None
                self.alert(f"ray: waiting {waited:.0f} s to {what}")

    def _connect(self) -> None:
        ray = ray_module()
        if not ray.is_initialized():
            ray.init(address=self.address, namespace=NAMESPACE, log_to_driver=False, configure_logging=False)
        self._ray = ray
        self._address_joined = self.address or ray.get_runtime_context().gcs_address
        self._store = self._store_actor()
        self._store_call("has_inputs", "")  # the store answers: it was placed on the head and started
        self.log(f"dispatch {self.options.stage} (ray): epoch {self.epoch_id}, cluster "
                 f"{ray.cluster_resources().get('CPU', 0):g} CPU(s), {ray.cluster_resources().get('GPU', 0):g} GPU(s), "
                 f"{len([n for n in ray.nodes() if n.get('Alive')])} node(s)")

    def _store_actor(self) -> Any:
        """The epoch's store, on the head node (Ray's ``node:__internal_head__`` resource): it must outlive
        any worker node, and a driver may be attached to any node of its machine."""
        return self._ray.remote(CheckpointStore).options(
            name=store_name(self.epoch_id), namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
            num_cpus=0, resources={HEAD_RESOURCE: 0.001}).remote()

    def _store_call(self, method: str, *args: Any) -> Any:
        """A call to the store; a store that died (its node was lost) is made again, empty: the inputs are
        sent again, and a batch without its checkpoint starts over (its result is the same)."""
        try:
            try:
                return self._ray.get(getattr(self._store, method).remote(*args), timeout=CALL_TIMEOUT_S)
            except self._ray.exceptions.RayActorError:
                self.alert("ray: the checkpoint store was lost (its node went away); starting a new one")
                self._store = self._store_actor()
                self._common = None
                return self._ray.get(getattr(self._store, method).remote(*args), timeout=CALL_TIMEOUT_S)
        except self._ray.exceptions.GetTimeoutError:
            raise RemoteError(f"dispatch {self.options.stage} (ray): the checkpoint store did not answer in "
                              f"{CALL_TIMEOUT_S:.0f} s (it runs on the head node: is the head reachable from here?)") from None

    def _actor(self, spec: boards.BatchSpec) -> Any:
        try:
            return self._ray.get_actor(actor_name(self.epoch_id, spec), namespace=NAMESPACE)
        except ValueError:
            return None

    def _shared_paths(self, specs: list[boards.BatchSpec]) -> set[str]:
        """The inputs every batch of the stage reads (config, candles, assets)."""
        return set.intersection(*(set(s.push_paths(self.epoch_id)) for s in specs)) if specs else set()

    def _common_inputs(self, specs: list[boards.BatchSpec]) -> str:
        """The stage's shared inputs, sent to the store once per dispatcher (named by their content: a
        runner restarted later still finds the ones it was made with)."""
        if self._common is None:
            files = read_files(self.root, sorted(self._shared_paths(specs)))
            self._common = f"{self.options.stage}:common:{fingerprint_of(files)[:16]}"
            if not self._store_call("has_inputs", self._common):
                self._store_call("put_inputs", self._common, files)
        return self._common

    def _create(self, spec: boards.BatchSpec, specs: list[boards.BatchSpec]) -> Any:
        shared = self._shared_paths(specs)
        own = read_files(self.root, [p for p in spec.push_paths(self.epoch_id) if p not in shared])
        own_name = f"{spec.key}:{fingerprint_of(own)[:16]}"
        self._store_call("put_inputs", own_name, own)
        o = self.options
        argv = spec.argv(training=o.training, workers=o.workers)
        return self._ray.remote(BatchRunner).options(
            name=actor_name(self.epoch_id, spec), namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
            max_restarts=o.max_failures, max_task_retries=-1, **batch_resources(spec, self.cpus, self.gpus, self.gpu_families),
        ).remote(spec.key, argv, spec.pull_paths(self.epoch_id), spec.checkpoint_paths(self.epoch_id),
                 [self._common_inputs(specs), own_name], store_name(self.epoch_id))

    def _end(self, spec: boards.BatchSpec, actor: Any) -> None:
        try:
            self._ray.get(actor.stop.remote(), timeout=STATUS_WAIT_S)
        except Exception:  # noqa: BLE001 - an actor already dead or unreachable: killing it is what is left
            pass
        self._ray.kill(actor, no_restart=True)

    def _in_order(self, specs: list[boards.BatchSpec]) -> list[boards.BatchSpec]:
        """``--order cost``: the batches submitted longest first (Ray starts actors as resources free up, in
        about the order they were created: the longest-processing-time rule); else file order."""
        if self._longest_first is None:
            return specs
        if not self._longest_first:
            from epoch_builder.regressions.plan import epoch_work
            from epoch_builder.workspace import Workspace

            try:
                work = epoch_work(Workspace(self.root))
            except (EpochBuilderError, OSError, ValueError) as exc:
                self.alert(f"dispatch (ray): cost-aware order unavailable ({exc}); batches go in file order")
                self._longest_first = None
                return specs
            ranked = sorted(work.batches, key=lambda b: -b.flop)
            self._longest_first = {b.name: rank for rank, b in enumerate(ranked)}
        last = len(self._longest_first)
        return sorted(specs, key=lambda spec: self._longest_first.get(spec.name, last))

    def _ray_tick(self) -> dict[str, dict[str, Any]]:
        """One round (blocking Ray calls; run in a thread): start, poll, collect. Returns the board rows."""
        ray = self._ray
        specs = self._in_order(boards.stage_batches(self.root, self.epoch_id, self.options.stage))
        rows: dict[str, dict[str, Any]] = {}
        polls: dict[str, tuple[boards.BatchSpec, Any, Any]] = {}
        for spec in specs:
            actor = self._actor(spec)
            if spec.done_locally(self.root, self.epoch_id):
                if actor is not None:
                    self._end(spec, actor)
                continue
            if actor is None:
                if len(self.state.failed_jobs(spec.key).get(RAY_HOST, [])) >= self.options.max_failures:
                    continue
                actor = self._create(spec, specs)
                self.state.assign(spec.key, RAY_HOST, actor_name(self.epoch_id, spec), pushed=True)
                self.log(f"{spec.name}: submitted to ray ({batch_resources(spec, self.cpus, self.gpus, self.gpu_families)})")
            polls[spec.key] = (spec, actor, actor.status.remote())
        refs = [ref for _, _, ref in polls.values()]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=STATUS_WAIT_S) if refs else ([], [])
        ready_set = set(ready)
        waiting = {key for key, (_spec, _actor, ref) in polls.items() if ref not in ready_set}
        self._check_waits({key: polls[key][0] for key in waiting}, running=len(polls) - len(waiting))
        for key, (spec, actor, ref) in polls.items():
            if ref not in ready_set:
                rows[key] = {"state": boards.PUSHED, "host": f"{RAY_HOST} (waiting for a node)"}
                continue
            try:
                status = ray.get(ref)
            except ray.exceptions.RayActorError as exc:  # Ray gave up on it (restarts used up)
                self._failed(spec, actor, f"{actor_name(self.epoch_id, spec)}#lost-{int(time.time())}", None,
                             [str(exc).splitlines()[0][:200]])
                continue
            host = f"{RAY_HOST}:{str(status.get('node'))[:8]}"
            if status["state"] == "done":
                self._collect(spec, actor, host)
            elif status["state"] == "failed":
                self._failed(spec, actor, f"{actor_name(self.epoch_id, spec)}#{status['start']}", status.get("exit_code"),
                             status.get("log_tail") or [])
                rows[key] = {"state": boards.FAILED, "host": host, "exit_code": status.get("exit_code"),
                             "log_tail": status.get("log_tail") or []}
            else:
                if status.get("start", 1) > 1 and (key, status["start"]) not in self._told:
                    self._told.add((key, status["start"]))
                    self.log(f"{spec.name}: run {status['start']} on {host}, resumed from "
                             f"{status.get('resumed_files', 0)} checkpoint file(s) shipped back by the last run")
                event = status.get("event") or {}
                rows[key] = {"state": boards.RUNNING, "host": host, "job_id": actor_name(self.epoch_id, spec),
                             "done": event.get("done"), "total": event.get("total"), "eta_s": event.get("eta_s")}
        return rows

    def _check_waits(self, waiting: dict[str, boards.BatchSpec], running: int) -> None:
        """Say what the batches that wait for a node wait for, once they have waited WAIT_NOTICE_S; give up after
        ``ray_wait_s`` when no node of the cluster could ever run one, or when none runs at all (waiting for
        a free node while others run batches is just a queue)."""
        now = time.monotonic()
        self._waiting_since = {key: self._waiting_since.get(key, now) for key in waiting}
        nodes = [node.get("Resources") or {} for node in self._ray.nodes() if node.get("Alive")]
        for key, spec in waiting.items():
            waited = now - self._waiting_since[key]
            if waited < WAIT_NOTICE_S:
                continue
            asked = batch_resources(spec, self.cpus, self.gpus, self.gpu_families)
            need = {"CPU": asked["num_cpus"], "GPU": asked["num_gpus"]}
            wanted = ", ".join(f"{v:g} {k}" for k, v in need.items() if v)
            fits = [n for n in nodes if all(n.get(k, 0) >= v for k, v in need.items())]
            if not fits:
                largest = ", ".join(f"{max((n.get(k, 0) for n in nodes), default=0):g} {k}" for k in need)
                reason = f"no node of the cluster has that much ({len(nodes)} node(s), at most {largest} on one)"
            elif running:
                reason = f"the {len(fits)} node(s) that fit are busy with the other batches"
            else:
                reason = (f"{len(fits)} node(s) fit but no runner started (a node the driver cannot reach? check "
                          "`ray status` and each node's --node-ip-address)")
            if (key, reason) not in self._said:
                self._said.add((key, reason))
                self.alert(f"{spec.name}: waiting {waited:.0f} s for a node with {wanted}: {reason}")
            if waited >= self.options.ray_wait_s and (not fits or not running):
                for other in waiting.values():  # never started: gone, so a later dispatch asks afresh
                    actor = self._actor(other)
                    if actor is not None:
                        self._ray.kill(actor, no_restart=True)
                    self.state.release(other.key)
                raise RemoteError(f"dispatch {self.options.stage} (ray): {spec.name} waited {waited:.0f} s for a node "
                                  f"with {wanted}: {reason}; giving up (--ray-wait)")

    def _collect(self, spec: boards.BatchSpec, actor: Any, host: str) -> None:
        answer = self._ray.get(actor.result.remote(), timeout=CALL_TIMEOUT_S)
        committed, refused = commit_answer(self.root, spec.pull_paths(self.epoch_id), answer)
        if refused:
            self.alert(f"{spec.name}: {host} returned {len(refused)} path(s) outside the batch's results, refused: "
                       + ", ".join(refused[:5]))
        if spec.done_locally(self.root, self.epoch_id):
            self.state.release(spec.key)
            self._store_call("drop", spec.key)
            self._end(spec, actor)
            self.log(f"{spec.name}: done on {host}, {len(committed)} file(s) back")
        else:
            self._failed(spec, actor, f"{actor_name(self.epoch_id, spec)}#incomplete-{int(time.time())}", 0,
                         ["exited 0 but its results are incomplete"])

    def _failed(self, spec: boards.BatchSpec, actor: Any, job_id: str, exit_code: int | None, tail: list[str]) -> None:
        if self.state.record_failure(spec.key, RAY_HOST, job_id):
            self.alert(f"{spec.name}: {job_id} failed (exit {exit_code}); "
                       + ("will retry" if len(self.state.failed_jobs(spec.key)[RAY_HOST]) < self.options.max_failures
                          else "giving up") + (f": {tail[-1]}" if tail else ""))
        self.state.release(spec.key)
        self._end(spec, actor)

    async def tick(self) -> boards.Board:
        rows = await self._bounded("hear from the cluster (the checkpoint store, the batches' runners)", self._ray_tick)
        boards.write_ray_rows(self.root, self.epoch_id, rows, address=self._address_joined)
        return await boards.build_board(self.root, [], self.state, (self.options.stage,))
