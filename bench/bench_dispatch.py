"""Benchmark: how long the default grid takes on a cluster, dispatched in file order vs cost-aware.

The cost model (``epoch_builder/regressions/cost.py``) prices every batch of the real default grid
(``epoch_builder/data/regression_grid.json``, cut into batches as ``generate-regression-training-configs``
cuts them, at the ``default`` profile: 69,096 rows, lookback 128, predictions 32). Servers get a training
rate per family: this machine's, measured in this process by a short fixed benchmark (one median-sized
default-grid config per family, plain Keras ``fit`` on random windows, the fastest of two epochs after the
first; ~60 s on 2 cores), or read with ``--rates-from FILE``, or the figures recorded below with
``--no-measure``. A GPU server runs every family ``GPU_RATIO`` times faster (source: ``GPU_RATIO_SOURCE``).

``remote/schedule.py`` then simulates each cluster shape with both policies, from every server free at 0
to the last batch's end, and prints per shape: the makespan in file order (a free server takes the next
batch file, as ``remote/dispatch.py`` does today), cost-aware (``schedule.choose``), the lower bound no
schedule can beat, cost-aware / lower bound and file order / cost-aware. File order also runs over ``--orders``
seeded shuffles of the server list (median and range): which server a late big batch lands on decides its
makespan. The target: on mixed clusters, cost-aware within 10% of the lower bound and at least 2x shorter
than file order.

    .venv/bin/python bench/bench_dispatch.py [--no-measure | --rates-from FILE] [--save-rates FILE]
        [--gpu-ratio 50] [--epochs N] [--observed WORKSPACE] [--max-epochs N] [--orders 20] [--decisions 4]
        [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# `--no-measure`: the rates the calibration assumes for a server never calibrated (this machine's, recorded).
from epoch_builder.regressions.calibrate import (FAMILY_ORDER, REFERENCE_RATES as RECORDED_RATES,  # noqa: E402
                                                 TIMED_EPOCHS, Measured, measure, representative_configs)

RECORDED_RATES_SOURCE = "recorded by bench_dispatch.py on the shared 2-core build machine (one run)"

GPU_RATIO = 50.0
GPU_RATIO_SOURCE = (
    "assumed, not measured in this project (bench/gpu_check.sh has not run on a GPU yet): a published Keras "
    "comparison of one LSTM training epoch, 612,235 samples, took 3,755 s on a 4-core Intel i5-4690 and 69 s "
    "with the cuDNN LSTM on an RTX 2070, 54x (e-learn.cn/qa/answer/949566/1946520.html); NVIDIA quotes 6x for "
    "LSTM training against multi-core server CPUs (developer.nvidia.com/discover/lstm). 50x, for every family, "
    "against this 2-core machine; --gpu-ratio changes it")
# Bigger CPU servers: rate = this machine's x cores / 2 x 0.75 (assumed parallel efficiency of a single
# model's ops over more cores; packs and --processes do better, small models worse).
CPU_EFFICIENCY = 0.75


def cpu_speed(cores: int) -> float:
    return cores / 2 * CPU_EFFICIENCY if cores > 2 else 1.0


def cluster_shapes(gpu_ratio: float) -> dict[str, list[tuple[str, float]]]:
    """Each shape's servers in the cluster file's order (the order file-order dispatch offers them work),
    as (name, speed relative to this machine)."""
    return {
        "4 CPU (2-core)": [(f"cpu-{i}", 1.0) for i in range(1, 5)],
        # A GPU added to a CPU cluster: listed last.
        "4 CPU + 1 GPU": [(f"cpu-{i}", 1.0) for i in range(1, 5)] + [("gpu-1", gpu_ratio)],
        # Ten servers of five speeds, the fastest listed first; gpu-2 an older GPU at a quarter of gpu-1 (assumed).
        "10 mixed": [("gpu-1", gpu_ratio), ("gpu-2", gpu_ratio / 4), ("cpu16-1", cpu_speed(16)), ("cpu16-2", cpu_speed(16)),
                     ("cpu8-1", cpu_speed(8)), ("cpu8-2", cpu_speed(8)), ("cpu8-3", cpu_speed(8)),
                     ("cpu2-1", 1.0), ("cpu2-2", 1.0), ("cpu2-3", 1.0)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    rates = parser.add_mutually_exclusive_group()
    rates.add_argument("--no-measure", action="store_true", help="use the rates recorded in this script")
    rates.add_argument("--rates-from", type=Path, metavar="FILE", help="JSON {family: FLOP/s} (e.g. from --save-rates)")
    parser.add_argument("--save-rates", type=Path, metavar="FILE", help="write the rates used as JSON")
    parser.add_argument("--gpu-ratio", type=float, default=GPU_RATIO, help=f"GPU rate / this machine's (default {GPU_RATIO:g})")
    parser.add_argument("--epochs", type=float, help="assume this many epochs per model (default: cost.DEFAULT_EPOCHS)")
    parser.add_argument("--observed", type=Path, metavar="WORKSPACE",
                        help="epochs per model from the certificates of this workspace's active epoch, where it has any")
    parser.add_argument("--max-epochs", type=int, help="train-regression-batch --max-epochs (caps every estimate)")
    parser.add_argument("--decisions", type=int, default=4, help="cost-aware decisions to print per shape (default 4)")
    parser.add_argument("--orders", type=int, default=20,
                        help="shuffled server orders to run file order over besides the listed one (default 20)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if args.gpu_ratio <= 0:
        parser.error("--gpu-ratio must be above 0")
    if args.orders < 0:
        parser.error("--orders must be 0 or more")

    started = time.perf_counter()
    from epoch_builder.regressions import cost
    from remote import schedule

    log = (lambda *_: None) if args.json else print
    shape = cost.default_profile_shape()
    documents = cost.board_order(cost.grid_batches())
    observed = {}
    if args.observed:
        from epoch_builder.workspace import Workspace

        observed = cost.observed_epochs(cost.read_certificates(Workspace(args.observed).epoch().regressions_dir))
    assumption = cost.EpochsAssumption(args.epochs, "--epochs") if args.epochs else cost.DEFAULT_EPOCHS
    epochs = cost.epochs_per_family(observed, assumption)
    costs = cost.batch_costs(documents, shape, epochs, args.max_epochs)
    summary = cost.family_summary(costs, epochs)
    cost_s = time.perf_counter() - started
    windows = shape.windows()
    log(f"cost model: default grid, {sum(c.models for c in costs):,} models in {len(costs)} batches, default profile "
        f"({shape.rows:,} rows: {windows.fit:,} fit + {windows.validation:,} validation windows an epoch, "
        f"{windows.test:,} test), {sum(c.flop for c in costs) / 1e15:,.0f} PFLOP in all; priced in {cost_s:.2f} s")
    for line in cost.format_family_summary(summary):
        log(f"  {line}")

    measured: list[Measured] = []
    if args.rates_from:
        base = {k: float(v) for k, v in json.loads(args.rates_from.read_text()).items()}
        source = str(args.rates_from)
    elif args.no_measure:
        base, source = dict(RECORDED_RATES), RECORDED_RATES_SOURCE
    else:
        log(f"rates on this machine (plain Keras, one model on random windows, fastest of {TIMED_EPOCHS} epochs after the first):")
        picks = representative_configs(documents)
        measure_started = time.perf_counter()
        measured = measure(picks, log=lambda line: log(f"  {line}"))
        base = {m.family: m.rate for m in measured}
        source = f"measured in this process in {time.perf_counter() - measure_started:.0f} s"
    missing = sorted({c.family for c in costs} - {f for f, r in base.items() if r > 0})
    if missing:
        print(f"no rate for {', '.join(missing)} ({source}); measure them or give --rates-from", file=sys.stderr)
        return 2
    log("rates (GFLOP/s, " + source + "): " + ", ".join(f"{f} {base[f] / 1e9:.1f}" for f in FAMILY_ORDER if f in base))
    log(f"GPU server: {args.gpu_ratio:g}x ({GPU_RATIO_SOURCE if args.gpu_ratio == GPU_RATIO else '--gpu-ratio'})")
    if args.save_rates:
        args.save_rates.write_text(json.dumps(base, indent=1, sort_keys=True) + "\n")

    batches = [schedule.Batch(c.name, c.family, c.flop) for c in costs]
    report: dict[str, Any] = {"rates": base, "rates_source": source, "gpu_ratio": args.gpu_ratio,
                              "flop": sum(c.flop for c in costs), "server_orders": args.orders, "shapes": {}}
    log("")
    log(f"makespans; file order as listed and over {args.orders} shuffled server orders (median [min-max]): which "
        "server a late big batch lands on decides it")
    log(f"{'cluster':<15} {'servers':>7} {'file order':>11} {'file, shuffled':>24} {'cost-aware':>11} "
        f"{'lower bound':>12} {'cost/bound':>10} {'file/cost':>10} {'shuffled':>9}")
    details: list[str] = []
    for name, members in cluster_shapes(args.gpu_ratio).items():
        servers = [schedule.Server(server, {f: r * speed for f, r in base.items()}) for server, speed in members]
        sim_started = time.perf_counter()
        by_file = schedule.simulate(batches, servers, schedule.FILE_ORDER)
        shuffled = sorted(schedule.simulate(batches, order, schedule.FILE_ORDER).makespan
                          for order in server_orders(servers, args.orders))
        aware = schedule.simulate(batches, servers, schedule.COST_AWARE)
        bound = schedule.lower_bound(batches, servers)
        sim_s = time.perf_counter() - sim_started
        median = statistics.median(shuffled) if shuffled else by_file.makespan
        row = {"servers": [{"name": s, "speed": v} for s, v in members], "file_order_s": by_file.makespan,
               "file_order_shuffled_s": {"median": median, "min": min(shuffled, default=median),
                                         "max": max(shuffled, default=median)},
               "cost_aware_s": aware.makespan, "lower_bound_s": bound.value, "bound_work_s": bound.work,
               "bound_longest_s": bound.longest, "bound_longest_batch": bound.longest_batch,
               "cost_over_bound": aware.makespan / bound.value, "file_over_cost": by_file.makespan / aware.makespan,
               "shuffled_file_over_cost": median / aware.makespan, "file_over_bound": by_file.makespan / bound.value,
               "idle_decisions": aware.idle_decisions, "simulated_s": sim_s,
               "file_order_last": _last(by_file), "cost_aware_last": _last(aware)}
        report["shapes"][name] = row
        spread = (f"{schedule.hours(median)} [{schedule.hours(row['file_order_shuffled_s']['min'])}-"
                  f"{schedule.hours(row['file_order_shuffled_s']['max'])}]")
        log(f"{name:<15} {len(servers):>7} {schedule.hours(by_file.makespan):>11} {spread:>24} "
            f"{schedule.hours(aware.makespan):>11} {schedule.hours(bound.value):>12} {row['cost_over_bound']:>10.3f} "
            f"{row['file_over_cost']:>9.2f}x {row['shuffled_file_over_cost']:>8.2f}x")
        details.append(f"{name}: bound = max(work split freely {schedule.hours(bound.work)}, longest batch "
                       f"{bound.longest_batch} on its fastest server {schedule.hours(bound.longest)}); file order "
                       f"ends with {row['file_order_last']}, cost-aware with {row['cost_aware_last']}; a free server "
                       f"left idle {aware.idle_decisions} time(s); simulated in {sim_s:.2f} s")
        details += [f"    {schedule.hours(a.start):>7}  {a.reason}" for a in aware.assignments[:max(0, args.decisions)]]
        details += [f"    {schedule.hours(when):>7}  {why}" for when, why in aware.idle_reasons[:min(1, args.decisions)]]
    log("")
    for line in details:
        log(line)
    mixed = {name: row for name, row in report["shapes"].items() if "GPU" in name or "mixed" in name}
    close = all(row["cost_over_bound"] <= 1.10 for row in mixed.values())
    twice = {name: row["file_over_cost"] >= 2.0 and row["shuffled_file_over_cost"] >= 2.0 for name, row in mixed.items()}
    report["target"] = {"cost_aware_within_10pct_of_bound": close, "file_order_at_least_2x": twice}
    log(f"target on mixed clusters: cost-aware within 10% of the bound: {'met' if close else 'NOT met'}; file order "
        f">= 2x cost-aware (listed and shuffled): " + ", ".join(
            f"{name} {'met' if ok else 'not met'}" for name, ok in twice.items()))
    for name, ok in twice.items():
        if not ok:  # say whether any policy could have: file order / bound is the most one can gain
            log(f"  {name}: file order is {mixed[name]['file_over_bound']:.2f}x the lower bound (listed order): no "
                "dispatch policy can be more than that much shorter there")
    if args.json:
        print(json.dumps(report, indent=1))
    return 0


def server_orders(servers: list[Any], count: int) -> list[list[Any]]:
    """``count`` seeded shuffles of the cluster file's server order (the same ones every run)."""
    orders = []
    for seed in range(count):
        order = list(servers)
        random.Random(seed).shuffle(order)
        orders.append(order)
    return orders


def _last(simulation: Any) -> str:
    """The batch that ends the run and where it ran."""
    last = max(simulation.assignments, key=lambda a: a.end)
    return f"{last.batch.name} on {last.server}"


if __name__ == "__main__":
    sys.exit(main())
