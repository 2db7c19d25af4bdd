"""Chart actions, drawn from the local workspace: a regression's loss curves, a model's balance, the HTML report."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from epoch_builder.errors import EpochBuilderError

from console.actions.pipeline import NO_REGRESSIONS
from console.actions.spec import ActionSpec

if TYPE_CHECKING:  # pragma: no cover
    from console.app_interface import ConsoleApp

GROUP = "Charts"


async def chart_regression(app: "ConsoleApp") -> None:
    from console.screens.charts import loss_chart_for
    from console.screens.pickers import RegressionChooser
    from console.workspace_files import list_regressions

    regressions = list_regressions(app.workspace)
    if not regressions:
        raise EpochBuilderError(NO_REGRESSIONS)
    chosen = await app.push_screen_wait(RegressionChooser(regressions))
    if chosen is not None:
        app.push_screen(loss_chart_for(chosen.path))


async def chart_model(app: "ConsoleApp") -> None:
    from console.screens.charts import BalanceChartScreen
    from console.screens.pickers import ModelPicker
    from console.workspace_files import build_luck, list_build_models

    models = list_build_models(app.workspace)
    model_id = await app.push_screen_wait(ModelPicker(models, build_luck(app.workspace, models)))
    if model_id:
        app.push_screen(BalanceChartScreen(next(m for m in models if m.id == model_id)))


async def html_report(app: "ConsoleApp") -> None:
    """`epoch-builder report --model-id ID` on the console's own workspace, in a thread (plotly and matplotlib
    take a few seconds and the screen stays live); the page's path is shown and put on the clipboard."""
    from console.screens.pickers import ReportModelPicker
    from console.workspace_files import build_luck, list_build_models
    from epoch_builder.report import write_report

    models = list_build_models(app.workspace)
    model_id = await app.push_screen_wait(ReportModelPicker(models, build_luck(app.workspace, models)))
    if not model_id:
        return
    app.notify(f"writing the HTML report of {model_id}")
    # log: the report's progress lines would go to stderr, under the full-screen console
    files = await asyncio.to_thread(write_report, app.workspace, model_id=model_id, log=lambda _line: None)
    app.copy_to_clipboard(str(files.html))
    app.notify(f"HTML report written: {files.html} (path copied; equity PNG beside it: {files.png.name})",
               title="HTML report", timeout=30)


ACTIONS = (
    ActionSpec("chart_regression", GROUP, "Regression training chart", "loss / val_loss per epoch of a trained regression",
               "L", run=chart_regression),
    ActionSpec("chart_model", GROUP, "Model balance chart", "balance curve and positions of a model in build.json", "B",
               run=chart_model),
    ActionSpec("html_report", GROUP, "HTML report", "write the self-contained HTML report of a model in build.json "
               "(equity, drawdown, positions, discovery, regressions' loss) and show its path", "H", command="report",
               run=html_report),
)
