"""Pickers: modal screens that choose among listed things (servers, batches, regressions, prediction
models, Epoch Files).

Each dismisses with what was chosen (or the ``epoch-builder`` arguments that
name it), or ``None`` when cancelled.  The lists come from
``console.workspace_files``, read from the workspace the step runs on.
"""

from __future__ import annotations

from typing import Any, Sequence

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Input, Label, OptionList, SelectionList
from textual.widgets.option_list import Option

from epoch_builder.errors import EpochBuilderError

from console.screens.forms import FormScreen
from console.workspace_files import BatchFile, EpochFile, ModelSummary, RegressionSummary


class ServerPicker(FormScreen):
    """One server, or every server when ``allow_all``; dismisses with a list of names."""

    TITLE_TEXT = "Choose server"
    OK_LABEL = "Choose"

    def __init__(self, servers: Sequence[str], *, allow_all: bool, title: str = "", default: str | None = None,
                 all_means: Sequence[str] | None = None) -> None:
        """``all_means``: the servers "all servers" stands for (default: every one listed)."""
        super().__init__()
        self.servers = list(servers)
        self.allow_all = allow_all
        self.all_means = list(all_means) if all_means is not None else list(servers)
        self.title_text = title or self.TITLE_TEXT
        self.default = default

    def compose_body(self) -> ComposeResult:
        options = [Option(name, id=name) for name in self.servers]
        if self.allow_all:
            left_out = [name for name in self.servers if name not in self.all_means]
            label = "all servers" + (f" (not {', '.join(left_out)}: choose it by name)" if left_out else "")
            options.append(Option(label, id="__all__"))
        yield Label(self.title_text)
        yield OptionList(*options, id="server-list")

    def on_mount(self) -> None:
        option_list = self.query_one(OptionList)
        if self.default in self.servers:
            option_list.highlighted = self.servers.index(self.default)
        option_list.focus()

    @on(OptionList.OptionSelected)
    def _selected(self, _: OptionList.OptionSelected) -> None:
        self.action_submit()

    def collect(self) -> list[str]:
        option_list = self.query_one(OptionList)
        if option_list.highlighted is None:
            raise EpochBuilderError("choose a server")
        option_id = option_list.get_option_at_index(option_list.highlighted).id
        return list(self.all_means) if option_id == "__all__" else [str(option_id)]


def _or_dash(value: float | None, spec: str) -> str:
    """``value`` formatted by ``spec``, or ``-`` when the value is unknown."""
    return format(value, spec) if value is not None else "-"


class TablePicker(FormScreen):
    """One row of a table of ``items``; ``collect`` returns the item under the cursor.

    Subclasses name the table (``TABLE_ID``), its ``COLUMNS``, one ``row`` per item and
    the ``EMPTY_MESSAGE`` shown when there is nothing to choose.
    """

    OK_LABEL = "Choose"
    TABLE_ID = ""
    COLUMNS: tuple[str, ...] = ()
    EMPTY_MESSAGE = ""
    SUBMIT_ON_ROW_SELECTED = True  # Enter on a row submits it

    def __init__(self, items: Sequence[Any]) -> None:
        super().__init__()
        self.items = list(items)

    def row(self, rank: int, item: Any) -> Sequence[str]:
        raise NotImplementedError

    def compose_body(self) -> ComposeResult:
        table: DataTable = DataTable(id=self.TABLE_ID, cursor_type="row")
        table.add_columns(*self.COLUMNS)
        for rank, item in enumerate(self.items, start=1):
            table.add_row(*self.row(rank, item))
        yield table

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()

    @on(DataTable.RowSelected)
    def _selected(self, _: DataTable.RowSelected) -> None:
        if self.SUBMIT_ON_ROW_SELECTED:
            self.action_submit()

    def current(self) -> Any:
        if not self.items:
            raise EpochBuilderError(self.EMPTY_MESSAGE)
        return self.items[self.query_one(DataTable).cursor_row]

    def collect(self) -> Any:
        return self.current()


