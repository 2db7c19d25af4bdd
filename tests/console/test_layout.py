"""The main screen's layout follows the terminal: narrow terminals give the log the whole width."""

from __future__ import annotations

import pytest

from console.app import NARROW_BELOW_COLUMNS
from console.showcase import TRAINING_LOG, showcase_app


@pytest.mark.parametrize("size", [(80, 24), (100, 30), (119, 40)])
async def test_a_narrow_terminal_stacks_servers_log_and_jobs(size: tuple[int, int]) -> None:
    app = showcase_app()
    async with app.run_test(size=size) as pilot:
        await pilot.pause(0.4)
        assert not app.detail.display or app.detail.region.width == 0  # `s` shows a server's full status
        log, servers, jobs = app.log_pane.region, app.servers_table.region, app.jobs_table.region
        assert log.width == servers.width == jobs.width == size[0]
        assert servers.bottom <= log.y and log.bottom <= jobs.y  # stacked in this order
        # A training line is shown whole, not cut after its model id.
        epoch_lines = [line for line in TRAINING_LOG if line.startswith("KR_")]
        assert app.log_pane.view.scrollable_content_region.width >= max(len(line) for line in epoch_lines)
        assert app.log_pane.view.is_vertical_scroll_end


async def test_a_wide_terminal_shows_the_detail_beside_the_servers() -> None:
    app = showcase_app()
    async with app.run_test(size=(NARROW_BELOW_COLUMNS, 40)) as pilot:
        await pilot.pause(0.4)
        servers, detail, log, jobs = (w.region for w in (app.servers_table, app.detail, app.log_pane, app.jobs_table))
        assert detail.width > 0 and servers.y == detail.y and servers.right <= detail.x
        assert log.y == jobs.y and log.right <= jobs.x and servers.bottom <= log.y


async def test_the_jobs_command_column_uses_the_room_it_has_and_shrinks_with_the_terminal() -> None:
    app = showcase_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.4)
        table = app.jobs_table
        key = "gpu-1/20260101T001500-train-regression-batch-9f8e7d"
        narrow = str(table.get_cell(key, "command"))
        await pilot.resize_terminal(200, 50)  # wide layout: the jobs pane is 2/5 of 200 columns
        await pilot.resize_terminal(100, 30)  # narrow layout: the jobs table spans all 100
        await pilot.pause(0.6)
        wider = str(table.get_cell(key, "command"))
        assert len(wider) > len(narrow) and (wider.endswith("…") or wider == app.cluster.jobs[key].command)
        assert table.virtual_size.width <= table.scrollable_content_region.width  # no sideways scrolling
        await pilot.resize_terminal(80, 24)
        await pilot.pause(0.6)
        assert str(table.get_cell(key, "command")) == narrow
        assert table.virtual_size.width <= table.scrollable_content_region.width
