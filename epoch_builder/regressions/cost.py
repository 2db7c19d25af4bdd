"""Cost model of regression training: floating-point work per config, per batch and per family.

This module owns the one estimate of how much arithmetic training a regression takes, so that every
place that needs it (the scheduler in ``remote.schedule``, ``bench/bench_dispatch.py``, a future
"how long will this epoch take" line) agrees. It reads the same model configs that
``architectures.build_model`` reads and follows its layer construction, but builds nothing: numpy and
plain Python only, never TensorFlow, so the whole default grid costs in well under a second.

FLOP convention
---------------
* One multiply-add (MAC) of a layer's matrix product or convolution is 2 FLOP.
* Forward FLOP of one window, ``F`` = 2 x the MACs of the network's products:

  ==================  =====================================================================
  Dense(in -> out)    in x out
  Conv1D              L x k x c x f  (``padding="same"``, stride 1: the output keeps the input's
                      length L; k kernel size, c input channels, f filters)
  MaxPooling1D        no MACs; the length becomes ceil(L / p) (``padding="same"``, stride = p)
  Flatten, Reshape    no MACs
  LSTM(u)             T x 4u(d + u)  (T steps of d inputs: the four gates' input and recurrent kernels)
  GRU(u)              T x 3u(d + u)  (Keras 3's ``reset_after=True``: the recurrent product is taken
                      before the reset gate, 3u x u like the input kernel's 3u x d)
  ==================  =====================================================================

  Left out: biases, activations, the gates' element-wise products, pooling comparisons, the loss and
  the optimizer's update. Each is O(units) per window or O(parameters) per step of 512 windows. The
  largest is the recurrent gates' element-wise work, some tens of FLOP per unit and step against
  8u(d + u) for the products: under 5% once d + u >= 100, which holds for the large stacks that make
  most of the grid's cost; up to ~15% for a first layer of 32 units over one input, a small model.
* Training one window is 3 x F: the forward pass, then the gradients with respect to the activations
  and to the weights, each about as many MACs as the forward pass.
* One epoch of a config: ``3 x F x fit windows + F x validation windows``. Keras evaluates the
  validation windows every epoch (``training.train_model`` passes ``validation_data`` to ``fit``);
  ``fit windows`` is what is left of the train windows after ``training.validation_cut``.
* One model: ``epochs x epoch FLOP + F x test windows`` (the certificate's one prediction pass over the
  test set).

Epochs per model
----------------
Early stopping decides how many epochs a model trains, so the count is an estimate. Where the epoch
already has certificates, :func:`observed_epochs` gives each family's mean (the mean, not the median:
the total work of a batch is the sum over its models). Families without certificates use an
:class:`EpochsAssumption` whose text says where its number comes from; :data:`DEFAULT_EPOCHS` is the one
measurement the project has. Every estimate is capped by each config's ``max_epochs`` (or the run's
``--max-epochs``).

Family names are the project's categories (``architectures.FAMILIES``: CNN, DNN, CDNN, LSTM, CLSTM,
GRU); a batch's family is that of its configs (the UNIT_TEST batch's model is a DNN).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from epoch_builder.errors import EpochBuilderError
from epoch_builder.regressions.architectures import FAMILIES, family_of_id, validate_model_config
from epoch_builder.regressions.configs import DEFAULT_MAX_EPOCHS
from epoch_builder.regressions.training import validation_cut

TRAIN_FACTOR = 3  # training a window = forward + two backward products of the same size
FLOP_PER_MAC = 2


# --- the epoch's windows ------------------------------------------------------------------

class Windows(NamedTuple):
    """How many windows one epoch of training touches, by role."""

    fit: int  # the optimizer steps over these every epoch (forward + backward)
    validation: int  # evaluated (forward only) every epoch
    test: int  # predicted once, for the certificate


@dataclass(frozen=True)
class EpochShape:
    """What the cost of an epoch of training depends on besides the network: the epoch's rows of
    prediction candles, its splits, and the lookback / predictions its configs were generated for."""

    rows: int
    train_split: float
    validation_split: float
    lookback: int
    predictions: int

    def windows(self, lookback: int | None = None, predictions: int | None = None) -> Windows:
        """The windows of a config with this lookback / predictions (SEMANTICS §3: windows from row
        ``lookback`` while ``i < rows - predictions``; the first ``int(rows * train_split)`` train)."""
        lookback = self.lookback if lookback is None else lookback
        predictions = self.predictions if predictions is None else predictions
        total = max(self.rows - lookback - predictions, 0)
        train = min(int(self.rows * self.train_split), total)
        if train <= 1 or train >= total:
            raise EpochBuilderError(f"{self.rows} rows with lookback {lookback}, predictions {predictions} and train split "
                                    f"{self.train_split} leave {train} train and {total - train} test windows")
        fit = validation_cut(train, self.validation_split)  # the same cut training makes
        return Windows(fit, train - fit, total - train)


def default_profile_shape() -> EpochShape:
    """The ``default`` profile's epoch: 48 months of 30-day months of 30-minute candles, less the SMA
    window's first rows (create-epoch drops them), with the default splits, lookback and predictions
    (51,822 train windows of which 10,365 validate, as ``bench/bench_training.py`` reports)."""
    from epoch_builder.epoch import MONTH_DAYS, PARAMS_BY_NAME, EpochConfig

    default = {name: param.default for name, param in PARAMS_BY_NAME.items()}
    interval = EpochConfig.__dataclass_fields__["prediction_interval_minutes"].default
    rows = default["epoch_width"] * MONTH_DAYS * 24 * 60 // interval - (default["sma_window_size"] - 1)
    return EpochShape(rows, default["train_split"], default["validation_split"], default["regression_lookback"],
                      default["regression_predictions"])


def shape_of_epoch(config: Any) -> EpochShape:
    """From an ``EpochConfig`` (``ws.load_epoch_config()``): its recorded prediction-candle rows."""
    if not config.prediction_candles:
        raise EpochBuilderError(f"epoch {config.id}: its config records no prediction_candles (an epoch made before "
                                "they were recorded); create it again to cost its training")
    return EpochShape(int(config.prediction_candles), float(config.train_split), float(config.validation_split),
                      int(config.regression_lookback), int(config.regression_predictions))


# --- layers of one config -----------------------------------------------------------------

class Layer(NamedTuple):
    """One layer as ``build_model`` stacks it: its output per window and its forward MACs per window."""

    kind: str  # Dense, Conv1D, MaxPooling1D, Flatten, LSTM, GRU
    output: tuple[int, ...]  # (features,) or (steps, channels)
    macs: int


def layers_of(keras_model: Mapping[str, Any], lookback: int, predictions: int) -> list[Layer]:
    """The layers ``architectures.build_model`` builds for this model config, from the same keys, in the
    same order, ending with ``Dense(predictions)``. The config is validated first (same errors)."""
    template = validate_model_config(dict(keras_model))
    family, n, pooling = template.family, template.size, template.pooling
    layers: list[Layer] = []
    # A DNN reads the lookback as features; every other family as `lookback` steps of one channel.
    shape: tuple[int, ...] = (lookback,) if family == "DNN" else (lookback, 1)

    def dense(units: int) -> None:
        nonlocal shape
        layers.append(Layer("Dense", (units,), shape[0] * units))
        shape = (units,)

    def conv(index: int) -> None:
        nonlocal shape
        steps, channels = shape
        filters, kernel = keras_model["filters"][index], keras_model["kernel_sizes"][index]
        layers.append(Layer("Conv1D", (steps, filters), steps * kernel * channels * filters))
        shape = (steps, filters)
        if pooling:
            pool = keras_model["pool_sizes"][index]
            shape = (math.ceil(steps / pool), filters)  # padding="same", stride = pool size
            layers.append(Layer("MaxPooling1D", shape, 0))

    def flatten() -> None:
        nonlocal shape
        shape = (shape[0] * shape[1],)
        layers.append(Layer("Flatten", shape, 0))

    def recurrent(kind: str, units: int, last: bool) -> None:
        nonlocal shape
        steps, inputs = shape
        gates = 4 if kind == "LSTM" else 3
        layers.append(Layer(kind, (units,) if last else (steps, units), steps * gates * units * (inputs + units)))
        # The product is paid at every step whether or not the sequence is returned; the next layer
        # reads the whole sequence.
        shape = (units,) if last else (steps, units)

    if family == "DNN":
        for units in keras_model["units"]:
            dense(units)
    elif family == "CNN":
        for index in range(n):
            conv(index)
        flatten()
    else:
        if family in ("CDNN", "CLSTM"):
            conv(0)
        if family == "CDNN":
            flatten()
            for units in keras_model["units"]:
                dense(units)
        else:
            kind = "GRU" if family == "GRU" else "LSTM"
            for index, units in enumerate(keras_model["units"]):
                recurrent(kind, units, index == n - 1)
    dense(predictions)
    return layers


def forward_macs(keras_model: Mapping[str, Any], lookback: int, predictions: int) -> int:
    """Multiply-adds of one window's forward pass."""
    return sum(layer.macs for layer in layers_of(keras_model, lookback, predictions))


