"""``epoch-cluster board`` and ``epoch-cluster dispatch`` (registered by :mod:`remote.cli`)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from remote.hosts import Host

STAGES = ("regressions", "profitable-configs")
ENGINES = ("ssh", "ray")  # remote.dispatch.ENGINES (checked equal in the tests; this module stays import-light)
ORDERS = ("cost", "file")  # remote.plan.ORDERS, the first the default (checked equal in the tests, likewise)


def add_board_commands(add: Callable[..., argparse.ArgumentParser]) -> None:
    """``add`` (from :func:`remote.cli.build_parser`) gives each command --config, --workspace and --json;
    dispatch's --json prints the final board as JSON (its progress lines go to stderr then)."""
    p = add("board", "every batch of the epoch with its state (pending, pushed, running, finished, failed, done)")
    p.add_argument("--stage", choices=STAGES, help="only this stage's batches")
    p = add("dispatch", "run a stage's pending batches on idle is_cluster servers until all are done")
    p.add_argument("--stage", required=True, choices=STAGES)
    p.add_argument("--engine", choices=ENGINES, default="ssh",
                   help="ssh: the cluster file's is_cluster servers (default); ray: a Ray cluster (pip install "
                        "'epoch-builder[ray]'; no cluster file needed)")
    p.add_argument("--address", metavar="ADDRESS",
                   help="ray: the cluster to join (host:port of `ray start --head`, or ray://...; default: "
                        "$RAY_ADDRESS, else the cluster this machine is part of)")
    p.add_argument("--cpus-per-batch", type=float, metavar="N",
                   help="ray: CPUs a batch holds (default 1; profitable-configs: --workers when given)")
    p.add_argument("--gpus-per-batch", type=float, default=0.0, metavar="F",
                   help="ray, regressions: GPUs a batch holds; a fraction (0.25) lets batches share a GPU (default 0)")
    p.add_argument("--ray-wait", type=float, default=600.0, metavar="SECONDS",
                   help="ray: give up after waiting this long for the cluster to connect, for its checkpoint store, or "
                        "for a node that can run a batch while none runs (default 600); what it waits for is said sooner")
    p.add_argument("--order", choices=ORDERS, default=ORDERS[0],
                   help="regressions: which pending batch a free server takes: cost (default: the longest batches to the "
                        "servers that finish them first, by epoch-cluster calibrate's rates; see epoch-cluster plan) or "
                        "file (the next batch file)")
    p.add_argument("--interval", type=float, default=5.0, metavar="SECONDS", help="seconds between checks (default 5)")
    p.add_argument("--max-failures", type=int, default=2, metavar="N",
                   help="failures of a batch on one server before it moves to another (default 2)")
    p.add_argument("--stall", type=float, default=120.0, metavar="SECONDS",
                   help="abandon (and later retry) a push or pull that moved nothing for this long (default 120)")
    p.add_argument("--reassign-after", type=float, metavar="SECONDS",
                   help="move a batch whose server has been unreachable this long to another server "
                        "(default: wait for that server; its job may still be running)")
    from epoch_builder.regressions.options import add_arguments

    add_arguments(p, prefix="regressions: ")  # train-regression-batch's options, from its one table
    p.add_argument("--workers", type=int, metavar="N", help="profitable-configs: find-profitable-configs --workers")
    p.add_argument("--forever", action="store_true", help="keep watching after every batch is done")


def _stages(stage: str | None) -> tuple[str, ...]:
    return (stage,) if stage else tuple(STAGES)


async def run_board_command(args: argparse.Namespace, hosts: Sequence["Host"], local_root: Path) -> int:
    from remote import board as boards

    try:
        if args.command == "board":
            board = await boards.build_board(local_root, hosts, stages=_stages(args.stage))
            print(json.dumps(board.to_dict(local_root)) if args.json else boards.format_board(board, local_root))
            return 0
        return await _dispatch(args, hosts, local_root)
    finally:
        for host in hosts:
            await host.close()


def _dump_tasks() -> None:
    """Each task's whole await chain (``Task.print_stack`` shows only its outermost frame)."""
    import asyncio

    for task in asyncio.all_tasks():
        print(f"task {task.get_name()}:", file=sys.stderr)
        awaitable: Any = task.get_coro()
        while awaitable is not None:
            frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None) or getattr(awaitable, "ag_frame", None)
            if frame is not None:
                print(f"  {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}", file=sys.stderr)
            else:
                print(f"  waits on {awaitable!r}"[:300], file=sys.stderr)
            awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "gi_yieldfrom", None) or getattr(awaitable, "ag_await", None)
    sys.stderr.flush()


def dispatch_options(args: argparse.Namespace) -> Any:
    from epoch_builder.regressions.options import TrainingOptions
    from remote.dispatch import DispatchOptions

    return DispatchOptions(stage=args.stage, interval_s=args.interval, max_failures=args.max_failures, stall_s=args.stall,
                           reassign_after_s=args.reassign_after,
                           training=TrainingOptions.from_args(args), workers=args.workers,
                           until_done=not args.forever, engine=args.engine, ray_address=args.address,
                           cpus_per_batch=args.cpus_per_batch, gpus_per_batch=args.gpus_per_batch,
                           ray_wait_s=args.ray_wait, order=args.order)


async def run_ray_dispatch(args: argparse.Namespace, local_root: Path) -> int:
    """``dispatch --engine ray``: the stage's batches on a Ray cluster (remote.ray_engine)."""
    from remote.ray_engine import RayDispatcher

    return await _drive(args, RayDispatcher(local_root, dispatch_options(args), log=_log_of(args)), local_root)


def _log_of(args: argparse.Namespace) -> Callable[[Any], None]:
    return (lambda m: print(m, file=sys.stderr, flush=True)) if args.json else (lambda m: print(m, flush=True))


async def _dispatch(args: argparse.Namespace, hosts: Sequence["Host"], local_root: Path) -> int:
    from remote.dispatch import Dispatcher

    return await _drive(args, Dispatcher(hosts, local_root, dispatch_options(args), _log_of(args)), local_root)


async def _drive(args: argparse.Namespace, dispatcher: Any, local_root: Path) -> int:
    import asyncio

    from remote import board as boards

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # stop between ticks; running jobs keep running
        loop.add_signal_handler(sig, dispatcher.stop)
    loop.add_signal_handler(signal.SIGUSR1, _dump_tasks)  # `kill -USR1 PID`: where each task waits
    board = await dispatcher.run()
    if args.json:
        print(json.dumps(board.to_dict(local_root)))
    else:
        print(boards.format_board(board, local_root))
    return 0 if board.stage_done(args.stage) or args.forever else 1
