"""Push and Pull actions: a group of the local workspace to or from the chosen servers.

Group names are ``remote.sync``'s (``dist`` is ``remote.bootstrap``: push and install the project).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from console.actions.spec import ActionBody, ActionSpec

if TYPE_CHECKING:  # pragma: no cover
    from console.app_interface import ConsoleApp


async def sync_group(app: "ConsoleApp", direction: str, group: str, title: str) -> None:
    servers = await app.choose_servers(f"{title}: which server?", allow_all=True, not_the_controller=True)
    if not servers:
        return
    if direction == "push" and not await app.confirm(
            f"{title} to {', '.join(servers)}? Changed files on the server are overwritten.", "Push"):
        return
    # In parallel; one server's failure is reported and the others' results still shown.
    results = await asyncio.gather(
        *(app.guarded(f"{title} {server}", app.cluster.sync(server, direction, group)) for server in servers))
    for server, summary in zip(servers, results):
        if summary is not None:
            app.notify(f"{title} {server}: {summary}")


def _sync_action(action_id: str, title: str, help: str, direction: str, group: str, key: str | None = None) -> ActionSpec:
    async def run(app: "ConsoleApp") -> None:
        await sync_group(app, direction, group, title)

    body: ActionBody = run
    return ActionSpec(action_id, direction.capitalize(), title, help, key, run=body)


ACTIONS = (
    # Push (local workspace -> servers)
    _sync_action("push_root", "Push root files", "project root files (pyproject, README, Makefile)", "push", "root-files"),
    _sync_action("push_config", "Push configuration", "config/ (epoch.json, cluster.json)", "push", "config"),
    _sync_action("push_candlesticks", "Push candlesticks", "candlesticks/ bundle", "push", "candlesticks"),
    _sync_action("push_dist", "Push dist/project", "the project's source (epoch_builder, remote)", "push", "dist"),
    _sync_action("push_training_configs", "Push regression training configs", "the epoch's regression_training_configs/",
                 "push", "regression-training-configs"),
    _sync_action("push_prediction_models", "Push prediction models", "the epoch's prediction_models/",
                 "push", "prediction-models"),
    _sync_action("push_everything", "Push everything", "the whole workspace", "push", "workspace", "P"),
    # Pull (servers -> local workspace)
    _sync_action("pull_regressions", "Pull trained regressions", "regressions/ + batched certificates",
                 "pull", "trained-regressions", "R"),
    _sync_action("pull_prediction_models", "Pull prediction models", "profitable configs and build",
                 "pull", "prediction-models", "M"),
)
