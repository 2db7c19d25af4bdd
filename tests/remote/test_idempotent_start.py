"""A job start whose answer is lost: the controller chose the job's id before asking, asks again with it,
and the host answers with the job it already started -- one job, never two, and never one nobody can name."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from remote import host_program, jobs
from remote.errors import RemoteError
from remote.ssh_host import SSHHost

from conftest import PYTHON

# The host's python, dropping the answer of the first `start` helper call after the job was started
# (as a link lost at that moment would): the host program runs, its answer never reaches the controller.
DROP_FIRST_START = '''#!{python}
import os, subprocess, sys
program = sys.stdin.buffer.read()
done = subprocess.run([{python!r}, *sys.argv[1:]], input=program, capture_output=True)
marker = {marker!r}
if sys.argv[1:3] == ["-", "start"] and not os.path.exists(marker):
    open(marker, "w").close()
    sys.exit(255)  # no answer at all
sys.stdout.buffer.write(done.stdout)
sys.stderr.buffer.write(done.stderr)
sys.exit(done.returncode)
'''


async def test_a_start_whose_answer_is_lost_is_asked_again_and_gives_one_job(sshd, tmp_path: Path) -> None:
    wrapper = tmp_path / "python-dropping-an-answer"
    marker = tmp_path / "dropped"
    wrapper.write_text(DROP_FIRST_START.format(python=PYTHON, marker=str(marker)))
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    config = sshd.cluster_config(python=str(wrapper))
    server = config.servers[0]
    argv = ["status", "--watch", "0.5", "--json"]  # a real long-running subcommand
    async with SSHHost(server, config.ssh) as host:
        job_id = jobs.new_job_id(argv)
        job = await jobs.start_job(host, argv, job_id=job_id)
        assert marker.exists(), "the first answer was dropped"
        assert job.job_id == job_id and job.state == "running"
        listed = [j for j in await jobs.list_jobs(host)]
        assert [j.job_id for j in listed] == [job_id]  # one job: the retry found it instead of starting another
        again = await jobs.start_job(host, argv, job_id=job_id)  # asking a third time changes nothing either
        assert again.job_id == job_id and len(await jobs.list_jobs(host)) == 1
        with pytest.raises(RemoteError, match="exists with another command"):
            await jobs.start_job(host, ["status", "--json"], job_id=job_id)
        await jobs.stop_job(host, job_id, grace_s=1)


def test_a_job_id_given_by_the_caller_is_checked(tmp_path: Path) -> None:
    with pytest.raises(host_program.HostProgramError, match="is not a job id"):
        host_program.cmd_start({"root": str(tmp_path), "argv": ["status"], "python": sys.executable, "job_id": "../../etc"})
