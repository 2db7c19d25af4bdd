"""Forms, pickers, confirm dialog, action menu, help and command palette (Pilot)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from textual.app import App
from textual.screen import Screen
from textual.widgets import Checkbox, Input, Select, Static

from console.actions import ACTIONS
from console.screens.action_menu import ActionMenu
from console.screens.confirm import ConfirmDialog
from console.screens.dispatch_form import DispatchForm
from console.screens.forms import CreateEpochForm, ImportCandlesForm, NumberForm, OptionsForm, TextForm
from console.screens.pickers import BatchPicker, ModelPicker, RegressionPicker, ServerPicker
from console.screens.help import HelpScreen, help_markdown
from console.workspace_files import list_batches, list_build_models, list_regressions
from epoch_builder.regressions.options import TrainingOptions
from remote.dispatch import DispatchOptions


class Host(App[None]):
    """Pushes one screen and records what it dismisses with."""

    def __init__(self, screen: Screen[Any]) -> None:
        super().__init__()
        self.first = screen
        self.results: list[Any] = []

    def on_mount(self) -> None:
        self.push_screen(self.first, self.results.append)


async def test_confirm_dialog_defaults_to_cancel() -> None:
    app = Host(ConfirmDialog("Reboot srv1?", "Reboot"))
    async with app.run_test() as pilot:
        assert app.focused.id == "cancel"
        await pilot.press("enter")
        assert app.results == [False]


async def test_confirm_dialog_confirms_only_on_its_button() -> None:
    app = Host(ConfirmDialog("Shutdown srv1?", "Shutdown"))
    async with app.run_test() as pilot:
        await pilot.press("tab", "enter")
        assert app.results == [True]


async def test_create_epoch_form_validates_like_the_command() -> None:
    app = Host(CreateEpochForm())
    async with app.run_test(size=(120, 50)) as pilot:
        await pilot.press(*"EPOCH")  # no leading underscore
        await pilot.press("ctrl+s")
        error = str(app.screen.query_one(".form-error", Static).render())
        assert "id 'EPOCH' is invalid" in error and not app.results

        app.screen.query_one("#f-id", Input).value = "_TEST"
        app.screen.query_one("#f-regression_lookback", Input).value = "16"  # below the default profile's 32
        await pilot.press("ctrl+s")
        error = str(app.screen.query_one(".form-error", Static).render())
        assert "regression_lookback=16 is out of range: allowed 32..512" in error and not app.results
        assert "choose profile small for small data" in error and "--profile" not in error  # the form's words

        app.screen.query_one("#f-profile", Select).value = "small"  # widens the range, moves defaults
        await pilot.pause()
        assert app.screen.query_one("#f-sma_window_size", Input).value == "10"
        assert app.screen.query_one("#f-epoch_width", Input).value == "20"
        assert str(app.screen.query_one("#f-unit", Select).value) == "days"
        await pilot.press("ctrl+s")
    args = app.results[0]
    assert args[:5] == ["create-epoch", "--id", "_TEST", "--profile", "small"]
    options = dict(zip(args[5::2], args[6::2]))
    assert options["--width-days"] == "20" and options["--regression-lookback"] == "16"
    assert options["--sma-window-size"] == "10" and options["--seed"] == "60184"


async def test_create_epoch_form_escape_cancels() -> None:
    app = Host(CreateEpochForm())
    async with app.run_test(size=(120, 50)) as pilot:
        await pilot.press("escape")
    assert app.results == [None]


async def test_server_picker_offers_all() -> None:
    app = Host(ServerPicker(["srv1", "srv2"], allow_all=True, default="srv2"))
    async with app.run_test() as pilot:
        await pilot.press("down", "enter")  # from srv2 down to "all servers"
    assert app.results == [["srv1", "srv2"]]


async def test_number_form_range() -> None:
    app = Host(NumberForm("Build prediction models", "limit", 100, 1, 1000))
    async with app.run_test() as pilot:
        app.screen.query_one(Input).value = "5000"
        await pilot.press("enter")
        assert "limit 5,000 is out of range: allowed 1 to 1,000" in str(app.screen.query_one(".form-error", Static).render())
        app.screen.query_one(Input).value = "250"
        await pilot.press("enter")
    assert app.results == [250]


def _write(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


async def test_dispatch_form_checks_like_the_command_and_returns_its_options() -> None:
    app = Host(DispatchForm(DispatchOptions(stage="profitable-configs", interval_s=3.0)))
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert screen.query_one("#f-stage", Select).value == "profitable-configs"
        assert screen.query_one("#f-stall", Input).value == "120"
        assert screen.query_one("#f-reassign-after", Input).value == ""  # off by default
        screen.query_one("#f-max-failures", Input).value = "0"
        await pilot.press("ctrl+s")
        error = str(screen.query_one(".form-error", Static).render())
        assert "--max-failures 0 out of range; allowed 1..100" in error and not app.results
        screen.query_one("#f-max-failures", Input).value = "3"
        screen.query_one("#f-reassign-after", Input).value = "soon"
        await pilot.press("ctrl+s")
        error = str(screen.query_one(".form-error", Static).render())
        assert "--reassign-after='soon' must be a number or blank" in error and not app.results
        screen.query_one("#f-reassign-after", Input).value = "600"
        screen.query_one("#f-workers", Input).value = "2"
        screen.query_one("#f-pack", Input).value = "99"
        await pilot.press("ctrl+s")
        error = str(screen.query_one(".form-error", Static).render())
        assert "--pack 99 out of range; allowed 1..64" in error and not app.results
        screen.query_one("#f-pack", Input).value = "4"
        screen.query_one("#f-fast", Checkbox).value = True
        screen.query_one("#f-stage", Select).value = "regressions"
        screen.query_one("#f-engine", Select).value = "ray"
        screen.query_one("#f-gpus-per-batch", Input).value = "-0.5"
        await pilot.pause()
        await pilot.press("ctrl+s")
        error = str(screen.query_one(".form-error", Static).render())
        assert "--gpus-per-batch -0.5 out of range; allowed 0..64" in error and not app.results
        screen.query_one("#f-gpus-per-batch", Input).value = "0.25"
        screen.query_one("#f-ray-address", Input).value = "10.0.0.5:6379"
        await pilot.press("ctrl+s")
    [options] = app.results
    assert (options.stage, options.max_failures, options.reassign_after_s, options.workers, options.training.max_epochs,
            options.stall_s, options.interval_s, options.training.pack, options.training.fast) == (
        "regressions", 3, 600.0, 2, None, 120.0, 3.0, 4, True)
    assert (options.engine, options.ray_address, options.gpus_per_batch, options.cpus_per_batch) == (
        "ray", "10.0.0.5:6379", 0.25, None)


async def test_batch_picker_lists_the_epochs_batch_files(small_epoch) -> None:
    epoch = small_epoch.epoch()
    _write(epoch.regression_training_configs_dir / "UNIT_TEST" / "KR_UNIT_TEST.json", [{"id": "KR_UNIT_TEST"}])
    _write(epoch.regression_training_configs_dir / "DNN" / "KR_DNN_1_2.json", [{"id": "a"}, {"id": "b"}])
    batches = list_batches(small_epoch)
    assert [(b.category, b.path.name, b.models) for b in batches] == [("DNN", "KR_DNN_1_2.json", 2), ("UNIT_TEST", "KR_UNIT_TEST.json", 1)]
    app = Host(BatchPicker(batches, "Train"))
    async with app.run_test() as pilot:
        await pilot.press("down", "enter")
    chosen = app.results[0]
    assert chosen.category == "UNIT_TEST" and chosen.relative == f"{epoch.id}/regression_training_configs/UNIT_TEST/KR_UNIT_TEST.json"


async def test_regression_picker_ranks_and_multiselects(small_epoch) -> None:
    base = small_epoch.epoch().regressions_dir
    for i, loss in enumerate([0.03, 0.01, 0.02]):
        _write(base / f"R{i}" / "certificate.json", {"id": f"R{i}", "test_evaluation": {"loss": loss, "metric": loss * 2},
                                                      "discovery": {"accuracy": 55.5, "points": 3.0},
                                                      "training_history": {"loss": [0.1, 0.05], "val_loss": [0.2, 0.1]}})
    ranked = list_regressions(small_epoch)
    assert [r.id for r in ranked] == ["R1", "R2", "R0"] and ranked[0].epochs == 2
    app = Host(RegressionPicker(ranked, preselect=2))
    async with app.run_test(size=(110, 50)) as pilot:
        await pilot.press("down", "down", "space")  # add the third
        await pilot.press("ctrl+s")  # 8 per model > 3 selected: refused
        assert "must be an integer in 1..3" in str(app.screen.query_one(".form-error").render())
        app.screen.query_one("#f-per-model").value = "2"
        app.screen.query_one("#f-pcr").value = "1, 3"
        await pilot.press("ctrl+s")
    assert app.results[0] == ["initialize-prediction-models", "--regressions", "R1,R2,R0", "--pcr", "1,3",
                              "--regressions-per-model", "2", "--allow-few-regressions"]


async def test_regression_picker_marks_the_ones_the_search_stopped_and_does_not_tick_them(small_epoch) -> None:
    """A regression --search halving stopped early shows its rung ("1 r1") and is not among the preselected
    best, as initialize-prediction-models --top leaves it out."""
    base = small_epoch.epoch().regressions_dir
    for i, loss in enumerate([0.01, 0.02, 0.03]):
        mode = {"search": {"method": "halving", "stopped": True, "rung": 1}} if i == 0 else {}
        _write(base / f"S{i}" / "certificate.json", {"id": f"S{i}", "test_evaluation": {"loss": loss, "metric": loss},
                                                      "training_mode": mode,
                                                      "training_history": {"loss": [0.1] * (1 if i == 0 else 3)}})
    ranked = list_regressions(small_epoch)
    assert [(r.id, r.stopped_rung) for r in ranked] == [("S0", 1), ("S1", None), ("S2", None)]
    app = Host(RegressionPicker(ranked, preselect=2))
    async with app.run_test(size=(110, 50)) as pilot:
        assert "stopped early by --search halving" in str(app.screen.query_one("#stopped-note").render())
        options = app.screen.query_one("#regression-list")
        assert "1 r1" in str(options.get_option_at_index(0).prompt)
        assert sorted(options.selected) == ["S1", "S2"]
        await pilot.pause()


async def test_model_picker_over_build_and_balance_chart(small_epoch) -> None:
    build = small_epoch.epoch().build_file
    def position(ok: bool, balance: float) -> dict:
        return {"t": 1, "ot": 0, "op": 100.0, "tpp": 103.0, "slp": 97.0, "ct": 1, "cp": 103.0 if ok else 97.0, "o": ok, "b": balance}

    models = [  # the structure build-prediction-models writes
        {"id": "_SMALL_a", "config": {"pcr": 3}, "backtest": {
            "profit": 120.5, "accuracy": 61.0, "max_drawdown": -0.33, "balance_history": [15000, 15100, 15050, 15120.5],
            "positions": [position(True, 15100), position(False, 15050), position(True, 15120.5)]}},
        {"id": "_SMALL_b", "config": {"pcr": 3}, "backtest": {
            "profit": 10.0, "accuracy": 56.0, "max_drawdown": 0.0, "balance_history": [15000, 15010],
            "positions": [position(True, 15010)]}},
    ]
    _write(build, models)
    summaries = list_build_models(small_epoch)
    assert summaries[0].positions == 3 and summaries[0].drawdown == -0.33
    assert summaries[0].position_outcomes == [True, False, True] and summaries[0].balance_history[-1] == 15120.5
    app = Host(ModelPicker(summaries))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("c")  # balance chart of the highlighted model
        await pilot.pause()
        assert type(app.screen).__name__ == "BalanceChartScreen"
        await pilot.press("escape")
        await pilot.press("down", "ctrl+s")
    assert app.results == ["_SMALL_b"]


async def test_model_table_shows_how_much_is_luck(small_epoch) -> None:
    """Out-of-sample profit, deflated Sharpe ratio and the build's PBO line, in an 80x24 terminal."""
    from console.workspace_files import build_luck

    paths = small_epoch.epoch()
    backtest = {"profit": 120.5, "accuracy": 61.0, "max_drawdown": -0.33, "balance_history": [15000, 15120.5],
                "positions": [{"o": True, "b": 15120.5}]}
    _write(paths.build_file, [
        {"id": "_SMALL_a", "backtest": backtest, "deflated_sharpe": {"dsr": 0.8712},
         "out_of_sample": {"out_of_sample": {"profit": -42.25}}},
        {"id": "_SMALL_b", "backtest": backtest, "deflated_sharpe": {"dsr": None, "reason": "1 position(s)"}},
    ])
    summaries = list_build_models(small_epoch)
    assert [(m.oos_profit, m.dsr) for m in summaries] == [(-42.25, 0.8712), (None, None)]
    assert build_luck(small_epoch, summaries).startswith("no build_summary.json")
    _write(paths.build_summary_file, {"models": ["_SMALL_b", "_SMALL_a"], "configurations": 755820,
                                      "pbo": {"pbo": 0.4123, "blocks": 16, "sampled_configurations": 50000}})
    luck = build_luck(small_epoch, summaries)
    assert luck.startswith("probability of backtest overfitting 0.41 (CSCV, 16 blocks, 50,000 of 755,820")
    app = Host(ModelPicker(summaries, luck))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#model-table")
        assert [str(cell) for cell in table.get_row_at(0)][-2:] == ["-42.25", "0.87"]
        assert [str(cell) for cell in table.get_row_at(1)][-2:] == ["-", "-"]
        label = app.screen.query_one("#build-luck")
        assert "overfitting 0.41" in str(label.render()) and label.region.height >= 1


