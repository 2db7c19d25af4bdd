"""Bootstrap a host: push the project source, install it into the host's venv, report versions.

The source goes to the server's ``project_dir`` (default ``<root>/.project``)
with the same incremental sync as workspaces, so a second bootstrap only
sends what changed.  When the server has a ``venv`` that does not exist yet,
it is created with the server's ``python3`` (``--system-site-packages`` on
request, to reuse packages already installed system-wide).

What is installed there is what the host's own actions need: the project with
its ``dev`` extra (``epoch-cluster test`` runs pytest on the host) and the
TensorFlow build of the server's ``accelerator`` (extra ``cpu`` or ``gpu``),
every dependency at the version of the project's ``constraints.txt``, so all
hosts train with the same releases. Dependencies already at those versions
are left alone (a CUDA build is never replaced by the CPU one); only the
project itself is reinstalled. The other accelerator's TensorFlow, when
present, is uninstalled first: the two builds write the same package
directory."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from remote import sync
from remote.config import ACCELERATOR_EXTRAS
from remote.errors import RemoteError

if TYPE_CHECKING:  # pragma: no cover
    from remote.hosts import Host

CONSTRAINTS_FILE = "constraints.txt"
# The suite `epoch-cluster test` runs there reads docs/ too (the cited SEMANTICS sections).
PROJECT_PATHS = ("pyproject.toml", CONSTRAINTS_FILE, "README.md", "Makefile", "epoch_builder", "remote", "console", "tests",
                 "bench", "config", "scripts", "docs")
HOST_EXTRAS = ("dev",)  # pytest and the test tools: `epoch-cluster test` runs the suite on the host
REPORTED_PACKAGES = ("epoch-builder", "tensorflow", "tensorflow-cpu", "keras", "numpy", "pandas", "pyarrow", "numba", "psutil",
                     "pytest")
# The TensorFlow distributions that must go before an accelerator's build is installed (same package dir).
# On aarch64 the CPU build *is* ``tensorflow``, so a CPU host there keeps it.
CONFLICTING_BUILDS = {"cuda": ("tensorflow-cpu",), "cpu": ("tensorflow",)}


def project_root() -> Path:
    """The source tree this client runs from (holds pyproject.toml)."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file():
        raise RemoteError(f"{root}: no pyproject.toml; bootstrap needs the project source tree (not an installed wheel)")
    return root


async def _push_wheel(host: "Host", source: Path, target: str) -> str:
    """Build the project wheel here (where the build tools are) and push it: the host installs without building."""
    import asyncio
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="epoch-builder-wheel-") as out:
        build = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir", out,
            str(source), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        _out, err = await asyncio.wait_for(build.communicate(), 600)
        wheels = sorted(Path(out).glob("epoch_builder-*.whl"))
        if build.returncode != 0 or not wheels:
            raise RemoteError(f"{source}: building the project wheel failed: {err.decode(errors='replace').strip()[-300:]}")
        await sync.push(host, [wheels[0].name], local_root=out, remote_root=f"{target}/dist")
        return f"{target}/dist/{wheels[0].name}"


async def installed_versions(host: "Host", packages: tuple[str, ...] = REPORTED_PACKAGES) -> dict[str, Any]:
    """Python version and installed package versions (None when missing) of the host's Python."""
    code = (
        "import importlib.metadata as m, json, sys\n"
        "def v(n):\n"
        "    try:\n        return m.version(n)\n"
        "    except m.PackageNotFoundError:\n        return None\n"
        "import platform\n"
        f"print(json.dumps({{'python': sys.version.split()[0], 'machine': platform.machine(), "
        f"'packages': {{n: v(n) for n in {list(packages)!r}}}}}))\n"
    )
    result = await host.check_run([host.python, "-c", code], timeout=60)
    return json.loads(result.stdout.strip().splitlines()[-1])


async def bootstrap(
    host: "Host", *, source: Path | None = None, system_site_packages: bool = False, no_deps: bool = False,
    progress: sync.ProgressCallback | None = None, pip_timeout: float = 1800.0, base_python: str = "python3",
) -> dict[str, Any]:
    """Push the project to the host, install it into its venv/python, return ``{"pushed", "versions"}``."""
    source = source or project_root()
    paths = [p for p in PROJECT_PATHS if (source / p).exists()]
    target = host.config.project_path
    venv = host.config.venv
    if venv:  # first, so the helper that syncs can run with the venv's python
        exists = await host.run(["test", "-x", f"{venv.rstrip('/')}/bin/python"], timeout=30)
        if not exists.ok:
            argv = [base_python, "-m", "venv", *(["--system-site-packages"] if system_site_packages else []), venv]
            await host.check_run(argv, timeout=300)
    await host.check_run(["mkdir", "-p", target], timeout=30)
    report = await sync.push(host, paths, local_root=source, remote_root=target, progress=progress)
    wheel = await _push_wheel(host, source, target)
    commands = install_commands(host, wheel, f"{target}/{CONSTRAINTS_FILE}", await installed_versions(host),
                                no_deps=no_deps)
    for pip in commands:
        result = await host.run(pip, timeout=pip_timeout)
        if not result.ok:
            tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-3:]
            raise RemoteError(f"server {host.name}: `{' '.join(shlex.quote(a) for a in pip)}` failed: "
                              f"{' / '.join(tail)[:500]}")
    return {"pushed": report.to_dict(), "versions": await installed_versions(host), "commands": commands}


def install_commands(host: "Host", wheel: str, constraints: str, installed: dict[str, Any], *,
                     no_deps: bool = False) -> list[list[str]]:
    """The pip commands that install ``wheel`` on the host, in order (each one argv).

    ``installed`` is :func:`installed_versions` of the host before: the other accelerator's TensorFlow is
    uninstalled only when present (and, for a CPU host, only where the CPU build is ``tensorflow-cpu``)."""
    accelerator = host.config.accelerator
    pip = [host.python, "-m", "pip"]
    quiet = ["--quiet", "--disable-pip-version-check"]
    commands: list[list[str]] = []
    if not no_deps:
        packages = installed.get("packages", {})
        conflicting = [name for name in CONFLICTING_BUILDS[accelerator] if packages.get(name)]
        if accelerator == "cpu" and installed.get("machine") not in ("x86_64", "AMD64"):
            conflicting = []  # there the CPU build is `tensorflow` itself
        if conflicting:
            commands.append([*pip, "uninstall", "--yes", *quiet, *conflicting])
        extras = ",".join((*HOST_EXTRAS, ACCELERATOR_EXTRAS[accelerator]))
        # Dependencies at the pinned versions; ones already there at those versions are not touched.
        commands.append([*pip, "install", *quiet, "--constraint", constraints, f"{wheel}[{extras}]"])
    # The project itself, always: the wheel keeps its version number while its code changes.
    commands.append([*pip, "install", *quiet, "--no-deps", "--force-reinstall", wheel])
    return commands
