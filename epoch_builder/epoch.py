"""Epoch configuration (SEMANTICS §2): parameters, ranges, profiles, config file.

``EpochConfig`` is the typed view of ``config/epoch.json``; every stage reads
its parameters from here.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from epoch_builder.errors import EpochBuilderError, UsageError
from epoch_builder.storage import atomic_write_json, read_json

MINUTE_MS = 60_000
DAY_MS = 24 * 60 * MINUTE_MS
MONTH_DAYS = 30  # one month = 30 days, as the original


@dataclass(frozen=True)
class Param:
    """One create-epoch parameter: default and allowed range per profile."""

    name: str
    kind: type
    default: Any
    low: float
    high: float
    help: str
    small_default: Any = None  # default in the small-data profile (None: same)
    small_low: float | None = None  # lower bound in the small-data profile


# The original's defaults and ranges; the small profile widens only what
# small data needs (lookback, predictions, SMA, width in days), still validated.
PARAMS: tuple[Param, ...] = (
    Param("seed", int, 60184, 1, 100_000_000, "random seed for Python, NumPy and TensorFlow"),
    Param("epoch_width", int, 48, 6, 80, "months of data the epoch covers (one month = 30 days)", small_low=1),
    Param("sma_window_size", int, 25, 10, 300, "SMA window over the prediction candles' close", small_default=10, small_low=2),
    Param("train_split", float, 0.75, 0.6, 0.95, "share of rows used for training; the rest is the test dataset"),
    Param("validation_split", float, 0.2, 0.15, 0.4, "share of the training windows used for validation"),
    Param("regression_lookback", int, 128, 32, 512, "prediction candles a regression sees", small_default=16, small_low=4),
    Param("regression_predictions", int, 32, 32, 256, "prediction candles a regression predicts", small_default=4, small_low=1),
    Param("exchange_fee", float, 0.065, 0.02, 0.2, "exchange fee in % per side"),
    Param("position_size", float, 10000, 100, 100_000_000, "position size in USDT"),
    Param("leverage", int, 3, 1, 10, "leverage"),
    Param("idle_minutes_on_position_close", int, 180, 0, 1000, "minutes the model stays idle after a close"),
)
PARAMS_BY_NAME = {p.name: p for p in PARAMS}
PROFILES = ("default", "small")
EPOCH_ID_RE = re.compile(r"^_[A-Za-z0-9_-]{3,99}$")


def width_days_bounds(profile: str) -> tuple[int, int]:
    """epoch_width in days (``--width-days``): the months range x 30, from 1 day in the small profile."""
    width = PARAMS_BY_NAME["epoch_width"]
    return (1 if profile == "small" else int(width.low) * MONTH_DAYS), int(width.high) * MONTH_DAYS


def param_bounds(param: Param, profile: str) -> tuple[float, float]:
    low = param.small_low if profile == "small" and param.small_low is not None else param.low
    return low, param.high


def param_default(param: Param, profile: str) -> Any:
    if profile == "small" and param.small_default is not None:
        return param.small_default
    return param.default


def validate_epoch_id(epoch_id: str, error: type[EpochBuilderError] = EpochBuilderError) -> str:
    """``error``: UsageError for an id typed on the command line, the plain failure for one read from a file."""
    if not EPOCH_ID_RE.match(epoch_id or ""):
        raise error(
            f"id {epoch_id!r} is invalid: it must start with '_', be 4..100 characters, "
            "and use only letters, digits, '_' and '-'"
        )
    return epoch_id


def validate_param(name: str, value: Any, profile: str) -> Any:
    """Coerce and range-check one parameter; the error names it and its range."""
    param = PARAMS_BY_NAME[name]
    low, high = param_bounds(param, profile)
    try:
        coerced = param.kind(value)
        if param.kind is int and float(value) != coerced:
            raise ValueError
    except (TypeError, ValueError):
        raise UsageError(f"parameter {name}={value!r} must be {param.kind.__name__} in {low}..{high}") from None
    if not (low <= coerced <= high):
        raise UsageError(
            f"parameter {name}={coerced} is out of range: allowed {low}..{high}"
            + (" (profile small)" if profile == "small" else " (use --profile small for small data)" if param.small_low is not None and coerced < low else "")
        )
    return coerced


@dataclass
class EpochConfig:
    """``config/epoch.json``."""

    id: str
    seed: int
    epoch_width: int
    epoch_width_unit: str  # "months" | "days"
    sma_window_size: int
    train_split: float
    validation_split: float
    regression_lookback: int
    regression_predictions: int
    exchange_fee: float
    position_size: float
    leverage: int
    idle_minutes_on_position_close: int
    profile: str = "default"
    prediction_interval_minutes: int = 30
    normalization: str = "global"  # "global" (the original: whole-epoch min/max) | "expanding" (leak-free)
    start: int = 0  # ot of the first 1m candle of the epoch
    end: int = 0  # ct of the last 1m candle
    highest_price_sma: float = 0.0
    lowest_price_sma: float = 0.0
    prediction_candles: int = 0  # rows of the (SMA-trimmed) prediction series
    test_ds_start_index: int = 0  # first prediction-candle row of the test dataset
    test_ds_start: int = 0
    test_ds_end: int = 0
    oos_days: int = 0  # days at the end of the test range kept out of the sweep (0: none, the original)
    oos_start: int = 0  # ot of the first prediction candle of that out-of-sample window (0: none)
    created: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def width_ms(self) -> int:
        days = self.epoch_width * (MONTH_DAYS if self.epoch_width_unit == "months" else 1)
        return days * DAY_MS

    @property
    def has_oos(self) -> bool:
        return self.oos_days > 0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        atomic_write_json(path, self.to_json(), indent=2)

    @classmethod
    def load(cls, path: Path) -> "EpochConfig":
        return cls.from_json(read_json(path), str(path))

    @classmethod
    def from_json(cls, data: Any, path: str) -> "EpochConfig":
        """A config from its JSON form, checked as at creation; ``path`` names where it came from."""
        if not isinstance(data, dict):
            raise EpochBuilderError(f"{path}: expected a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]  # type: ignore[misc]
        if missing:
            raise EpochBuilderError(f"{path}: missing key(s) {', '.join(missing)}")
        config = cls(**{k: v for k, v in data.items() if k in names})
        try:
            config.validate()
        except EpochBuilderError as exc:
            raise EpochBuilderError(f"{path}: {exc} (a hand-edited or damaged epoch config; restore it or "
                                    "create the epoch again)") from None
        return config

    def validate(self) -> None:
        """The create-epoch rules again, on a config read back: the id names directories and every stage
        trusts these values."""
        validate_epoch_id(self.id if isinstance(self.id, str) else "")
        if self.profile not in PROFILES:
            raise EpochBuilderError(f"profile {self.profile!r} is unknown: allowed {', '.join(PROFILES)}")
        if self.epoch_width_unit not in ("months", "days"):
            raise EpochBuilderError(f"epoch_width_unit {self.epoch_width_unit!r} is unknown: allowed months, days")
        if self.normalization not in ("global", "expanding"):
            raise EpochBuilderError(f"normalization {self.normalization!r} is unknown: allowed global, expanding")
        for param in PARAMS:
            value = getattr(self, param.name)
            if param.name == "epoch_width" and self.epoch_width_unit == "days":
                low, high = width_days_bounds(self.profile)
                if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                    raise EpochBuilderError(f"parameter epoch_width={value!r} days must be int in {low}..{high}")
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                low, high = param_bounds(param, self.profile)
                raise EpochBuilderError(f"parameter {param.name}={value!r} must be {param.kind.__name__} in {low}..{high}")
            setattr(self, param.name, validate_param(param.name, value, self.profile))
        for name in ("prediction_interval_minutes", "prediction_candles", "test_ds_start_index", "start", "end",
                     "test_ds_start", "test_ds_end", "oos_days", "oos_start"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise EpochBuilderError(f"{name}={value!r} must be a non-negative integer")
        low_sma, high_sma = self.lowest_price_sma, self.highest_price_sma
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
                   for v in (low_sma, high_sma)) or (self.prediction_candles and not 0 < low_sma < high_sma):
            raise EpochBuilderError(f"lowest_price_sma={low_sma!r} and highest_price_sma={high_sma!r} must be "
                                    "finite with 0 < lowest < highest")
        if (self.oos_days > 0) != (self.oos_start > 0) or (
                self.oos_start and self.test_ds_end and not self.test_ds_start < self.oos_start <= self.test_ds_end):
            raise EpochBuilderError(f"oos_days={self.oos_days!r} and oos_start={self.oos_start!r} must both be 0 or "
                                    "name a window inside the test dataset")
