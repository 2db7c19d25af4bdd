"""The log pane: a virtual, bounded, filterable view of one job's log.

Lines arrive in bursts (10,000/s is normal for a chatty job); they are queued
and drawn by a timer a few dozen times a second, so key presses never wait
behind per-line work. Only the visible rows are rendered (Line API).
"""

from __future__ import annotations

from typing import Iterable

from rich.cells import cell_len
from rich.text import Text
from rich.segment import Segment
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Input, Static

from console.log_buffer import DEFAULT_MAX_LINES, LogBuffer

FLUSH_INTERVAL_S = 1 / 30


class LogView(ScrollView, can_focus=True):
    """Renders the visible slice of a ``LogBuffer``."""

    BINDINGS = [
        Binding("f", "toggle_follow", "Follow/pause"),
        Binding("end", "follow", "Follow", show=False),
        Binding("slash", "filter", "Filter"),
    ]

    follow: reactive[bool] = reactive(True)
    new_while_paused: reactive[int] = reactive(0)

    class StateChanged(Message):
        """Follow state, paused counter, filter or size changed (for the pane's title)."""

    def __init__(self, max_lines: int = DEFAULT_MAX_LINES, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.buffer = LogBuffer(max_lines)
        self._pending: list[str] = []
        self._width = 0
        self._resizing = False  # our own scroll changes (clear, filter) must not pause

    def on_mount(self) -> None:
        self.set_interval(FLUSH_INTERVAL_S, self._flush)

    # --- feeding --------------------------------------------------------------
    def append_lines(self, lines: Iterable[str]) -> None:
        """Queue lines; cheap enough to call from a tight read loop."""
        self._pending.extend(lines)

    def clear(self) -> None:
        self._pending.clear()
        self.buffer.clear()
        self._width = 0
        self.new_while_paused = 0
        self._resizing = True
        try:
            self.virtual_size = Size(0, 0)
            self.scroll_to(0, 0, animate=False, immediate=True, force=True)
        finally:
            self._resizing = False
        self.refresh()
        self.post_message(self.StateChanged())

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        # Scrolling up (wheel, keys, scrollbar) while following pauses, as in toolong;
        # `f` or `end` follows again.
        if self.follow and new_value < old_value and not self._resizing:
            self.follow = False

    def _flush(self) -> None:
        if not self._pending:
            if self.follow and not self.is_vertical_scroll_end:  # the view's height changed under us
                self._scroll_end_if_following()
            return
        lines = [line.rstrip("\n").replace("\t", "    ") for line in self._pending]
        self._pending = []
        shown = self.buffer.extend(lines)
        if not shown:
            self.post_message(self.StateChanged())
            return
        # Width of the last lines only: exact for short lines, cheap for bursts.
        self._width = max(self._width, max(cell_len(line) for line in lines[-200:]))
        self.virtual_size = Size(self._width, len(self.buffer))
        if self.follow:
            self._stick_to_end()
        else:
            self.new_while_paused += shown
        self.refresh()
        self.post_message(self.StateChanged())

    def _stick_to_end(self) -> None:
        """Show the last line now, and again after the next layout: a line wider than the view brings in the
        horizontal scrollbar, which takes a row after this scroll was computed and would hide the last line
        (the flush timer also re-checks, for layouts that come later still)."""
        self.scroll_end(animate=False, immediate=True, x_axis=False, force=True)
        self.call_after_refresh(self._scroll_end_if_following)

    def _scroll_end_if_following(self) -> None:
        if self.follow and self.is_attached:
            self.scroll_end(animate=False, immediate=True, x_axis=False, force=True)

    def on_resize(self) -> None:
        if self.follow:
            self._stick_to_end()

    # --- rendering ------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.size.width
        style = self.rich_style
        if index >= len(self.buffer):
            return Strip.blank(width, style)
        text = self.buffer[index]
        strip = Strip([Segment(text, style)], cell_len(text))
        return strip.crop_extend(scroll_x, scroll_x + width, style)

    # --- actions --------------------------------------------------------------
    def action_toggle_follow(self) -> None:
        self.follow = not self.follow

    def action_follow(self) -> None:
        self.follow = True

    def action_filter(self) -> None:
        pane = self.parent
        if isinstance(pane, LogPane):
            pane.open_filter()

    def watch_follow(self, follow: bool) -> None:
        if follow:
            self.new_while_paused = 0
            self._stick_to_end()
        self.post_message(self.StateChanged())

    def set_filter(self, text: str) -> None:
        self.buffer.set_filter(text)
        self._resizing = True
        try:
            self.virtual_size = Size(self._width, len(self.buffer))
        finally:
            self._resizing = False
        if self.follow:
            self._stick_to_end()
        self.refresh()
        self.post_message(self.StateChanged())


class LogPane(Vertical):
    """Title line (source, follow state, paused counter, filter) + view + filter input."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.source = "no log selected"
        self.source_key: str | None = None
        self.link_lost = False  # the shown job's server is unreachable: the log resumes when it is back
        self._filters: dict[str | None, str] = {}  # each job keeps its own filter

    def compose(self) -> ComposeResult:
        yield Static(id="log-title")
        yield LogView(id="log-view")
        yield Input(placeholder="filter (Enter applies, Esc clears)", id="log-filter")

    def on_mount(self) -> None:
        self.query_one("#log-filter", Input).display = False
        self.update_title()

    @property
    def view(self) -> LogView:
        return self.query_one(LogView)

    def show_source(self, source: str, key: str | None = None) -> None:
        """Start showing a new log (the caller then feeds its lines); ``key`` names it, so the filter set
        for one job comes back with that job and never carries over to another."""
        self._filters[self.source_key] = self.view.buffer.filter
        self.source, self.source_key = source, key
        self.view.clear()
        self.view.set_filter(self._filters.get(key, "") if key is not None else "")
        self.view.follow = True
        self.link_lost = False
        self.update_title()

    def set_link_lost(self, lost: bool) -> None:
        if lost != self.link_lost:
            self.link_lost = lost
            self.update_title()

    def open_filter(self) -> None:
        box = self.query_one("#log-filter", Input)
        box.display = True
        box.value = self.view.buffer.filter
        box.focus()

    @on(Input.Submitted, "#log-filter")
    def _apply_filter(self, event: Input.Submitted) -> None:
        self.view.set_filter(event.value.strip())
        event.input.display = False
        self.view.focus()

    def on_key(self, event) -> None:  # Esc in the filter box clears the filter
        box = self.query_one("#log-filter", Input)
        if event.key == "escape" and box.has_focus:
            event.stop()
            box.value = ""
            box.display = False
            self.view.set_filter("")
            self.view.focus()

    @on(LogView.StateChanged)
    def update_title(self) -> None:
        view = self.view
        if self.link_lost:
            state = ("LINK LOST — reconnecting", "bold red")
        elif view.follow:
            state = ("FOLLOW", "bold green")
        else:
            state = (f"PAUSED (+{view.new_while_paused} new)", "bold yellow")
        parts: list[str | tuple[str, str]] = [state]
        if view.buffer.filter:
            parts += ["  filter: ", (view.buffer.filter, "bold")]
        parts += ["  ", (f"{len(view.buffer):,} lines", "dim"), "  ", self.source]
        self.query_one("#log-title", Static).update(Text.assemble(*parts))