def test_unreadable_build_file_names_the_file(small_epoch) -> None:
    from epoch_builder.errors import EpochBuilderError

    build = small_epoch.epoch().build_file
    build.parent.mkdir(parents=True, exist_ok=True)
    build.write_text("{not json")
    with pytest.raises(EpochBuilderError, match="build.json: cannot read JSON"):
        list_build_models(small_epoch)


async def test_action_menu_lists_every_action_grouped() -> None:
    app = Host(ActionMenu(ACTIONS))
    async with app.run_test(size=(100, 60)) as pilot:
        option_list = app.screen.query_one("#action-list")
        ids = [option_list.get_option_at_index(i).id for i in range(option_list.option_count)]
        assert [a.id for a in ACTIONS] == [i for i in ids if i]
        await pilot.press("down", "enter")  # highlight starts on Server / Connect; down = View status
    assert app.results == ["view_status"]


async def test_help_lists_every_binding() -> None:
    text = help_markdown(ACTIONS)
    for action in ACTIONS:
        assert action.title in text
    app = Host(HelpScreen(ACTIONS))
    async with app.run_test() as pilot:
        await pilot.press("escape")
    assert app.results == [None]


def test_the_board_is_in_the_footer_help_palette_and_menu() -> None:
    from console.actions import ACTIONS, ACTIONS_BY_ID, actions_in
    from console.app import EpochConsole
    from console.screens.help import help_markdown

    board = ACTIONS_BY_ID["board"]
    assert board.key == "o" and board.footer
    assert any(b.key == "o" and b.show and b.action == "perform('board')" for b in EpochConsole.BINDINGS)
    assert "| `o` | Board |" in help_markdown(ACTIONS)
    assert board in actions_in(board.group)  # the `a` menu and the palette list every ACTIONS entry


