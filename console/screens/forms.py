"""Forms for actions that need input (the pickers, which choose among listed things, are in
``console.screens.pickers``).

Each dismisses with the ``epoch-builder`` arguments (or the value typed),
or ``None`` when cancelled. Validation is the headless command's own
(``epoch_builder.epoch``), so a value the console accepts is one the command
accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Footer, Input, Label, Select, Static

from epoch_builder.epoch import (PARAMS, PARAMS_BY_NAME, PROFILES, param_bounds, param_default, validate_epoch_id,
                                 validate_param, width_days_bounds)
from epoch_builder.errors import EpochBuilderError


class TickBox(Checkbox):
    """A checkbox whose mark says its state in any colour scheme: ``X`` ticked, blank not (Textual's shows
    an ``X`` either way and tells them apart by colour only)."""

    @property
    def BUTTON_INNER(self) -> str:  # type: ignore[override]
        return "X" if self.value else " "


def plain_number(value: float) -> str:
    """100000000 -> '100,000,000', 0.5 -> '0.5': no exponent notation in a range a person reads."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,.6f}".rstrip("0")


class FormScreen(ModalScreen[Any]):
    """Shared frame: title, scrolling fields, error line, Cancel / OK, and a footer with the keys.

    The fields scroll inside a box that leaves the error line and the buttons on screen down to 80x24.
    ``Enter`` in a field moves to the next one and submits from the last; ``ctrl+s`` submits from anywhere.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "submit", "Submit"),
                Binding("ctrl+o", "next_place", "Run elsewhere")]
    TITLE_TEXT = ""
    OK_LABEL = "Run"
    places: tuple[str, ...] = ()  # where the form's step may run (offer_places); none: the form does not say
    place_notes: dict[str, str] = {}
    _place_index = 0

    def offer_places(self, places: Sequence[str], notes: dict[str, str] | None = None) -> "FormScreen":
        """Let the user choose where the step runs: ``places[0]`` unless ``ctrl+o`` picks the next one.
        ``notes``: a few words per place (what running there means), shown beside its name."""
        self.places, self.place_notes, self._place_index = tuple(places), dict(notes or {}), 0
        return self

    @property
    def place(self) -> str | None:
        """Where the user chose to run the step (None: no places were offered)."""
        return self.places[self._place_index] if self.places else None

    def _place_text(self) -> str:
        place = self.place or ""
        note = self.place_notes.get(place, "")
        other = " · ctrl+o: run elsewhere" if len(self.places) > 1 else ""
        return f"runs on [b]{escape(place)}[/b]" + (f" ({escape(note)})" if note else "") + f"[dim]{other}[/]"

    def action_next_place(self) -> None:
        if len(self.places) > 1:
            self._place_index = (self._place_index + 1) % len(self.places)
            self.query_one("#run-on", Label).update(self._place_text())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "next_place":
            return len(self.places) > 1  # the footer shows the key only where there is a choice
        return True

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog form"):
            yield Label(self.TITLE_TEXT, classes="dialog-title")
            yield from self.compose_body()
            if self.places:
                yield Label(self._place_text(), id="run-on")
            yield Static("", classes="form-error")
            with Horizontal(classes="dialog-buttons"):
                yield Label("enter: next field · ctrl+s: submit · esc: cancel", classes="form-keys")
                yield Button("Cancel", id="cancel")
                yield Button(self.OK_LABEL, id="ok", variant="primary")
        yield Footer()

    @on(Input.Submitted)
    def _next_field_or_submit(self, event: Input.Submitted) -> None:
        inputs = [box for box in self.query(Input) if box.display and not box.disabled]
        if inputs and event.input is inputs[-1]:
            self.action_submit()
        else:
            self.focus_next()
        event.stop()

    def compose_body(self) -> ComposeResult:
        yield from ()

    def show_error(self, message: str) -> None:
        self.query_one(".form-error", Static).update(f"[b red]{escape(message)}[/]")

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#ok")
    def action_submit(self) -> None:
        try:
            result = self.collect()
        except EpochBuilderError as exc:
            self.show_error(str(exc))
            return
        self.dismiss(result)

    def collect(self) -> Any:
        raise NotImplementedError


class CreateEpochForm(FormScreen):
    """``create-epoch`` parameters with the profile's defaults and ranges."""

    TITLE_TEXT = "Create epoch"
    OK_LABEL = "Create"

    def __init__(self, bundle_days: float | None = None) -> None:
        """``bundle_days``: how many days the imported candles cover (None: unknown); the form then offers the
        profile and width that fit them, and says why."""
        super().__init__()
        self.bundle_days = bundle_days

    def compose_body(self) -> ComposeResult:
        yield Label("", id="profile-note")
        with VerticalScroll(classes="form-fields"):
            with Horizontal(classes="field"):
                yield Label("id", classes="field-label")
                yield Input(placeholder="_EPOCH (starts with '_', 4..100 chars)", id="f-id")
            with Horizontal(classes="field"):
                yield Label("profile", classes="field-label")
                yield Select([(p, p) for p in PROFILES], value="default", allow_blank=False, id="f-profile")
            with Horizontal(classes="field"):
                yield Label("width unit", classes="field-label")
                yield Select([("months", "months"), ("days", "days")], value="months", allow_blank=False, id="f-unit")
            with Horizontal(classes="field"):
                yield Label("normalization", classes="field-label")
                yield Select([("global (as the original)", "global"), ("expanding (leak-free)", "expanding")],
                             value="global", allow_blank=False, id="f-normalization")
            with Horizontal(classes="field"):
                yield Label("oos days", classes="field-label")
                yield Input("0", id="f-oos-days")
                yield Label("0: none; N: last N test days kept from the sweep", classes="field-range")
            for param in PARAMS:
                with Horizontal(classes="field"):
                    yield Label(param.name, classes="field-label")
                    yield Input(str(param_default(param, "default")), id=f"f-{param.name}")
                    yield Label("", id=f"r-{param.name}", classes="field-range")
        self._profile = "default"

    def on_mount(self) -> None:
        self._show_ranges("default")
        self._fit_to_bundle()
        self.query_one("#f-id", Input).focus()

    def _fit_to_bundle(self) -> None:
        """Too few days for the default profile (its shortest epoch is 6 months): offer the small one with a
        width in days that the candles hold, instead of a form whose defaults the command refuses."""
        note = self.query_one("#profile-note", Label)
        days = self.bundle_days
        shortest = width_days_bounds("default")[0]
        if days is None or days >= shortest:
            note.display = False
            return
        width = max(1, min(int(param_default(PARAMS_BY_NAME["epoch_width"], "small")), int(days) - 1))
        with self.prevent(Select.Changed):
            self.query_one("#f-profile", Select).value = "small"
            self.query_one("#f-unit", Select).value = "days"
        for param in PARAMS:
            self.query_one(f"#f-{param.name}", Input).value = str(param_default(param, "small"))
        self.query_one("#f-epoch_width", Input).value = str(width)
        self._profile = "small"
        self._show_ranges("small")
        note.update(f"profile small, {width} days: the imported candles cover {days:.1f} days, and the default "
                    f"profile needs at least {shortest // 30} months ({shortest} days)")

    def _show_ranges(self, profile: str) -> None:
        for param in PARAMS:
            low, high = param_bounds(param, profile)
            self.query_one(f"#r-{param.name}", Label).update(f"{plain_number(low)} to {plain_number(high)}")

    @on(Select.Changed, "#f-profile")
    def _profile_changed(self, event: Select.Changed) -> None:
        new = str(event.value)
        old, self._profile = self._profile, new
        for param in PARAMS:  # move untouched defaults to the new profile's
            box = self.query_one(f"#f-{param.name}", Input)
            if box.value.strip() == str(param_default(param, old)):
                box.value = str(param_default(param, new))
        unit = self.query_one("#f-unit", Select)
        width = self.query_one("#f-epoch_width", Input)
        if new == "small" and width.value == str(param_default(PARAMS[1], "small")):
            unit.value, width.value = "days", "20"  # the CLI's small default
        self._show_ranges(new)

    # The command's hints name its options; in this form they are fields.
    CLI_WORDING = (("use --profile small for small data", "choose profile small for small data"),
                   ("or use --profile small --width-days N", "or choose profile small with width unit days"))

    def collect(self) -> list[str]:
        try:
            return self._collect()
        except EpochBuilderError as exc:
            message = str(exc)
            for cli, form in self.CLI_WORDING:
                message = message.replace(cli, form)
            raise EpochBuilderError(message) from None

    def _collect(self) -> list[str]:
        epoch_id = validate_epoch_id(self.query_one("#f-id", Input).value.strip())
        profile = str(self.query_one("#f-profile", Select).value)
        unit = str(self.query_one("#f-unit", Select).value)
        args = ["create-epoch", "--id", epoch_id, "--profile", profile,
                "--normalization", str(self.query_one("#f-normalization", Select).value)]
        oos = self.query_one("#f-oos-days", Input).value.strip() or "0"
        if not oos.isdigit():
            raise EpochBuilderError(f"parameter oos days={oos!r} must be a whole number of days >= 0 (0: none)")
        if int(oos) > 0:
            args += ["--oos-days", str(int(oos))]  # its upper bound depends on the data: the command checks it
        for param in PARAMS:
            raw = self.query_one(f"#f-{param.name}", Input).value.strip()
            if param.name == "epoch_width" and unit == "days":
                days = validate_param("epoch_width", raw, "small")  # day counts are checked by the command
                args += ["--width-days", str(days)]
                continue
            value = validate_param(param.name, raw, profile)
            args += [f"--{param.name.replace('_', '-')}", str(value)]
        return args


