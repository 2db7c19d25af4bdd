"""Which pending batch a free server should take: pure scheduling, no I/O, no clock, no hosts.

This module owns the dispatch *policy* and its yardsticks; the dispatcher (``remote.dispatch``) owns
everything that touches servers. Inputs are plain values: servers with a measured rate per family
(FLOP/s, e.g. ``{"LSTM": 5.5e10, "DNN": 1.4e11}``) and batches with a cost in FLOP and a family
(``epoch_builder.regressions.cost`` computes both from the batch files).

* :func:`file_order_choice`: today's rule, a free server takes the next pending batch in file order.
* :func:`choose`: the cost-aware rule the dispatcher can call when one server frees up. It plans the
  pending batches with the longest-processing-time rule on servers of different speeds: longest
  batch first (its time on its fastest server), each placed on the server where it would *finish*
  first, counting the time every server is still busy and what the plan already gave it. The free
  server takes the first batch the plan gives it; when the plan gives it none (every pending batch
  finishes sooner on a server that frees up soon enough), it stays idle rather than start a straggler.
  Each decision comes with a reason ("KR_LSTM_5_9 to gpu-1: 2.1 h here, 31 h on cpu-2").
* :func:`lower_bound`: no schedule can finish sooner (see its docstring for the per-family rates).
* :func:`simulate`: either policy run to completion on a cluster; makespan and every assignment.

Times are seconds on one clock (``now``, ``busy until``); only differences matter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from epoch_builder.regressions.plan import duration as hours  # one formatter for every projected time

FILE_ORDER, COST_AWARE = "file-order", "cost-aware"
POLICIES = (FILE_ORDER, COST_AWARE)
# A finish on the free server counts as "no later" than elsewhere within this share of the batch's time:
# float noise must not make a server idle for a batch it finishes at the same moment.
TIE = 1e-9


@dataclass(frozen=True)
class Batch:
    """A batch to run: ``flop`` of work whose speed on a server is that server's rate for ``family``."""

    name: str
    family: str
    flop: float


@dataclass(frozen=True)
class Server:
    """A server and its measured training rate per family (FLOP/s). Equal and hashed by name: the name
    identifies the server in a cluster, the rates are what we know of it now."""

    name: str
    rates: Mapping[str, float] = field(compare=False, hash=False)

    def rate(self, family: str) -> float:
        rate = self.rates.get(family, 0.0)
        return float(rate) if rate and rate > 0 else 0.0

    def can_run(self, batch: Batch) -> bool:
        return self.rate(batch.family) > 0

    def seconds(self, batch: Batch) -> float:
        """How long ``batch`` runs here (infinite for a family this server has no rate for)."""
        rate = self.rate(batch.family)
        return batch.flop / rate if rate else float("inf")


class Decision(NamedTuple):
    batch: Batch | None  # None: leave the server idle for now
    reason: str


class Assignment(NamedTuple):
    batch: Batch
    server: str
    start: float
    end: float
    reason: str


class Bound(NamedTuple):
    """A lower bound of the makespan and the two terms it is the larger of."""

    value: float
    work: float  # the whole work, split freely among the servers (fractional relaxation)
    longest: float  # the longest batch on its fastest server
    longest_batch: str


class Simulation(NamedTuple):
    policy: str
    makespan: float
    assignments: tuple[Assignment, ...]  # in start order
    idle_decisions: int  # times a free server was left idle on purpose (cost-aware only)
    idle_reasons: tuple[tuple[float, str], ...] = ()  # (when, why) of each of them

    def by_server(self) -> dict[str, list[Assignment]]:
        found: dict[str, list[Assignment]] = {}
        for assignment in self.assignments:
            found.setdefault(assignment.server, []).append(assignment)
        return found


# --- file order ---------------------------------------------------------------------------

def file_order_choice(pending: Sequence[Batch], server: Server) -> Decision:
    """Today's dispatch: the first pending batch (in file order) this server can run."""
    for batch in pending:
        if server.can_run(batch):
            return Decision(batch, f"{batch.name} to {server.name}: next in file order, {hours(server.seconds(batch))} here")
    return Decision(None, f"{server.name}: no pending batch it can run")