def test_every_action_is_a_coroutine_its_key_performs() -> None:
    """Actions as data: each spec holds the coroutine that runs it, and its key binding performs that spec."""
    import inspect

    from console.actions import ACTIONS, ACTIONS_BY_ID
    from console.app import EpochConsole

    assert len(ACTIONS_BY_ID) == len(ACTIONS)  # ids are unique
    for spec in ACTIONS:
        assert inspect.iscoroutinefunction(spec.run), spec.id
    bound = {b.key: b.action for b in EpochConsole.BINDINGS}
    for spec in ACTIONS:
        if spec.key:
            assert bound[spec.key] == f"perform('{spec.id}')", spec.id
    assert not [name for name in dir(EpochConsole) if name.startswith("action_") and name.removeprefix("action_") in ACTIONS_BY_ID]


async def test_a_failing_action_is_reported_once_by_the_one_handler() -> None:
    """Whatever an action raises becomes one error toast prefixed with the action, never a crash."""
    from console.actions import ACTIONS_BY_ID
    from console.app import EpochConsole
    from console.cluster import Cluster
    from epoch_builder.workspace import Workspace

    import tempfile

    with tempfile.TemporaryDirectory() as root:  # no cluster file: this machine alone, not connected
        app = EpochConsole(Cluster.from_config(None, root), Workspace(Path(root)), live=False)
        async with app.run_test() as pilot:
            app.run_action_id("initialize_models")  # an empty workspace has no epoch
            await pilot.pause(0.2)
            app.run_action_id("no_such_action")
            await pilot.pause(0.1)
        errors = [m for m in app.messages if "no active epoch" in m]
        assert len(errors) == 1 and errors[0].startswith(ACTIONS_BY_ID["initialize_models"].context + ": ")
        assert "(console: Create epoch, key e)" in errors[0]  # the empty state names the key that fixes it
        assert any("unknown action 'no_such_action'" in m for m in app.messages)


