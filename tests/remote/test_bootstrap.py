"""Bootstrap a host over real SSH: push the source, create a venv, install, report versions."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from remote import bootstrap, power
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
        assert (tmp_path / "host-src" / "remote" / "host_program.py").read_bytes() == (
            Path(bootstrap.__file__).with_name("host_program.py").read_bytes())
        again = await bootstrap.bootstrap(host, no_deps=True)  # incremental: nothing to send the second time
        assert again["pushed"]["bytes_sent"] == 0
        check = await host.run([server.python, "-c", "import remote.host_program, epoch_builder.cli; print('ok')"])
        assert check.stdout.strip() == "ok", check.stderr
        # `epoch-cluster test -- ARGS` on the bootstrapped host: the test that reads docs/SEMANTICS.md passes there
        # (the docs' other test parses the CLIs, whose dependencies this no-deps venv lacks).
        output: list[str] = []
        code = await power.unit_tests(host, ["tests/test_docs.py::test_every_cited_semantics_section_exists",
                                             "-p", "no:cacheprovider"], on_output=output.append)
        assert code == 0 and any("1 passed" in line for line in output), output


# --- what bootstrap installs, per accelerator -------------------------------------------------------

def fake_host(accelerator: str, python: str = "/srv/venv/bin/python"):
    from types import SimpleNamespace

    from remote.config import ServerConfig

    return SimpleNamespace(python=python, config=ServerConfig(name="gpu1", root="/srv", accelerator=accelerator))


def test_install_commands_follow_the_accelerator_and_never_reinstall_dependencies() -> None:
    wheel, constraints = "/srv/.project/dist/epoch_builder-0.1.0-py3-none-any.whl", "/srv/.project/constraints.txt"
    pip = ["/srv/venv/bin/python", "-m", "pip"]
    quiet = ["--quiet", "--disable-pip-version-check"]
    project = [*pip, "install", *quiet, "--no-deps", "--force-reinstall", wheel]
    had_cpu_build = {"machine": "x86_64", "packages": {"tensorflow-cpu": "2.21.0", "tensorflow": None}}
    had_gpu_build = {"machine": "x86_64", "packages": {"tensorflow-cpu": None, "tensorflow": "2.21.0"}}
    fresh = {"machine": "x86_64", "packages": {}}

    # A CUDA server: the CPU build goes first (same package directory), then the [gpu] extra at the pins.
    assert bootstrap.install_commands(fake_host("cuda"), wheel, constraints, had_cpu_build) == [
        [*pip, "uninstall", "--yes", *quiet, "tensorflow-cpu"],
        [*pip, "install", *quiet, "--constraint", constraints, f"{wheel}[dev,gpu]"],
        project,
    ]
    assert bootstrap.install_commands(fake_host("cuda"), wheel, constraints, fresh)[0] == [
        *pip, "install", *quiet, "--constraint", constraints, f"{wheel}[dev,gpu]"]
    # A CPU server that held the CUDA build gets the CPU build; one that holds it already only the project.
    assert bootstrap.install_commands(fake_host("cpu"), wheel, constraints, had_gpu_build)[:2] == [
        [*pip, "uninstall", "--yes", *quiet, "tensorflow"],
        [*pip, "install", *quiet, "--constraint", constraints, f"{wheel}[dev,cpu]"],
    ]
    assert bootstrap.install_commands(fake_host("cpu"), wheel, constraints, had_cpu_build) == [
        [*pip, "install", *quiet, "--constraint", constraints, f"{wheel}[dev,cpu]"], project]
    # aarch64: `tensorflow` is the CPU build there, it stays.
    arm = {"machine": "aarch64", "packages": {"tensorflow": "2.21.0"}}
    assert bootstrap.install_commands(fake_host("cpu"), wheel, constraints, arm)[0][3] == "install"
    # --no-deps: the project alone; no --force-reinstall of anything else, ever.
    assert bootstrap.install_commands(fake_host("cuda"), wheel, constraints, had_cpu_build, no_deps=True) == [project]
    for accelerator in ("cpu", "cuda"):
        for command in bootstrap.install_commands(fake_host(accelerator), wheel, constraints, had_gpu_build):
            assert "--force-reinstall" not in command or command == project


def test_the_accelerator_key_is_checked() -> None:
    from remote.config import parse_cluster_config
    from remote.errors import ConfigError

    doc = {"servers": [{"name": "g", "host": "h", "root": "/srv", "accelerator": "cuda"}]}
    assert parse_cluster_config(doc).servers[0].accelerator == "cuda"
    assert parse_cluster_config({"servers": [{"name": "c", "host": "h", "root": "/srv"}]}).servers[0].accelerator == "cpu"
    doc["servers"][0]["accelerator"] = "rocm"
    with pytest.raises(ConfigError, match=r"cluster.json: servers\[0\].accelerator: 'rocm' not allowed; allowed: cpu, cuda"):
        parse_cluster_config(doc)


def test_the_constraints_pin_every_installed_dependency_at_its_version() -> None:
    """constraints.txt (what every host installs with) is the controller venv's own versions."""
    import importlib.metadata as metadata
    import re

    pins = {}
    for line in (bootstrap.project_root() / bootstrap.CONSTRAINTS_FILE).read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    for name in ("keras", "numpy", "pandas", "numba", "textual", "asyncssh", "pytest", "h5py"):
        assert pins[name] == metadata.version(name), f"{name}: run `make constraints`"
    assert pins["tensorflow"] == pins["tensorflow-cpu"]  # the GPU build at the CPU build's release
    assert "epoch-builder" not in pins


