"""The epoch's plan on a cluster: per family and in total, the work done and left, the hours it takes on
each server, and the projected finish of the epoch with the current dispatch.

Inputs: the epoch's work (``epoch_builder.regressions.plan.epoch_work``: the cost model over its batch
files, with the epochs observed in its certificates), the Board (which batch is running where, since
when, how far), and each server's rate per family: its calibration (``epoch-cluster calibrate``), refined
by the rates observed in the batches it finished (their certified epochs' FLOP over the job's wall
time), else the stated assumption.  The finish is ``remote.schedule.simulate`` of the pending batches
from now, with each running batch holding its server until its expected end.  ``epoch-cluster plan``,
the console's Board header and cost-aware dispatch all read it from here.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from epoch_builder.regressions import calibrate
from epoch_builder.regressions.plan import BatchWork, EpochWork, duration, epoch_work, family_rows, flop_text, format_rows
from remote import board as boards
from remote import schedule

if TYPE_CHECKING:  # pragma: no cover
    from remote.board import Board

COST, FILE = "cost", "file"
ORDERS = {COST: schedule.COST_AWARE, FILE: schedule.FILE_ORDER}  # --order: the dispatch policy
DEFAULT_ORDER = COST
NOT_STARTED = (boards.PENDING, boards.FAILED, boards.PUSHED)  # batches the dispatcher will still start


def batch_key(name: str) -> str:
    return f"{boards.REGRESSIONS}:{name}"


def observed_rates(work: EpochWork, board: Board) -> dict[str, dict[str, float]]:
    """Per server and family, FLOP/s measured on batches it finished in one job: the FLOP of the epochs its
    models really trained (their certificates) over the job's wall time.  A batch resumed across jobs is
    left out: its last job did only part of it."""
    by_name = {b.name: b for b in work.batches}
    flop: dict[tuple[str, str], float] = {}
    seconds: dict[tuple[str, str], float] = {}
    for row in board.stage_rows(boards.REGRESSIONS):
        batch = by_name.get(row.spec.name)
        if row.state != boards.DONE or batch is None or len(row.jobs) != 1 or row.host is None:
            continue
        job = next((j for j in board.host_jobs.get(row.host, []) if j.job_id == row.job_id), None)
        if job is None or not job.started_at or not job.ended_at or job.ended_at <= job.started_at:
            continue
        if any(c.id not in work.certified for c in batch.configs):
            continue
        done = sum(c.flop + (work.certified[c.id] - c.epochs) * c.epoch_flop for c in batch.configs)
        key = (row.host, batch.family)
        flop[key] = flop.get(key, 0.0) + done
        seconds[key] = seconds.get(key, 0.0) + (job.ended_at - job.started_at)
    rates: dict[str, dict[str, float]] = {}
    for (server, family), total in flop.items():
        rate = total / seconds[(server, family)]
        low, high = calibrate.RATE_RANGE
        if low <= rate <= high:
            rates.setdefault(server, {})[family] = rate
    return rates


def cluster_servers(names: Sequence[str], records: Mapping[str, Mapping[str, Any]],
                    observed: Mapping[str, Mapping[str, float]]) -> tuple[list[schedule.Server], dict[str, str]]:
    """Each server with its rates (observed over calibrated over assumed, per family) and their source."""
    servers, sources = [], {}
    for name in names:
        rates, source = calibrate.rates_of(records, name)
        seen = observed.get(name, {})
        if seen:
            rates.update(seen)
            source += f"; observed for {', '.join(sorted(seen))}"
        servers.append(schedule.Server(name, rates))
        sources[name] = source
    return servers, sources


def running_until(batch: BatchWork, row: Any, server: schedule.Server, now: float) -> float:
    """When a running batch frees its server: its job's own ETA, else its remaining work at the server's rate."""
    if row.eta_s is not None and row.eta_s >= 0:
        return now + float(row.eta_s)
    rate = server.rate(batch.family)
    return now + (batch.remaining_flop / rate if rate else 0.0)


def cluster_plan(work: EpochWork, board: Board, server_names: Sequence[str],
                 records: Mapping[str, Mapping[str, Any]], *, order: str = DEFAULT_ORDER,
                 stale: Mapping[str, Sequence[str]] | None = None,
                 now: float | None = None) -> dict[str, Any]:
    """The plan as a JSON-ready document (its shape is ``epoch-cluster plan --json``'s)."""
    now = time.time() if now is None else now
    observed = observed_rates(work, board)
    servers, sources = cluster_servers(server_names, records, observed)
    by_server = {s.name: s for s in servers}
    rows = family_rows(work)
    for row in rows:
        family = row["family"]
        mine = [b for b in work.batches if family in ("total", b.family)]
        row["hours_by_server"] = {}
        for server in servers:
            seconds = [b.remaining_flop / server.rate(b.family) if server.rate(b.family) else float("inf") for b in mine]
            row["hours_by_server"][server.name] = sum(seconds) / 3600 if all(s < float("inf") for s in seconds) else None
    board_rows = {r.spec.name: r for r in board.stage_rows(boards.REGRESSIONS)}
    busy: dict[str, float] = {}
    running, pending = [], []
    for batch in work.batches:
        row = board_rows.get(batch.name)
        state = row.state if row is not None else boards.PENDING
        if state == boards.RUNNING and row is not None and row.host in by_server:
            end = running_until(batch, row, by_server[row.host], now)
            busy[row.host] = max(busy.get(row.host, now), end)
            running.append({"batch": batch.name, "server": row.host, "expected_end": end})
        elif state in NOT_STARTED and batch.remaining_flop > 0:
            pending.append(schedule.Batch(batch.name, batch.family, batch.remaining_flop))
    policy = ORDERS[order]
    relative = {name: end - now for name, end in busy.items()}
    if servers:
        simulation = schedule.simulate(pending, servers, policy, busy_until=relative)
        bound = schedule.lower_bound(pending, servers) if pending else None
        finish_s = simulation.makespan
        plan_rows = [{"batch": a.batch.name, "server": a.server, "start": now + a.start, "end": now + a.end}
                     for a in simulation.assignments]
    else:
        bound, finish_s, plan_rows = None, None, []
    return {
        "epoch": work.epoch_id, "now": now, "order": order, "families": rows,
        "servers": [{"name": s.name, "rates": dict(s.rates), "source": sources[s.name],
                     "stale": list((stale or {}).get(s.name, []))} for s in servers],
        "running": running, "pending_batches": len(pending),
        "remaining_hours": None if finish_s is None else finish_s / 3600,
        "finish_at": None if finish_s is None else now + finish_s,
        "lower_bound_hours": None if bound is None else max(bound.value, max(relative.values(), default=0.0)) / 3600,
        "assignments": plan_rows,
    }


def workspace_plan(root: Any, board: Board, server_names: Sequence[str], *, order: str = DEFAULT_ORDER,
                   max_epochs: int | None = None, stale: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """``cluster_plan`` of the workspace at ``root``: its active epoch's work and its servers' rate records."""
    from epoch_builder.workspace import Workspace

    ws = Workspace(root)
    return cluster_plan(epoch_work(ws, max_epochs=max_epochs), board, server_names,
                        calibrate.read_records(ws.training_rates_file), order=order, stale=stale)


def format_cluster_plan(plan: Mapping[str, Any]) -> list[str]:
    """The plan for a terminal of 80 columns: the families with their remaining hours on each server (up to
    four columns: the rest in --json), the servers' rate sources, the projected finish."""
    names = [s["name"] for s in plan["servers"]]
    columns = [(name, f"hours:{name}") for name in names[:4]]
    rows = [{**row, **{f"hours:{n}": h for n, h in row["hours_by_server"].items()}} for row in plan["families"]]
    lines = [f"epoch {plan['epoch']}: remaining regression work, and hours left on each server alone"]
    lines += format_rows(rows, columns)
    if len(names) > 4:
        lines.append(f"(+{len(names) - 4} more servers: --json)")
    for server in plan["servers"]:
        stale = f"; STALE ({', '.join(server['stale'])}): rerun epoch-cluster calibrate" if server["stale"] else ""
        lines += textwrap.wrap(f"{server['name']}: {server['source']}{stale}", 80, subsequent_indent="  ")
    for run in plan["running"]:
        lines.append(f"running: {run['batch']} on {run['server']}, ends in {duration(max(0.0, run['expected_end'] - plan['now']))}")
    if plan["finish_at"] is None:
        lines.append("no servers to plan for")
    elif plan["remaining_hours"] == 0:
        lines.append("every regression batch is done")
    else:
        finish = time.strftime("%Y-%m-%d %H:%M", time.localtime(plan["finish_at"]))
        lines.append(f"{plan['pending_batches']} batch(es) to start; with --order {plan['order']} training ends in "
                     f"{duration(plan['remaining_hours'] * 3600)}")
        lines.append(f"  (about {finish}); no dispatch can beat {duration(plan['lower_bound_hours'] * 3600)}")
    return lines


def summary_line(plan: Mapping[str, Any]) -> str:
    """One line for the console's Board header."""
    total = plan["families"][-1]
    if plan["finish_at"] is None or plan["remaining_hours"] == 0:
        return f"plan: {total['done']}/{total['models']} models trained"
    finish = time.strftime("%a %H:%M", time.localtime(plan["finish_at"]))
    return (f"plan: {total['done']}/{total['models']} models, {flop_text(total['remaining_flop'])} left, "
            f"about {duration(plan['remaining_hours'] * 3600)} more (done {finish}, --order {plan['order']})")


class CostPlanner:
    """Cost-aware dispatch for ``remote.dispatch.Dispatcher`` (``--order cost``, regressions): when a server
    frees up it takes the pending batch the plan gives it (``schedule.choose``: the longest batches to the
    servers that finish them first, never one it would finish later than another server could), or none.

    The epoch's work is priced once and again whenever a batch is done (its certificates refine the epochs
    per family and the servers' observed rates); ``busy`` is rebuilt every tick from the Board."""

    def __init__(self, root: Any, server_names: Sequence[str]) -> None:
        from epoch_builder.workspace import Workspace

        self.ws = Workspace(root)
        self.server_names = list(server_names)
        self._done: int | None = None
        self.work: EpochWork | None = None
        self._batches: dict[str, schedule.Batch] = {}  # by name: what is left of each, at its family's rates
        self.servers: dict[str, schedule.Server] = {}
        self.sources: dict[str, str] = {}
        self.busy: dict[str, float] = {}
        self.now = 0.0

    def refresh(self, board: Board, online: Sequence[str], now: float) -> None:
        """Reprice when the count of done batches changed; rebuild when each online server frees up."""
        rows = board.stage_rows(boards.REGRESSIONS)
        done = sum(r.state == boards.DONE for r in rows)
        if self.work is None or done != self._done:
            self.work = epoch_work(self.ws)
            records = calibrate.read_records(self.ws.training_rates_file)
            servers, self.sources = cluster_servers(self.server_names, records, observed_rates(self.work, board))
            self.servers = {s.name: s for s in servers}
            self._batches = {b.name: schedule.Batch(b.name, b.family, b.remaining_flop or b.flop) for b in self.work.batches}
            self._done = done
        by_name = {b.name: b for b in self.work.batches}
        # Times from this tick (0), not since 1970: a small batch's seconds vanish in a 1.7e9 timestamp's rounding.
        self.now = 0.0
        self.busy = {name: 0.0 for name in online if name in self.servers}
        for row in rows:
            batch = by_name.get(row.spec.name)
            if batch is not None and row.host in self.busy and row.state in (boards.RUNNING, boards.PUSHED):
                self.busy[row.host] = max(self.busy[row.host], running_until(batch, row, self.servers[row.host], now) - now)

    def batch(self, name: str) -> schedule.Batch | None:
        return self._batches.get(name)

    def choose(self, names: Sequence[str], server: str) -> tuple[str | None, str]:
        """Of the pending batches ``names`` (those this server may run), the one it should start now, or None;
        with the reason.  The choice is then counted as this server's work for the rest of the tick."""
        pending = [b for b in (self.batch(n) for n in names) if b is not None]
        me = self.servers.get(server)
        if me is None or not pending:
            return (names[0] if names else None), "next in file order (no cost for it)"
        busy = {self.servers[n]: t for n, t in self.busy.items()}
        decision = schedule.choose(pending, me, busy, self.now)
        if decision.batch is not None:
            self.busy[server] = self.now + me.seconds(decision.batch)
            return decision.batch.name, decision.reason
        return None, decision.reason