def _fully_visible(widget, screen) -> bool:
    """Drawn whole: inside its dialog's box (a clipped child lies partly outside it) and on the screen."""
    region, dialog = widget.region, screen.query_one(".dialog").region
    return region.height > 0 and dialog.contains_region(region) and screen.region.contains_region(dialog)


class StyledHost(Host):
    """Host with the console's own style sheets, so sizes are those the user sees."""

    from console.app import EpochConsole

    CSS_PATH = EpochConsole.CSS_PATH


@pytest.mark.parametrize("size", [(80, 24), (100, 30), (200, 50)])
async def test_a_form_keeps_its_error_line_buttons_and_keys_on_screen(size: tuple[int, int]) -> None:
    """At 80x24 the Create-epoch form's fields scroll; its error line, buttons and key hints stay in view,
    ``Enter`` walks the fields and submits from the last one."""
    app = StyledHost(CreateEpochForm())
    async with app.run_test(size=size) as pilot:
        screen = app.screen
        await pilot.press(*"../x", "ctrl+s")
        await pilot.pause()
        error = screen.query_one(".form-error", Static)
        assert "is invalid" in str(error.render()) and not app.results
        for widget in (error, screen.query_one("#ok"), screen.query_one("#cancel"), screen.query_one(".form-keys")):
            assert _fully_visible(widget, screen), (widget, widget.region, screen.region)
        assert "submit" in str(screen.query_one(".form-keys").render())

        screen.query_one("#f-id", Input).value = "_TEST"
        await pilot.press("enter")  # from the id field: to the next field, not a submit
        assert not app.results and screen.focused is not screen.query_one("#f-id", Input)
        inputs = list(screen.query(Input))
        inputs[-1].focus()
        await pilot.press("enter")  # the last field submits
        await pilot.pause()
        assert app.results and app.results[0][:3] == ["create-epoch", "--id", "_TEST"]


