"""Successive halving over a batch's models (``train-regression-batch --search halving``): the rungs, the
ranking, the batch's search state file and the certificates' ``training_mode.search``.

The rungs. Rung ``r`` (1-based) is at ``first_rung * eta ** (r - 1)`` epochs. Every model of the batch that
was pending when the search began enters rung 1. A rung is held while it is one of the first ``rungs``, its
epochs are below the batch's epoch limit and more than one model would go on from it (``ceil(n / eta) > 1``
for the ``n`` models that entered it); otherwise its models are the last rung's survivors and train to their
early stop or epoch limit. At a held rung the models still training (a model that stopped on its own before
the rung is finished: fully trained, certified as usual) are ranked by their best val_loss over the rung's
epochs (never anything of the test set; ties by id), and the best ``ceil(n / eta)`` of those ``n`` go on to
the next rung. The others are certified from their best weights, with ``training_mode.search`` saying where
the search stopped them.

Exact and resumable. A rung's decision is taken only from the models' checkpoints (each holds its val_loss
per epoch) once every entrant has reached the rung, and it is written, atomically, to the batch's search
state file (``EpochPaths.search_state_file``) before anything acts on it: a rerun after a kill -9 finds
the decisions taken so far and goes on from there, so it promotes and certifies exactly what an
uninterrupted run does. The state file also records the search (method, eta, first rung) and the epoch
limit; a batch resumes only with the same ones. Every model's checkpoint records the search too
(``training.start_or_resume``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from epoch_builder.errors import EpochBuilderError
from epoch_builder.regressions.options import describe_search
from epoch_builder.regressions.training import Stage
from epoch_builder.storage import atomic_write_json, read_json

STATE_VERSION = 1


def rung_epochs(rung: int, eta: int, first_rung: int) -> int:
    """The epochs of rung ``rung`` (1-based)."""
    return first_rung * eta ** (rung - 1)


def rung_held(rung: int, rungs: int, entrants: int, epochs: int, limit: int, eta: int) -> bool:
    """Whether rung ``rung`` (of ``epochs``) decides anything for ``entrants`` models: one of the first
    ``rungs``, below the epoch limit (at it, every model has finished anyway) and more than one model would go
    on (one alone is the last survivor)."""
    return rung <= rungs and epochs < limit and math.ceil(entrants / eta) > 1


def best_val_loss(history: dict[str, list[float | None]], epochs: int) -> float | None:
    """The lowest finite val_loss of the first ``epochs`` epochs (None: none was finite)."""
    values = [v for v in (history.get("val_loss") or [])[:epochs] if v is not None and math.isfinite(v)]
    return min(values) if values else None


@dataclass(frozen=True)
class Decision:
    """A held rung's outcome: the ranking of the models still training there, who goes on, who stops."""

    rung: int
    epochs: int
    ranking: tuple[tuple[str, float | None], ...]  # (id, best val_loss), best first; None (diverged) last
    promoted: tuple[str, ...]  # in the batch's order
    stopped: tuple[str, ...]  # in the batch's order

    def to_json(self) -> dict[str, Any]:
        return {"rung": self.rung, "epochs": self.epochs,
                "ranking": [{"id": i, "best_val_loss": v} for i, v in self.ranking],
                "promoted": list(self.promoted), "stopped": list(self.stopped)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Decision:
        return cls(int(data["rung"]), int(data["epochs"]),
                   tuple((str(r["id"]), r["best_val_loss"]) for r in data["ranking"]),
                   tuple(data["promoted"]), tuple(data["stopped"]))


def decide(rung: int, epochs: int, entrants: Sequence[str], bests: dict[str, float | None], eta: int) -> Decision:
    """Rank ``bests`` (the entrants still training at the rung: id -> best val_loss) and keep the best
    ``ceil(n / eta)``. Lower is better; a model without a finite val_loss ranks last; ties go by id."""
    ranking = sorted(bests.items(), key=lambda item: (item[1] is None, item[1] or 0.0, item[0]))
    keep = {model_id for model_id, _ in ranking[:math.ceil(len(ranking) / eta)]}
    return Decision(rung, epochs, tuple(ranking), tuple(i for i in entrants if i in keep),
                    tuple(i for i in entrants if i in bests and i not in keep))


def pack_sizes(entrants: Sequence[str], pack: int) -> dict[str, int]:
    """Each entrant's pack size in a stage: the stage's models in the batch's order, cut in packs of ``pack``
    (what the certificate records, whatever a resumed stage finds left to train)."""
    groups = [entrants[i:i + pack] for i in range(0, len(entrants), pack)]
    return {model_id: len(group) for group in groups for model_id in group}


def finished_record(mode: dict[str, Any], ranks: Sequence[int]) -> dict[str, Any]:
    """``training_mode.search`` of a model that finished its training under the search (a last survivor, or one
    that stopped on its own): its rank at each rung it passed."""
    return {**mode, "stopped": False, "ranks": list(ranks)}


def stopped_record(mode: dict[str, Any], ranks: Sequence[int], decision: Decision, rank: int) -> dict[str, Any]:
    """``training_mode.search`` of a model the search stopped: at which rung (its epochs) and its rank there."""
    return {**mode, "stopped": True, "rung": decision.rung, "epochs": decision.epochs, "rank": rank,
            "ranked": len(decision.ranking), "ranks": [*ranks, rank]}


class SearchState:
    """The batch's search state file: what search, over which models, and each held rung's decision."""

    def __init__(self, path: Path, document: dict[str, Any]) -> None:
        self.path = path
        self.document = document

    @property
    def mode(self) -> dict[str, Any]:
        return self.document["search"]

    @property
    def limit(self) -> int:
        return int(self.document["max_epochs"])

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(self.document["models"])

    def decision(self, rung: int) -> Decision | None:
        decisions = self.document["rungs"]
        return Decision.from_json(decisions[rung - 1]) if rung <= len(decisions) else None

    def record(self, decision: Decision) -> None:
        """Append the rung's decision, written atomically before anything acts on it."""
        if len(self.document["rungs"]) != decision.rung - 1:
            raise EpochBuilderError(f"{self.path}: rung {decision.rung} decided out of order")
        self.document["rungs"].append(decision.to_json())
        atomic_write_json(self.path, self.document, indent=1)

    @classmethod
    def start_or_resume(cls, path: Path, batch: str, mode: dict[str, Any], limit: int,
                        pending: Sequence[str]) -> SearchState:
        """The recorded search of the batch (checked against this run's), or a new one over ``pending``."""
        if path.exists():
            document = read_json(path)
            check_recorded(path, batch, document, mode, limit)
            return cls(path, document)
        document = {"version": STATE_VERSION, "batch": batch, "search": mode, "max_epochs": limit,
                    "models": list(pending), "rungs": []}
        atomic_write_json(path, document, indent=1)
        return cls(path, document)


def check_recorded(path: Path, batch: str, document: Any, mode: dict[str, Any], limit: int | None) -> None:
    """Refuse to go on with a search state written by another search (or epoch limit) than this run's."""
    if not isinstance(document, dict) or not isinstance(document.get("search"), dict):
        raise EpochBuilderError(f"{path}: not a search state file; delete it and the batch's checkpoints to start "
                                "the batch's search again")
    written, written_limit = document["search"], document.get("max_epochs")
    if written == mode and (limit is None or written_limit == limit):
        return
    was = f"{describe_search(written)} (max epochs {written_limit})"
    now = describe_search(mode) + (f" (max epochs {limit})" if limit is not None else "")
    raise EpochBuilderError(f"{path}: batch {batch} was started with {was}, not {now}; rerun with "
                            f"{describe_search(written)} and those epochs to resume it, or delete {path} and the batch's "
                            "checkpoints beside it to start it again")


class Trainer(Protocol):
    """What the search needs of the batch's orchestrator (``batch.py``)."""

    def train(self, ids: Sequence[str], stage: Stage) -> None: ...

    def certify_stopped(self, model_id: str, record: dict[str, Any], pack_size: int) -> None: ...

    def certified(self, model_id: str) -> bool: ...

    def checkpoint_state(self, model_id: str) -> dict[str, Any] | None: ...


def run_halving(state: SearchState, trainer: Trainer, pack: int, log: Callable[[str], None]) -> None:
    """Train the search's models rung by rung (the rules in this module's docstring), resuming from the
    decisions ``state`` holds."""
    mode = state.mode
    eta, first_rung, rungs = int(mode["eta"]), int(mode["first_rung"]), int(mode["rungs"])
    entrants = list(state.models)
    ranks: dict[str, list[int]] = {model_id: [] for model_id in entrants}
    continuing_at: int | None = None
    rung = 1
    while True:
        epochs = rung_epochs(rung, eta, first_rung)
        records = {model_id: finished_record(mode, ranks[model_id]) for model_id in entrants}
        if not rung_held(rung, rungs, len(entrants), epochs, state.limit, eta):
            log(f"search: {len(entrants)} model(s) train to their early stop or {state.limit} epochs")
            trainer.train(entrants, Stage(mode, None, continuing_at, records))
            return
        decision = state.decision(rung)
        if decision is None:
            log(f"search: rung {rung}: {len(entrants)} model(s) train to {epochs} epoch(s)")
            trainer.train(entrants, Stage(mode, epochs, continuing_at, records))
            decision = decide(rung, epochs, entrants, _bests(trainer, entrants, epochs, state.path), eta)
            state.record(decision)
            log(f"search: rung {rung} ({epochs} epoch(s)): {len(decision.promoted)} of {len(decision.ranking)} go on, "
                f"{len(decision.stopped)} stopped"
                + (f" (best val_loss {decision.ranking[0][1]})" if decision.ranking else ""))
        elif decision.epochs != epochs:
            raise EpochBuilderError(f"{state.path}: rung {rung} is recorded at {decision.epochs} epochs, expected "
                                    f"{epochs}; delete it and the batch's checkpoints to start the search again")
        sizes = pack_sizes(entrants, pack)
        places = {model_id: place for place, (model_id, _) in enumerate(decision.ranking, 1)}
        for model_id in decision.stopped:
            if not trainer.certified(model_id):
                record = stopped_record(mode, ranks[model_id], decision, places[model_id])
                trainer.certify_stopped(model_id, record, sizes[model_id])
        for model_id, place in places.items():
            ranks[model_id].append(place)
        entrants, continuing_at, rung = list(decision.promoted), epochs, rung + 1


def _bests(trainer: Trainer, entrants: Sequence[str], epochs: int, where: Path) -> dict[str, float | None]:
    """The best val_loss at the rung of each entrant still training, from its checkpoint."""
    bests: dict[str, float | None] = {}
    for model_id in entrants:
        if trainer.certified(model_id):
            continue  # stopped on its own before the rung: finished
        checkpoint = trainer.checkpoint_state(model_id)
        if checkpoint is None or checkpoint.get("epoch") != epochs or checkpoint.get("stopped"):
            found = "none" if checkpoint is None else f"epoch {checkpoint.get('epoch')}"
            raise EpochBuilderError(f"{where}: {model_id} should be at rung epoch {epochs} with its checkpoint, found "
                                    f"{found}; delete the search state and the batch's checkpoints to start again")
        bests[model_id] = best_val_loss(checkpoint["history"], epochs)
    return bests
