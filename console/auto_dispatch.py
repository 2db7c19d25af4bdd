"""Auto-dispatch as app state: one Dispatcher task per console, which outlives the Board screen.

The app creates one ``AutoDispatch`` at start (``EpochConsole.auto_dispatch``);
the Board switches it on and off and shows its log, ``q`` asks before quitting
while it runs.  It knows no widgets: the open Board hands it ``on_message``.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Sequence

from rich.markup import escape

from remote.dispatch import DispatchOptions, Dispatcher
from remote.hosts import Host

MESSAGES_KEPT = 500  # lines of the dispatcher's log kept for the Board screen


class AutoDispatch:
    """One Dispatcher task per app, kept on the app so it outlives the Board screen."""

    def __init__(self, notify: Callable[..., None], report_error: Callable[[BaseException, str], None]) -> None:
        """``notify``/``report_error``: the app's (alerts pop up wherever the user is; a crash is one line)."""
        self.notify = notify
        self.report_error = report_error
        self.dispatcher: Dispatcher | None = None
        self.task: asyncio.Task[Any] | None = None
        self.messages: deque[str] = deque(maxlen=MESSAGES_KEPT)  # the dispatcher's log, newest last
        self.on_message: Callable[[str], None] | None = None  # the open Board screen's log panel
        self.last_options: DispatchOptions | None = None  # offered again the next time it is switched on

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    @property
    def stage(self) -> str | None:
        return self.dispatcher.options.stage if self.running and self.dispatcher else None

    @staticmethod
    def of(app: Any) -> AutoDispatch:
        """The app's one auto-dispatch (declared app state: ``ConsoleApp.auto_dispatch``)."""
        return app.auto_dispatch

    def start(self, options: DispatchOptions, hosts: Sequence[Host], root: Path) -> None:
        """Dispatch ``options.stage`` of the workspace at ``root`` to ``hosts`` (or to Ray) in a task."""

        def alert(message: str) -> None:  # failures also pop up, wherever the user is
            self.record(message)
            self.notify(escape(message), severity="warning")

        if options.engine == "ray":  # the batches go to a Ray cluster: the same board, no cluster file servers
            from remote.ray_engine import RayDispatcher

            self.dispatcher = RayDispatcher(root, options, log=self.record, alert=alert)
        else:
            self.dispatcher = Dispatcher(list(hosts), root, options, log=self.record, alert=alert)
        self.last_options = options
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            assert self.dispatcher is not None
            await self.dispatcher.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a message, never a crash
            self.report_error(exc, "auto-dispatch")

    def record(self, message: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {message}"
        self.messages.append(line)
        if self.on_message is not None:
            self.on_message(line)

    def stop(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.stop()
