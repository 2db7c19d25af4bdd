"""What the console's actions and screens may use of the app: ``ConsoleApp``, a declared interface.

The actions (``console.actions``) and the Board are written against this
Protocol, not against ``console.app.EpochConsole``: the app sits above them and
imports them, so they never import it back (no import circle), and everything
an action may touch on the app is listed here in one place.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Protocol, TypeVar

if TYPE_CHECKING:  # pragma: no cover
    from textual.screen import Screen

    from epoch_builder.workspace import Workspace
    from remote.board import Board

    from console.auto_dispatch import AutoDispatch
    from console.cluster import Cluster
    from console.state import JobView
    from console.widgets.jobs import JobsTable
    from console.widgets.logs import LogPane

T = TypeVar("T")


class ConsoleApp(Protocol):
    """The Epoch Console as its actions see it (``console.app.EpochConsole`` implements it)."""

    cluster: Cluster
    workspace: Workspace
    live: bool  # False: a recorded showcase, no server to ask
    following: str | None  # the job key shown in the log pane
    log_pane: LogPane
    jobs_table: JobsTable
    auto_dispatch: AutoDispatch  # the Board's dispatcher, kept on the app so it outlives the Board screen

    # --- where the user is ---------------------------------------------------------
    @property
    def selected_server(self) -> str: ...

    @property
    def selected_job(self) -> JobView: ...

    def newest_running_job(self, server: str) -> JobView: ...

    def target_job(self) -> JobView: ...

    # --- talking to the user --------------------------------------------------------
    def notify(self, message: str, **kwargs: Any) -> None: ...

    def report_error(self, error: BaseException | str, context: str = "") -> None: ...

    def with_console_keys(self, message: str) -> str: ...

    async def confirm(self, question: str, label: str) -> bool: ...

    async def choose_servers(self, title: str, *, allow_all: bool, all_but_this_machine: bool = False,
                             not_the_controller: bool = False) -> list[str] | None: ...

    def push_screen(self, screen: Screen[Any], callback: Callable[[Any], Any] | None = None) -> Any: ...

    async def push_screen_wait(self, screen: Screen[T]) -> T: ...

    def copy_to_clipboard(self, text: str) -> None: ...

    def suspend(self) -> AbstractContextManager[None]: ...

    # --- running things --------------------------------------------------------------
    async def guarded(self, context: str, step: Awaitable[Any]) -> Any: ...

    def run_action_id(self, action_id: str) -> None: ...

    def follow_log(self, job: JobView) -> None: ...

    async def read_board(self) -> Board: ...

    def call_later(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> bool: ...
