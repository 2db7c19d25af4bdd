"""The console's actions, grouped as in the original's menu.

Pure data: the action menu, the command palette, the key bindings and the
help screen are all generated from ``ACTIONS`` so they never disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GROUPS = ("Server", "Epoch Builder", "Push", "Pull", "Charts")


@dataclass(frozen=True)
class ActionSpec:
    id: str  # the app's ``action_<id>`` method runs it
    group: str
    title: str
    help: str
    key: str | None = None  # global key binding, where one makes sense
    destructive: bool = False  # asks for confirmation, Cancel focused
    footer: bool = False  # its key is shown in the footer (the few a newcomer must find)
    command: str | None = None  # the epoch-builder subcommand it runs: messages naming it name the key too


ACTIONS: tuple[ActionSpec, ...] = (
    # Server
    ActionSpec("connect", "Server", "Connect", "open an interactive SSH session on the selected server", "c"),
    ActionSpec("view_status", "Server", "View status", "show the selected server's full status", "s"),
    ActionSpec("subscribe_logs", "Server", "Subscribe to logs",
               "follow a job's log: the jobs table's row when it has focus, else the server's newest running job", "l"),
    ActionSpec("reboot", "Server", "Reboot", "reboot the selected server", destructive=True),
    ActionSpec("shutdown", "Server", "Shutdown", "power off the selected server", destructive=True),
    ActionSpec("kill_process", "Server", "Kill process",
               "stop the job in the log pane, else the selected server's newest running job (its process group only)",
               "k", destructive=True),
    ActionSpec("install_key", "Server", "Install SSH key", "append your public key to the server's authorized_keys"),
    # Epoch Builder
    ActionSpec("board", "Epoch Builder", "Board", "every batch of the epoch, its state, and auto-dispatch of a stage", "o",
               footer=True),
    ActionSpec("import_candlesticks", "Epoch Builder", "Import candlesticks",
               "candle files on the selected server, or the bundled sample, into candlesticks/", "I",
               command="candlesticks import"),
    ActionSpec("create_epoch", "Epoch Builder", "Create epoch", "cut the candles, SMA + normalise, write config/epoch.json", "e",
               command="create-epoch"),
    ActionSpec("generate_configs", "Epoch Builder", "Generate regression training configs", "write the hyperparameter grid as batches", "g",
               command="generate-regression-training-configs"),
    ActionSpec("train_batch", "Epoch Builder", "Train regression batch", "train one batch of regressions on the selected server", "t",
               command="train-regression-batch"),
    ActionSpec("initialize_models", "Epoch Builder", "Initialize prediction models", "assets + config batches from the chosen regressions", "i",
               command="initialize-prediction-models"),
    ActionSpec("find_profitable", "Epoch Builder", "Find profitable configs", "backtest one config batch on the selected server", "p",
               command="find-profitable-configs"),
    ActionSpec("build_models", "Epoch Builder", "Build prediction models", "rank profitable configs into build.json", "b",
               command="build-prediction-models"),
    ActionSpec("export_epoch", "Epoch Builder", "Export epoch", "write the Epoch File for one model of the build", "x",
               command="export-epoch"),
    ActionSpec("unit_tests", "Epoch Builder", "Unit tests", "run the project's test suite on the selected server", "u"),
    # Push (local workspace -> servers)
    ActionSpec("push_root", "Push", "Push root files", "project root files (pyproject, README, Makefile)"),
    ActionSpec("push_config", "Push", "Push configuration", "config/ (epoch.json, cluster.json)"),
    ActionSpec("push_candlesticks", "Push", "Push candlesticks", "candlesticks/ bundle"),
    ActionSpec("push_dist", "Push", "Push dist/project", "the project's source (epoch_builder, remote)"),
    ActionSpec("push_training_configs", "Push", "Push regression training configs", "the epoch's regression_training_configs/"),
    ActionSpec("push_prediction_models", "Push", "Push prediction models", "the epoch's prediction_models/"),
    ActionSpec("push_everything", "Push", "Push everything", "the whole workspace", "P"),
    # Pull (servers -> local workspace)
    ActionSpec("pull_regressions", "Pull", "Pull trained regressions", "regressions/ + batched certificates", "R"),
    ActionSpec("pull_prediction_models", "Pull", "Pull prediction models", "profitable configs and build", "M"),
    # Charts (local workspace)
    ActionSpec("chart_regression", "Charts", "Regression training chart", "loss / val_loss per epoch of a trained regression", "L"),
    ActionSpec("chart_model", "Charts", "Model balance chart", "balance curve and positions of a model in build.json", "B"),
)

ACTIONS_BY_ID = {action.id: action for action in ACTIONS}
# `epoch-builder <command> ...` in a message (the pipeline's hints are written for the shell).
_COMMAND_HINT = re.compile(r"`epoch-builder ([a-z-]+(?: [a-z-]+)?)[^`]*`")


def with_console_keys(message: str) -> str:
    """A pipeline message as the console's user needs it: each `epoch-builder X` it names also names the
    console action that runs X and its key, e.g. "run `epoch-builder create-epoch` first" ->
    "run `epoch-builder create-epoch` (console: Create epoch, key e) first"."""

    by_command = {a.command: a for a in ACTIONS if a.command}

    def annotate(match: re.Match[str]) -> str:
        words = match.group(1)  # "create-epoch", or "candlesticks import": one word or two
        spec = by_command.get(words) or by_command.get(words.split()[0])
        if spec is None:
            return match.group(0)
        key = f", key {spec.key}" if spec.key else ""
        return f"{match.group(0)} (console: {spec.title}{key})"

    return _COMMAND_HINT.sub(annotate, message)


def actions_in(group: str) -> list[ActionSpec]:
    return [action for action in ACTIONS if action.group == group]
