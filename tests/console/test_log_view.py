"""The log pane: bounded memory, follow/pause with a counter, `/` filter, batched drawing."""

from __future__ import annotations

from textual.app import App, ComposeResult

from console.log_buffer import LogBuffer
from console.widgets.logs import LogPane, LogView


def test_buffer_is_bounded_and_filter_rescans_kept_lines() -> None:
    buffer = LogBuffer(max_lines=100)
    buffer.extend(f"line {i} {'ERROR' if i % 10 == 0 else 'ok'}" for i in range(1000))
    assert len(buffer) == 100 and buffer[0] == "line 900 ERROR" and buffer.total_received == 1000
    buffer.set_filter("error")
    assert buffer.lines() == [f"line {i} ERROR" for i in range(900, 1000, 10)]
    assert buffer.extend(["line 1000 ERROR", "line 1001 ok"]) == 1
    assert buffer[len(buffer) - 1] == "line 1000 ERROR"
    buffer.set_filter("")
    assert len(buffer) == 100 and buffer[len(buffer) - 1] == "line 1001 ok"


class LogApp(App[None]):
    def compose(self) -> ComposeResult:
        yield LogPane(id="log-pane")


async def test_pause_counts_new_lines_and_follow_jumps_to_end() -> None:
    app = LogApp()
    async with app.run_test(size=(80, 20)) as pilot:
        pane = app.query_one(LogPane)
        view = pane.view
        pane.show_source("test")
        view.focus()
        view.append_lines(f"line {i}" for i in range(500))
        await pilot.pause(0.2)
        assert len(view.buffer) == 500 and view.is_vertical_scroll_end

        await pilot.press("f")  # pause
        assert not view.follow
        view.append_lines(f"more {i}" for i in range(40))
        await pilot.pause(0.2)
        assert view.new_while_paused == 40
        assert not view.is_vertical_scroll_end  # the view stayed where it was
        title = str(pane.query_one("#log-title").render())
        assert "PAUSED" in title and "+40 new" in title

        await pilot.press("f")  # follow again
        await pilot.pause(0.1)
        assert view.follow and view.new_while_paused == 0 and view.is_vertical_scroll_end
        # The last visible row is the last line.
        last_row = view.render_line(view.size.height - 1).text.strip()
        assert last_row == "more 39"


async def test_slash_filter_and_escape_clears() -> None:
    app = LogApp()
    async with app.run_test(size=(80, 20)) as pilot:
        view = app.query_one(LogView)
        view.focus()
        view.append_lines([f"epoch {i} loss 0.{i}" if i % 2 else f"noise {i}" for i in range(100)])
        await pilot.pause(0.1)
        await pilot.press("slash")
        await pilot.press(*"epoch 9", "enter")
        await pilot.pause(0.1)
        assert view.buffer.lines() == ["epoch 9 loss 0.9"] + [f"epoch {i} loss 0.{i}" for i in range(91, 100, 2)]
        assert "filter: epoch 9" in str(app.query_one("#log-title").render())
        await pilot.press("slash")
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert len(view.buffer) == 100 and view.buffer.filter == ""


async def test_burst_of_lines_is_drawn_in_batches_and_bounded() -> None:
    app = LogApp()
    async with app.run_test(size=(80, 20)) as pilot:
        view = app.query_one(LogView)
        for chunk in range(10):  # 50,000 lines queued between two redraws
            view.append_lines(f"{chunk}-{i}" for i in range(5000))
        assert len(view.buffer) == 0  # nothing drawn per line: queued until the timer
        await pilot.pause(0.2)
        assert len(view.buffer) == view.buffer.max_lines
        assert view.buffer.total_received == 50_000
        assert view.buffer[len(view.buffer) - 1] == "9-4999"


async def test_scrolling_up_pauses_and_end_follows() -> None:
    app = LogApp()
    async with app.run_test(size=(80, 20)) as pilot:
        view = app.query_one(LogView)
        view.focus()
        view.append_lines(f"line {i}" for i in range(300))
        await pilot.pause(0.2)
        assert view.follow
        await pilot.press("pageup")
        await pilot.pause(0.1)
        assert not view.follow
        view.append_lines(["late"])
        await pilot.pause(0.2)
        assert view.new_while_paused == 1
        await pilot.press("end")
        await pilot.pause(0.1)
        assert view.follow and view.is_vertical_scroll_end


async def test_each_job_keeps_its_own_filter() -> None:
    class PaneApp(App[None]):
        def compose(self):
            yield LogPane(id="pane")

    app = PaneApp()
    async with app.run_test(size=(80, 20)) as pilot:
        pane = app.query_one(LogPane)
        pane.show_source("job a", "srv1/a")
        pane.view.set_filter("loss")
        pane.show_source("job b", "srv1/b")  # another job: no filter carried over
        assert pane.view.buffer.filter == ""
        pane.show_source("job a", "srv1/a")  # back to the first: its filter again
        assert pane.view.buffer.filter == "loss"
        await pilot.pause()


async def test_following_shows_the_last_line_when_lines_are_wider_than_the_view() -> None:
    """A line wider than the view brings in the horizontal scrollbar, which takes a row: the last line must
    still be on screen (it once hid under the scrollbar at 80x24)."""
    app = LogApp()
    async with app.run_test(size=(40, 12)) as pilot:
        pane = app.query_one(LogPane)
        view = pane.view
        pane.show_source("test")
        view.append_lines([f"KR_DNN_S3_{i:04d} epoch 8/500 loss 0.010000 val_loss 0.011250" for i in range(30)]
                          + ["the last line"])
        await pilot.pause(0.3)
        assert view.show_horizontal_scrollbar
        assert view.is_vertical_scroll_end
        last_row = view.scroll_offset.y + view.scrollable_content_region.height - 1
        assert view.buffer[last_row] == "the last line"
        assert "the last line" in "".join(segment.text for segment in view.render_line(view.scrollable_content_region.height - 1))
