"""`epoch-cluster`: every console action, headless.

    epoch-cluster [--config FILE] [--workspace DIR] [--json] COMMAND [--server NAME|all] ...

``--config``, ``--workspace`` and ``--json`` go before or after COMMAND.
Exit codes: 0 success everywhere; 1 the action failed on at least one
server (unreachable, refused, command failed); 2 bad usage or config.  For
``test`` the exit code is pytest's.  ``--json`` prints one JSON document
(or one object a line for streams).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from epoch_builder.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE  # the same statuses in all three programs
from remote import jobs, status
from remote.errors import RemoteError
from remote.sync import PULL_GROUPS, PUSH_GROUPS

EXIT_STATUS_HELP = ("exit status: 0 ok; 1 failed on at least one server (unreachable, refused, command failed); "
                    "2 bad usage or config (unknown option or server, invalid cluster file); "
                    "test: pytest's exit status; 130 interrupted")

# Options every command takes, declared once as data: (flags, argparse keywords, prints-JSON-only).
# Each goes on the top-level parser and again on every subparser so it may come before or after
# COMMAND; on subparsers its default is SUPPRESS, else their default would overwrite the value given
# before COMMAND.
GLOBAL_OPTIONS: tuple[tuple[tuple[str, ...], dict[str, Any], bool], ...] = (
    (("--config",), {"metavar": "FILE", "help": "cluster file (default: $EPOCH_CLUSTER_CONFIG, else config/cluster.json "
                                                "of the workspace; neither: localhost alone)"}, False),
    (("--workspace",), {"metavar": "DIR", "dest": "workspace",
                        "help": "this machine's workspace (default: $EPOCH_BUILDER_HOME or the current directory)"}, False),
    # The former name of --workspace, kept so existing scripts run; not shown in the help.
    (("--local-root",), {"metavar": "DIR", "dest": "workspace", "help": argparse.SUPPRESS}, False),
    (("--json",), {"action": "store_true", "help": "JSON output"}, True),
)


def _add_global_options(parser: argparse.ArgumentParser, *, after_command: bool, json_output: bool = True) -> None:
    for flags, options, json_only in GLOBAL_OPTIONS:
        if json_only and not json_output:
            continue
        parser.add_argument(*flags, **({**options, "default": argparse.SUPPRESS} if after_command else options))


def build_parser() -> argparse.ArgumentParser:
    from epoch_builder import __version__

    parser = argparse.ArgumentParser(prog="epoch-cluster", description="Drive the Epoch Builder cluster from a shell.",
                                     epilog=EXIT_STATUS_HELP)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    from epoch_builder.commands import add_completion_option

    add_completion_option(parser)
    _add_global_options(parser, after_command=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help: str, *, server: str | None = "all", aliases: Sequence[str] = (),
            json_output: bool = True) -> argparse.ArgumentParser:
        """A subcommand; ``json_output=False`` for the ones whose output is a terminal stream (no ``--json``)."""
        p = sub.add_parser(name, help=help, aliases=list(aliases), epilog=EXIT_STATUS_HELP)
        _add_global_options(p, after_command=True, json_output=json_output)
        if server is not None:
            p.add_argument("--server", "-s", default=server, required=server == "", metavar="NAME|all",
                           help="server name, comma list or 'all'" + (f" (default {server})" if server else ""))
        p.set_defaults(command=name)
        return p

    p = add("status", "one status snapshot per server (or --watch)")
    p.add_argument("--watch", type=float, metavar="SECONDS", help="stream snapshots every SECONDS")
    p.add_argument("--count", type=int, metavar="N", help="with --watch: stop after N snapshots per server")
    add("jobs", "list jobs per server")
    p = add("run", "start an epoch-builder subcommand as a detached job", server="", aliases=["start"])
    p.add_argument("--force", action="store_true", help="start even if a job is running there")
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- SUBCOMMAND ARGS", help="epoch-builder arguments")
    p = add("step", "run a step that combines the cluster's results (initialize-prediction-models, "
            "build-prediction-models, export-epoch, verify-epoch) on one server: push exactly what it reads from this "
            "workspace, run it there, pull back what it wrote (without this, run those steps here with epoch-builder)",
            server="")
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- SUBCOMMAND ARGS", help="epoch-builder arguments")
    p = add("stop", "stop a job (SIGTERM its process group, SIGKILL after --grace)", server="")
    p.add_argument("job_id")
    p.add_argument("--grace", type=float, default=10.0, metavar="SECONDS")
    p = add("logs", "print a job's log (or events)", server="")
    p.add_argument("job_id")
    p.add_argument("-f", "--follow", action="store_true", help="keep following until the job ends")
    p.add_argument("--offset", type=int, default=0, help="start at this byte offset")
    p.add_argument("--events", action="store_true", help="the JSON-lines events instead of the log")
    p = add("push", "send changed files of a group to servers")
    p.add_argument("group", choices=sorted(PUSH_GROUPS))
    p = add("pull", "fetch changed files of a group from servers")
    p.add_argument("group", choices=sorted(PULL_GROUPS))
    for name in ("reboot", "shutdown"):
        p = add(name, f"{name} a server (its configured command)", server="")
        p.add_argument("--yes", action="store_true", help="required: confirm")
    p = add("install-key", "append a public key to the server's authorized_keys (idempotent)", server="")
    p.add_argument("--key", default="~/.ssh/id_ed25519.pub", help="public key file (default ~/.ssh/id_ed25519.pub)")
    p.add_argument("--password", action="store_true", help="ask for the login password (first contact)")
    p = add("connect", "open an interactive ssh shell in the server's workspace", server="")
    p.add_argument("--print", action="store_true", help="print the ssh command instead of running it")
    p = add("test", "run the project's test suite on a server", server="", aliases=["unit-tests"], json_output=False)
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="arguments for pytest (after --)")
    p = add("bootstrap", "push the project to servers and install it into their venv")
    p.add_argument("--system-site-packages", action="store_true", help="create the venv with system site packages")
    p.add_argument("--no-deps", action="store_true", help="install the project only (dependencies already there)")
    from remote.board_cli import add_board_commands

    add_board_commands(add)
    from remote.plan_cli import add_plan_commands

    add_plan_commands(add)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    from epoch_builder.errors import EpochBuilderError
    from remote.terminal import EscapingStream

    # Whatever a host sent reaches this terminal through these: its control characters shown, never obeyed.
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = EscapingStream(sys.stdout), EscapingStream(sys.stderr)
    try:
        return _main(args, EpochBuilderError)
    finally:
        sys.stdout, sys.stderr = saved


def _main(args: argparse.Namespace, EpochBuilderError: type[Exception]) -> int:
    try:
        if args.command == "connect":
            return _connect(args)
        return asyncio.run(_dispatch(args))
    except BrokenPipeError:
        from epoch_builder.output import reader_went_away

        return reader_went_away()
    except RemoteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED if not type(exc).__name__ in ("ConfigError", "UnsafePath") else EXIT_USAGE
    except EpochBuilderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _load(args: argparse.Namespace):
    from remote.config import load_cluster_config

    return load_cluster_config(args.config, local_root=args.workspace)


def _local_root(args: argparse.Namespace) -> Path:
    return Path(args.workspace or os.environ.get("EPOCH_BUILDER_HOME") or ".").expanduser().resolve()


def _connect(args: argparse.Namespace) -> int:
    from remote.power import connect_argv, exec_connect

    config = _load(args)
    server = config.server(args.server)
    if args.print:
        print(json.dumps(connect_argv(server, config.ssh)) if args.json else " ".join(connect_argv(server, config.ssh)))
        return EXIT_OK
    exec_connect(server, config.ssh)
    return EXIT_OK  # not reached


def _emit(args: argparse.Namespace, obj: Any, text: str) -> None:
    print(json.dumps(obj, default=str) if args.json else text, flush=True)


def _strip_dashdash(argv: list[str]) -> list[str]:
    return argv[1:] if argv and argv[0] == "--" else argv


async def _dispatch(args: argparse.Namespace) -> int:
    from remote.cluster import Cluster

    if args.command == "dispatch" and args.engine == "ray":  # Ray places the work: no cluster file needed
        from remote.board_cli import run_ray_dispatch

        return await run_ray_dispatch(args, _local_root(args))
    config = _load(args)
    cluster = Cluster(config)
    selected = [h.name for h in cluster.select(args.server)]
    try:
        if args.command == "install-key":
            return await _install_key(args, config)
        if args.command in ("board", "dispatch"):  # they reach each host themselves: one being down is a board state
            from remote.board_cli import run_board_command

            return await run_board_command(args, cluster.select(args.server), _local_root(args))
        if args.command in ("calibrate", "plan"):  # they reach each host themselves, and say which did not answer
            from remote.plan_cli import run_plan_command

            return await run_plan_command(args, cluster.select(args.server), _local_root(args))
        failures: dict[str, str] = {}
        connected = await cluster.connect_all(args.server)
        for name, exc in connected.items():
            if exc is not None:
                failures[name] = str(exc)
        hosts = [cluster.hosts[n] for n in selected if connected.get(n) is None]
        handler = globals()[f"_cmd_{args.command.replace('-', '_')}"]
        code = await handler(args, hosts, failures)
        if failures:
            for name, message in failures.items():
                print(f"error: {message if message.startswith('server ') else f'server {name}: {message}'}", file=sys.stderr)
            return code if code not in (None, EXIT_OK) else EXIT_FAILED
        return code or EXIT_OK
    finally:
        await cluster.close()


async def _each(hosts, failures: dict[str, str], action) -> dict[str, Any]:
    results = await asyncio.gather(*(action(h) for h in hosts), return_exceptions=True)
    ok = {}
    for host, result in zip(hosts, results):
        if isinstance(result, BaseException):
            if not isinstance(result, (RemoteError, OSError)):
                raise result
            failures[host.name] = str(result)
        else:
            ok[host.name] = result
    return ok


async def _cmd_status(args, hosts, failures) -> int:
    if args.watch is None:
        snaps = await _each(hosts, failures, lambda h: status.status(h))
        from epoch_builder.status import describe

        _emit(args, snaps, "\n".join(f"{name}: {describe(s)}" for name, s in snaps.items()))
        return EXIT_OK
    from epoch_builder.status import describe

    async def watch(host) -> None:
        seen = 0
        async for snap in status.status_stream(host, args.watch):
            text = f"{host.name}: {describe(snap)}" if snap.get("state") == "online" else f"{host.name}: {snap['state']}"
            _emit(args, snap, text)
            seen += 1
            if args.count and seen >= args.count:
                return

    await _each(hosts, failures, watch)
    return EXIT_OK


async def _cmd_jobs(args, hosts, failures) -> int:
    listed = await _each(hosts, failures, lambda h: jobs.list_jobs(h))
    if args.json:
        _emit(args, {name: [j.to_dict() for j in js] for name, js in listed.items()}, "")
    else:
        for name, js in listed.items():
            for j in js:
                damaged = j.extra.get("damaged")
                print(f"{name}\t{j.job_id}\t{j.label}\t{' '.join(j.argv)}" + (f"\t({damaged})" if damaged else ""))
    return EXIT_OK


async def _cmd_run(args, hosts, failures) -> int:
    argv = _strip_dashdash(args.argv)
    if not argv:
        raise RemoteError("run: give the epoch-builder subcommand after --, e.g. epoch-cluster run -s gpu-1 -- status")
    started = await _each(hosts, failures, lambda h: jobs.start_job(h, argv, force=args.force))
    _emit(args, {n: j.to_dict() for n, j in started.items()}, "\n".join(f"{n}\t{j.job_id}\t{j.label}" for n, j in started.items()))
    return EXIT_OK


async def _cmd_step(args, hosts, failures) -> int:
    from remote import steps

    argv = _strip_dashdash(args.argv)
    if not argv:
        raise RemoteError("step: give the step after --, e.g. epoch-cluster step -s gpu-1 -- build-prediction-models "
                          f"--top 100; steps: {', '.join(steps.COMBINING_COMMANDS)}")
    if len(hosts) + len(failures) != 1:
        raise RemoteError("step: --server names one server (its output is pulled back into this workspace)")
    root = _local_root(args)
    runs = await _each(hosts, failures, lambda h: steps.run_on_server(h, argv, root))
    for run in runs.values():
        _emit(args, {"server": run.job.server, "job": run.job.to_dict(), "pushed": run.pushed.to_dict(),
                     "pulled": run.pulled.to_dict() if run.pulled else None}, run.account())
    return EXIT_OK if runs and all(run.pulled is not None for run in runs.values()) else EXIT_FAILED


async def _cmd_stop(args, hosts, failures) -> int:
    stopped = await _each(hosts, failures, lambda h: jobs.stop_job(h, args.job_id, grace_s=args.grace))
    _emit(args, {n: j.to_dict() for n, j in stopped.items()}, "\n".join(f"{n}\t{j.job_id}\t{j.label}" for n, j in stopped.items()))
    return EXIT_OK


async def _cmd_logs(args, hosts, failures) -> int:
    if len(hosts) != 1:
        if not failures:
            raise RemoteError("logs: name exactly one server with --server")
        return EXIT_FAILED
    host = hosts[0]
    if args.events:
        async for offset, event in jobs.follow_events(host, args.job_id, args.offset, follow=args.follow):
            print(json.dumps(event) if not args.json else json.dumps({"offset": offset, "event": event}), flush=True)
    else:
        async for offset, line in jobs.follow_log(host, args.job_id, args.offset, follow=args.follow):
            print(json.dumps({"offset": offset, "line": line}) if args.json else line, flush=True)
    return EXIT_OK


def _progress_printer(args):
    if args.json or not sys.stderr.isatty():
        return None

    def show(p) -> None:
        print(f"\r{p.server} {p.direction} {p.files_done}/{p.files_total} files {p.bytes_done}/{p.bytes_total} B",
              end="", file=getattr(sys.stderr, "unescaped", sys.stderr), flush=True)  # our own \r, not a host's

    return show


async def _cmd_push(args, hosts, failures) -> int:
    from remote import sync

    root = _local_root(args)
    reports = await _each(hosts, failures, lambda h: sync.push(h, args.group, local_root=root, progress=_progress_printer(args)))
    _emit(args, {n: r.to_dict() for n, r in reports.items()},
          "\n".join(f"{n}: sent {r.files_sent} of {r.files_checked} files, {r.bytes_sent} bytes in {r.seconds:.2f} s"
                    + (f"; not sent, names with control characters: {', '.join(repr(p) for p in r.unsendable[:5])}"
                       if r.unsendable else "") for n, r in reports.items()))
    return EXIT_OK


async def _cmd_pull(args, hosts, failures) -> int:
    from remote import sync

    root = _local_root(args)
    reports = await _each(hosts, failures, lambda h: sync.pull(h, args.group, local_root=root, progress=_progress_printer(args)))
    _emit(args, {n: r.to_dict() for n, r in reports.items()},
          "\n".join(f"{n}: fetched {r.files_sent} of {r.files_checked} files, {r.bytes_sent} bytes in {r.seconds:.2f} s"
                    + (f"; refused {len(r.refused)} path(s) outside {args.group}: {', '.join(r.refused[:5])}"
                       if r.refused else "") for n, r in reports.items()))
    # A host that offers files outside the group is lying or compromised: say so in the exit status too.
    return EXIT_FAILED if any(r.refused for r in reports.values()) else EXIT_OK


async def _power(args, hosts, failures, action: str) -> int:
    from remote import power

    if not args.yes:
        raise RemoteError(f"{action}: add --yes to confirm ({', '.join(h.name for h in hosts)})")
    done = await _each(hosts, failures, lambda h: power.power(h, action))
    _emit(args, {n: {"sent": True, "exit_status": r.exit_status} for n, r in done.items()},
          "\n".join(f"{n}: {action} sent" for n in done))
    return EXIT_OK


async def _cmd_reboot(args, hosts, failures) -> int:
    return await _power(args, hosts, failures, "reboot")


async def _cmd_shutdown(args, hosts, failures) -> int:
    return await _power(args, hosts, failures, "shutdown")


async def _install_key(args, config) -> int:
    from remote import power

    password = getpass.getpass(f"password for {args.server}: ") if args.password else None
    failures = 0
    for server in config.select(args.server):
        try:
            added = await power.install_key(server, config.ssh, args.key, password=password)
        except RemoteError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failures += 1
            continue
        _emit(args, {"server": server.name, "added": added}, f"{server.name}: {'key added' if added else 'key already installed'}")
    return EXIT_FAILED if failures else EXIT_OK


async def _cmd_test(args, hosts, failures) -> int:
    from remote import power

    codes = await _each(hosts, failures, lambda h: power.unit_tests(
        h, _strip_dashdash(args.pytest_args), on_output=lambda line, n=h.name: print(f"{n}: {line}", flush=True)))
    return max(codes.values(), default=EXIT_FAILED)


async def _cmd_bootstrap(args, hosts, failures) -> int:
    from remote import bootstrap

    results = await _each(hosts, failures, lambda h: bootstrap.bootstrap(
        h, system_site_packages=args.system_site_packages, no_deps=args.no_deps))
    _emit(args, results, "\n".join(
        f"{n}: python {r['versions']['python']}; " + ", ".join(f"{k} {v}" for k, v in r["versions"]["packages"].items() if v)
        for n, r in results.items()))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