def forward_flop(keras_model: Mapping[str, Any], lookback: int, predictions: int) -> int:
    return FLOP_PER_MAC * forward_macs(keras_model, lookback, predictions)


def epoch_flop(forward: float, windows: Windows) -> float:
    """One training epoch: train the fit windows, evaluate the validation windows (module docstring)."""
    return TRAIN_FACTOR * forward * windows.fit + forward * windows.validation


# --- epochs per model ---------------------------------------------------------------------

class EpochsAssumption(NamedTuple):
    """Epochs per model when no certificate says; ``source`` says where the number comes from."""

    epochs: float
    source: str

    @property
    def observed(self) -> bool:
        return False

    def describe(self) -> str:
        return f"{self.epochs:g} epochs/model assumed ({self.source})"


class EpochsObserved(NamedTuple):
    """Epochs per model from the certificates of a family's trained models."""

    epochs: float  # mean: the work of a batch is the sum over its models
    models: int
    median: float
    capped: int  # models that trained to their max_epochs (still improving, perhaps: the mean is then low)
    source: str

    @property
    def observed(self) -> bool:
        return True

    def describe(self) -> str:
        capped = f", {self.capped} at their max_epochs" if self.capped else ""
        return f"{self.epochs:.1f} epochs/model observed (mean of {self.models} certificates, median {self.median:g}{capped})"