# --- cost-aware ---------------------------------------------------------------------------

def _fastest_seconds(batch: Batch, servers: Iterable[Server]) -> float:
    return min((s.seconds(batch) for s in servers), default=float("inf"))


def lpt_order(pending: Sequence[Batch], servers: Sequence[Server]) -> list[Batch]:
    """Longest first, a batch's length being its time on its fastest server (with rates per family
    there is no single size; this is the time it cannot beat). Ties keep file order."""
    index = {id(b): i for i, b in enumerate(pending)}
    return sorted(pending, key=lambda b: (-_fastest_seconds(b, servers), index[id(b)]))


class Planned(NamedTuple):
    """One batch of a :func:`plan`: where it goes, and the best other server at that point of the plan."""

    batch: Batch
    server: str
    start: float
    end: float
    runner_up: str | None  # the server it would have finished on next soonest (None: the only server)
    runner_up_start: float  # when that server would start it: busy until, plus the plan's longer batches there
    runner_up_end: float


def plan(pending: Sequence[Batch], free_at: Mapping[Server, float], now: float,
         stop_at: Server | None = None) -> list[Planned]:
    """The longest-processing-time plan from this moment: batches in :func:`lpt_order`, each on the
    server where it finishes first (``max(free_at, now)`` plus what the plan already put there, plus its
    time there). Ties go to the earlier server in ``free_at``'s order. With ``stop_at``, planning stops
    at the first batch given to that server (all :func:`choose` needs)."""
    servers = list(free_at)
    ready = {s: max(float(free_at[s]), now) for s in servers}
    planned: list[Planned] = []
    for batch in lpt_order(pending, servers):
        ends = [(ready[server] + server.seconds(batch), index, server) for index, server in enumerate(servers)]
        ends.sort(key=lambda item: item[:2])
        best_end, _, best = ends[0]
        # Within TIE of the best, the earlier server wins (sorting by end alone would let float noise decide).
        best = min((item for item in ends if item[0] <= best_end * (1 + TIE)), key=lambda item: item[1])[2]
        best_end = ready[best] + best.seconds(batch)
        if best_end == float("inf"):
            continue  # no server runs this family: it stays pending (the dispatcher reports it)
        other = next((item for item in ends if item[2] != best and item[0] < float("inf")), None)
        planned.append(Planned(batch, best.name, ready[best], best_end, other[2].name if other else None,
                               ready[other[2]] if other else float("inf"), other[0] if other else float("inf")))
        ready[best] = best_end
        if stop_at is not None and best == stop_at:
            break
    return planned


def choose(pending: Sequence[Batch], server: Server, servers_busy_until: Mapping[Server, float],
           now: float) -> Decision:
    """The batch ``server`` (free at ``now``) should start, or None to leave it idle for now.

    ``servers_busy_until`` maps every server of the cluster (``server`` may be among them or not) to
    when it frees up: a running job's expected end, or any time <= ``now`` for an idle one. The choice is
    the first batch the :func:`plan` gives this server. So the longest pending batches go to the servers
    that finish them first (the fastest, once their queue is counted), and a batch is never started here
    when it would finish later here than on another server that frees up soon enough: then this server
    takes a shorter batch that fits, or none. The reason names the batch's time here and on the best
    other server, counting the work ahead of it there (busy until, and the longer batches planned there).
    """
    if not pending:
        return Decision(None, f"{server.name}: nothing pending")
    # It asks because it is free now, whatever the map says; first, so that a tie goes to it rather than
    # leave it idle for a server that would finish the batch at the same moment.
    free_at = {server: now, **{s: t for s, t in servers_busy_until.items() if s != server}}
    planned = plan(pending, free_at, now, stop_at=server)
    mine = next((p for p in planned if p.server == server.name), None)
    if mine is None:
        return Decision(None, _idle_reason(pending, server, now, planned))
    reason = f"{mine.batch.name} to {server.name}: {hours(mine.end - now)} here"
    if mine.runner_up is not None:
        reason += f", {hours(mine.runner_up_end - now)} on {mine.runner_up}"
        ahead = mine.runner_up_start - now
        if ahead > 0:
            longer = sum(1 for p in planned[:-1] if p.server == mine.runner_up)
            reason += f" ({hours(ahead)} of work ahead there" + (f", {longer} longer batch(es))" if longer else ")")
    return Decision(mine.batch, reason)


