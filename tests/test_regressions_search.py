"""`train-regression-batch --search halving` on the bundled sample: the rungs, the promotion of the best by
val_loss, complete and marked certificates for the models the search stopped, the search recorded and
checked on resume, and kill -9 at several points resumed to exactly the uninterrupted run."""

from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path

import pytest

from epoch_builder.errors import EpochBuilderError, UsageError
from epoch_builder.regressions import search
from epoch_builder.regressions.batch import train_batch
from epoch_builder.regressions.options import TrainingOptions
from epoch_builder.regressions.rank import stopped_by_search
from epoch_builder.storage import read_json
from epoch_builder.workspace import REGRESSION_CHECKPOINTS_DIR as CHECKPOINTS_DIR
from epoch_builder.workspace import Workspace
from tests.test_regressions_packed import kill_at
from tests.test_regressions_training import SECTION3_FIELDS, Interrupted, interrupt_at, quiet, training_config, write_batch

HALVING = TrainingOptions(max_epochs=4, pack=5, search="halving", rungs=2)  # one pack a stage: a few traced steps
# Timing and the record of interruptions: the only fields a resumed run may change.
RUN_FIELDS = ("training_start", "training_end", "resumed_from_epochs")


def five_dnns(ws: Workspace) -> list[dict]:
    """Five tiny DNNs that learn at different speeds (optimizer, learning rate): a ranking to make."""
    return [training_config(ws, "H1", "KR_DNN_S2"),
            training_config(ws, "H2", "KR_DNN_S2", optimizer="rmsprop", learning_rate=0.001),
            training_config(ws, "H3", "KR_DNN_S2", learning_rate=0.01),
            training_config(ws, "H4", "KR_DNN_S2", optimizer="rmsprop", learning_rate=0.0001),
            training_config(ws, "H5", "KR_DNN_S2", learning_rate=0.0003)]


def comparable(cert: dict) -> dict:
    return {k: v for k, v in cert.items() if k not in RUN_FIELDS}


# --- the rules, without training ----------------------------------------------------------------