Epochs = EpochsAssumption | EpochsObserved

DEFAULT_EPOCHS = EpochsAssumption(
    109, "measured by bench/bench_search.py: 120 DNN and CDNN configs of the default grid trained to early stopping "
         "on real candles (the 21-day sample, small profile, max 500 epochs) took 108.6 on average (DNN 99, CDNN "
         "118; none reached 500); applied to every family without certificates")


def certificate_epochs(certificate: Mapping[str, Any]) -> tuple[str, int, int] | None:
    """``(family, epochs, max_epochs)`` of a grid model's certificate; None for anything else.

    Only ids of the grid's form (``<template>_<uuid>``) count: the UNIT_TEST model is a DNN capped at 30
    epochs and would pull the DNN figure down."""
    try:
        family = family_of_id(str(certificate["id"]))
        epochs = int(certificate["epochs"])
        cap = int((certificate.get("training_params") or {}).get("max_epochs") or DEFAULT_MAX_EPOCHS)
    except (KeyError, TypeError, ValueError):
        return None
    if family is None or certificate.get("category", family) != family or epochs < 1:
        return None
    return family, epochs, cap


def observed_epochs(certificates: Iterable[Mapping[str, Any]]) -> dict[str, EpochsObserved]:
    """Each family's epochs per model over the given certificates (families without any are absent)."""
    by_family: dict[str, list[tuple[int, int]]] = {}
    for certificate in certificates:
        found = certificate_epochs(certificate)
        if found is not None:
            by_family.setdefault(found[0], []).append(found[1:])
    observed = {}
    for family, runs in sorted(by_family.items()):
        epochs = [e for e, _cap in runs]
        observed[family] = EpochsObserved(
            statistics.fmean(epochs), len(epochs), float(statistics.median(epochs)),
            sum(1 for e, cap in runs if e >= cap), f"observed: {len(epochs)} {family} certificates")
    return observed


def read_certificates(regressions_dir: Path, family: str | None = None) -> list[dict[str, Any]]:
    """The certificates under ``<epoch>/regressions/*/certificate.json``, each cut down to the keys the
    cost model reads (they also carry histories and discoveries: large); unreadable ones are skipped (a
    pull in progress), since an estimate must not fail on them. ``family``: only the regressions whose id
    (their folder's name) is of that family, so the others are not read at all."""
    found = []
    for path in sorted(Path(regressions_dir).glob("*/certificate.json")):
        if family is not None and family_of_id(path.parent.name) != family:
            continue
        try:
            document = json.loads(path.read_bytes())
        except (OSError, ValueError):
            continue
        if isinstance(document, dict):
            found.append({key: document.get(key) for key in ("id", "category", "epochs", "training_params")})
    return found


