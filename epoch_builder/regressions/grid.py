"""`generate-regression-training-configs`: the declarative grid -> validated,
shuffled batches of training configs per category, plus UNIT_TEST and a receipt.

The grid (``epoch_builder/data/regression_grid.json``; users copy it and pass
``--grid``) holds, per category: batch size, hyperparameters (learning rates,
optimizers, loss/metric pairs, activations) and the network variations per
template. Every variation x hyperparameter combination is one config; each is
validated by building its network (once per distinct architecture: the
hyperparameters do not change the network), then the category is shuffled with
the epoch seed and cut into ``KR_<CAT>_<n>_<N>.json`` batches.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from importlib import resources
from math import ceil
from pathlib import Path
from typing import Any

from epoch_builder import output
from epoch_builder.errors import EpochBuilderError
from epoch_builder.regressions.architectures import (
    FAMILIES, architecture_key, build_model, parse_template, validate_model_config,
)
from epoch_builder.regressions.configs import UNIT_TEST, validate_training_config
from epoch_builder.storage import atomic_write_json, atomic_write_text, read_json
from epoch_builder.workspace import Workspace

RECEIPT = "receipt.txt"
UNIT_TEST_BATCH = "KR_UNIT_TEST"


def default_grid_path() -> Path:
    return Path(str(resources.files("epoch_builder") / "data" / "regression_grid.json"))


def load_grid(path: Path | None) -> dict[str, Any]:
    """Read and check the grid's shape; errors name the file and key."""
    path = path or default_grid_path()
    grid = read_json(path)
    if not isinstance(grid, dict):
        raise EpochBuilderError(f"{path}: expected a JSON object with batch_sizes, hyperparams, networks")
    for key in ("batch_sizes", "hyperparams", "networks"):
        if not isinstance(grid.get(key), dict):
            raise EpochBuilderError(f"{path}: key {key!r} must be an object keyed by category ({', '.join(FAMILIES)})")
    categories = [c for c in grid["networks"]]
    unknown = [c for c in categories if c not in FAMILIES]
    if unknown:
        raise EpochBuilderError(f"{path}: networks.{unknown[0]} is not a category; allowed {', '.join(FAMILIES)}")
    for category in categories:
        size = grid["batch_sizes"].get(category)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise EpochBuilderError(f"{path}: batch_sizes.{category} must be a positive integer, got {size!r}")
        hp = grid["hyperparams"].get(category)
        if not isinstance(hp, dict):
            raise EpochBuilderError(f"{path}: hyperparams.{category} is missing")
        for key in ("learning_rates", "optimizers", "losses", "activations"):
            if not isinstance(hp.get(key), list) or not hp[key]:
                raise EpochBuilderError(f"{path}: hyperparams.{category}.{key} must be a non-empty list")
        for index, pair in enumerate(hp["losses"]):
            if not isinstance(pair, dict) or set(pair) != {"loss", "metric"}:
                raise EpochBuilderError(f"{path}: hyperparams.{category}.losses[{index}] must be {{\"loss\": ..., \"metric\": ...}}")
        templates = grid["networks"][category]
        if not isinstance(templates, dict) or not templates:
            raise EpochBuilderError(f"{path}: networks.{category} must map template names to lists of variations")
        for name, variations in templates.items():
            template = parse_template(name)
            if template.family != category:
                raise EpochBuilderError(f"{path}: networks.{category}.{name} belongs to category {template.family}")
            if not isinstance(variations, list) or not variations:
                raise EpochBuilderError(f"{path}: networks.{category}.{name} must be a non-empty list of variations")
    grid["_path"] = str(path)
    return grid


def _model_config(name: str, variation: dict[str, Any], activation: str | None, where: str) -> dict[str, Any]:
    if not isinstance(variation, dict):
        raise EpochBuilderError(f"{where}: a variation must be an object of layer lists")
    if "activations" in variation or "name" in variation:
        raise EpochBuilderError(f"{where}: variations take no 'name' or 'activations' (activations come from hyperparams)")
    config: dict[str, Any] = {"name": name, **variation}
    if activation is not None:
        counts = parse_template(name).expected_counts(activations_given=True)
        config["activations"] = [activation] * (counts["activations"] or 0)
    validate_model_config(config, where)
    return config


def expand_category(grid: dict[str, Any], category: str, epoch_id: str, lookback: int, predictions: int,
                    rng: random.Random) -> list[dict[str, Any]]:
    """Every combination of the category, in grid order, each with a seeded uuid4 id."""
    hp = grid["hyperparams"][category]
    source = grid["_path"]
    configs = []
    for name, variations in grid["networks"][category].items():
        for lr in hp["learning_rates"]:
            for optimizer in hp["optimizers"]:
                for pair in hp["losses"]:
                    for activation in hp["activations"]:
                        for index, variation in enumerate(variations):
                            where = f"{source}: networks.{category}.{name}[{index}]"
                            cfg = {
                                "id": f"{name}_{uuid.UUID(int=rng.getrandbits(128), version=4)}",
                                "description": f"{name} generated for epoch {epoch_id} from {Path(source).name}",
                                "lookback": lookback,
                                "predictions": predictions,
                                "learning_rate": lr,
                                "optimizer": optimizer,
                                "loss": pair["loss"],
                                "metric": pair["metric"],
                                "keras_model": _model_config(name, variation, activation, where),
                            }
                            configs.append(validate_training_config(cfg, where))
    return configs


