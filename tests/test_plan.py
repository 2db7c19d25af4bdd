"""The epoch's plan (``regressions.plan``, ``remote.plan``) and cost-aware dispatch's choice (``CostPlanner``):
priced from the real default grid of a small epoch, updated from observed epochs and rates."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from epoch_builder.regressions import calibrate
from epoch_builder.regressions.grid import generate
from epoch_builder.regressions.plan import LOCAL, epoch_work, format_machine_plan, machine_plan
from epoch_builder.storage import atomic_write_json
from epoch_builder.workspace import Workspace
from remote import board as boards
from remote import plan as plans
from remote.jobs import JobInfo


@pytest.fixture(scope="module")
def _grid_epoch_template(_small_epoch_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default grid generated once per module (building its networks takes ~25 s)."""
    root = tmp_path_factory.mktemp("grid-epoch") / "workspace"
    shutil.copytree(_small_epoch_template, root)
    generate(Workspace(root), None)
    return root


@pytest.fixture
def grid_epoch(_grid_epoch_template: Path, tmp_path: Path) -> Workspace:
    """A fresh copy per test of the small epoch with the default grid's batches."""
    root = tmp_path / "grid-workspace"
    shutil.copytree(_grid_epoch_template, root)
    return Workspace(root)


def certify(ws: Workspace, config: dict, epochs: int, category: str = "DNN") -> None:
    """What a trained model leaves that the plan reads (the cost model's keys of a certificate)."""
    atomic_write_json(ws.epoch().regression_certificate_file(config["id"]),
                      {"id": config["id"], "category": category,
                       "epochs": epochs, "training_params": {"max_epochs": config.get("max_epochs", 500)}})


def batch_document(ws: Workspace, name: str) -> dict:
    category = name.split("_")[1]
    return json.loads((ws.epoch().regression_training_configs_dir / category / f"{name}.json").read_text())


def test_the_machine_plan_prices_every_batch_and_says_what_it_assumes(grid_epoch: Workspace) -> None:
    plan = machine_plan(grid_epoch, calibrate.REFERENCE_RATES, calibrate.REFERENCE_SOURCE, now=0.0)
    total = plan["families"][-1]
    assert total["family"] == "total" and total["models"] == 1220 and total["done"] == 0 and total["batches"] == 54
    assert total["remaining_flop"] == total["flop"] > 0
    dnn = next(r for r in plan["families"] if r["family"] == "DNN")
    assert dnn["epochs"]["observed"] is False and "assumed" in dnn["epochs"]["source"]
    assert dnn["remaining_hours"] == pytest.approx(dnn["remaining_flop"] / calibrate.REFERENCE_RATES["DNN"] / 3600)
    assert plan["finish_at"] == pytest.approx(plan["remaining_hours"] * 3600)
    lines = format_machine_plan(plan)
    assert max(map(len, lines)) <= 80 and "not calibrated" in lines[1] and "assumed" in lines[-2]


def test_the_plan_follows_the_certificates(grid_epoch: Workspace) -> None:
    before = epoch_work(grid_epoch)
    dnn = next(b for b in before.batches if b.family == "DNN")
    configs = batch_document(grid_epoch, dnn.name)["configs"]
    for config in configs[:3]:
        certify(grid_epoch, config, 7)
    after = epoch_work(grid_epoch)
    batch = next(b for b in after.batches if b.name == dnn.name)
    assert batch.done == 3 and batch.remaining_flop < batch.flop
    assert after.epochs["DNN"].observed and after.epochs["DNN"].epochs == 7  # observed, no longer assumed
    assert not after.epochs["LSTM"].observed
    assert after.certified == {c["id"]: 7 for c in configs[:3]}
    # 7 epochs observed against 109 assumed: the DNN work of the whole epoch is about a tenth of the estimate.
    assert sum(b.flop for b in after.batches if b.family == "DNN") < 0.2 * sum(b.flop for b in before.batches if b.family == "DNN")


def board_of(work, states: dict[str, tuple[str, str | None]] | None = None, hosts=("fast", "slow"),
             jobs: dict[str, list[JobInfo]] | None = None) -> boards.Board:
    rows = []
    for batch in work.batches:
        state, host = (states or {}).get(batch.name, (boards.PENDING, None))
        rows.append(boards.BatchRow(boards.BatchSpec(boards.REGRESSIONS, batch.name, batch.category), state, host=host))
    return boards.Board(work.epoch_id, rows, {h: "online" for h in hosts}, jobs or {h: [] for h in hosts})


