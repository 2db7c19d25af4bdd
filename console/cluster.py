"""The console's live view of the cluster, kept up to date from ``remote``.

One supervisor task per host connects (retrying with backoff while the host
is down), streams ``status --watch`` snapshots, polls the job list and follows
the events of running jobs. Everything lands in plain ``HostView`` /
``JobView`` objects that the app redraws on a timer.

The hosts themselves are one ``remote.cluster.Cluster`` (the object
``epoch-cluster`` uses too). This module is where the console drives hosts for
its own actions: jobs, logs, power, keys, sync. Other console modules import
``remote`` too: the Board screen runs ``remote.dispatch``'s ``Dispatcher``
(auto-dispatch) on these same hosts and reads ``remote.board``; the app's
``read_board``, ``console.actions.pipeline`` (which paths a batch's job reads)
and the dispatch form use ``remote.board``'s rules and names; the showcase
builds recorded boards and configs.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from remote import jobs, status
from remote.cluster import Cluster as RemoteCluster
from remote.config import ClusterConfig, load_cluster_config, with_controller
from remote.errors import HostKeyError, HostUnreachable, RemoteError
from remote.hosts import Host, HostState, backoff_delay

from console.state import CONNECTING, OFFLINE, ONLINE, RECONNECTING, HostView, JobView

if TYPE_CHECKING:  # pragma: no cover
    from remote.sync import SyncReport

STATUS_INTERVAL_S = 1.0
JOBS_POLL_S = 15.0
FAILED_TAIL_LINES = 5

ErrorSink = Callable[[BaseException | str, str], None]
LineSink = Callable[[list[str]], None]


def job_view(server: str, info: Any) -> JobView:
    """A ``JobView`` from remote's job record (object or dict)."""
    get = info.get if isinstance(info, dict) else (lambda key, default=None: getattr(info, key, default))
    argv = list(get("argv") or [])
    exit_code = get("exit_code")
    state = str(get("state") or "lost")
    if state == "exited" and get("stopped"):
        state = "stopped"  # ended by the user's stop, not a failure
    elif state == "exited":
        state = "finished" if exit_code == 0 else "failed"
    return JobView(
        server=server,
        id=str(get("job_id") or get("id")),
        command=" ".join(argv),
        state=state,
        exit_code=exit_code,
        started=get("started_at"),
        ended=get("ended_at"),
    )