class BatchPicker(TablePicker):
    """A batch file of the active epoch; dismisses with the chosen ``BatchFile``."""

    TABLE_ID = "batch-table"
    COLUMNS = ("category", "batch", "models")
    EMPTY_MESSAGE = "no batch files in the active epoch: generate regression training configs first"

    def __init__(self, batches: Sequence[BatchFile], title: str) -> None:
        super().__init__(batches)
        self.batches: list[BatchFile] = self.items
        self.TITLE_TEXT = title

    def row(self, rank: int, batch: BatchFile) -> Sequence[str]:
        return batch.category, batch.path.name, str(batch.models) if batch.models >= 0 else "unreadable"


def _epochs(r: RegressionSummary) -> str:
    """A regression's epochs, with ``rN`` when ``--search halving`` stopped it at rung N."""
    return f"{r.epochs}" + ("" if r.stopped_rung is None else f" r{r.stopped_rung}")


STOPPED_NOTE = "epochs rN: stopped early by --search halving at rung N"


class RegressionPicker(FormScreen):
    """Ranked trained regressions (best test loss first) with multi-select;
    dismisses with the ``initialize-prediction-models`` arguments. The best ``preselect`` of those trained to
    their end are ticked (as ``--top`` picks; one the search stopped early is offered, not ticked)."""

    TITLE_TEXT = "Initialize prediction models: choose regressions"
    OK_LABEL = "Initialize"
    MINIMUM = 16  # the original's minimum; fewer needs the small-data option

    def __init__(self, regressions: Sequence[RegressionSummary], preselect: int = 20) -> None:
        super().__init__()
        self.regressions = list(regressions)
        self.preselect = preselect

    def compose_body(self) -> ComposeResult:
        ticked = {r.id for r in [r for r in self.regressions if r.stopped_rung is None][:self.preselect]}
        yield Label(f"{'rank':>4} {'id':<28} {'test loss':>10} {'accuracy':>9} {'points':>7} {'epochs':>7}", classes="table-header")
        yield SelectionList[str](*(
            (f"{rank:>4} {r.id[:28]:<28} {_or_dash(r.test_loss, '.6f'):>10} {_or_dash(r.accuracy, '.2f'):>9} {_or_dash(r.points, 'g'):>7} {_epochs(r):>7}",
             r.id, r.id in ticked)
            for rank, r in enumerate(self.regressions, start=1)
        ), id="regression-list")
        if any(r.stopped_rung is not None for r in self.regressions):
            yield Label(STOPPED_NOTE, id="stopped-note")
        yield Label("", id="selected-count")
        with Horizontal(classes="field"):
            yield Label("price change requirements %", classes="field-label")
            yield Input("3", id="f-pcr")
            yield Label("e.g. 1,3", classes="field-range")
        with Horizontal(classes="field"):
            yield Label("regressions per model", classes="field-label")
            yield Input("8", id="f-per-model", type="integer")
            yield Label("≤ selected", classes="field-range")

    def on_mount(self) -> None:
        self.query_one(SelectionList).focus()
        self._count()

    @on(SelectionList.SelectedChanged)
    def _count(self) -> None:
        n = len(self.query_one(SelectionList).selected)
        note = "" if n >= self.MINIMUM else f" (fewer than {self.MINIMUM}: uses the small-data option)"
        self.query_one("#selected-count", Label).update(f"{n} selected{note}")

    def collect(self) -> list[str]:
        chosen = list(self.query_one(SelectionList).selected)
        if not chosen:
            raise EpochBuilderError("select at least one regression")
        order = {r.id: i for i, r in enumerate(self.regressions)}
        chosen.sort(key=order.__getitem__)  # keep the ranking's order
        raw_pcr = self.query_one("#f-pcr", Input).value.replace(" ", "")
        try:
            pcrs = [float(p) for p in raw_pcr.split(",") if p]
        except ValueError:
            pcrs = []
        if not pcrs or any(p <= 0 for p in pcrs):
            raise EpochBuilderError(f"price change requirements {raw_pcr!r} must be positive numbers separated by commas")
        raw_per_model = self.query_one("#f-per-model", Input).value.strip()
        if not raw_per_model.isdigit() or not 1 <= int(raw_per_model) <= len(chosen):
            raise EpochBuilderError(f"regressions per model={raw_per_model!r} must be an integer in 1..{len(chosen)} (the selected count)")
        args = ["initialize-prediction-models", "--regressions", ",".join(chosen),
                "--pcr", ",".join(f"{p:g}" for p in pcrs), "--regressions-per-model", raw_per_model]
        if len(chosen) < self.MINIMUM:
            args.append("--allow-few-regressions")
        return args


