"""Charts: a regression's loss / val_loss per epoch, a model's balance curve."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label
from textual_plotext import PlotextPlot

from console.workspace_files import ModelSummary


class ChartScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q", "close", "Close")]
    TITLE_TEXT = ""

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog chart"):
            yield Label(self.TITLE_TEXT, classes="dialog-title")
            yield PlotextPlot(id="chart")
            yield Label("[dim]Esc closes[/]")

    def on_mount(self) -> None:
        self.draw(self.query_one(PlotextPlot).plt)

    def draw(self, plt) -> None:  # noqa: ANN001 - plotext's module-like object
        raise NotImplementedError

    def action_close(self) -> None:
        self.dismiss(None)


class LossChartScreen(ChartScreen):
    def __init__(self, regression_id: str, history: dict[str, list[float]]) -> None:
        super().__init__()
        self.history = history
        self.TITLE_TEXT = f"Training of {regression_id}: loss and val_loss per epoch"

    def draw(self, plt) -> None:  # noqa: ANN001
        for key in ("loss", "val_loss"):
            values = self.history.get(key) or []
            if values:
                plt.plot(list(range(1, len(values) + 1)), values, label=key, marker="braille")
        plt.xlabel("epoch")
        plt.ylabel("loss")


class BalanceChartScreen(ChartScreen):
    def __init__(self, model: ModelSummary) -> None:
        super().__init__()
        self.model = model
        wins = sum(self.model.position_outcomes)
        self.TITLE_TEXT = (
            f"{model.id}: balance after each position ({model.positions} positions, {wins} successful)"
        )

    def draw(self, plt) -> None:  # noqa: ANN001
        balances = self.model.balance_history
        if balances:
            x = list(range(len(balances)))
            plt.plot(x, balances, label="balance", marker="braille")
            # Successful / failed closes as points on the curve (positions start at index 1).
            offset = len(balances) - len(self.model.position_outcomes)
            wins = [(i + offset, balances[i + offset]) for i, ok in enumerate(self.model.position_outcomes) if ok and i + offset < len(balances)]
            losses = [(i + offset, balances[i + offset]) for i, ok in enumerate(self.model.position_outcomes) if not ok and i + offset < len(balances)]
            if wins:
                plt.scatter(*zip(*wins), label="successful", color="green", marker="dot")
            if losses:
                plt.scatter(*zip(*losses), label="failed", color="red", marker="dot")
        plt.xlabel("position")
        plt.ylabel("balance (USDT)")


def loss_chart_for(certificate: Path) -> LossChartScreen:
    from console.workspace_files import read_certificate, training_history

    cert = read_certificate(certificate)
    return LossChartScreen(str(cert.get("id", certificate.parent.name)), training_history(certificate))
