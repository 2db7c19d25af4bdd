"""What a command says, and where it goes.

Three streams that never mix, so a script can read any one of them:

* **results** (tables, ``--json`` documents, the closing "OK" line) go to
  stdout through :func:`result`. When events are sent to stdout
  (``--events -``), results move to stderr so stdout stays pure JSON lines;
* **messages** (what the command is doing) go through :mod:`logging` (logger
  ``epoch_builder``) to stderr, each line timestamped: job logs run for hours
  and are read afterwards. ``-q`` keeps warnings and errors, ``-v`` adds debug;
* **progress bars** (rich) draw on stderr only when it is a terminal and
  ``--no-progress`` is not given; a job's log file never sees them. The
  machine-readable progress is the events stream (:mod:`epoch_builder.events`).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

LOGGER_NAME = "epoch_builder"
LOG_FORMAT = "%(asctime)s %(levelprefix)s%(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"

log = logging.getLogger(LOGGER_NAME)

_progress_enabled: bool | None = None  # None: decide from the terminal
_results_to_stderr = False


class _CurrentStderr(logging.StreamHandler):
    """A handler that writes to whatever ``sys.stderr`` is now: a live progress bar swaps it for a
    proxy that prints the line above the bar instead of through it."""

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201 - logging's own attribute
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:  # noqa: ANN001 - StreamHandler.__init__ assigns it
        pass


class _Formatter(logging.Formatter):
    """Timestamp, then ``warning:``/``error:``/``debug:`` for anything that is not plain info."""

    def format(self, record: logging.LogRecord) -> str:
        record.levelprefix = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        return super().format(record)


def configure(*, verbosity: int = 0, progress: bool | None = None, events_on_stdout: bool = False) -> None:
    """Set up the three streams for one command run (called by the CLI before the command)."""
    global _progress_enabled, _results_to_stderr
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    log.setLevel(level)
    log.propagate = False
    for handler in list(log.handlers):
        log.removeHandler(handler)
    handler = _CurrentStderr()
    handler.setFormatter(_Formatter(LOG_FORMAT, DATE_FORMAT))
    log.addHandler(handler)
    _progress_enabled = progress
    _results_to_stderr = events_on_stdout


def info(message: str) -> None:
    """The default ``log`` of every long step: one timestamped line on stderr."""
    log.info(message)


def warning(message: str) -> None:
    log.warning(message)


def result(text: str = "") -> None:
    """A line of the command's result (stdout, unless stdout carries the events)."""
    stream = sys.stderr if _results_to_stderr else sys.stdout
    print(text, file=stream, flush=True)


def result_json(document: Any) -> None:
    """``--json``: the whole result as one JSON document."""
    result(json.dumps(document, indent=2, default=str))


def reader_went_away() -> int:
    """The reader of stdout closed it (``... | head``): stop quietly, as ``cat`` does. Later writes,
    including the interpreter's own flush at exit, go to /dev/null instead of raising again."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 0


def progress_wanted() -> bool:
    if _progress_enabled is not None:
        return _progress_enabled
    return sys.stderr.isatty()


class Bar:
    """One line of a progress display; every method is a no-op when bars are off."""

    def __init__(self, progress: Any, task_id: Any) -> None:
        self._progress, self._task = progress, task_id

    @property
    def visible(self) -> bool:
        """Drawn on a terminal: per-item log lines can then drop to debug (the bar shows the same)."""
        return self._progress is not None

    def update(self, completed: float | None = None, *, total: float | None = None,
               description: str | None = None, info: str | None = None) -> None:
        if self._progress is None:
            return
        fields = {} if info is None else {"info": info}
        self._progress.update(self._task, completed=completed, total=total, description=description, **fields)

    def advance(self, amount: float = 1, *, info: str | None = None) -> None:
        if self._progress is None:
            return
        self._progress.advance(self._task, amount)
        if info is not None:
            self._progress.update(self._task, info=info)

    def reset(self, *, total: float, description: str, info: str = "") -> None:
        if self._progress is None:
            return
        self._progress.reset(self._task, total=total, description=description, info=info)


class Bars:
    """The bars of one step (``bars.add``); nothing is drawn when progress is off."""

    def __init__(self, progress: Any) -> None:
        self._progress = progress

    def add(self, description: str, total: float | None, *, info: str = "") -> Bar:
        if self._progress is None:
            return Bar(None, None)
        return Bar(self._progress, self._progress.add_task(description, total=total, info=info))


@contextmanager
def progress_bars(*, unit: str = "") -> Iterator[Bars]:
    """Progress bars for a step longer than a few seconds: done/total, rate, elapsed, ETA and a
    free ``info`` text (loss, profitable count...). Off when stderr is not a terminal or with
    ``--no-progress``; log lines printed meanwhile appear above the bars."""
    if not progress_wanted():
        yield Bars(None)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.table import Column

    def clipped(template: str, width: int) -> TextColumn:  # long names and infos must not squeeze out the bar at 80 columns
        return TextColumn(template, table_column=Column(max_width=width, no_wrap=True, overflow="ellipsis"))

    columns = [clipped("{task.description}", 24), BarColumn(bar_width=16), MofNCompleteColumn(), TaskProgressColumn(),
               TextColumn(f"{unit}" if unit else ""), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
               clipped("{task.fields[info]}", 22)]
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        yield Bars(progress)
