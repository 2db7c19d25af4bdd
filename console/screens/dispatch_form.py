"""The options of auto-dispatch, asked when it is switched on from the Board screen.

The same options as ``epoch-cluster dispatch``; ``DispatchOptions`` checks them,
so a value the console accepts is one the command accepts.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Checkbox, Input, Label, Select

from epoch_builder.errors import EpochBuilderError
from remote.board import STAGES
from remote.dispatch import DispatchOptions

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
    Field("max-epochs", "max_epochs", "max epochs (regressions)", "blank: config", int, True),
    Field("pack", "pack", "models together (regressions)", "blank: per family", int, True),
    Field("processes", "processes", "processes (regressions)", "blank: one", int, True),
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
                yield Label("ray address", classes="field-label")
                yield Input(self.defaults.ray_address or "", placeholder="host:port (blank: $RAY_ADDRESS)",
                            id="f-ray-address")
            for field in FIELDS:
                value = getattr(self.defaults, field.attr)
                with Horizontal(classes="field"):
                    yield Label(field.label, classes="field-label")
                    yield Input("" if value is None else f"{value:.10g}", id=f"f-{field.name}")
                    yield Label(field.allowed, classes="field-range")
            with Horizontal(classes="field"):
                yield Label("fast (regressions)", classes="field-label")
                yield TickBox("op determinism off (--fast): not repeatable", self.defaults.fast, id="f-fast")

    def on_mount(self) -> None:
        self.query_one("#f-stage", Select).focus()

    def collect(self) -> DispatchOptions:
        values = {f.attr: _number(f, self.query_one(f"#f-{f.name}", Input).value.strip()) for f in FIELDS}
        engine = str(self.query_one("#f-engine", Select).value)
        address = self.query_one("#f-ray-address", Input).value.strip() or None
        return DispatchOptions(stage=str(self.query_one("#f-stage", Select).value),
                               interval_s=self.defaults.interval_s, fast=self.query_one("#f-fast", Checkbox).value,
                               engine=engine, ray_address=address, **values)
