"""Every console action, by area: ``server``, ``pipeline`` (Epoch Builder), ``sync`` (Push, Pull), ``charts``.

``ACTIONS`` is the one list the menu, palette, key bindings and help are made from.
"""

from __future__ import annotations

from console.actions.spec import GROUPS, ActionSpec
from console.actions.spec import actions_in as _actions_in
from console.actions.spec import with_console_keys as _with_console_keys
from console.actions import charts, pipeline, server, sync

ACTIONS: tuple[ActionSpec, ...] = (*server.ACTIONS, *pipeline.ACTIONS, *sync.ACTIONS, *charts.ACTIONS)
ACTIONS_BY_ID = {action.id: action for action in ACTIONS}

__all__ = ["ACTIONS", "ACTIONS_BY_ID", "GROUPS", "ActionSpec", "actions_in", "with_console_keys"]


def actions_in(group: str) -> list[ActionSpec]:
    """``spec.actions_in`` over every console action."""
    return _actions_in(ACTIONS, group)


def with_console_keys(message: str) -> str:
    """``spec.with_console_keys`` over every console action."""
    return _with_console_keys(message, ACTIONS)
