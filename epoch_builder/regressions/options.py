"""The training options of ``train-regression-batch``, declared once.

``OPTIONS`` is the table (name, flag, kind, range or choices, default, metavar, the CLI's help, the forms'
label and hint); ``TrainingOptions`` is the one frozen object built from it and checked on construction.
Everything that takes these options derives from the table: ``train-regression-batch``'s parser and
``epoch-cluster dispatch``'s (``add_arguments``), a job's command line (``TrainingOptions.argv``, through
``remote.board.BatchSpec.argv``), the console's train and auto-dispatch forms (``OPTIONS``' labels, hints
and ranges), ``train_batch`` and its training processes (the object itself). A new option is one entry
here and one field of ``TrainingOptions``.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from epoch_builder.errors import UsageError
from epoch_builder.regressions.configs import DEFAULT_PACK_SIZES, MAX_PACK_SIZE, MAX_PROCESSES

MAX_EPOCHS_LIMIT = 100_000  # --max-epochs' upper bound: far above the grid's 500, a typo's guard
FULL, HALVING = "full", "halving"
SEARCH_METHODS = (FULL, HALVING)
# Halving's defaults, chosen from bench/bench_search.py's replay of 120 DNN and CDNN default-grid configs trained
# fully on real candles (docs/training.md "Successive halving"): eta 2, first rung 1, one rung spends 38% of the
# full run's epochs and keeps 18 of its top 20 by test loss (15 of the top 20 by accuracy); eta 3 with a first
# rung of 8 reaches 32% keeping 18, but only 12 of the accuracy top 20 and fewer of each family's own top 20.
DEFAULT_ETA = 2
DEFAULT_FIRST_RUNG = 1
DEFAULT_RUNGS = 1
MAX_RUNGS = 32
INT, FLAG, CHOICE = "int", "flag", "choice"


@dataclass(frozen=True)
class Option:
    """One option: its flag on every command line, its range, its words on the CLI and in the forms."""

    name: str  # the TrainingOptions field and the argparse dest
    flag: str
    kind: str  # INT (low..high; default None: the command's own default), FLAG (a switch) or CHOICE
    default: Any
    help: str  # the CLI's help text
    label: str  # a form's short label
    hint: str  # a form's hint: beside a checkbox, or in an empty input
    low: int = 0
    high: int = 0
    choices: tuple[str, ...] = ()
    metavar: str | None = None

    @property
    def allowed(self) -> str:
        """The allowed values as an error or a form says them."""
        if self.kind == INT:
            return f"{self.low}..{self.high}"
        if self.kind == CHOICE:
            return ", ".join(self.choices)
        return "on or off"

    def refuse(self, value: Any) -> str | None:
        """Why ``value`` is not allowed (one line naming the flag and the allowed values), or None."""
        if self.kind == FLAG:
            return None if isinstance(value, bool) else f"{self.flag} {value!r} must be true or false"
        if self.kind == CHOICE:
            return None if value in self.choices else f"{self.flag} {value!r} is unknown; allowed: {self.allowed}"
        if value is None and self.default is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not self.low <= value <= self.high:
            return f"{self.flag} {value} out of range; allowed {self.allowed}"
        return None

    def words(self, value: Any) -> list[str]:
        """``value`` on a command line: nothing for the default, the flag alone for a switch."""
        if value == self.default or value is None:
            return []
        return [self.flag] if self.kind == FLAG else [self.flag, str(value)]


OPTIONS: tuple[Option, ...] = (
    Option("max_epochs", "--max-epochs", INT, None, low=1, high=MAX_EPOCHS_LIMIT, metavar="N",
           help=f"cap on epochs per model (1 to {MAX_EPOCHS_LIMIT:,}; default: the config's max_epochs, else 500)",
           label="max epochs per model", hint="empty: each config's own (else 500)"),
    Option("fast", "--fast", FLAG, False,
           help="TensorFlow op determinism off for this run: can be faster on GPUs (no deterministic kernels; on "
           "CPUs bench/bench_training.py measured no gain), but the same seed no longer gives the same model and a "
           "resumed model no longer equals an uninterrupted one (resuming still works); each certificate records "
           "it (training_mode.op_determinism false). A checkpoint written with --fast resumes only with --fast; a "
           "deterministic one may go on with --fast",
           label="fast", hint="op determinism off (--fast): not repeatable"),
    Option("pack", "--pack", INT, None, low=1, high=MAX_PACK_SIZE, metavar="K",
           help=f"train up to K models of the batch together, one compiled step updating all of them (1 to "
           f"{MAX_PACK_SIZE}; 1: one at a time). Each keeps its own optimizer, early stopping, checkpoint and "
           "certificate (training_mode.pack_size). Default per family: "
           + ", ".join(f"{family} {size}" for family, size in DEFAULT_PACK_SIZES.items()) + ", the others 1",
           label="models trained together", hint="empty: per family (--pack)"),
    Option("mixed_precision", "--mixed-precision", FLAG, False,
           help="compute in float16 with float32 weights and outputs (Keras mixed_float16, loss scaling): for GPUs "
           "with tensor cores; slower on a CPU. Recorded in the certificate (training_mode.mixed_precision); a "
           "checkpoint resumes only in the mode it was written in. The Epoch File's models compute in float32 on "
           "the platform",
           label="mixed precision", hint="float16 compute (GPU servers)"),
    Option("processes", "--processes", INT, None, low=1, high=MAX_PROCESSES, metavar="N",
           help=f"train the batch's models in N processes (1 to {MAX_PROCESSES}), the host's cores split between "
           "them; each trains its share in packs and resumes like one process (default 1; --search full only)",
           label="training processes", hint="empty: one (--processes)"),
    Option("search", "--search", CHOICE, FULL, choices=SEARCH_METHODS, metavar="METHOD",
           help="full: every model trains to its early stop or max epochs (default). halving: successive halving: "
           "every model trains to the first rung (--first-rung epochs), the best 1/eta by best val_loss go on to a "
           "rung eta times longer, and so on; the last rung's survivors train to their early stop or max epochs. "
           "The others are certified from their best weights when they stopped, marked in training_mode.search. "
           "Resumable; a batch resumes only with the method (and eta, first rung) it was started with "
           "(docs/training.md)",
           label="search", hint="full: every model to the end; halving: the best go on"),
    Option("eta", "--eta", INT, DEFAULT_ETA, low=2, high=16, metavar="ETA",
           help=f"halving: 1/ETA of a rung's models go on, each rung ETA times longer (2 to 16; default {DEFAULT_ETA})",
           label="halving eta", hint=f"empty: {DEFAULT_ETA} (--search halving)"),
    Option("first_rung", "--first-rung", INT, DEFAULT_FIRST_RUNG, low=1, high=1000, metavar="N",
           help=f"halving: epochs of the first rung (1 to 1000; default {DEFAULT_FIRST_RUNG})",
           label="halving first rung", hint=f"empty: {DEFAULT_FIRST_RUNG} epoch(s) (--search halving)"),
    Option("rungs", "--rungs", INT, DEFAULT_RUNGS, low=1, high=MAX_RUNGS, metavar="R",
           help=f"halving: at most R rungs decide (1 to {MAX_RUNGS}; default {DEFAULT_RUNGS}): the survivors of the "
           "last one train to their early stop or max epochs. Each rung keeps 1/ETA, so a batch ends with about "
           "1/ETA^R of its models fully trained",
           label="halving rungs", hint=f"empty: {DEFAULT_RUNGS} (--search halving)"),
)
OPTIONS_BY_NAME = {option.name: option for option in OPTIONS}


@dataclass(frozen=True)
class TrainingOptions:
    """How a batch is trained (``train-regression-batch``'s options); refused on construction when a value is
    out of its range, in one line naming the flag and the allowed values."""

    max_epochs: int | None = None
    fast: bool = False
    pack: int | None = None
    mixed_precision: bool = False
    processes: int | None = None
    search: str = FULL
    eta: int = DEFAULT_ETA
    first_rung: int = DEFAULT_FIRST_RUNG
    rungs: int = DEFAULT_RUNGS

    def __post_init__(self) -> None:
        for option in OPTIONS:
            problem = option.refuse(getattr(self, option.name))
            if problem:
                raise UsageError(problem)
        if self.search != HALVING:
            for name in ("eta", "first_rung", "rungs"):
                option = OPTIONS_BY_NAME[name]
                if getattr(self, name) != option.default:
                    raise UsageError(f"{option.flag} applies to --search {HALVING} only, not --search {self.search}")
        elif self.processes is not None and self.processes > 1:
            # A rung ranks the whole batch: every process would have to reach it first (docs/training.md).
            raise UsageError(f"--processes {self.processes} with --search {HALVING}: halving trains the batch in one "
                             f"process; allowed --processes 1 or --search {FULL}")

    @classmethod
    def from_args(cls, namespace: argparse.Namespace, **overrides: Any) -> TrainingOptions:
        """From a parser that ``add_arguments`` filled; ``overrides`` win (a caller's own flags)."""
        values = {option.name: getattr(namespace, option.name, option.default) for option in OPTIONS}
        return cls(**{**values, **overrides})

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> TrainingOptions:
        """From a form's ``{name: value}``: an empty value (None) is the option's default."""
        chosen = {}
        for option in OPTIONS:
            value = values.get(option.name)
            chosen[option.name] = option.default if value is None else bool(value) if option.kind == FLAG else value
        return cls(**chosen)

    def argv(self) -> list[str]:
        """The flags a job's command line gets: only those that differ from the defaults, in the table's order."""
        return [word for option in OPTIONS for word in option.words(getattr(self, option.name))]

    def values(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def halving(self) -> bool:
        return self.search == HALVING


def add_arguments(parser: argparse.ArgumentParser, *, prefix: str = "", exclude: Sequence[str] = (),
                  only: Sequence[str] | None = None) -> None:
    """The table's options on ``parser`` (``exclude``: names a caller declares its own way; ``only``: just these,
    for a command that takes one of them, e.g. ``regressions plan --max-epochs``); ``prefix`` goes before each
    help text (``epoch-cluster dispatch``: "regressions: "). The ranges are checked by ``TrainingOptions``
    (``from_args``), so every program refuses a value with the same line."""
    for option in OPTIONS:
        if option.name in exclude or (only is not None and option.name not in only):
            continue
        text = prefix + option.help
        if option.kind == FLAG:
            parser.add_argument(option.flag, dest=option.name, action="store_true", help=text)
        elif option.kind == CHOICE:
            parser.add_argument(option.flag, dest=option.name, choices=option.choices, default=option.default,
                                metavar=option.metavar, help=f"{text} (one of: {option.allowed})")
        else:
            parser.add_argument(option.flag, dest=option.name, type=int, default=option.default,
                                metavar=option.metavar, help=text)



def search_mode(options: TrainingOptions) -> dict[str, Any]:
    """What a checkpoint and the batch's search state record of the search, checked when they are resumed:
    ``{"method": "full"}``, or halving with its eta, first rung and rungs."""
    if options.search == HALVING:
        return {"method": HALVING, "eta": options.eta, "first_rung": options.first_rung, "rungs": options.rungs}
    return {"method": FULL}


def describe_search(mode: dict[str, Any]) -> str:
    """A recorded search mode as the flags that ask for it (``--search halving --eta 2 --first-rung 1
    --rungs 1``)."""
    if mode.get("method") == HALVING:
        # a record from before --rungs existed held every rung it could: no --rungs to name
        rungs = f" --rungs {mode['rungs']}" if "rungs" in mode else " (unbounded rungs, before --rungs)"
        return f"--search {HALVING} --eta {mode.get('eta')} --first-rung {mode.get('first_rung')}{rungs}"
    return f"--search {mode.get('method', FULL)}"
