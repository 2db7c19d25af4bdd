"""What a console action is: its place in the menu, its key, its help, and the coroutine that runs it.

Pure data plus one function: the action menu, the command palette, the key
bindings and the help screen are all generated from the specs, so they never
disagree; ``EpochConsole.run_action_id`` runs ``spec.run(app)`` (the app as a
``console.app_interface.ConsoleApp``) as a worker and
sends whatever it raises to the app's one error handler.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Awaitable, Callable, Iterable

if TYPE_CHECKING:  # pragma: no cover
    from console.app_interface import ConsoleApp

GROUPS = ("Server", "Epoch Builder", "Push", "Pull", "Charts")

ActionBody = Callable[["ConsoleApp"], Awaitable[None]]


@dataclass(frozen=True)
class ActionSpec:
    id: str
    group: str  # one of GROUPS
    title: str
    help: str
    key: str | None = None  # global key binding, where one makes sense
    destructive: bool = False  # asks for confirmation, Cancel focused
    footer: bool = False  # its key is shown in the footer (the few a newcomer must find)
    command: str | None = None  # the epoch-builder subcommand it runs: messages naming it name the key too
    run: ActionBody = field(kw_only=True, compare=False)  # raises on failure; the app reports it

    @property
    def context(self) -> str:
        """How its failures are prefixed: "kill process: ..."."""
        return self.title.lower()


def actions_in(actions: Iterable[ActionSpec], group: str) -> list[ActionSpec]:
    """The actions of one menu group, in catalogue order."""
    return [action for action in actions if action.group == group]


# `epoch-builder <command> ...` in a message (the pipeline's hints are written for the shell).
_COMMAND_HINT = re.compile(r"`epoch-builder ([a-z-]+(?: [a-z-]+)?)[^`]*`")


def with_console_keys(message: str, actions: Iterable[ActionSpec]) -> str:
    """A pipeline message as the console's user needs it: each `epoch-builder X` it names also names the
    console action that runs X and its key, e.g. "run `epoch-builder create-epoch` first" ->
    "run `epoch-builder create-epoch` (console: Create epoch, key e) first"."""

    by_command = {a.command: a for a in actions if a.command}

    def annotate(match: re.Match[str]) -> str:
        words = match.group(1)  # "create-epoch", or "candlesticks import": one word or two
        spec = by_command.get(words) or by_command.get(words.split()[0])
        if spec is None:
            return match.group(0)
        key = f", key {spec.key}" if spec.key else ""
        return f"{match.group(0)} (console: {spec.title}{key})"

    return _COMMAND_HINT.sub(annotate, message)
