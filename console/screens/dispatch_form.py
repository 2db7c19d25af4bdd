"""The options of auto-dispatch, asked when it is switched on from the Board screen.

The same options as ``epoch-cluster dispatch``; ``DispatchOptions`` checks them,
so a value the console accepts is one the command accepts. The regressions' training
options are train-regression-batch's table (``epoch_builder.regressions.options.OPTIONS``,
through ``remote.dispatch``), one field each, checked by ``TrainingOptions``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Checkbox, Input, Label, Select

from epoch_builder.errors import EpochBuilderError
from remote.board import STAGES
from remote.dispatch import TRAINING_OPTIONS as OPTIONS, DispatchOptions, TrainingOptions
from remote.plan import ORDERS

from console.screens.forms import FormScreen, TickBox


@dataclass(frozen=True)
class Field:
    name: str  # the input's id is f-<name>; the option is DispatchOptions.<attr>
    attr: str
    label: str
    allowed: str  # shown beside the input
    number: type  # int or float
    optional: bool = False  # blank means the option's "off" / the command's default


FIELDS = (
    Field("max-failures", "max_failures", "failures per server", "1..100", int),
    Field("stall", "stall_s", "stalled transfer (s)", "1..86400", float),
    Field("reassign-after", "reassign_after_s", "move off lost server (s)", "blank: never", float, True),
    Field("workers", "workers", "workers (configs)", "blank: all", int, True),
    Field("cpus-per-batch", "cpus_per_batch", "CPUs per batch (ray)", "blank: 1", float, True),
    Field("gpus-per-batch", "gpus_per_batch", "GPUs per batch (ray)", "0..64, 0.25 shares", float),
)


def _number(field: Field, raw: str) -> int | float | None:
    if not raw and field.optional:
        return None
    try:
        return field.number(raw)
    except ValueError:
        kind = "an integer" if field.number is int else "a number"
        blank = " or blank" if field.optional else ""
        raise EpochBuilderError(f"--{field.name}={raw!r} must be {kind}{blank} ({field.allowed})") from None


ORDER_TITLES = {"cost": "cost: longest to fastest", "file": "file: next batch file"}
FLAG, CHOICE = "flag", "choice"  # the table's kinds of option (the others are integers)


def _training_id(option: Any) -> str:
    """The input of a training option: ``f-<its flag>`` (``f-max-epochs``)."""
    return f"f-{option.flag.removeprefix('--')}"


class DispatchForm(FormScreen):
    """Dismisses with the ``DispatchOptions`` to start auto-dispatch with."""

    TITLE_TEXT = "Auto-dispatch"
    OK_LABEL = "Start"

    def __init__(self, defaults: DispatchOptions) -> None:
        super().__init__()
        self.defaults = defaults

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(classes="form-fields"):
            with Horizontal(classes="field"):
                yield Label("stage", classes="field-label")
                yield Select([(s, s) for s in STAGES], value=self.defaults.stage, allow_blank=False, id="f-stage")
            with Horizontal(classes="field"):
                yield Label("engine", classes="field-label")
                yield Select([("ssh: the cluster's servers", "ssh"), ("ray: a Ray cluster", "ray")],
                             value=self.defaults.engine, allow_blank=False, id="f-engine")
            with Horizontal(classes="field"):
                yield Label("order (regressions)", classes="field-label")
                yield Select([(ORDER_TITLES.get(o, o), o) for o in ORDERS], value=self.defaults.order, allow_blank=False,
                             id="f-order")
            with Horizontal(classes="field"):
                yield Label("ray address", classes="field-label")
                yield Input(self.defaults.ray_address or "", placeholder="host:port (blank: $RAY_ADDRESS)",
                            id="f-ray-address")
            for field in FIELDS:
                value = getattr(self.defaults, field.attr)
                with Horizontal(classes="field"):
                    yield Label(field.label, classes="field-label")
                    yield Input("" if value is None else f"{value:.10g}", id=f"f-{field.name}")
                    yield Label(field.allowed, classes="field-range")
            yield Label("regressions: train-regression-batch's options")
            for option in OPTIONS:
                value = getattr(self.defaults.training, option.name)
                with Horizontal(classes="field"):
                    yield Label(option.label, classes="field-label")
                    if option.kind == FLAG:
                        yield TickBox(option.hint, value, id=_training_id(option))
                    elif option.kind == CHOICE:
                        yield Select([(c, c) for c in option.choices], value=value, allow_blank=False,
                                     id=_training_id(option))
                    else:
                        yield Input("" if value is None else str(value), placeholder=option.hint,
                                    id=_training_id(option))
                        yield Label(option.allowed, classes="field-range")

    def on_mount(self) -> None:
        self.query_one("#f-stage", Select).focus()

    def _training(self) -> TrainingOptions:
        values: dict[str, object] = {}
        for option in OPTIONS:
            if option.kind == FLAG:
                values[option.name] = self.query_one(f"#{_training_id(option)}", Checkbox).value
            elif option.kind == CHOICE:
                values[option.name] = str(self.query_one(f"#{_training_id(option)}", Select).value)
            else:
                raw = self.query_one(f"#{_training_id(option)}", Input).value.strip()
                if raw and not raw.lstrip("-").isdigit():
                    raise EpochBuilderError(f"{option.flag}={raw!r} must be an integer or blank ({option.allowed})")
                values[option.name] = int(raw) if raw else None
        return TrainingOptions.from_values(values)

    def collect(self) -> DispatchOptions:
        values = {f.attr: _number(f, self.query_one(f"#f-{f.name}", Input).value.strip()) for f in FIELDS}
        engine = str(self.query_one("#f-engine", Select).value)
        address = self.query_one("#f-ray-address", Input).value.strip() or None
        return DispatchOptions(stage=str(self.query_one("#f-stage", Select).value),
                               interval_s=self.defaults.interval_s, training=self._training(),
                               engine=engine, ray_address=address, order=str(self.query_one("#f-order", Select).value),
                               **values)
