"""Detached jobs on a host: start, list, stop, follow log and events.

A job is one ``epoch-builder <subcommand> ...`` process started detached by
:mod:`remote.host_program` in ``<root>/.jobs/<job-id>/`` (layout in that module).  It
survives the console and a dropped SSH link.  One running job per host
unless ``force`` (the original trains one batch per machine at a time).

Following resumes by byte offset: :func:`follow_file` yields
``(next_offset, line)`` for complete lines only; when the link drops it waits
for the host to reconnect and restarts the remote reader at the offset of the
first unseen line, so no line is lost or repeated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Sequence

from remote import host_program, host_program_client
from remote.errors import HostUnreachable, RemoteCommandFailed, RemoteError
from remote.hosts import HostState

if TYPE_CHECKING:  # pragma: no cover
    from remote.hosts import Host

RUNNING, EXITED, LOST = "running", "exited", "lost"
JOB_STATES = (RUNNING, EXITED, LOST)


@dataclass(frozen=True)
class JobInfo:
    """One job as read from its directory."""

    job_id: str
    server: str
    argv: tuple[str, ...]
    state: str  # running | exited | lost
    exit_code: int | None = None
    pid: int | None = None  # the wrapper's pid = the job's process group id
    started_at: float | None = None
    ended_at: float | None = None
    stopped: bool = False  # a stop was requested
    log_size: int = 0
    events_size: int = 0
    epoch: str | None = None  # the workspace's active epoch when the job started (None: unknown)
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def label(self) -> str:
        """``running``, ``exited 0``, ``exited -9``, ``lost``."""
        return f"exited {self.exit_code}" if self.state == EXITED else self.state

    @property
    def subcommand(self) -> str:
        return self.argv[0] if self.argv else ""

    @classmethod
    def from_answer(cls, server: str, raw: Any) -> "JobInfo":
        """A job record from a host's answer, which is untrusted: each field is checked for its type
        (RemoteError naming the server for a record without a job id or state)."""
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or raw.get("state") not in JOB_STATES:
            raise RemoteError(f"server {server}: a job record without a valid id and state: {str(raw)[:120]}")

        def number(key: str, kind: type = int) -> Any:
            value = raw.get(key)
            return value if isinstance(value, (int, float) if kind is float else int) and not isinstance(value, bool) else None

        argv = raw.get("argv")
        return cls(
            job_id=raw["id"], server=server, argv=tuple(str(a) for a in argv) if isinstance(argv, list) else (),
            state=raw["state"], exit_code=number("exit_code"), pid=number("pid"), started_at=number("started_at", float),
            ended_at=number("ended_at", float), stopped=raw.get("stopped") is True, log_size=number("log_size") or 0,
            events_size=number("events_size") or 0, epoch=raw.get("epoch") if isinstance(raw.get("epoch"), str) else None,
            extra={"command": raw.get("command"), "damaged": raw.get("damaged")},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id, "server": self.server, "argv": list(self.argv), "state": self.state,
            "label": self.label, "exit_code": self.exit_code, "pid": self.pid, "started_at": self.started_at,
            "ended_at": self.ended_at, "stopped": self.stopped, "log_size": self.log_size, "events_size": self.events_size,
            "epoch": self.epoch, "damaged": self.extra.get("damaged"),
        }


def validate_job_argv(argv: Sequence[str]) -> list[str]:
    """The epoch-builder argument vector of a job, checked by the host program's own rules before anything is sent."""
    try:
        return host_program.check_job_argv([str(a) for a in argv])
    except host_program.HostProgramError as exc:
        raise RemoteError(str(exc)) from None


def new_job_id(argv: Sequence[str]) -> str:
    """The id a job will have, chosen here before the host is asked to start it."""
    return host_program.new_job_id(validate_job_argv(argv)[0])


START_ATTEMPTS = 3  # a start whose answer is lost is asked again (with its id) this many times in all


async def start_job(host: "Host", argv: Sequence[str], *, force: bool = False, job_id: str | None = None) -> JobInfo:
    """Start ``argv`` as a detached job named ``job_id`` (chosen here when not given). Idempotent: when the answer
    is lost (the link drops, the helper dies before it answers), the same start is asked again once the host
    is back, and a host that already started it answers with that job; so a lost answer never leaves a job
    the controller cannot name, nor starts a second one."""
    argv = validate_job_argv(argv)
    job_id = job_id or host_program.new_job_id(argv[0])
    request = {"root": host.root, "argv": argv, "python": host.python, "force": force, "job_id": job_id,
               "cpus": list(host.config.cpus) if host.config.cpus else None}
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            return JobInfo.from_answer(host.name, await host_program_client.call(host, "start", request))
        except (HostUnreachable, RemoteCommandFailed):
            if attempt == START_ATTEMPTS:
                raise
            await host.wait_online(timeout=host.ssh.connect_timeout_s * 3 + host.ssh.command_timeout_s)
    raise AssertionError("unreachable")  # the loop returns or raises