class Cluster:
    def __init__(self, config: ClusterConfig, local_root: str | os.PathLike) -> None:
        # The controller's own workspace is a place like any server (status, jobs, logs): the steps that
        # combine the cluster's results run there (remote.steps).
        self.config, self.controller = with_controller(config, local_root)
        config = self.config
        self.local_root = Path(local_root)
        self.remote = RemoteCluster(config)  # the connections, one Host per server
        self.hosts: dict[str, HostView] = {
            s.name: HostView(s.name, "local" if s.local else s.address) for s in config.servers
        }
        self.jobs: dict[str, JobView] = {}  # key "server/job-id", oldest first
        self._tasks: list[asyncio.Task[None]] = []
        self._event_followers: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()  # held so the loop's weak refs keep them alive
        self._report: ErrorSink = lambda error, context: None

    @classmethod
    def from_config(cls, path: str | os.PathLike | None, local_root: str | os.PathLike) -> "Cluster":
        """``local_root``: the console's workspace; also the root of ``localhost``
        when there is no cluster file."""
        return cls(load_cluster_config(path, local_root=local_root), local_root)

    @property
    def remote_hosts(self) -> dict[str, Host]:
        return self.remote.hosts

    # --- lifecycle ------------------------------------------------------------
    def start(self, report: ErrorSink) -> None:
        """Start one supervisor per host (call from the running event loop)."""
        self._report = report
        loop = asyncio.get_running_loop()
        for name, host in self.remote_hosts.items():
            host.on_state_change(self._host_state_changed)
            self._tasks.append(loop.create_task(self._supervise(name, host), name=f"supervise-{name}"))

    async def close(self) -> None:
        tasks = self._tasks + list(self._event_followers.values()) + list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.remote.close()

    def _host_state_changed(self, host: Host) -> None:
        view = self.hosts[host.name]
        view.state = {HostState.ONLINE: ONLINE, HostState.RECONNECTING: RECONNECTING,
                      HostState.CONNECTING: CONNECTING}.get(host.state, OFFLINE)
        if host.state in (HostState.RECONNECTING, HostState.OFFLINE) and host.last_error:
            view.error = host.last_error

    async def _supervise(self, name: str, host: Host) -> None:
        """Connect, stream status and poll jobs; when the host is down, retry with backoff."""
        view = self.hosts[name]
        attempt = 0
        reported = False
        while True:
            try:
                await host.connect()
                view.latency_ms = (host.latency_s or 0) * 1000
                attempt, reported = 0, False
                wake = asyncio.Event()
                poller = asyncio.create_task(self._poll_jobs(name, host, wake))
                try:
                    await self._stream_status(view, host, wake)
                finally:
                    poller.cancel()
                    await asyncio.gather(poller, return_exceptions=True)
            except asyncio.CancelledError:
                raise
            except HostKeyError as exc:
                view.state, view.error = OFFLINE, str(exc)
                self._report(exc, name)
                return  # never retried: the key must be checked by a person
            except Exception as exc:  # noqa: BLE001 - host down, command failed: show and retry
                view.state, view.error = OFFLINE, str(exc)
                if not reported:
                    self._report(exc, name)
                    reported = True
                try:
                    await host.close()
                except Exception:  # noqa: BLE001
                    pass
            await asyncio.sleep(backoff_delay(attempt, base=0.5, cap=15.0))
            attempt += 1

    async def _stream_status(self, view: HostView, host: Host, wake: asyncio.Event) -> None:
        running: set[str] = set()
        async for snapshot in status.status_stream(host, interval_s=STATUS_INTERVAL_S):
            if snapshot.get("state") == "reconnecting":
                view.state, view.error = RECONNECTING, str(snapshot.get("error", ""))
                continue
            view.apply_status(snapshot, (host.latency_s or 0) * 1000 if host.latency_s is not None else None)
            # The host's unfinished jobs ride along with each snapshot: a change wakes the poller, whose
            # answer (the agent's) is the only source of job states; their last progress event updates the ETA.
            listed = [info for info in snapshot.get("jobs") or [] if isinstance(info, dict) and isinstance(info.get("id"), str)]
            now_running = {info["id"] for info in listed}
            if now_running != running:
                running = now_running
                wake.set()  # a job started or ended: fetch states and exit codes now
            for info in listed:
                job = self.jobs.get(f"{view.name}/{info['id']}")
                last_event = jobs.checked_event(info.get("last_event"))
                if job is not None and job.state == "running" and last_event is not None:
                    job.apply_event(last_event)

    async def _poll_jobs(self, name: str, host: Host, wake: asyncio.Event) -> None:
        """Job states and latency: at once, whenever the status stream sees the set of
        running jobs change, and every ``JOBS_POLL_S`` as a fallback (cheap for 20 hosts)."""
        while True:
            try:
                self.hosts[name].latency_ms = await host.ping() * 1000
                for info in await jobs.list_jobs(host):
                    self._merge_job(name, job_view(name, info), host)
            except asyncio.CancelledError:
                raise
            except (HostUnreachable, RemoteError):
                pass  # the status stream reports the link; keep polling
            try:
                await asyncio.wait_for(wake.wait(), JOBS_POLL_S)
            except TimeoutError:
                pass
            wake.clear()

    def _merge_job(self, server: str, fresh: JobView, host: Host) -> JobView:
        fresh.seen = time.time()
        known = self.jobs.get(fresh.key)
        if known is None:
            self.jobs[fresh.key] = known = fresh
        else:
            was_running = known.state == "running"
            known.state, known.exit_code, known.seen = fresh.state, fresh.exit_code, fresh.seen
            known.started = fresh.started or known.started
            known.ended = fresh.ended or known.ended
            if was_running and fresh.state == "failed":
                task = asyncio.get_running_loop().create_task(self._report_failure(host, known))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
        if known.state == "running" and known.key not in self._event_followers:
            self._event_followers[known.key] = asyncio.get_running_loop().create_task(self._follow_events(host, known))
        return known

    async def _follow_events(self, host: Host, job: JobView) -> None:
        offset = 0
        try:
            while True:
                try:
                    async for offset, event in jobs.follow_events(host, job.id, offset):
                        job.apply_event(event)
                    return
                except (HostUnreachable, RemoteError):
                    await asyncio.sleep(1.0)
                    await host.wait_online(timeout=None)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - progress is a nicety; the job list still updates
            return
        finally:
            self._event_followers.pop(job.key, None)

    async def _report_failure(self, host: Host, job: JobView) -> None:
        tail: deque[str] = deque(maxlen=FAILED_TAIL_LINES)
        try:
            async for _, line in jobs.follow_log(host, job.id, follow=False):
                tail.append(line.rstrip("\n"))
        except Exception:  # noqa: BLE001
            pass
        last = " | ".join(tail) or "no log output"
        self._report(f"job {job.id} ({job.command}) failed with exit code {job.exit_code}; last lines: {last}", job.server)

    # --- jobs -----------------------------------------------------------------
    def host(self, server: str) -> Host:
        try:
            return self.remote_hosts[server]
        except KeyError:
            raise RemoteError(f"unknown server {server!r}; configured: {', '.join(self.remote_hosts)}") from None

    async def start_job(self, server: str, args: Sequence[str], *, force: bool = False) -> JobView:
        host = self.host(server)
        info = await jobs.start_job(host, list(args), force=force)
        return self._merge_job(server, job_view(server, info), host)

    def adopt_job(self, server: str, info: Any) -> JobView:
        """A job started on ``server`` by other code (``remote.steps``): shown and followed like the console's own."""
        return self._merge_job(server, job_view(server, info), self.host(server))

    async def refresh_job(self, server: str, job_id: str) -> JobView:
        """The job as its server reports it now (the table may be a poll behind)."""
        host = self.host(server)
        return self._merge_job(server, job_view(server, await jobs.job_info(host, job_id)), host)

    async def stop_job(self, server: str, job_id: str) -> JobView:
        host = self.host(server)
        return self._merge_job(server, job_view(server, await jobs.stop_job(host, job_id)), host)

    async def follow_log(self, server: str, job_id: str, sink: LineSink) -> None:
        """Feed the job's log to ``sink`` from the start; across a host going down
        and coming back it resumes at the byte offset where it stopped."""
        from remote.ray_engine import is_ray_host

        if is_ray_host(server):  # a batch the Ray engine runs: its runner serves the log
            from remote import board as boards
            from remote import ray_engine

            address = boards.read_ray_address(self.local_root, boards.epoch_id_of(self.local_root))
            async for _offset, line in ray_engine.follow_log(job_id, address=address):
                sink([line])
            return
        host = self.host(server)
        offset = 0
        while True:
            try:
                # One line at a time is cheap here: the sink only queues, the log
                # pane draws queued lines in batches on its own timer.
                async for offset, line in jobs.follow_log(host, job_id, offset):
                    sink([line])
                return
            except HostUnreachable:
                sink([f"--- {server} unreachable; resuming the log when it is back ---"])
                while True:
                    try:
                        await host.wait_online(timeout=None)
                        break
                    except HostUnreachable:
                        await asyncio.sleep(1.0)  # the supervisor is reconnecting

    # --- server actions ---------------------------------------------------------
    async def power(self, server: str, what: str) -> Any:
        from remote import power

        return await power.power(self.host(server), what)

    async def install_key(self, server: str, public_key: str | os.PathLike) -> bool:
        from remote import power

        host = self.host(server)
        return await power.install_key(host.config, host.ssh, public_key)

    def interactive_command(self, server: str) -> list[str]:
        from remote import power

        host = self.host(server)
        return power.connect_argv(host.config, host.ssh)

    async def unit_tests(self, server: str, sink: LineSink) -> int:
        """Run the project's test suite on the server, its output to ``sink``; pytest's exit status."""
        from remote import power

        return await power.unit_tests(self.host(server), on_output=lambda line: sink([line]))

    # --- sync -----------------------------------------------------------------
    def is_controller(self, server: str) -> bool:
        """Whether ``server`` is the console's own workspace."""
        return server == self.controller

    @property
    def servers(self) -> list[str]:
        """Every server but the controller: where pushes and pulls go."""
        return [name for name in self.hosts if name != self.controller]

    def is_local(self, server: str) -> bool:
        """Whether ``server`` is this machine's own workspace (nothing to push there)."""
        return any(s.name == server and s.local for s in self.config.servers)

    async def plan_push(self, server: str, paths: Sequence[str]) -> list[str]:
        """What a push of ``paths`` to ``server`` would send (nothing is sent)."""
        from remote import sync

        return await sync.plan_push(self.host(server), list(paths), local_root=self.local_root)

    async def push_paths(self, server: str, paths: Sequence[str]) -> "SyncReport":
        from remote import sync

        return await sync.push(self.host(server), list(paths), local_root=self.local_root)

    async def sync(self, server: str, direction: str, group: str) -> str:
        """Push/pull a group of the local workspace (``dist`` bootstraps the project);
        progress shows in the server's row while it runs."""
        from remote import bootstrap, sync

        host = self.host(server)
        view = self.hosts[server]

        def progress(p: "sync.SyncProgress") -> None:
            share = 100 * p.bytes_done / p.bytes_total if p.bytes_total else 100
            view.activity = f"{direction} {p.files_done}/{p.files_total} files {share:.0f}%"

        view.activity = f"{direction} {group}..."
        try:
            if group == "dist":
                result = await bootstrap.bootstrap(host, progress=progress)
                pushed = result["pushed"]
                return f"project pushed ({pushed['files_sent']} files changed) and installed"
            operation = sync.push if direction == "push" else sync.pull
            report = await operation(host, group, local_root=self.local_root, progress=progress)
        finally:
            view.activity = ""
        return (f"{report.files_sent} of {report.files_checked} files {'sent' if direction == 'push' else 'fetched'} "
                f"({report.bytes_sent / 1e6:.1f} MB) in {report.seconds:.1f} s"
                + (f"; refused {len(report.refused)} path(s) outside {group}: {', '.join(report.refused[:3])}"
                   if report.refused else "")
                + (f"; not sent, names with control characters: {', '.join(repr(p) for p in report.unsendable[:3])}"
                   if report.unsendable else ""))