@dataclass(frozen=True)
class FormField:
    """One option of a command's form: ``kind`` text (a path on the server), int (``low``..``high``, empty
    for the command's default), flag (a checkbox) or choice (one of ``choices``, ``default`` first shown)."""

    name: str
    label: str
    kind: str = "text"
    hint: str = ""
    low: int = 0
    high: int = 0
    choices: tuple[str, ...] = ()
    default: Any = None

    @classmethod
    def of(cls, option: Any) -> "FormField":
        """The field of an option declared in a table (``epoch_builder.regressions.options.OPTIONS``): its label,
        hint, kind and range come from there, so the form offers what the command accepts."""
        return cls(option.name, option.label, option.kind, hint=option.hint, low=option.low, high=option.high,
                   choices=option.choices, default=option.default)


class OptionsForm(FormScreen):
    """A command's options as fields; dismisses with ``{name: value}`` (None for an empty field), or with what
    ``build`` makes of it (its one-line error shown in the form: the command's own checks, before it runs)."""

    def __init__(self, title: str, fields: Sequence[FormField], ok_label: str = "Run",
                 build: Callable[[dict[str, Any]], Any] | None = None) -> None:
        super().__init__()
        self.TITLE_TEXT, self.OK_LABEL, self.fields, self.build = title, ok_label, list(fields), build

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(classes="form-fields"):
            for spec in self.fields:
                with Horizontal(classes="field"):
                    yield Label(spec.label, classes="field-label")
                    if spec.kind == "flag":
                        yield TickBox(spec.hint, id=f"f-{spec.name}")
                    elif spec.kind == "choice":
                        yield Select([(choice, choice) for choice in spec.choices], value=spec.default,
                                     allow_blank=False, id=f"f-{spec.name}")
                    else:
                        yield Input(placeholder=spec.hint, id=f"f-{spec.name}",
                                    type="integer" if spec.kind == "int" else "text")
                    if spec.kind == "int":
                        yield Label(f"{plain_number(spec.low)} to {plain_number(spec.high)}", classes="field-range")

    def on_mount(self) -> None:
        first = next(iter(self.query(Input)), None) or next(iter(self.query(Checkbox)), None)
        if first is not None:
            first.focus()

    def collect(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for spec in self.fields:
            if spec.kind == "flag":
                values[spec.name] = self.query_one(f"#f-{spec.name}", Checkbox).value
                continue
            if spec.kind == "choice":
                values[spec.name] = str(self.query_one(f"#f-{spec.name}", Select).value)
                continue
            raw = self.query_one(f"#f-{spec.name}", Input).value.strip()
            if spec.kind == "int" and raw:
                if not raw.lstrip("-").isdigit() or not spec.low <= int(raw) <= spec.high:
                    raise EpochBuilderError(f"{spec.label} {raw!r}: allowed {plain_number(spec.low)} to "
                                            f"{plain_number(spec.high)}, or empty for the default")
                values[spec.name] = int(raw)
            else:
                values[spec.name] = raw or None
        return self.build(values) if self.build is not None else values


class ImportCandlesForm(FormScreen):
    """``candlesticks import``: files or folders on the server, or the bundled sample; interval; gap filling."""

    OK_LABEL = "Import"

    def __init__(self, server: str, *, sample: bool = False) -> None:
        """``sample``: offer the bundled sample ticked (a workspace without candles yet: a newcomer's first step)."""
        super().__init__()
        self.TITLE_TEXT = f"Import candlesticks on {server}"
        self.server = server
        self.sample = sample

    def compose_body(self) -> ComposeResult:
        from epoch_builder.importer import INTERVAL_RANGE

        with VerticalScroll(classes="form-fields"):
            with Horizontal(classes="field"):
                yield Label(f"files on {self.server}", classes="field-label")
                yield Input(placeholder="paths, space-separated (.csv .zip .csv.gz)", id="f-sources")
            with Horizontal(classes="field"):
                yield Label("bundled sample", classes="field-label")
                note = "; ticked: no candles here yet" if self.sample else ""
                yield TickBox(f"21 days of BTCUSDT (try the pipeline{note})", self.sample, id="f-sample")
            with Horizontal(classes="field"):
                yield Label("interval (minutes)", classes="field-label")
                yield Input("30", id="f-interval", type="integer")
                yield Label(f"{INTERVAL_RANGE[0]} to {INTERVAL_RANGE[1]}", classes="field-range")
            with Horizontal(classes="field"):
                yield Label("missing minutes", classes="field-label")
                yield TickBox("fill at the previous close (else refused)", id="f-fill-gaps")

    def on_mount(self) -> None:
        self.query_one("#f-sources", Input).focus()

    def collect(self) -> list[str]:
        import shlex

        from epoch_builder.importer import validate_interval

        try:
            sources = shlex.split(self.query_one("#f-sources", Input).value)
        except ValueError as exc:
            raise EpochBuilderError(f"files: {exc} (quote paths with spaces)") from None
        sample = self.query_one("#f-sample", Checkbox).value
        if not sources and not sample:
            raise EpochBuilderError("give the candle files on the server, or tick the bundled sample")
        raw = self.query_one("#f-interval", Input).value.strip()
        try:
            interval = validate_interval(int(raw))
        except ValueError:
            raise EpochBuilderError(f"interval {raw!r} must be a whole number of minutes") from None
        args = ["candlesticks", "import", *sources, "--interval", str(interval)]
        args += ["--sample"] if sample else []
        args += ["--fill-gaps"] if self.query_one("#f-fill-gaps", Checkbox).value else []
        return args


class OneFieldForm(FormScreen):
    """One labelled input, focused on mount; Enter in it submits (it is the last field)."""

    def __init__(self, title: str, label: str) -> None:
        super().__init__()
        self.TITLE_TEXT = title
        self.label = label

    def on_mount(self) -> None:
        self.query_one(Input).focus()


class NumberForm(OneFieldForm):
    """One integer option (e.g. ``build-prediction-models --top``)."""

    def __init__(self, title: str, label: str, default: int, low: int, high: int) -> None:
        super().__init__(title, label)
        self.default, self.low, self.high = default, low, high

    def compose_body(self) -> ComposeResult:
        with Horizontal(classes="field"):
            yield Label(self.label, classes="field-label")
            yield Input(str(self.default), id="f-number", type="integer")
            yield Label(f"{plain_number(self.low)} to {plain_number(self.high)}", classes="field-range")

    @property
    def _range(self) -> str:
        return f"{plain_number(self.low)} to {plain_number(self.high)}"

    def collect(self) -> int:
        raw = self.query_one(Input).value.strip()
        try:
            value = int(raw)
        except ValueError:
            raise EpochBuilderError(f"{self.label} {raw!r} must be a whole number from {self._range}") from None
        if not self.low <= value <= self.high:
            raise EpochBuilderError(f"{self.label} {plain_number(value)} is out of range: allowed {self._range}")
        return value


class TextForm(OneFieldForm):
    """One text value (e.g. a public key file)."""

    OK_LABEL = "OK"

    def __init__(self, title: str, label: str, default: str = "") -> None:
        super().__init__(title, label)
        self.default = default

    def compose_body(self) -> ComposeResult:
        with Horizontal(classes="field"):
            yield Label(self.label, classes="field-label")
            yield Input(self.default, id="f-text")

    def collect(self) -> str:
        value = self.query_one(Input).value.strip()
        if not value:
            raise EpochBuilderError(f"{self.label} is required")
        return value