@pytest.mark.slow
async def test_a_cuda_server_gets_the_gpu_build_and_keeps_its_dependencies(sshd, tmp_path: Path) -> None:
    """No CUDA here: the server's python is a wrapper that records each pip command (and runs nothing for
    them); everything else runs in the real interpreter. What bootstrap sends is what is checked."""
    import json

    calls = tmp_path / "pip-calls.jsonl"
    wrapper = tmp_path / "python"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then\n'
        f"  exec {PYTHON} -c 'import json, sys; print(json.dumps(sys.argv[1:]))' \"$@\" >> {calls}\n"
        "fi\n"
        f'exec {PYTHON} "$@"\n')
    wrapper.chmod(0o755)
    config = sshd.cluster_config(python=str(wrapper))
    server = dataclasses.replace(config.servers[0], accelerator="cuda", project_dir=str(tmp_path / "host-src"))
    async with SSHHost(server, config.ssh) as host:
        result = await bootstrap.bootstrap(host)
    sent = [json.loads(line) for line in calls.read_text().splitlines()]
    assert sent == [command[1:] for command in result["commands"]]
    constraints = f"{tmp_path / 'host-src'}/constraints.txt"
    assert [c[:4] for c in sent] == [["-m", "pip", "uninstall", "--yes"], ["-m", "pip", "install", "--quiet"],
                                     ["-m", "pip", "install", "--quiet"]]
    assert sent[0][-1] == "tensorflow-cpu"  # the controller's venv, which the wrapper runs, has the CPU build
    assert sent[1][-3:] == ["--constraint", constraints, sent[2][-1] + "[dev,gpu]"]
    assert sent[2][-3:-1] == ["--no-deps", "--force-reinstall"]
    assert (tmp_path / "host-src" / "constraints.txt").read_bytes() == (
        bootstrap.project_root() / "constraints.txt").read_bytes()


@pytest.mark.slow
def test_epoch_cluster_test_passes_on_a_host_bootstrapped_from_scratch(sshd, tmp_path: Path) -> None:
    """A new venv made by bootstrap itself (no system packages): every dependency from the constraints, the
    test extras with them, and then the host's own suite runs. The server's pip shares this machine's
    download cache (its HOME is its own) so the test does not download TensorFlow again."""
    import json
    import subprocess

    cache = subprocess.run([PYTHON, "-m", "pip", "cache", "dir"], capture_output=True, text=True).stdout.strip()
    if cache:
        pip_conf = sshd.servers[0].home / ".config" / "pip" / "pip.conf"
        pip_conf.parent.mkdir(parents=True, exist_ok=True)
        pip_conf.write_text(f"[global]\ncache-dir = {cache}\n")
    doc = sshd.config_dict(python=None)
    venv = tmp_path / "host-venv"
    doc["servers"] = [dict(doc["servers"][0], venv=str(venv), project_dir=str(tmp_path / "host-src"))]
    del doc["servers"][0]["python"]
    config = tmp_path / "cluster.json"
    config.write_text(json.dumps(doc))
    cli = [PYTHON, "-m", "remote.cli", "--config", str(config)]

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([*cli, *args], capture_output=True, text=True, timeout=timeout)

    before = run("test", "--server", "srv1", "--", "tests/test_storage.py")
    assert before.returncode != 0
    assert "no test suite at" in before.stderr and "epoch-cluster bootstrap --server srv1" in before.stderr, before.stderr

    done = run("bootstrap", "--server", "srv1", timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "pytest" in done.stdout and "tensorflow-cpu" in done.stdout, done.stdout
    suite = run("test", "--server", "srv1", "--", "-p", "no:cacheprovider", "tests/test_storage.py")
    assert suite.returncode == 0, suite.stdout[-2000:] + suite.stderr[-2000:]
    assert any(line.startswith("srv1: ") and " passed" in line for line in suite.stdout.splitlines()), suite.stdout

    # A host whose python lost pytest says so instead of exiting 1 in silence.
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "uninstall", "--yes", "--quiet", "pytest"], check=True,
                   capture_output=True)
    broken = run("test", "--server", "srv1", "--", "tests/test_storage.py")
    assert broken.returncode != 0
    assert f"{venv}/bin/python has no pytest; run `epoch-cluster bootstrap --server srv1`" in broken.stderr, broken.stderr