async def test_the_dispatch_form_offers_train_regression_batchs_options_from_their_table() -> None:
    """One field per option of epoch_builder/regressions/options.py, its range beside it; the form's values
    make the one TrainingOptions object (checked there: one line naming the flag)."""
    from epoch_builder.regressions.options import CHOICE, FLAG, OPTIONS

    defaults = DispatchOptions(stage="regressions", interval_s=3.0, training=TrainingOptions(pack=3))
    app = Host(DispatchForm(defaults))
    async with app.run_test(size=(120, 60)) as pilot:
        screen = app.screen
        for option in OPTIONS:
            widget = screen.query_one(f"#f-{option.flag[2:]}")
            expected = {FLAG: Checkbox, CHOICE: Select}.get(option.kind, Input)
            assert isinstance(widget, expected), option.flag
            if expected is Input:
                beside = widget.parent.query_one(".field-range", Static)
                assert str(beside.render()) == option.allowed
        assert screen.query_one("#f-pack", Input).value == "3" and screen.query_one("#f-eta", Input).value == "2"
        screen.query_one("#f-eta", Input).value = "3"
        await pilot.press("ctrl+s")
        error = str(screen.query_one(".form-error", Static).render())
        assert "--eta applies to --search halving only" in error and not app.results
        screen.query_one("#f-search", Select).value = "halving"
        await pilot.pause()
        await pilot.press("ctrl+s")
    [options] = app.results
    assert options.training == TrainingOptions(pack=3, search="halving", eta=3)


def _train_options() -> OptionsForm:
    """The train form as the console opens it: train-regression-batch's options table, checked by TrainingOptions."""
    from console.actions.pipeline import train_form_fields

    return OptionsForm("Train KR_DNN_1_10 on srv2", train_form_fields(), build=TrainingOptions.from_values)


# Every form the console opens: (make it, put a bad value in, put a good value in, what it returns).
FORMS = {
    "import candlesticks": (lambda: ImportCandlesForm("srv1"), {"#f-interval": "0"},
                            {"#f-sources": "/data/BTCUSDT-1m-2024-01.zip", "#f-interval": "30"},
                            ["candlesticks", "import", "/data/BTCUSDT-1m-2024-01.zip", "--interval", "30"]),
    "train options": (_train_options, {"#f-max_epochs": "0"}, {"#f-max_epochs": "5"}, TrainingOptions(max_epochs=5)),
    "build limit": (lambda: NumberForm("Build prediction models", "limit (models kept)", 100, 1, 10_000_000),
                    {"#f-number": "0"}, {"#f-number": "250"}, 250),
    "ssh key": (lambda: TextForm("Install SSH key", "public key file"), {"#f-text": ""}, {"#f-text": "~/.ssh/k.pub"},
                "~/.ssh/k.pub"),
    "auto-dispatch": (lambda: DispatchForm(DispatchOptions(stage="regressions", interval_s=3.0)),
                      {"#f-max-failures": "0"}, {"#f-max-failures": "3"}, None),
}


