"""Snapshots (pytest-textual-snapshot) of the main screen, the create-epoch form, the
confirm dialog and the batch board, over the fixed showcase state (no connections, fixed times).

Update after an intended change: ``pytest tests/console/test_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

import pytest

from console.showcase import showcase_app

SIZE = (150, 42)
# The smallest terminal a user works in (the narrow, short layout) and a large one (the wide layout).
SIZES = pytest.mark.parametrize("size", [(80, 24), (200, 50)], ids=["80x24", "200x50"])


async def _select_running_job(pilot) -> None:
    pilot.app.servers_table.move_cursor(row=1)
    jobs = pilot.app.jobs_table
    jobs.move_cursor(row=1)
    jobs.focus()
    await pilot.pause(0.3)


def test_main_screen(snap_compare) -> None:
    assert snap_compare(showcase_app(), terminal_size=SIZE, run_before=_select_running_job)


def test_create_epoch_form(snap_compare) -> None:
    assert snap_compare(showcase_app(), terminal_size=SIZE, press=["e"])


def test_confirm_dialog_for_kill(snap_compare) -> None:
    assert snap_compare(showcase_app(), terminal_size=SIZE, run_before=_select_running_job, press=["k"])


def test_board_screen(snap_compare) -> None:
    assert snap_compare(showcase_app(), terminal_size=SIZE, press=["o"])


@SIZES
def test_main_screen_at(snap_compare, size) -> None:
    assert snap_compare(showcase_app(), terminal_size=size, run_before=_select_running_job)


@SIZES
def test_create_epoch_form_at(snap_compare, size) -> None:
    assert snap_compare(showcase_app(), terminal_size=size, press=["e"])


@SIZES
def test_board_screen_at(snap_compare, size) -> None:
    assert snap_compare(showcase_app(), terminal_size=size, press=["o"])
