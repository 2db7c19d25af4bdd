"""Bootstrap a host: push the project source, install it into the host's venv, report versions.

The source goes to the server's ``project_dir`` (default ``<root>/.project``)
with the same incremental sync as workspaces, so a second bootstrap only
sends what changed.  When the server has a ``venv`` that does not exist yet,
it is created with the server's ``python3`` (``--system-site-packages`` on
request, to reuse packages already installed system-wide)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from remote import sync
from remote.errors import RemoteError

if TYPE_CHECKING:  # pragma: no cover
    from remote.hosts import Host

PROJECT_PATHS = ("pyproject.toml", "README.md", "Makefile", "epoch_builder", "remote", "console", "tests", "bench", "config")
REPORTED_PACKAGES = ("epoch-builder", "tensorflow", "tensorflow-cpu", "keras", "numpy", "pandas", "pyarrow", "numba", "psutil")


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
        f"print(json.dumps({{'python': sys.version.split()[0], 'packages': {{n: v(n) for n in {list(packages)!r}}}}}))\n"
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
    pip = [host.python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--force-reinstall",
           *(["--no-deps"] if no_deps else []), wheel]
    result = await host.run(pip, timeout=pip_timeout)
    if not result.ok:
        tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-3:]
        raise RemoteError(f"server {host.name}: `{' '.join(shlex.quote(a) for a in pip)}` failed: {' / '.join(tail)[:500]}")
    return {"pushed": report.to_dict(), "versions": await installed_versions(host)}