def _idle_reason(pending: Sequence[Batch], server: Server, now: float, planned: list[Planned]) -> str:
    runnable = [b for b in pending if server.can_run(b)]
    if not runnable:
        return f"{server.name} stays idle: no pending batch of a family it has a rate for"
    # The shortest pending batch is the best this server could have done: say where it goes instead.
    shortest = min(runnable, key=server.seconds)
    where = next((p for p in planned if p.batch is shortest), None)
    here = server.seconds(shortest)
    if where is None:
        return f"{server.name} stays idle: {shortest.name} takes {hours(here)} here"
    return (f"{server.name} stays idle: every pending batch finishes sooner elsewhere, even the shortest, "
            f"{shortest.name}: {hours(here)} here, done in {hours(where.end - now)} on {where.server}")


# --- lower bound --------------------------------------------------------------------------

def lower_bound(batches: Sequence[Batch], servers: Sequence[Server]) -> Bound:
    """No schedule of ``batches`` on ``servers`` ends sooner than the larger of:

    * **work**: the shortest time the servers could get through all the work if it could be split
      freely, any share of any family on any server at that server's rate for the family, all servers
      working from time 0 to the end. Every real schedule is one such split, so it takes at least this
      long. It is a small linear program, solved exactly here (:func:`_work_bound`); when every server's
      rates are the same multiple of one reference (one speed per server), it is the familiar total work
      (in reference seconds) / total speed; with per-family rates it lets each server do the families
      it is relatively best at, which "total work / total speed" cannot express.
    * **longest**: the longest batch on its fastest server (a batch runs on one server, whole).
    """
    if not batches:
        return Bound(0.0, 0.0, 0.0, "")
    unrunnable = [b.name for b in batches if not any(s.can_run(b) for s in servers)]
    if unrunnable:
        raise ValueError(f"no server has a rate for the family of {', '.join(unrunnable[:5])}")
    longest_batch = max(batches, key=lambda b: _fastest_seconds(b, servers))
    longest = _fastest_seconds(longest_batch, servers)
    work = _work_bound(batches, servers)
    return Bound(max(work, longest), work, longest, longest_batch.name)


def _work_bound(batches: Sequence[Batch], servers: Sequence[Server]) -> float:
    """The fractional relaxation's optimum, from its dual.

    Primal: minimise T with y[k, j] >= 0 the seconds server j spends on family k, sum_k y[k, j] <= T for
    every server and sum_j rate[k, j] * y[k, j] >= W[k] for every family. Its LP dual: maximise
    sum_k W[k] * u[k] over v on the simplex (one weight per server) with u[k] = min_j v[j] / rate[k, j].
    Any v on the simplex gives a valid bound, so the value returned is recomputed from the solver's v
    (normalised) by that formula: a lower bound whatever the solver's rounding, exact at its optimum.
    """
    families = sorted({b.family for b in batches})
    work = np.array([sum(b.flop for b in batches if b.family == f) for f in families], dtype=float)
    rates = np.array([[s.rate(f) for s in servers] for f in families], dtype=float)
    # Scale to O(1) numbers for the tableau; the bound scales back by work_scale / rate_scale.
    work_scale, rate_scale = float(work.max()), float(rates.max())
    if work_scale <= 0:
        return 0.0
    w, r = work / work_scale, rates / rate_scale
    k, j = r.shape
    # Variables x = (u_1..u_k, v_1..v_j) >= 0; rows: r[f, s] * u_f - v_s <= 0 (where r > 0), sum v <= 1.
    rows, rhs = [], []
    for f in range(k):
        for s in range(j):
            if r[f, s] > 0:
                row = np.zeros(k + j)
                row[f], row[k + s] = r[f, s], -1.0
                rows.append(row)
                rhs.append(0.0)
    rows.append(np.concatenate([np.zeros(k), np.ones(j)]))
    rhs.append(1.0)
    solution = _simplex_max(np.concatenate([w, np.zeros(j)]), np.array(rows), np.array(rhs))
    v = np.clip(solution[k:], 0.0, None)
    if v.sum() <= 0:
        v = np.ones(j)
    v = v / v.sum()
    with np.errstate(divide="ignore"):
        u = np.min(np.where(r > 0, v[None, :] / np.where(r > 0, r, 1.0), np.inf), axis=1)
    return float(np.dot(w, u)) * work_scale / rate_scale


