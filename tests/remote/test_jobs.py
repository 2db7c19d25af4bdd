"""Detached jobs over real SSH: start, follow, list, stop (only the job's group), faults."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from remote.errors import JobConflict, JobNotFound, RemoteError
from remote import host_program_client
from remote import jobs as remote_jobs


def job_dir(sshd, index: int, job_id: str) -> Path:
    return sshd.servers[index].root / ".jobs" / job_id


def test_the_host_program_stands_alone_and_names_the_job_variable_as_the_pipeline_does() -> None:
    """The host program runs from its source text alone (no project module to import on the host), so it
    writes the job id's variable out itself: the same name epoch_builder.events reads."""
    import ast

    from epoch_builder import events
    from remote import host_program

    assert host_program.JOB_ENV == events.JOB_ENV
    tree = ast.parse(Path(host_program.__file__).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module if node.level == 0 and node.module else "." for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom)}
    project = {name for name in imported if name.split(".")[0] in {"epoch_builder", "remote", "console", "."}}
    assert not project, f"the host program imports project modules: {sorted(project)}"


async def wait_for(predicate, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


async def test_real_pipeline_subcommand_runs_detached_and_its_log_is_followed(cluster, sshd) -> None:
    host = cluster.hosts["srv1"]
    job = await remote_jobs.start_job(host, ["candlesticks", "import", "--sample", "--interval", "30"])
    assert job.state == "running" and job.argv == ("candlesticks", "import", "--sample", "--interval", "30")
    lines = [line async for _offset, line in remote_jobs.follow_log(host, job.job_id)]
    assert any("imported 30,240 1m candles" in line for line in lines)
    log = (job_dir(sshd, 0, job.job_id) / "log").read_text().splitlines()
    assert lines == log
    done = await remote_jobs.job_info(host, job.job_id)
    assert (done.state, done.exit_code, done.label) == ("exited", 0, "exited 0")
    assert (sshd.servers[0].root / "candlesticks" / "candlesticks.parquet").is_file()
    assert json.loads((job_dir(sshd, 0, job.job_id) / "argv.json").read_text()) == list(job.argv)
    assert [j.job_id for j in await remote_jobs.list_jobs(host)] == [job.job_id]
    assert await remote_jobs.list_jobs(cluster.hosts["srv2"]) == []  # each server has its own root


async def test_one_running_job_per_host_unless_forced(cluster) -> None:
    host = cluster.hosts["srv2"]
    first = await remote_jobs.start_job(host, ["status", "--watch", "0.5"])
    with pytest.raises(JobConflict, match=rf"server srv2: job {first.job_id} is running on this host"):
        await remote_jobs.start_job(host, ["status"])
    forced = await remote_jobs.start_job(host, ["status"], force=True)
    assert forced.job_id != first.job_id
    await remote_jobs.stop_job(host, first.job_id, grace_s=2)


async def test_stop_kills_only_the_jobs_process_group(cluster, sshd) -> None:
    host = cluster.hosts["srv1"]
    decoy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # another python process
    try:
        job = await remote_jobs.start_job(host, ["status", "--watch", "0.2", "--json"])
        await wait_for(lambda: _log_has_lines(sshd, job.job_id, 2))
        stopped = await remote_jobs.stop_job(host, job.job_id, grace_s=5)
        assert stopped.state == "exited" and stopped.stopped
        assert stopped.exit_code == -signal.SIGTERM  # it ended on SIGTERM, no SIGKILL needed
        assert decoy.poll() is None, "the decoy python process must survive"
        assert _live_group_members(stopped.pid) == []  # nothing left in the job's group
        again = await remote_jobs.stop_job(host, job.job_id)  # stopping an ended job is a no-op
        assert again.label == stopped.label
    finally:
        decoy.kill()
        decoy.wait()


async def _log_has_lines(sshd, job_id: str, n: int, index: int = 0) -> bool:
    path = job_dir(sshd, index, job_id) / "log"
    return path.exists() and path.read_text().count("\n") >= n


async def test_sigkill_after_grace_when_the_job_ignores_sigterm(cluster, sshd, tmp_path: Path) -> None:
    host = cluster.hosts["srv2"]
    job = await remote_jobs.start_job(host, ["status", "--watch", "0.2", "--json"])
    await wait_for(lambda: _log_has_lines(sshd, job.job_id, 1, index=1))
    child_pid = json.loads((job_dir(sshd, 1, job.job_id) / "job.json").read_text())["child_pid"]
    # Make the job deaf to SIGTERM the way a stuck process would be: stop it (SIGSTOP), SIGTERM stays pending.
    os.kill(child_pid, signal.SIGSTOP)
    stopped = await remote_jobs.stop_job(host, job.job_id, grace_s=0.5)
    assert stopped.state == "exited" and stopped.exit_code == -signal.SIGKILL


async def test_hostile_job_arguments(cluster, sshd) -> None:
    host = cluster.hosts["srv1"]
    for bad in (["status; touch pwned"], ["$(touch pwned)"], ["../status"], []):
        with pytest.raises(RemoteError, match="not an epoch-builder subcommand"):
            await remote_jobs.start_job(host, bad)
    with pytest.raises(RemoteError, match="the job sets --workspace and --events itself"):
        await remote_jobs.start_job(host, ["status", "--workspace=/etc"])
    # The host runs the same rules itself, so a request that skips the controller's check is refused there too.
    for bad_argv in (["status", "--events", "/etc/x"], ["status; id"], "status", [["status"]]):
        with pytest.raises(RemoteError, match=r"server srv1: job (argument|command|arguments)"):
            await host_program_client.call(host, "start", {"root": host.root, "argv": bad_argv, "python": host.python})
    job = await remote_jobs.start_job(host, ["candlesticks", "import", "$(touch pwned)", "a b;touch pwned2"])
    lines = [line async for _o, line in remote_jobs.follow_log(host, job.job_id)]
    assert (await remote_jobs.job_info(host, job.job_id)).exit_code == 2  # the importer's clean error, arguments taken literally
    assert any("$(touch pwned)" in line for line in lines), lines
    assert not list(sshd.servers[0].root.rglob("pwned*"))
    with pytest.raises(JobNotFound, match="is not a job id"):
        await remote_jobs.job_info(host, "../../etc")


async def test_job_whose_processes_vanished_is_lost(cluster, sshd) -> None:
    host = cluster.hosts["srv1"]
    job = await remote_jobs.start_job(host, ["status", "--watch", "0.2"])
    os.killpg(job.pid, signal.SIGKILL)  # as if the machine crashed: no exit code gets written
    await wait_for(lambda: _state_is(host, job.job_id, "lost"))
    assert (await remote_jobs.job_info(host, job.job_id)).label == "lost"
    assert not (job_dir(sshd, 0, job.job_id) / "exit_code").exists()


async def _state_is(host, job_id: str, state: str) -> bool:
    return (await remote_jobs.job_info(host, job_id)).state == state


async def test_log_follow_survives_sshd_kill_without_gaps_or_repeats(cluster, sshd) -> None:
    host = cluster.hosts["srv1"]
    job = await remote_jobs.start_job(host, ["status", "--watch", "0.1", "--count", "50", "--json"])
    seen: list[str] = []
    offsets: list[int] = []
    restarted = False
    async for offset, line in remote_jobs.follow_log(host, job.job_id):
        seen.append(line)
        offsets.append(offset)
        if len(seen) == 8 and not restarted:
            restarted = True
            sshd.servers[0].kill()  # link and sessions die; the detached job keeps running
            await asyncio.sleep(1.0)
            assert (await asyncio.to_thread(_alive, job.pid))
            sshd.servers[0].start()
    assert restarted and host.reconnects >= 1
    final = await remote_jobs.job_info(host, job.job_id)
    assert final.label == "exited 0"
    log = (job_dir(sshd, 0, job.job_id) / "log").read_text().splitlines()
    assert seen == log and len(seen) == 50
    assert offsets == sorted(set(offsets))
    # resuming from a recorded offset gives exactly the remaining lines
    tail = [line async for _o, line in remote_jobs.follow_log(host, job.job_id, offsets[19])]
    assert tail == log[20:]


def _live_group_members(pgid: int) -> list[int]:
    """Processes of a process group that are not zombies (an unreaped zombie is not running)."""
    import psutil

    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


def _alive(pgid: int) -> bool:
    return bool(_live_group_members(pgid))


async def test_follow_events_yields_parsed_events(cluster, sshd) -> None:
    host = cluster.hosts["srv2"]
    job = await remote_jobs.start_job(host, ["status", "--watch", "0.2", "--count", "8"])
    events_file = job_dir(sshd, 1, job.job_id) / "events.jsonl"
    # A stage appends one JSON object a line (epoch_builder.events); write a few the same way.
    with open(events_file, "a") as fh:
        for i in range(3):
            fh.write(json.dumps({"job": job.job_id, "stage": "train", "done": i, "total": 3}) + "\n")
            fh.flush()
        fh.write("{not json\n")
        # What a lying host could put there: every field with the wrong type, a list, a terminal escape.
        fh.write(json.dumps({"stage": "x\x1b[2J" * 100, "done": "7", "total": -1, "eta_s": "soon",
                             "time": float("inf"), "nested": {"a": 1}, "note": "ok"}) + "\n")
        fh.write("[1, 2]\n")
    events = [event async for _o, event in remote_jobs.follow_events(host, job.job_id)]
    assert [e.get("done") for e in events] == [0, 1, 2, None]
    hostile = events[-1]
    assert set(hostile) == {"stage", "note"} and hostile["note"] == "ok"
    assert len(hostile["stage"]) == remote_jobs.EVENT_TEXT_MAX and "\x1b" not in hostile["stage"]
