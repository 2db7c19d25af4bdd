"""Command palette provider: every console action, searchable by title."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from console.actions import ACTIONS


class ActionsProvider(Provider):
    async def discover(self) -> Hits:
        for spec in ACTIONS:
            yield DiscoveryHit(f"{spec.group}: {spec.title}", partial(self.app.run_action_id, spec.id), help=spec.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for spec in ACTIONS:
            title = f"{spec.group}: {spec.title}"
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), partial(self.app.run_action_id, spec.id), help=spec.help)
