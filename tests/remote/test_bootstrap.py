"""Bootstrap a host over real SSH: push the source, create a venv, install, report versions."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from remote import bootstrap
from remote.ssh_host import SSHHost

from conftest import PYTHON

BASE_PYTHON = str(Path(sys.base_prefix) / "bin" / "python3")  # the interpreter the project venv was made from


@pytest.mark.slow
async def test_bootstrap_installs_the_project_into_a_new_venv(sshd, tmp_path: Path) -> None:
    config = sshd.cluster_config(python=PYTHON)
    venv = tmp_path / "host-venv"
    server = dataclasses.replace(config.servers[0], venv=str(venv), python=f"{venv}/bin/python",
                                 project_dir=str(tmp_path / "host-src"))
    async with SSHHost(server, config.ssh) as host:
        result = await bootstrap.bootstrap(host, system_site_packages=True, no_deps=True, base_python=BASE_PYTHON)
        assert result["versions"]["packages"]["epoch-builder"] == "0.1.0"
        assert (tmp_path / "host-src" / "remote" / "agent.py").read_bytes() == (
            Path(bootstrap.__file__).with_name("agent.py").read_bytes())
        again = await bootstrap.bootstrap(host, no_deps=True)  # incremental: nothing to send the second time
        assert again["pushed"]["bytes_sent"] == 0
        check = await host.run([server.python, "-c", "import remote.agent, epoch_builder.cli; print('ok')"])
        assert check.stdout.strip() == "ok", check.stderr