class BuildValidator:
    """Builds each distinct architecture once (cache by architecture key)."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.built = 0

    def check(self, cfg: dict[str, Any]) -> None:
        key = architecture_key(cfg["keras_model"], cfg["lookback"], cfg["predictions"])
        if key in self.seen:
            return
        from epoch_builder.regressions.runtime import configure_tensorflow

        configure_tensorflow()
        import keras

        build_model(cfg["keras_model"], cfg["lookback"], cfg["predictions"])
        self.built += 1
        self.seen.add(key)
        if self.built % 25 == 0:
            keras.backend.clear_session()  # keep the graph small while building hundreds


def plan(grid: dict[str, Any], epoch_id: str, seed: int, lookback: int, predictions: int) -> dict[str, list[dict[str, Any]]]:
    """Every category's configs (ids and order drawn from the seed), checked without building."""
    rng = random.Random(seed)
    per_category: dict[str, list[dict[str, Any]]] = {}
    for category in [c for c in FAMILIES if c in grid["networks"]]:
        configs = expand_category(grid, category, epoch_id, lookback, predictions, rng)
        rng.shuffle(configs)
        per_category[category] = configs
    return per_category


def generate(ws: Workspace, grid_path: Path | None = None, *, force: bool = False,
             log: Callable[[str], None] = output.info) -> dict[str, Any]:
    """Write every batch and the receipt; returns ``{category: {"models": m, "batches": b}}``."""
    from epoch_builder import events

    config = ws.load_epoch_config()
    paths = ws.epoch()
    out_dir = paths.regression_training_configs_dir
    existing = sorted(out_dir.rglob("*.json")) if out_dir.exists() else []
    if existing and not force:
        raise EpochBuilderError(
            f"{out_dir}: training configs already exist ({len(existing)} batch files); pass --force to replace them "
            "(new ids: regressions trained from the old batches keep theirs)")
    grid = load_grid(grid_path)
    started = time.monotonic()
    per_category = plan(grid, config.id, config.seed, config.regression_lookback, config.regression_predictions)
    unit_test = unit_test_config(grid, config.id, config.regression_lookback, config.regression_predictions)
    validator = BuildValidator()
    with output.progress_bars() as bars:
        bar = bars.add("validating configs", sum(len(configs) for configs in per_category.values()))
        for category, configs in per_category.items():
            for index, cfg in enumerate(configs, 1):
                validator.check(cfg)
                bar.advance(info=category)
                if index % 50 == 0 or index == len(configs):
                    events.emit("generate-regression-training-configs", done=index, total=len(configs), category=category)
            log(f"{category}: {len(configs)} configs validated")
    validator.check(unit_test)

    for path in existing:
        path.unlink()
    summary: dict[str, Any] = {}
    for category, configs in per_category.items():
        size = grid["batch_sizes"][category]
        batches = ceil(len(configs) / size)
        for number in range(1, batches + 1):
            name = f"KR_{category}_{number}_{batches}"
            atomic_write_json(out_dir / category / f"{name}.json",
                              {"name": name, "category": category, "configs": configs[(number - 1) * size:number * size]},
                              indent=2)
        summary[category] = {"models": len(configs), "batches": batches, "batch_size": size}
    atomic_write_json(out_dir / UNIT_TEST / f"{UNIT_TEST_BATCH}.json",
                      {"name": UNIT_TEST_BATCH, "category": UNIT_TEST, "configs": [unit_test]}, indent=2)
    summary[UNIT_TEST] = {"models": 1, "batches": 1, "batch_size": 1}
    atomic_write_text(out_dir / RECEIPT, receipt_text(config.id, grid["_path"], config.seed, summary))
    log(f"{validator.built} distinct architectures built in {time.monotonic() - started:.1f} s")
    return summary


def unit_test_config(grid: dict[str, Any], epoch_id: str, lookback: int, predictions: int) -> dict[str, Any]:
    """The grid's ``unit_test`` model (a small DNN when the grid has none)."""
    base = grid.get("unit_test") or {
        "id": "KR_UNIT_TEST", "learning_rate": -1, "optimizer": "adam", "loss": "mean_absolute_error",
        "metric": "mean_squared_error", "max_epochs": 30,
        "keras_model": {"name": "KR_DNN_S2", "units": [64, 32], "activations": ["relu", "relu"]},
    }
    cfg = {"description": f"Unit test regression of epoch {epoch_id}", **base,
           "lookback": lookback, "predictions": predictions}
    return validate_training_config(cfg, f"{grid['_path']}: unit_test")


def receipt_text(epoch_id: str, grid_path: str, seed: int, summary: dict[str, Any]) -> str:
    total = sum(s["models"] for c, s in summary.items() if c != UNIT_TEST)
    lines = [f"{epoch_id}: Regression Training Configs", "",
             f"Creation: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
             f"Grid: {grid_path}", f"Seed: {seed}", f"Total Models: {total}"]
    for category, info in summary.items():
        lines += ["", category, f"Models: {info['models']}", f"Batch Size: {info['batch_size']}",
                  f"Batches: {info['batches']}"]
        if category == UNIT_TEST:
            lines.append(f"{UNIT_TEST_BATCH}: ")
        else:
            lines += [f"KR_{category}_{n}_{info['batches']}: " for n in range(1, info["batches"] + 1)]
    return "\n".join(lines) + "\n"
