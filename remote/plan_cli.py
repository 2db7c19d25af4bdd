"""``epoch-cluster calibrate`` and ``epoch-cluster plan`` (registered by :mod:`remote.cli`).

``calibrate`` runs ``epoch-builder regressions calibrate --json --no-save`` on each chosen server (its own
TensorFlow and devices), checks the answer (a host's answer is untrusted: garbled or implausible rates
are refused by key, in one line) and keeps it in this workspace's ``config/training_rates.json``.
``plan`` reads those records, the epoch's batch files and certificates and the Board, and prints
``remote.plan``'s plan; it asks each server for its fingerprint to say which records are stale.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from remote.hosts import Host

from epoch_builder.regressions.calibrate import FAMILY_ORDER  # light: the standard library only
from remote.board_cli import ORDERS  # light: remote.plan.ORDERS without its imports
CALIBRATE_TIMEOUT_S = 1800.0  # a big GPU server's six families take a few minutes; a stuck one is given up
FINGERPRINT_TIMEOUT_S = 60.0
MAX_ANSWER_BYTES = 1 << 20  # a record is a few hundred bytes: more is not a record


def add_plan_commands(add: Callable[..., argparse.ArgumentParser]) -> None:
    p = add("calibrate", "measure each server's training rate per family (a short fixed benchmark on its own "
            "TensorFlow and devices) and keep it in config/training_rates.json for plan and dispatch")
    p.add_argument("--work", type=float, metavar="GFLOP", help="epoch-builder regressions calibrate --work (default its own)")
    p.add_argument("--family", action="append", choices=FAMILY_ORDER, metavar="FAMILY",
                   help=f"measure only this family (repeatable; default all: {', '.join(FAMILY_ORDER)})")
    p.add_argument("--force", action="store_true", help="measure even while a job runs there (its rate then reads low)")
    p = add("plan", "what the epoch's regression grid costs, the hours it takes on each server and the cluster's "
            "projected finish with the current dispatch (updated from observed epochs and rates)")
    p.add_argument("--order", choices=ORDERS, default=ORDERS[0],
                   help="the dispatch to project: cost (the default, longest batches to the fastest servers) or file")
    from epoch_builder.regressions.options import add_arguments

    add_arguments(p, prefix="caps the estimate as train-regression-batch's: ", only=("max_epochs",))


async def run_plan_command(args: argparse.Namespace, hosts: Sequence["Host"], local_root: Path) -> int:
    if args.command == "calibrate":
        return await _calibrate(args, hosts, local_root)
    return await _plan(args, hosts, local_root)


async def _connected(host: "Host") -> None:
    from remote.hosts import HostState

    if host.state is not HostState.ONLINE:
        await host.connect()


async def calibrate_server(host: "Host", *, work: float | None = None, families: Sequence[str] = (),
                           force: bool = False) -> dict[str, Any]:
    """Run the benchmark on ``host`` and return its checked record (nothing is written here)."""
    from epoch_builder.regressions.calibrate import check_record
    from remote import jobs
    from remote.errors import RemoteError

    await _connected(host)
    if not force:
        running = [j for j in await jobs.list_jobs(host) if j.state == jobs.RUNNING]
        if running:
            raise RemoteError(f"server {host.name}: job {running[0].job_id} runs there ({' '.join(running[0].argv)[:80]}): "
                              "a rate measured now reads low; wait for it or give --force")
    argv = [host.python, "-m", "epoch_builder.cli", "regressions", "calibrate", "--json", "--no-save",
            "--workspace", host.root] + (["--work", f"{work:g}"] if work is not None else [])
    for family in families:
        argv += ["--family", family]
    if host.config.cpus:  # measured on the cores its jobs get
        argv = ["taskset", "-c", ",".join(map(str, host.config.cpus)), *argv]
    result = await host.check_run(argv, timeout=CALIBRATE_TIMEOUT_S)
    return check_record(_last_json(result.stdout, f"server {host.name}: calibrate"), f"server {host.name}: calibrate")


async def server_fingerprint(host: "Host") -> dict[str, Any]:
    await _connected(host)
    argv = [host.python, "-m", "epoch_builder.cli", "regressions", "calibrate", "--fingerprint", "--json",
            "--workspace", host.root]
    result = await host.check_run(argv, timeout=FINGERPRINT_TIMEOUT_S)
    found = _last_json(result.stdout, f"server {host.name}: fingerprint")
    if not isinstance(found, dict):
        from remote.errors import RemoteError

        raise RemoteError(f"server {host.name}: fingerprint: expected a JSON object")
    return found


def _last_json(stdout: str, origin: str) -> Any:
    from remote.errors import RemoteError

    if len(stdout) > MAX_ANSWER_BYTES:
        raise RemoteError(f"{origin}: answer of {len(stdout):,} bytes; a record is under {MAX_ANSWER_BYTES:,}")
    try:
        return json.loads(stdout)  # the command prints one JSON document on stdout (its log goes to stderr)
    except ValueError:
        lines = stdout.strip().splitlines() or ["(nothing)"]
        raise RemoteError(f"{origin}: the answer is not JSON: {lines[0][:80]!r}") from None


async def _calibrate(args: argparse.Namespace, hosts: Sequence["Host"], local_root: Path) -> int:
    from epoch_builder.errors import EpochBuilderError
    from epoch_builder.regressions.calibrate import save_record
    from epoch_builder.workspace import Workspace
    from remote.errors import RemoteError

    ws = Workspace.open(local_root)
    results = await asyncio.gather(*(calibrate_server(h, work=args.work, families=args.family or (), force=args.force) for h in hosts),
                                   return_exceptions=True)
    answers: dict[str, Any] = {}
    failed = 0
    for host, result in zip(hosts, results):
        if isinstance(result, BaseException):
            if not isinstance(result, (RemoteError, EpochBuilderError, OSError)):
                raise result
            failed += 1
            print(f"error: {result}", file=sys.stderr)
            continue
        save_record(ws.root, ws.training_rates_file, host.name, result)
        answers[host.name] = result
        if not args.json:
            print(f"{host.name}: " + ", ".join(f"{f} {r / 1e9:.1f}" for f, r in result["rates"].items()) + " GFLOP/s"
                  + (f" ({'+'.join(result['gpus'])})" if result["gpus"] else f" ({result['cores']} cores)"))
    if args.json:
        print(json.dumps(answers))
    elif answers:
        print(f"recorded in {ws.training_rates_file}")
    return 1 if failed else 0


async def _plan(args: argparse.Namespace, hosts: Sequence["Host"], local_root: Path) -> int:
    from epoch_builder.regressions import calibrate
    from epoch_builder.workspace import Workspace
    from remote import board as boards
    from remote import plan as plans

    ws = Workspace.open(local_root)
    cluster = [h for h in hosts if h.config.is_cluster]
    records = calibrate.read_records(ws.training_rates_file)
    board = await boards.build_board(ws.root, cluster, stages=(boards.REGRESSIONS,))
    fingerprints = await asyncio.gather(*(server_fingerprint(h) for h in cluster if h.name in records),
                                        return_exceptions=True)
    stale = {h.name: calibrate.stale_reasons(records[h.name], found)
             for h, found in zip([h for h in cluster if h.name in records], fingerprints) if isinstance(found, dict)}
    plan = plans.workspace_plan(ws.root, board, [h.name for h in cluster], order=args.order, max_epochs=args.max_epochs,
                                stale=stale)
    if args.json:
        print(json.dumps(plan))
    else:
        print("\n".join(plans.format_cluster_plan(plan)))
    return 0