def epochs_per_family(observed: Mapping[str, Epochs] | None = None, assumption: EpochsAssumption = DEFAULT_EPOCHS,
                      families: Iterable[str] = FAMILIES) -> dict[str, Epochs]:
    """Every family's estimate: observed where given, else ``assumption``."""
    observed = observed or {}
    return {family: observed.get(family, assumption) for family in families}


# --- configs, batches, families -----------------------------------------------------------

class ConfigCost(NamedTuple):
    id: str
    family: str
    forward_flop: int  # one window's forward pass
    epoch_flop: float
    epochs: float  # the family's estimate, capped by the config's max_epochs
    flop: float  # epochs x epoch_flop + the test set's prediction


class BatchCost(NamedTuple):
    name: str
    category: str  # the batch file's category (its folder); UNIT_TEST for the smoke test
    family: str  # its configs' family: what a server's rate is measured for
    models: int
    epoch_flop: float  # one epoch of every model
    flop: float
    configs: tuple[ConfigCost, ...]


def config_cost(cfg: Mapping[str, Any], shape: EpochShape, epochs: Mapping[str, Epochs],
                max_epochs: int | None = None) -> ConfigCost:
    """The training cost of one training config. ``max_epochs`` is the run's ``--max-epochs`` (it wins
    over the config's own, as in ``train_model``)."""
    model = cfg["keras_model"]
    family = validate_model_config(dict(model)).family
    lookback, predictions = int(cfg.get("lookback", shape.lookback)), int(cfg.get("predictions", shape.predictions))
    forward = forward_flop(model, lookback, predictions)
    windows = shape.windows(lookback, predictions)
    per_epoch = epoch_flop(forward, windows)
    estimate = epochs.get(family, DEFAULT_EPOCHS)
    cap = int(max_epochs or cfg.get("max_epochs", DEFAULT_MAX_EPOCHS))
    trained = min(float(estimate.epochs), float(cap))
    return ConfigCost(str(cfg.get("id", model["name"])), family, forward, per_epoch, trained,
                      trained * per_epoch + forward * windows.test)


def batch_cost(batch: Mapping[str, Any], shape: EpochShape, epochs: Mapping[str, Epochs] | None = None,
               max_epochs: int | None = None) -> BatchCost:
    """A batch file's document (``{"name", "category", "configs"}``): the sum of its configs."""
    epochs = epochs if epochs is not None else epochs_per_family()
    configs = tuple(config_cost(cfg, shape, epochs, max_epochs) for cfg in batch["configs"])
    if not configs:
        raise EpochBuilderError(f"batch {batch.get('name')!r} has no configs")
    families = sorted({c.family for c in configs})
    if len(families) != 1:
        raise EpochBuilderError(f"batch {batch.get('name')!r} mixes families {', '.join(families)}")
    return BatchCost(str(batch["name"]), str(batch.get("category") or families[0]), families[0], len(configs),
                     sum(c.epoch_flop for c in configs), sum(c.flop for c in configs), configs)


def batch_costs(batches: Iterable[Mapping[str, Any]], shape: EpochShape, epochs: Mapping[str, Epochs] | None = None,
                max_epochs: int | None = None) -> list[BatchCost]:
    return [batch_cost(batch, shape, epochs, max_epochs) for batch in batches]


class FamilySummary(NamedTuple):
    family: str
    batches: int
    models: int
    flop: float
    share: float  # of the whole grid's FLOP
    epoch_flop_min: float  # one epoch of the family's cheapest / dearest config
    epoch_flop_max: float
    batch_flop_min: float
    batch_flop_max: float
    epochs: Epochs


