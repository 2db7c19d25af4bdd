"""Bounded log lines with an optional filter: the model behind the log pane.

Memory stays bounded however long a job runs: only the last ``max_lines``
lines are kept, and the filtered view is bounded the same way. Appends are
O(lines appended); a filter change rescans the kept lines once.
"""

from __future__ import annotations

from collections import deque
from typing import Iterable

DEFAULT_MAX_LINES = 20_000


class LogBuffer:
    def __init__(self, max_lines: int = DEFAULT_MAX_LINES) -> None:
        self.max_lines = max_lines
        self._all: deque[str] = deque(maxlen=max_lines)
        self._shown: deque[str] = deque(maxlen=max_lines)
        self._filter = ""
        self.total_received = 0  # every line ever appended, kept or not

    @property
    def filter(self) -> str:
        return self._filter

    def set_filter(self, text: str) -> None:
        """Show only lines containing ``text`` (case-insensitive); '' shows all."""
        self._filter = text.lower()
        self._shown = deque(
            (line for line in self._all if self._matches(line)) if self._filter else self._all,
            maxlen=self.max_lines,
        )

    def _matches(self, line: str) -> bool:
        return not self._filter or self._filter in line.lower()

    def extend(self, lines: Iterable[str]) -> int:
        """Append lines; return how many of them pass the filter."""
        lines = list(lines)
        self.total_received += len(lines)
        self._all.extend(lines)
        shown = [line for line in lines if self._matches(line)] if self._filter else lines
        self._shown.extend(shown)
        return len(shown)

    def clear(self) -> None:
        self._all.clear()
        self._shown.clear()
        self.total_received = 0

    def __len__(self) -> int:
        return len(self._shown)

    def __getitem__(self, index: int) -> str:
        return self._shown[index]

    def lines(self) -> list[str]:
        return list(self._shown)