class RegressionChooser(TablePicker):
    """One trained regression (ranked by test loss); dismisses with its ``RegressionSummary``."""

    TITLE_TEXT = "Choose a trained regression"
    OK_LABEL = "Chart"
    TABLE_ID = "regression-table"
    COLUMNS = ("rank", "id", "test loss", "accuracy", "points", "epochs")
    EMPTY_MESSAGE = "no trained regressions: pull trained regressions first"

    def __init__(self, regressions: Sequence[RegressionSummary]) -> None:
        super().__init__(regressions)
        self.regressions: list[RegressionSummary] = self.items

    def row(self, rank: int, r: RegressionSummary) -> Sequence[str]:
        return (str(rank), r.id, _or_dash(r.test_loss, ".6f"), _or_dash(r.accuracy, ".2f"),
                _or_dash(r.points, "g"), _epochs(r))  # "2 r1": stopped by --search halving at rung 1


class ModelPicker(TablePicker):
    """Models of ``build.json``; dismisses with the chosen model id. ``c`` charts it."""

    TITLE_TEXT = "Export epoch: choose a model of the build"
    OK_LABEL = "Export"
    BINDINGS = [*FormScreen.BINDINGS, Binding("c", "chart", "Balance chart")]
    TABLE_ID = "model-table"
    COLUMNS = ("#", "id", "profit", "accuracy", "positions", "drawdown", "oos profit", "dsr")
    EMPTY_MESSAGE = "build.json lists no models: build prediction models first"
    SUBMIT_ON_ROW_SELECTED = False  # exporting is explicit: the OK button or ctrl+s

    def __init__(self, models: Sequence[ModelSummary], luck: str = "") -> None:
        super().__init__(models)
        self.models: list[ModelSummary] = self.items
        self.luck = luck  # the build's PBO line (docs/prediction-models.md, How much is luck?)

    def row(self, rank: int, m: ModelSummary) -> Sequence[str]:
        return (str(rank), m.id, _or_dash(m.profit, ".2f"), _or_dash(m.accuracy, ".2f"),
                str(m.positions), _or_dash(m.drawdown, ".2f"), _or_dash(m.oos_profit, ".2f"), _or_dash(m.dsr, ".2f"))

    def compose_body(self) -> ComposeResult:
        yield from super().compose_body()
        if self.luck:
            yield Label(escape(self.luck), id="build-luck")
        yield Label("[dim]c: balance chart of the highlighted model[/]")

    def action_chart(self) -> None:
        from console.screens.charts import BalanceChartScreen

        try:
            self.app.push_screen(BalanceChartScreen(self.current()))
        except EpochBuilderError as exc:
            self.show_error(str(exc))

    def collect(self) -> str:
        return self.current().id


class ReportModelPicker(ModelPicker):
    """Models of ``build.json`` for the HTML report; dismisses with the chosen model id."""

    TITLE_TEXT = "HTML report: choose a model of the build"
    OK_LABEL = "Write report"


class EpochFilePicker(TablePicker):
    """Epoch Files of the workspace (newest first); dismisses with the chosen ``EpochFile``."""

    TITLE_TEXT = "Verify an Epoch File: the platform's installer rules, its manifest, every model loads"
    OK_LABEL = "Verify"
    TABLE_ID = "epoch-file-table"
    COLUMNS = ("file", "bytes", "written")
    EMPTY_MESSAGE = "no Epoch File in this workspace: export one first"

    def row(self, rank: int, item: EpochFile) -> Sequence[str]:
        return (item.relative, f"{item.bytes:,}", item.written)
