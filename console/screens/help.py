"""`?`: every key binding and action, generated from the action catalogue it is given."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

from typing import Sequence

from console.actions.spec import GROUPS, ActionSpec, actions_in

GENERAL = """\
# Epoch Console

| Key | Does |
|---|---|
| `a` | action menu (every action, grouped) |
| `ctrl+p` | command palette (type to search actions) |
| `?` | this help |
| `tab` / `shift+tab` | move between panes |
| `f` (log pane) | follow / pause; while paused a counter shows lines that arrived |
| `/` (log pane) | filter lines (Enter applies, Esc clears) |
| `end` (log pane) | jump to the end and follow |
| `o` | the Board: every batch of the epoch, auto-dispatch |
| `q` | quit (jobs keep running on their servers) |

Actions on a server apply to the one selected in the servers table. Actions
on a job (`k`) apply to the job in the log pane, else to the selected server's
newest running job; `enter` on a row of the jobs table (`home`/`end`: first /
newest job) puts that job in the log pane. Jobs are detached, so closing the
console never stops them; `q` asks first while auto-dispatch runs.
"""


def help_markdown(actions: Sequence[ActionSpec]) -> str:
    parts = [GENERAL]
    for group in GROUPS:
        parts.append(f"\n## {group}\n\n| Key | Action | Does |\n|---|---|---|")
        for action in actions_in(actions, group):
            key = f"`{action.key}`" if action.key else ""
            flag = " (asks to confirm)" if action.destructive else ""
            parts.append(f"| {key} | {action.title} | {action.help}{flag} |")
    return "\n".join(parts)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, actions: Sequence[ActionSpec]) -> None:
        """``actions``: the catalogue it documents (the app hands it its own)."""
        super().__init__()
        self.actions = actions

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box", classes="dialog"):
            yield Markdown(help_markdown(self.actions))

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)
