"""The board under a long fault storm (tests/fault_storm.py): a small epoch's two stages dispatched over
loopback sshd servers, round after round with a new seed, while sshd listeners and sessions, jobs, helper
calls and the dispatcher are killed and servers restarted at random moments; every round's results are
compared with one undisturbed dispatch of the same epoch over the same number of servers.

    .venv/bin/python bench/bench_soak.py [--faults 200] [--per-round 24] [--servers 4] [--gap 0.7]

Prints the faults by kind, dispatcher restarts, extra batch starts, differences and wall time against
the undisturbed run. Target: at least 200 faults, zero differences.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from tests.fault_storm import FAULTS, Storm, epoch_with_batches, undisturbed  # noqa: E402


def small_epoch(root: Path) -> Path:
    from epoch_builder.create_epoch import create_epoch
    from epoch_builder.importer import bundled_sample, import_candlesticks
    from epoch_builder.workspace import Workspace

    ws = Workspace(root)
    import_candlesticks(ws, [bundled_sample()], interval_minutes=30, log=lambda *_: None)
    create_epoch(ws, "_SOAK", profile="small", width_unit="days", epoch_width=20, log=lambda *_: None)
    return root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", type=int, default=200, help="faults to inject in all (default 200)")
    parser.add_argument("--per-round", type=int, default=24, help="faults per round, half in each stage (default 24)")
    parser.add_argument("--servers", type=int, default=4, help="loopback sshd servers (default 4)")
    parser.add_argument("--gap", type=float, default=0.7, help="mean seconds between faults (default 0.7)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        base = Path(tmp)
        template = small_epoch(base / "template")
        reference = epoch_with_batches(base / "reference", template)
        calm = undisturbed(reference, base / "calm", servers=args.servers)
        print(f"undisturbed dispatch of both stages over {args.servers} servers: {calm.storm_s:.1f} s", flush=True)
        faults: Counter = Counter()
        totals = Counter()
        storm_s = 0.0
        differences: list[str] = []
        number = 0
        while sum(faults.values()) < args.faults:  # a stage can end before its share of faults: go on until done
            number += 1
            root = epoch_with_batches(base / f"round{number}" / "ws", template)
            storm = Storm(root, base / f"round{number}" / "storm", servers=args.servers, seed=number,
                          faults=args.per_round, mean_gap_s=args.gap)
            try:
                report = storm.run(stage_timeout_s=900)
            finally:
                storm.close()
            storm.compare(reference)
            faults.update(report.faults)
            storm_s += report.storm_s
            totals.update({"restarts": report.dispatcher_restarts, "batches": report.batches, "starts": report.starts,
                           "outside": len(report.outside_changes), "tracebacks": len(report.tracebacks),
                           "restart_faults": report.restart_causing_faults})
            differences += [f"round {number}: {d}" for d in report.differences + report.outside_changes]
            print(f"round {number}: {sum(report.faults.values())} faults ({sum(faults.values())} in all), "
                  f"{report.storm_s:.1f} s, "
                  f"{len(report.differences)} differences, extra starts {report.extra_starts}", flush=True)
            shutil.rmtree(base / f"round{number}", ignore_errors=True)
        total, rounds = sum(faults.values()), number
        print(f"faults injected: {total} ({', '.join(f'{k} {faults[k]}' for k in FAULTS)})")
        print(f"dispatcher restarts: {totals['restarts']}")
        print(f"batches: {totals['batches']}, job starts: {totals['starts']}, extra starts: "
              f"{totals['starts'] - totals['batches']} (faults that can require one: {totals['restart_faults']})")
        from epoch_builder.workspace import Workspace

        epoch = Workspace(reference).epoch()
        profitable = sum(len(json.loads(p.read_text())) for p in epoch.profitable_configs_dir.glob("*.json"))
        print(f"compared with the undisturbed run, each round: {len(list(epoch.regressions_dir.glob('*/certificate.json')))} "
              f"regressions, {profitable} profitable configurations; differences: {len(differences)}; changes outside "
              f"the results: {totals['outside']}; tracebacks in the dispatcher's output: {totals['tracebacks']}")
        print(f"wall time: storm {storm_s / rounds:.1f} s per round against undisturbed {calm.storm_s:.1f} s "
              f"({storm_s / rounds / max(calm.storm_s, 1e-9):.2f}x)")
        for line in differences[:20]:
            print(f"  {line}")
        ok = total >= 200 and not differences and not totals["tracebacks"]
        print(f"target: >= 200 faults and zero differences -> {'OK' if ok else 'NOT MET'}")
        return 0 if ok or args.faults < 200 else 1


if __name__ == "__main__":
    sys.exit(main())