async def list_jobs(host: "Host") -> list[JobInfo]:
    raw = await host_program_client.call(host, "list", {"root": host.root})
    if not isinstance(raw, list):
        raise RemoteError(f"server {host.name}: its job list is not a list")
    return [JobInfo.from_answer(host.name, item) for item in raw]


async def job_info(host: "Host", job_id: str) -> JobInfo:
    answer = await host_program_client.call(host, "info", {"root": host.root, "job_id": job_id})
    return JobInfo.from_answer(host.name, answer)


async def stop_job(host: "Host", job_id: str, *, grace_s: float = 10.0) -> JobInfo:
    if not 0 <= grace_s <= 3600:
        raise RemoteError(f"grace period {grace_s} s out of range; allowed 0..3600")
    raw = await host_program_client.call(host, "stop", {"root": host.root, "job_id": job_id, "grace_s": grace_s},
                                         timeout=grace_s + host.ssh.command_timeout_s)
    return JobInfo.from_answer(host.name, raw)


async def follow_file(
    host: "Host", job_id: str, name: str, offset: int = 0, *, follow: bool = True, reconnect_timeout: float | None = None
) -> AsyncIterator[tuple[int, str]]:
    """Yield ``(next_offset, line)`` from ``<job>/<name>`` (``log`` or ``events.jsonl``).

    Lines are decoded UTF-8 (undecodable bytes replaced) without the newline.
    A final line without a newline is yielded once the job has ended.
    ``reconnect_timeout`` None waits for the host as long as it keeps trying.
    """
    if offset < 0:
        raise RemoteError(f"offset {offset} out of range; allowed >= 0")
    await job_info(host, job_id)  # a clear JobNotFound before streaming
    position = offset  # start of the first line not yet yielded
    while True:
        pending = b""
        request = {"root": host.root, "job_id": job_id, "file": name, "offset": position, "follow": follow}
        try:
            async for chunk in host_program_client.stream(host, "follow", request):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    position += len(raw) + 1
                    yield position, raw.decode("utf-8", "replace")
        except HostUnreachable:
            if host.state is HostState.OFFLINE:
                raise
            await host.wait_online(reconnect_timeout)
            continue  # restart at ``position``: the partial line is read again whole
        if pending:
            if follow:
                position += len(pending)
                yield position, pending.decode("utf-8", "replace")
        return


def follow_log(host: "Host", job_id: str, offset: int = 0, *, follow: bool = True) -> AsyncIterator[tuple[int, str]]:
    """Yield ``(next_offset, line)`` for each line of the job's log from byte ``offset``.

    ``next_offset`` is where the following line starts: pass it back to resume
    after a restart.  Survives reconnects without losing or repeating lines;
    ends when the job has ended and the log is read (or at the end of the file
    when ``follow`` is False).
    """
    return follow_file(host, job_id, "log", offset, follow=follow)


# A progress event's fields as the controller uses them, each with its type; a host's event is untrusted.
EVENT_TEXT_MAX = 200


def checked_event(raw: object) -> dict[str, Any] | None:
    """A progress event from a host with only well-formed fields: ``stage`` and ``job`` short printable
    text, ``done``/``total`` integers >= 0, ``eta_s`` and ``time`` finite numbers >= 0; other keys are
    kept when they hold JSON scalars. None for anything that is not an object."""
    if not isinstance(raw, dict):
        return None
    event: dict[str, Any] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or len(key) > 64:
            continue
        if key in ("stage", "job"):
            if isinstance(value, str):
                event[key] = "".join(c if c.isprintable() else " " for c in value[:EVENT_TEXT_MAX])
        elif key in ("done", "total"):
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                event[key] = value
        elif key in ("eta_s", "eta", "eta_seconds", "time"):
            if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < float("inf"):
                event["eta_s" if key != "time" else "time"] = float(value)
        elif isinstance(value, (str, int, float, bool)) or value is None:
            event[key] = value[:EVENT_TEXT_MAX] if isinstance(value, str) else value
    return event


async def follow_events(
    host: "Host", job_id: str, offset: int = 0, *, follow: bool = True
) -> AsyncIterator[tuple[int, dict[str, Any]]]:
    """Checked ``events.jsonl`` lines as ``(next_offset, event)`` (:func:`checked_event`); lines that are not
    JSON objects are skipped."""
    async for position, line in follow_file(host, job_id, "events.jsonl", offset, follow=follow):
        try:
            event = checked_event(json.loads(line))
        except ValueError:
            continue
        if event is not None:
            yield position, event
