"""What the active epoch's regression grid costs, done and remaining, and how long it takes on one machine.

``epoch_work`` prices every batch of the epoch with the cost model (``cost``): each config's FLOP at the
epochs its family is observed to take in this epoch's certificates (else the stated assumption), and
which configs are already certified.  ``machine_plan`` turns that into hours on one machine at its
calibrated rates (``calibrate``; the reference machine's when it was never calibrated, and it says so):
``epoch-builder regressions plan``.  ``remote.plan`` adds the servers, the dispatch and the finish of a
whole cluster on top of the same ``epoch_work``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from epoch_builder.regressions import cost
from epoch_builder.workspace import Workspace

LOCAL = "local"  # the record name of the machine `epoch-builder regressions calibrate` ran on


class BatchWork(NamedTuple):
    """One batch of the epoch: its cost, and what of it is left (configs without a certificate)."""

    name: str
    category: str
    family: str
    models: int
    done: int
    flop: float  # the whole batch, at the estimated epochs
    remaining_flop: float  # its configs not yet certified
    configs: tuple[cost.ConfigCost, ...]  # each config's estimate

    @property
    def finished(self) -> bool:
        return self.done >= self.models


class EpochWork(NamedTuple):
    epoch_id: str
    batches: tuple[BatchWork, ...]  # in the board's (file) order
    epochs: Mapping[str, cost.Epochs]  # per family: observed in the certificates, else assumed
    certified: Mapping[str, int]  # each certified regression's id -> the epochs it trained


def epoch_work(ws: Workspace, *, max_epochs: int | None = None) -> EpochWork:
    """The active epoch's batches priced; a done config costs nothing more (its certificate is here)."""
    epoch = ws.epoch()
    config = ws.load_epoch_config()
    shape = cost.shape_of_epoch(config)
    certificates = cost.read_certificates(epoch.regressions_dir)
    certified = {str(c["id"]): int(c["epochs"]) for c in certificates
                 if isinstance(c.get("epochs"), int) and not isinstance(c.get("epochs"), bool)}
    epochs = cost.epochs_per_family(cost.observed_epochs(certificates))
    batches = []
    for document in cost.board_order(cost.epoch_batches(epoch.regression_training_configs_dir)):
        priced = cost.batch_cost(document, shape, epochs, max_epochs)
        left = [c for c in priced.configs if c.id not in certified]
        batches.append(BatchWork(priced.name, priced.category, priced.family, priced.models,
                                 priced.models - len(left), priced.flop, sum(c.flop for c in left), priced.configs))
    return EpochWork(epoch.id, tuple(batches), epochs, certified)


def family_rows(work: EpochWork) -> list[dict[str, Any]]:
    """Per family (in the grid's order), then ``total``: batches, models, done, PFLOP in all and remaining."""
    families = sorted({b.family for b in work.batches}, key=lambda f: (cost.FAMILIES.index(f) if f in cost.FAMILIES else 99, f))
    rows = []
    for family in [*families, "total"]:
        mine = [b for b in work.batches if family in ("total", b.family)]
        row: dict[str, Any] = {"family": family, "batches": len(mine), "batches_done": sum(b.finished for b in mine),
                               "models": sum(b.models for b in mine), "done": sum(b.done for b in mine),
                               "flop": sum(b.flop for b in mine), "remaining_flop": sum(b.remaining_flop for b in mine)}
        if family != "total":
            estimate = work.epochs.get(family, cost.DEFAULT_EPOCHS)
            row["epochs"] = {"per_model": round(float(estimate.epochs), 1), "observed": estimate.observed,
                             "source": estimate.describe()}
        rows.append(row)
    return rows


def machine_plan(ws: Workspace, rates: Mapping[str, float], rates_source: str, *,
                 max_epochs: int | None = None, now: float | None = None) -> dict[str, Any]:
    """The epoch on one machine, models one after another: per family its remaining hours at this
    machine's rate for it; in total the projected finish."""
    work = epoch_work(ws, max_epochs=max_epochs)
    now = time.time() if now is None else now
    rows = family_rows(work)
    total_s = 0.0
    for row in rows[:-1]:
        rate = rates.get(row["family"], 0.0)
        row["rate"] = rate
        row["hours"] = row["flop"] / rate / 3600 if rate else None
        row["remaining_hours"] = row["remaining_flop"] / rate / 3600 if rate else None
        total_s += row["remaining_flop"] / rate if rate else 0.0
    rows[-1]["hours"] = sum(r["hours"] or 0 for r in rows[:-1])
    rows[-1]["remaining_hours"] = total_s / 3600
    return {"epoch": work.epoch_id, "rates_source": rates_source, "families": rows,
            "remaining_hours": total_s / 3600, "finish_at": now + total_s}


def format_rows(rows: Sequence[Mapping[str, Any]], hour_columns: Sequence[tuple[str, str]]) -> list[str]:
    """The families as a table of at most 80 columns: models done/all, PFLOP left/all, epochs per model,
    then ``hour_columns`` (title, key): remaining hours."""
    head = f"{'family':<6} {'models':>11} {'work left/all':>19} {'epochs':>7}"
    lines = [head + "".join(f" {title[:10]:>10}" for title, _key in hour_columns)]
    for row in rows:
        epochs = row.get("epochs")
        shown = f"{epochs['per_model']:g}{'' if epochs['observed'] else '*'}" if epochs else ""
        line = (f"{row['family']:<6} {row['done']:>5}/{row['models']:<5} "
                f"{flop_text(row['remaining_flop']):>9}/{flop_text(row['flop']):<9} {shown:>7}")
        for _title, key in hour_columns:
            value = row.get(key)
            line += f" {'-' if value is None else duration(value * 3600):>10}"
        lines.append(line)
    assumed = [row["epochs"]["source"] for row in rows if row.get("epochs") and not row["epochs"]["observed"]]
    if assumed:  # the source in full is in --json; here what a reader must know
        lines.append(f"* {assumed[0].split(' (', 1)[0]}: no certificate yet")
    return lines


def flop_text(flop: float) -> str:
    """Work with a unit that keeps it short: 840 GF, 12.5 TF, 3.1 PF."""
    for unit, scale in (("PF", 1e15), ("TF", 1e12)):
        if flop >= scale:
            return f"{flop / scale:.1f} {unit}"
    return f"{flop / 1e9:.0f} GF"


def duration(seconds: float) -> str:
    """45 s, 12 min, 3.4 h, 2.1 d: a plan's figure (never falsely precise); also the scheduler's reasons'."""
    if seconds == float("inf"):
        return "never"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 120 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 72 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def format_machine_plan(plan: Mapping[str, Any]) -> list[str]:
    finish = time.strftime("%Y-%m-%d %H:%M", time.localtime(plan["finish_at"]))
    lines = [f"epoch {plan['epoch']} on this machine", f"  rates: {plan['rates_source']}"]
    lines += format_rows(plan["families"], [("left here", "remaining_hours")])
    lines.append(f"remaining {duration(plan['remaining_hours'] * 3600)}, one batch at a time: done about {finish}")
    return lines
