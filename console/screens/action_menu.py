"""`a`: every action it is given in one list, grouped like the original's menu."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from typing import Sequence

from console.actions.spec import GROUPS, ActionSpec, actions_in


class ActionMenu(ModalScreen[str | None]):
    """Dismisses with the chosen action id, or None."""

    BINDINGS = [Binding("escape", "cancel", "Close")]

    def __init__(self, actions: Sequence[ActionSpec], context: str = "") -> None:
        """``actions``: what it lists (the app hands it its catalogue)."""
        super().__init__()
        self.actions = actions
        self.context = context

    def compose(self) -> ComposeResult:
        options: list[Option | None] = []
        for group in GROUPS:
            if options:
                options.append(None)  # separator
            options.append(Option(f"[b]{group}[/]", disabled=True))
            for action in actions_in(self.actions, group):
                key = f"  [dim]{action.key}[/]" if action.key else ""
                options.append(Option(f"  {action.title}{key}", id=action.id))
        with Vertical(id="menu-box", classes="dialog"):
            yield Label(f"Actions {self.context}".strip(), classes="dialog-title")
            yield OptionList(*options, id="action-list")

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