def _simplex_max(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """maximise c.x subject to a.x <= b, x >= 0, with b >= 0 (the slack basis is feasible). A dense
    tableau with Bland's rule (the zero right-hand sides make it degenerate; Bland's rule cannot cycle).
    Sizes here are families x servers rows: tens, so clarity beats speed."""
    m, n = a.shape
    tableau = np.zeros((m + 1, n + m + 1))
    tableau[:m, :n], tableau[:m, n:n + m], tableau[:m, -1] = a, np.eye(m), b
    tableau[m, :n] = -c
    basis = list(range(n, n + m))
    eps = 1e-12
    for _ in range(50_000):
        entering = next((col for col in range(n + m) if tableau[m, col] < -eps), None)
        if entering is None:
            break
        column = tableau[:m, entering]
        ratios = [(tableau[row, -1] / column[row], basis[row], row) for row in range(m) if column[row] > eps]
        if not ratios:
            raise ValueError("the work bound's program is unbounded (a family no server runs?)")
        best = min(ratio for ratio, _, _ in ratios)
        row = min((var, row) for ratio, var, row in ratios if ratio <= best + eps)[1]  # Bland: lowest index
        tableau[row] /= tableau[row, entering]
        for other in range(m + 1):
            if other != row and tableau[other, entering] != 0:
                tableau[other] -= tableau[other, entering] * tableau[row]
        basis[row] = entering
    x = np.zeros(n + m)
    for row, var in enumerate(basis):
        x[var] = tableau[row, -1]
    return x[:n]


# --- simulation ---------------------------------------------------------------------------

def simulate(batches: Sequence[Batch], servers: Sequence[Server], policy: str = COST_AWARE,
             busy_until: Mapping[str, float] | None = None) -> Simulation:
    """Run ``policy`` to completion: every server free at 0 (or at ``busy_until[name]``, a running job's
    expected end), batches pending in the given (file) order.

    Whenever servers are free, each (in ``servers`` order, as the dispatcher walks its hosts) is offered
    a batch: the next in file order, or :func:`choose`'s pick, which may be none. Time then moves to the
    next moment a running batch ends. Returns the makespan (the last end) and every assignment."""
    if policy not in POLICIES:
        raise ValueError(f"policy {policy!r} unknown; allowed {', '.join(POLICIES)}")
    if len({s.name for s in servers}) != len(servers):
        raise ValueError("server names must be unique")
    pending = list(batches)
    free_at = {s: max(0.0, float((busy_until or {}).get(s.name, 0.0))) for s in servers}
    assignments: list[Assignment] = []
    idle: list[tuple[float, str]] = []
    now = 0.0
    while pending:
        started = False
        for server in servers:
            if free_at[server] > now or not pending:
                continue
            if policy == FILE_ORDER:
                decision = file_order_choice(pending, server)
            else:
                decision = choose(pending, server, free_at, now)
            if decision.batch is None:
                if any(server.can_run(b) for b in pending):  # idle by choice, not for want of a runnable batch
                    idle.append((now, decision.reason))
                continue
            end = now + server.seconds(decision.batch)
            assignments.append(Assignment(decision.batch, server.name, now, end, decision.reason))
            pending.remove(decision.batch)
            free_at[server] = end
            started = True
        later = [t for t in free_at.values() if t > now]
        if not later:
            if not started:
                raise ValueError(f"{len(pending)} batch(es) can run on no server: "
                                 f"{', '.join(b.name for b in pending[:5])}")
            continue
        now = min(later)
    makespan = max([a.end for a in assignments] + list(free_at.values()), default=0.0)
    return Simulation(policy, makespan, tuple(assignments), len(idle), tuple(idle))