@pytest.mark.parametrize("size", [(80, 24), (200, 50)], ids=["80x24", "200x50"])
@pytest.mark.parametrize("form", list(FORMS))
async def test_every_form_shows_its_error_and_buttons_and_enter_submits_from_the_last_field(form: str, size) -> None:
    make, bad, good, expected = FORMS[form]
    app = StyledHost(make())
    async with app.run_test(size=size) as pilot:
        screen = app.screen
        for selector, value in bad.items():
            screen.query_one(selector, Input).value = value
        await pilot.press("ctrl+s")
        await pilot.pause()
        error = screen.query_one(".form-error", Static)
        assert str(error.render()).strip() and not app.results, form
        for widget in (error, screen.query_one("#ok"), screen.query_one("#cancel"), screen.query_one(".form-keys")):
            assert _fully_visible(widget, screen), (form, widget, widget.region, screen.region)
        for selector, value in good.items():
            screen.query_one(selector, Input).value = value
        inputs = [box for box in screen.query(Input) if box.display]
        if len(inputs) > 1:
            inputs[0].focus()
            await pilot.press("enter")  # not the last field: moves on
            await pilot.pause()
            assert not app.results and screen.focused is not inputs[0], form
        inputs[-1].focus()
        await pilot.press("enter")  # the last field submits
        await pilot.pause()
        assert len(app.results) == 1, form
        if form == "auto-dispatch":
            assert app.results[0].max_failures == 3 and app.results[0].stage == "regressions"
        else:
            assert app.results[0] == expected, form


async def test_all_servers_for_power_leaves_out_this_machine_unless_chosen_by_name() -> None:
    app = StyledHost(ServerPicker(["localhost", "srv1", "srv2"], allow_all=True, all_means=["srv1", "srv2"]))
    async with app.run_test(size=(100, 30)) as pilot:
        option_list = app.screen.query_one("#server-list")
        assert "not localhost" in str(option_list.get_option_at_index(3).prompt)
        option_list.highlighted = 3
        await pilot.press("enter")
        assert app.results == [["srv1", "srv2"]]


def test_status_reads_in_words_and_units(tmp_path: Path) -> None:
    from console.screens.status import status_rows
    from epoch_builder.status import snapshot

    rows = dict(status_rows(snapshot(tmp_path)))
    assert rows["memory"].endswith("%)") and "GiB used" in rows["memory"] and "GiB free" in rows["disk"]
    assert "'" not in " ".join(rows.values()) and "total" not in " ".join(rows.values())  # not a raw dict
    assert rows["jobs"] == "none running" and rows["as of"].startswith("20")


def test_ranges_and_batch_names_read_as_people_write_them() -> None:
    from console.screens.forms import plain_number
    from console.workspace_files import natural_key

    assert [plain_number(v) for v in (1, 1e8, 0.5)] == ["1", "100,000,000", "0.5"]
    assert sorted(["KR_CDNN_10_14", "KR_CDNN_1_14", "KR_CDNN_2_14"], key=natural_key) == [
        "KR_CDNN_1_14", "KR_CDNN_2_14", "KR_CDNN_10_14"]


async def test_table_columns_grow_with_their_content_instead_of_clipping() -> None:
    from console.state import HostView, JobView
    from console.widgets.jobs import JobsTable
    from console.widgets.servers import ServersTable

    class Tables(App[None]):
        def compose(self):
            yield ServersTable(id="servers")
            yield JobsTable(id="jobs")

    app = Tables()
    async with app.run_test(size=(200, 50)) as pilot:
        servers, jobs = app.query_one(ServersTable), app.query_one(JobsTable)
        host = HostView("srv1", "127.0.0.1", state="online")
        job = JobView("srv1", "20260101T000000-train-regression-batch-abc123", "train-regression-batch --batch X",
                      "running", started=0.0, eta_s=5.0)
        servers.show([host], {})
        jobs.show([job])
        await pilot.pause()
        host.state, job.state, job.exit_code = "reconnecting", "finished", 0
        servers.show([host], {"srv1": job})
        jobs.show([job])
        await pilot.pause()
        assert servers.columns["state"].content_width >= len("reconnecting")
        assert servers.columns["job"].content_width >= len("train-regression-batch")
        assert jobs.columns["state"].content_width >= len("finished")