def family_summary(costs: Sequence[BatchCost], epochs: Mapping[str, Epochs] | None = None) -> dict[str, FamilySummary]:
    """Per family, in ``FAMILIES`` order: batches, models, total FLOP and share, the spread of its
    configs' epoch FLOP and of its batches' FLOP, and the epochs estimate used."""
    epochs = epochs if epochs is not None else epochs_per_family()
    total = sum(c.flop for c in costs) or 1.0
    summary = {}
    for family in sorted({c.family for c in costs}, key=lambda f: (FAMILIES.index(f) if f in FAMILIES else 99, f)):
        mine = [c for c in costs if c.family == family]
        configs = [cfg for c in mine for cfg in c.configs]
        flop = sum(c.flop for c in mine)
        summary[family] = FamilySummary(
            family, len(mine), len(configs), flop, flop / total, min(c.epoch_flop for c in configs),
            max(c.epoch_flop for c in configs), min(c.flop for c in mine), max(c.flop for c in mine),
            epochs.get(family, DEFAULT_EPOCHS))
    return summary


def format_family_summary(summary: Mapping[str, FamilySummary]) -> list[str]:
    """Lines for a terminal: one per family, then where each epochs figure comes from."""
    lines = [f"{'family':<6} {'batches':>7} {'models':>6} {'PFLOP':>9} {'share':>6}  "
             f"{'TFLOP/epoch per model':>23}  {'PFLOP per batch':>17}  epochs/model"]
    for s in summary.values():
        lines.append(f"{s.family:<6} {s.batches:>7} {s.models:>6} {s.flop / 1e15:>9.1f} {s.share:>6.1%}  "
                     f"{s.epoch_flop_min / 1e12:>10.3f} .. {s.epoch_flop_max / 1e12:<9.2f}  "
                     f"{s.batch_flop_min / 1e15:>7.1f} .. {s.batch_flop_max / 1e15:<7.1f}  {s.epochs.epochs:g}"
                     + (" observed" if s.epochs.observed else " assumed"))
    for source in dict.fromkeys(s.epochs.describe() for s in summary.values()):
        lines.append(f"  epochs: {source}")
    return lines


# --- where batches come from --------------------------------------------------------------

def grid_batches(grid: Mapping[str, Any] | None = None, *, epoch_id: str = "_COST", seed: int | None = None,
                 lookback: int | None = None, predictions: int | None = None) -> list[dict[str, Any]]:
    """The batch documents ``generate-regression-training-configs`` writes for a grid (default: the
    project's default grid at the default profile's seed, lookback and predictions), without the
    UNIT_TEST batch (the board does not dispatch it). Same expansion, shuffle and cut as ``grid.generate``;
    nothing is written and no network is built."""
    from epoch_builder.epoch import PARAMS_BY_NAME
    from epoch_builder.regressions.grid import load_grid, plan

    grid = dict(grid) if grid is not None else load_grid(None)
    if "_path" not in grid:
        grid["_path"] = "<grid>"
    seed = PARAMS_BY_NAME["seed"].default if seed is None else seed
    lookback = PARAMS_BY_NAME["regression_lookback"].default if lookback is None else lookback
    predictions = PARAMS_BY_NAME["regression_predictions"].default if predictions is None else predictions
    documents = []
    for category, configs in plan(grid, epoch_id, seed, lookback, predictions).items():
        size = grid["batch_sizes"][category]
        count = math.ceil(len(configs) / size)
        for number in range(1, count + 1):  # grid.generate's names and slices
            documents.append({"name": f"KR_{category}_{number}_{count}", "category": category,
                              "configs": configs[(number - 1) * size:number * size]})
    return documents


def epoch_batches(configs_dir: Path, *, include_unit_test: bool = False) -> list[dict[str, Any]]:
    """An epoch's batch files (``regression_training_configs/<CAT>/*.json``) in the board's order (sorted
    paths), each read and validated by ``configs.read_batch``."""
    from epoch_builder.regressions.configs import UNIT_TEST, read_batch

    documents = []
    for path in sorted(Path(configs_dir).glob("*/*.json")):
        if path.parent.name == UNIT_TEST and not include_unit_test:
            continue
        document = read_batch(path)
        document.setdefault("category", path.parent.name)
        documents.append(document)
    return documents


def board_order(batches: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Batch documents in the order ``remote.board.regression_batches`` lists their files today
    (``sorted(glob("*/*.json"))``: by category folder, then file name as text, so KR_CNN_10_12 comes
    before KR_CNN_1_12): the order file-order dispatch hands them out in."""
    return sorted(batches, key=lambda b: (str(b["category"]), f"{b['name']}.json"))