def rate_records(ws: Workspace, speeds: dict[str, float]) -> None:
    for server, speed in speeds.items():
        calibrate.save_record(ws.root, ws.training_rates_file, server, {
            "rates": {f: r * speed for f, r in calibrate.REFERENCE_RATES.items()}, "measured_at": 1.7e9, "cores": 2,
            "gpus": [], "tensorflow": "2.x", "machine": "x86_64"})


def test_cost_aware_dispatch_sends_the_longest_batch_to_the_fastest_server(grid_epoch: Workspace) -> None:
    rate_records(grid_epoch, {"fast": 10.0, "slow": 1.0})
    work = epoch_work(grid_epoch)
    planner = plans.CostPlanner(grid_epoch.root, ["fast", "slow"])
    planner.refresh(board_of(work), ["fast", "slow"], now=0.0)
    names = [b.name for b in work.batches]
    longest = max(work.batches, key=lambda b: b.flop / calibrate.REFERENCE_RATES[b.family])
    chosen, reason = planner.choose(names, "fast")
    assert chosen == longest.name and reason.startswith(f"{longest.name} to fast: ")
    # The slow server then takes what the plan gives it, saying how long there and on the fast one, with its queue.
    chosen, reason = planner.choose([n for n in names if n != longest.name], "slow")
    assert chosen is not None and reason.startswith(f"{chosen} to slow: ") and " on fast (" in reason
    assert planner.busy["fast"] == pytest.approx(planner.servers["fast"].seconds(planner.batch(longest.name)))


def test_a_slow_server_stays_idle_rather_than_start_a_straggler(grid_epoch: Workspace) -> None:
    rate_records(grid_epoch, {"fast": 100.0, "slow": 1.0})
    work = epoch_work(grid_epoch)
    planner = plans.CostPlanner(grid_epoch.root, ["fast", "slow"])
    planner.refresh(board_of(work), ["fast", "slow"], now=0.0)
    lstm = max((b for b in work.batches if b.family == "LSTM"), key=lambda b: b.flop)
    chosen, reason = planner.choose([lstm.name], "slow")  # the one batch left: 100x sooner done on fast
    assert chosen is None and reason.startswith("slow stays idle: ")
    assert planner.choose([lstm.name], "fast")[0] == lstm.name


def test_observed_rates_refine_the_calibration(grid_epoch: Workspace) -> None:
    rate_records(grid_epoch, {"fast": 1.0, "slow": 1.0})
    dnn = next(b for b in epoch_work(grid_epoch).batches if b.family == "DNN")
    for config in batch_document(grid_epoch, dnn.name)["configs"]:
        certify(grid_epoch, config, 10)
    work = epoch_work(grid_epoch)
    done = next(b for b in work.batches if b.name == dnn.name)
    job = JobInfo(job_id="j1", server="slow", argv=("train-regression-batch",), state="exited", exit_code=0,
                  started_at=1000.0, ended_at=1100.0)
    board = board_of(work, {dnn.name: (boards.DONE, "slow")}, jobs={"fast": [], "slow": [job]})
    row = next(r for r in board.rows if r.spec.name == dnn.name)
    row.job_id, row.jobs = "j1", [{"host": "slow", "job_id": "j1", "label": "exited 0"}]
    observed = plans.observed_rates(work, board)
    assert observed == {"slow": {"DNN": pytest.approx(done.flop / 100.0)}}
    plan = plans.cluster_plan(work, board, ["fast", "slow"], calibrate.read_records(grid_epoch.training_rates_file),
                              now=0.0)
    slow = next(s for s in plan["servers"] if s["name"] == "slow")
    assert slow["rates"]["DNN"] == pytest.approx(done.flop / 100.0) and "observed for DNN" in slow["source"]
    assert plan["families"][-1]["done"] == len(batch_document(grid_epoch, dnn.name)["configs"])
    assert plan["pending_batches"] == 53 and plan["order"] == "cost"
    json.dumps(plan)  # JSON-ready
    assert max(map(len, plans.format_cluster_plan(plan))) <= 80


def test_the_orders_are_declared_once() -> None:
    from remote.board_cli import ORDERS

    assert ORDERS == tuple(plans.ORDERS) and ORDERS[0] == plans.DEFAULT_ORDER


def test_a_garbled_rates_file_is_one_line(tmp_path: Path) -> None:
    from epoch_builder.errors import EpochBuilderError

    path = tmp_path / "training_rates.json"
    path.write_text(json.dumps({"servers": {"gpu-1": {"rates": {"LSTM": -1}, "measured_at": 1, "cores": 8}}}))
    with pytest.raises(EpochBuilderError, match=r"servers.gpu-1: rates.LSTM = '-1': not a rate; allowed 1e\+06"):
        calibrate.read_records(path)
    assert calibrate.rates_of({}, LOCAL)[1] == calibrate.REFERENCE_SOURCE