def test_rungs_are_held_while_below_the_limit_and_more_than_one_model_goes_on() -> None:
    assert [search.rung_epochs(r, 2, 1) for r in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert [search.rung_epochs(r, 3, 5) for r in (1, 2, 3)] == [5, 15, 45]
    assert search.rung_held(1, 9, 5, 1, 4, 2) and search.rung_held(2, 9, 3, 2, 4, 2)
    assert not search.rung_held(3, 9, 2, 4, 4, 2)  # at the limit: every model is done anyway
    assert not search.rung_held(2, 9, 2, 1, 500, 2)  # one would go on: both are the last survivors
    assert search.rung_held(1, 9, 3, 1, 500, 2) and not search.rung_held(1, 9, 3, 1, 500, 3)
    assert search.rung_held(2, 2, 150, 2, 500, 2) and not search.rung_held(3, 2, 150, 4, 500, 2)  # --rungs 2


def test_a_rung_keeps_the_best_by_val_loss_ties_by_id_and_a_diverged_model_last() -> None:
    bests = {"E": 0.5, "B": 0.2, "A": 0.2, "D": None, "C": 0.1}
    decision = search.decide(1, 1, ["A", "B", "C", "D", "E", "F"], bests, 2)
    assert [i for i, _ in decision.ranking] == ["C", "A", "B", "E", "D"]
    assert decision.promoted == ("A", "B", "C") and decision.stopped == ("D", "E")  # F stopped on its own
    assert search.Decision.from_json(decision.to_json()) == decision
    assert search.best_val_loss({"val_loss": [0.3, None, 0.1, 0.05]}, 3) == 0.1
    assert search.best_val_loss({"val_loss": [None]}, 1) is None
    assert search.pack_sizes(["A", "B", "C", "D", "E"], 2) == {"A": 2, "B": 2, "C": 2, "D": 2, "E": 1}


def test_the_options_refuse_what_halving_cannot_do_in_one_line() -> None:
    with pytest.raises(UsageError, match=r"^--eta applies to --search halving only, not --search full$"):
        TrainingOptions(eta=3)
    with pytest.raises(UsageError, match=r"^--processes 2 with --search halving: .*allowed --processes 1 or --search full$"):
        TrainingOptions(search="halving", processes=2)
    with pytest.raises(UsageError, match=r"^--eta 1 out of range; allowed 2..16$"):
        TrainingOptions(search="halving", eta=1)
    with pytest.raises(UsageError, match=r"^--search 'random' is unknown; allowed: full, halving$"):
        TrainingOptions(search="random")
    with pytest.raises(UsageError, match=r"^--rungs 0 out of range; allowed 1..32$"):
        TrainingOptions(search="halving", rungs=0)
    assert TrainingOptions(search="halving", eta=3, first_rung=2, rungs=3, pack=4).argv() == [
        "--pack", "4", "--search", "halving", "--eta", "3", "--first-rung", "2", "--rungs", "3"]
    assert TrainingOptions(search="halving").argv() == ["--search", "halving"]
    assert TrainingOptions().argv() == []


# --- halving on real models -------------------------------------------------------------------------

def test_halving_promotes_the_best_by_val_loss_and_certifies_every_model(small_epoch: Workspace, tmp_path: Path) -> None:
    """5 models, eta 2, first rung 1, 4 epochs: rung 1 (1 epoch) keeps 3, rung 2 (2 epochs) keeps 2, and 4
    epochs is the limit, so those 2 train to it: 5 + 3 + 2 x 2 = 12 epochs instead of 20."""
    configs = five_dnns(small_epoch)
    write_batch(small_epoch, "DNN", "KR_HALF", configs)
    full = Workspace(tmp_path / "full")
    shutil.copytree(small_epoch.root, full.root)
    lines: list[str] = []
    from epoch_builder import events
    events.configure(str(tmp_path / "events.jsonl"))
    try:
        certificates = train_batch(small_epoch, "DNN", "KR_HALF", HALVING, log=lines.append)
    finally:
        events.configure(None)
    # The progress the Board shows: models finished, growing through the rungs (not the model in training)
    import json
    done = [json.loads(line)["done"] for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert done == sorted(done) and done[0] == 0 and done[-1] == 5, done
    assert [c["id"] for c in certificates] == ["H1", "H2", "H3", "H4", "H5"]
    paths = small_epoch.epoch()
    assert read_json(paths.batched_certificates_file("KR_HALF")) == certificates
    assert not (paths.dir / CHECKPOINTS_DIR).exists()  # checkpoints and the search state: gone once done
    by_id = {c["id"]: c for c in certificates}
    marks = {c["id"]: c["training_mode"]["search"] for c in certificates}
    base = {"method": "halving", "eta": 2, "first_rung": 1, "rungs": 2}

    # Rung 1: ranked by the best val_loss of epoch 1; the 2 worst stop there.
    at_one = sorted(by_id, key=lambda i: (by_id[i]["training_history"]["val_loss"][0], i))
    for place, model_id in enumerate(at_one, 1):
        assert marks[model_id]["ranks"][0] == place
    stopped_one = at_one[3:]
    for place, model_id in zip((4, 5), stopped_one):
        cert = by_id[model_id]
        assert marks[model_id] == {**base, "stopped": True, "rung": 1, "epochs": 1, "rank": place, "ranked": 5,
                                   "ranks": [place]}
        assert cert["epochs"] == 1 and cert["best_epoch"] == 1 and cert["training_params"]["max_epochs"] == 4
        assert stopped_by_search(cert) == 1
    # Rung 2: the 3 left, by their best val_loss over 2 epochs; the worst stops.
    left = at_one[:3]
    at_two = sorted(left, key=lambda i: (min(by_id[i]["training_history"]["val_loss"][:2]), i))
    assert marks[at_two[2]]["stopped"] and (marks[at_two[2]]["rung"], by_id[at_two[2]]["epochs"]) == (2, 2)
    for model_id in at_two[:2]:  # the last survivors: trained to the limit, not stopped by the search
        assert marks[model_id] == {**base, "stopped": False, "ranks": [at_one.index(model_id) + 1,
                                                                        at_two.index(model_id) + 1]}
        assert by_id[model_id]["epochs"] == 4 and stopped_by_search(by_id[model_id]) is None
    assert sum(c["epochs"] for c in certificates) == 12
    assert any("search: rung 1 (1 epoch(s)): 3 of 5 go on, 2 stopped" in line for line in lines), lines

    # Every certificate is complete: the fields of a full run's, each model's own files beside it.
    plain = train_batch(full, "DNN", write_batch(full, "DNN", "KR_SURVIVORS", [
        cfg for cfg in configs if cfg["id"] in at_two[:2]]), TrainingOptions(max_epochs=4, pack=5), log=quiet)
    for cert in certificates:
        assert all(field in cert for field in SECTION3_FIELDS)
        assert set(cert) == set(plain[0]) and set(cert["training_mode"]) == set(plain[0]["training_mode"]) | {"search"}
        assert len(cert["training_history"]["val_loss"]) == cert["epochs"]
        assert (paths.regressions_dir / cert["id"] / "model.keras").is_file()
        assert paths.regression_history_file(cert["id"]).is_file() and paths.regression_events_file(cert["id"]).is_file()
    # A survivor is the model a full run trains: promotion goes on from its checkpoint as if nothing happened.
    for theirs in plain:
        ours = by_id[theirs["id"]]
        assert "search" not in theirs["training_mode"]  # --search full: certificates as before the search existed
        assert ours["training_history"] == theirs["training_history"] and ours["resumed_from_epochs"] == []
        assert ours["test_evaluation"] == theirs["test_evaluation"] and ours["discovery"] == theirs["discovery"]


class FakeTrainer:
    """The batch's trainer without TensorFlow: each model's val_loss per epoch is given, and so is the epoch it
    stops at on its own (its early stopping). ``crash_after`` train/certify calls, it raises (a kill)."""

    def __init__(self, curves: dict[str, list[float]], own_stop: dict[str, int], limit: int) -> None:
        self.curves, self.own_stop, self.limit = curves, own_stop, limit
        self.epoch = {model_id: 0 for model_id in curves}
        self.certificates: dict[str, dict] = {}
        self.crash_after: int | None = None
        self.calls = 0

    def _call(self) -> None:
        self.calls += 1
        if self.crash_after is not None and self.calls > self.crash_after:
            raise Interrupted(f"call {self.calls}")

    def certified(self, model_id: str) -> bool:
        return model_id in self.certificates

    def checkpoint_state(self, model_id: str) -> dict | None:
        epoch = self.epoch[model_id]
        return {"epoch": epoch, "stopped": epoch >= self.own_stop.get(model_id, 10**6),
                "history": {"val_loss": self.curves[model_id][:epoch]}}

    def train(self, ids, stage) -> None:
        self._call()
        for model_id in ids:
            if self.certified(model_id):
                continue
            cap = min(stage.cap(self.limit), self.own_stop.get(model_id, 10**6))
            self.epoch[model_id] = max(self.epoch[model_id], cap)
            if self.epoch[model_id] >= self.limit or self.epoch[model_id] >= self.own_stop.get(model_id, 10**6):
                self.certificates[model_id] = {"epochs": self.epoch[model_id], "search": stage.record(model_id)}

    def certify_stopped(self, model_id: str, record: dict, pack_size: int) -> None:
        self._call()
        self.certificates[model_id] = {"epochs": self.epoch[model_id], "search": record, "pack_size": pack_size}


def _halving(tmp_path: Path, trainer: FakeTrainer, models: list[str], limit: int, rungs: int = 8) -> None:
    mode = {"method": "halving", "eta": 2, "first_rung": 1, "rungs": rungs}
    state = search.SearchState.start_or_resume(tmp_path / "B.search.json", "B", mode, limit, models)
    search.run_halving(state, trainer, 2, quiet)


def test_a_model_that_stops_on_its_own_before_a_rung_is_finished_not_ranked(tmp_path: Path) -> None:
    """6 models, eta 2, 16 epochs: rung 1 (1 epoch) keeps 3. C stops on its own at epoch 2, the second rung:
    it is finished (certified with the rank it had), and the rung ranks the 2 others and keeps 1, which trains
    to the end alone: the next rung would keep one of one, so it is not held."""
    curves = {m: [v, v * 0.9] + [v * 0.8] * 14 for m, v in zip("ABCDEF", (0.35, 0.4, 0.1, 0.3, 0.6, 0.7))}
    curves["A"][1] = 0.2  # A, third at rung 1, overtakes D at epoch 2
    trainer = FakeTrainer(curves, {"C": 2}, 16)
    _halving(tmp_path, trainer, list("ABCDEF"), 16)
    marks = {m: c["search"] for m, c in trainer.certificates.items()}
    assert sorted(marks) == list("ABCDEF")
    assert marks["C"] == {"method": "halving", "eta": 2, "first_rung": 1, "rungs": 8, "stopped": False, "ranks": [1]}
    assert trainer.certificates["C"]["epochs"] == 2  # finished on its own at the rung: not ranked there
    assert (marks["A"]["stopped"], marks["A"]["ranks"], trainer.certificates["A"]["epochs"]) == (False, [3, 1], 16)
    assert (marks["D"]["stopped"], marks["D"]["rung"], marks["D"]["rank"], marks["D"]["ranked"]) == (True, 2, 2, 2)
    assert marks["D"]["ranks"] == [2, 2] and trainer.certificates["D"]["epochs"] == 2
    for model_id, rank in (("B", 4), ("E", 5), ("F", 6)):
        assert marks[model_id]["rung"] == 1 and marks[model_id]["rank"] == rank and marks[model_id]["ranks"] == [rank]
        assert trainer.certificates[model_id]["epochs"] == 1 and trainer.certificates[model_id]["pack_size"] == 2
    assert read_json(tmp_path / "B.search.json")["rungs"][1]["ranking"] == [
        {"id": "A", "best_val_loss": 0.2}, {"id": "D", "best_val_loss": curves["D"][1]}]


@pytest.mark.parametrize("rungs", (1, 2, 8))
def test_the_fidelity_bench_replays_histories_with_the_searchs_own_rules(tmp_path: Path, rungs: int) -> None:
    """bench/bench_search.py's offline replay (the table the defaults were chosen from) gives each model the
    epochs and the outcome that run_halving gives it on the same val_loss curves and early stops."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_search", Path(__file__).parents[1] / "bench" / "bench_search.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_search", bench)  # its dataclasses look their module up
    spec.loader.exec_module(bench)
    limit = 16
    curves = {m: [v * (0.97 ** e) + 0.002 * ((e * (i + 3)) % 5) for e in range(limit)]
              for i, (m, v) in enumerate(zip("ABCDEFGHIJK", (0.5, 0.42, 0.45, 0.3, 0.6, 0.38, 0.41, 0.55, 0.2, 0.33, 0.47)))}
    own_stop = {"C": 2, "I": 5, "E": 9}
    trainer = FakeTrainer(curves, own_stop, limit)
    _halving(tmp_path, trainer, list(curves), limit, rungs=rungs)
    models = [bench.Trained(m, "DNN", "B", tuple(curves[m][:own_stop.get(m, limit)]), 0.0, limit, "mse", None, 1.0)
              for m in curves]
    trained, survivors = bench.replay_group(models, 2, 1, rungs, limit)
    assert trained == {m: c["epochs"] for m, c in trainer.certificates.items()}
    assert 1 < len(survivors) < len(curves) and len(set(trained.values())) > 2  # rungs decided something
    assert survivors == {m for m, c in trainer.certificates.items() if not c["search"]["stopped"]}


@pytest.mark.parametrize("crash_after", range(1, 6))
def test_a_search_killed_after_any_step_goes_on_from_its_state_file_to_the_same_end(tmp_path: Path,
                                                                                   crash_after: int) -> None:
    curves = {m: [v - 0.01 * e for e in range(8)] for m, v in zip("ABCDE", (0.5, 0.4, 0.45, 0.3, 0.6))}
    whole = FakeTrainer(curves, {}, 8)
    _halving(tmp_path / "whole", whole, list("ABCDE"), 8)
    broken = FakeTrainer(curves, {}, 8)
    broken.crash_after = crash_after
    with pytest.raises(Interrupted):
        _halving(tmp_path / "broken", broken, list("ABCDE"), 8)
    broken.crash_after = None  # the rerun: the models' checkpoints and the certificates are where the kill left them
    _halving(tmp_path / "broken", broken, list("ABCDE"), 8)
    assert broken.certificates == whole.certificates
    assert read_json(tmp_path / "broken" / "B.search.json") == read_json(tmp_path / "whole" / "B.search.json")


def test_the_search_is_recorded_and_a_rerun_with_another_is_refused(small_epoch: Workspace) -> None:
    write_batch(small_epoch, "DNN", "KR_SWITCH", five_dnns(small_epoch))
    with pytest.raises(Interrupted):
        train_batch(small_epoch, "DNN", "KR_SWITCH", HALVING, log=interrupt_at(2))  # rung 2: rung 1 is decided
    state_file = small_epoch.epoch().search_state_file("KR_SWITCH")
    state = read_json(state_file)
    assert state["search"] == {"method": "halving", "eta": 2, "first_rung": 1, "rungs": 2} and state["max_epochs"] == 4
    assert [r["rung"] for r in state["rungs"]] == [1] and len(state["rungs"][0]["stopped"]) == 2
    before = state_file.read_bytes()

    for other, now in ((TrainingOptions(max_epochs=4, pack=5), "--search full"),
                       (TrainingOptions(max_epochs=4, pack=5, search="halving", eta=3, rungs=2),
                        "--search halving --eta 3 --first-rung 1 --rungs 2 (max epochs 4)"),
                       (TrainingOptions(max_epochs=4, pack=5, search="halving"),
                        "--search halving --eta 2 --first-rung 1 --rungs 1 (max epochs 4)"),
                       (TrainingOptions(max_epochs=5, pack=5, search="halving", rungs=2),
                        "--search halving --eta 2 --first-rung 1 --rungs 2 (max epochs 5)")):
        with pytest.raises(EpochBuilderError) as refused:
            train_batch(small_epoch, "DNN", "KR_SWITCH", other, log=quiet)
        message = str(refused.value)
        assert message.startswith(f"{state_file}: batch KR_SWITCH was started with --search halving --eta 2 "
                                  f"--first-rung 1 --rungs 2 (max epochs 4), not {now}; rerun with --search halving")
        assert "\n" not in message
    assert state_file.read_bytes() == before  # the refusals changed nothing

    # A full run's checkpoint is refused by halving before any search state is written.
    write_batch(small_epoch, "DNN", "KR_FULL", [training_config(small_epoch, "F1", "KR_DNN_S2"),
                                                training_config(small_epoch, "F2", "KR_DNN_S2", learning_rate=0.01)])
    with pytest.raises(Interrupted):
        train_batch(small_epoch, "DNN", "KR_FULL", TrainingOptions(max_epochs=4, pack=2), log=interrupt_at(2))
    with pytest.raises(EpochBuilderError, match=r"F1/state.json: checkpoint of F1 was written with --search full, not "
                                                r"--search halving --eta 2 --first-rung 1 --rungs 2; rerun with --search full"):
        train_batch(small_epoch, "DNN", "KR_FULL", HALVING, log=quiet)
    assert not small_epoch.epoch().search_state_file("KR_FULL").exists()
    done = train_batch(small_epoch, "DNN", "KR_SWITCH", HALVING, log=quiet)  # the right options resume it
    assert len(done) == 5 and not state_file.exists()


@pytest.mark.slow
def test_kill_9_at_every_stage_of_the_search_resumes_to_the_uninterrupted_result(
        small_epoch: Workspace, tmp_path: Path) -> None:
    """Killed mid-rung, right after a rung's decision, while the stopped models are certified and while the
    survivors train on: the same promotions, the same certificates (but for timing and the resume record),
    the same histories as a run never interrupted."""
    write_batch(small_epoch, "DNN", "KR_KILL", five_dnns(small_epoch))
    reference = Workspace(tmp_path / "reference")
    shutil.copytree(small_epoch.root, reference.root)
    packs_of_two = TrainingOptions(max_epochs=4, pack=2, search="halving", rungs=2)
    command = [sys.executable, "-m", "epoch_builder.cli", "train-regression-batch", "--workspace", str(small_epoch.root),
               "--batch", "KR_KILL", *packs_of_two.argv()]
    state_file = small_epoch.epoch().search_state_file("KR_KILL")
    kill_at(command, "H3 epoch 1/4")  # mid-rung 1: the first pack at the rung, the second in it
    assert not read_json(state_file)["rungs"]
    kill_at(command, "search: rung 1 (")  # the decision is written; nothing acted on it yet
    assert len(read_json(state_file)["rungs"]) == 1
    kill_at(command, "(stopped by the search at rung 1")  # one stopped model certified, the other not yet
    kill_at(command, "epoch 3/4")  # the survivors train on
    resumed = train_batch(small_epoch, "DNN", "KR_KILL", packs_of_two, log=quiet)
    uninterrupted = train_batch(reference, "DNN", "KR_KILL", packs_of_two, log=quiet)
    assert [comparable(c) for c in resumed] == [comparable(c) for c in uninterrupted]
    ours, theirs = small_epoch.epoch(), reference.epoch()
    for cert in uninterrupted:
        assert ours.regression_history_file(cert["id"]).read_bytes() == theirs.regression_history_file(cert["id"]).read_bytes()
    assert not state_file.exists() and not (ours.dir / CHECKPOINTS_DIR).exists()
    assert math.isfinite(sum(c["test_evaluation"]["loss"] for c in resumed))


# --- the stopped ones, shown ------------------------------------------------------------------------

def _stop(ws: Workspace, model_id: str, rung: int) -> None:
    """Mark a trained regression's certificate as --search halving marks one it stopped at ``rung``."""
    from epoch_builder.storage import atomic_write_json

    path = ws.epoch().regression_certificate_file(model_id)
    cert = read_json(path)
    cert["training_mode"]["search"] = {"method": "halving", "eta": 2, "first_rung": 1, "rungs": 2, "stopped": True, "rung": rung,
                                       "epochs": 2 ** (rung - 1), "rank": 4, "ranked": 6, "ranks": [4]}
    atomic_write_json(path, cert, indent=2)


def test_rank_initialize_the_console_and_the_report_show_the_stopped_ones(trained: Workspace, capsys) -> None:
    import json

    from console.workspace_files import list_regressions
    from epoch_builder.cli import main
    from epoch_builder.prediction.configs import select_regressions
    from epoch_builder.regressions.rank import rank_regressions
    from tests.test_build_export import regression_ids

    ranked = [r["id"] for r in rank_regressions(trained)]
    best, second = ranked[0], ranked[1]
    _stop(trained, best, 2)
    rows = rank_regressions(trained)
    assert {r["id"]: r["stopped_by_search"] for r in rows}[best] == 2
    from epoch_builder.regressions.rank import stopped_regressions
    assert stopped_regressions(trained, [best, second, best, "KR_NOT_TRAINED"]) == {best: 2}
    assert sum(r["stopped_by_search"] is None for r in rows) == 5

    root = str(trained.root)
    capsys.readouterr()
    assert main(["regressions", "rank", "--workspace", root]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[-1] == "epochs"
    marks = {line.split()[1]: line.split()[-2:] for line in table[1:]}
    assert marks[best] == ["30", "r2"] and marks[second][-1] == "30"
    assert main(["regressions", "rank", "--workspace", root, "--json"]) == 0
    assert {r["id"]: r["stopped_by_search"] for r in json.loads(capsys.readouterr().out)}[best] == 2

    # --top leaves it out, in one line; asked, it ranks it too; named, it is taken.
    lines: list[str] = []
    assert select_regressions(trained, None, 2, "test_loss", log=lines.append) == ranked[1:3]
    assert lines == ["--top 2: 1 regression(s) stopped early by --search halving left out (1 of them would rank in "
                     "the top 2); --include-search-stopped ranks them too"]
    assert select_regressions(trained, None, 2, "test_loss", include_search_stopped=True, log=lines.append) == ranked[:2]
    assert select_regressions(trained, [best], None, None, log=lines.append) == [best] and len(lines) == 1
    ids = ",".join(regression_ids(trained))
    assert main(["initialize-prediction-models", "--workspace", root, "--regressions", ids,
                 "--include-search-stopped"]) == 2
    assert "--include-search-stopped is only used with --top N" in capsys.readouterr().err

    # The console's list, and the report's regression table.
    summaries = {r.id: r for r in list_regressions(trained)}
    assert summaries[best].stopped_rung == 2 and summaries[second].stopped_rung is None
    from epoch_builder.report import Regression, _regressions_section

    section = _regressions_section([Regression(i, {}, trained.epoch().regression_certificate_file(i),
                                               read_json(trained.epoch().regression_certificate_file(i)), None)
                                    for i in (best, second)], None)
    assert ">search</th>" in section and section.count(">stopped r2<") == 1
