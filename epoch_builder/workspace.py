"""The workspace layout shared by every host (same as the original's).

    <root>/candlesticks/   candlesticks.parquet, prediction_candlesticks.parquet,
                           normalized_prediction_candlesticks.parquet
    <root>/config/epoch.json
    <root>/<epoch id>/     regression_training_configs/, regressions/, ...
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from epoch_builder.errors import EpochBuilderError

HOME_ENV = "EPOCH_BUILDER_HOME"

CATEGORIES = ("CNN", "DNN", "CDNN", "LSTM", "CLSTM", "GRU")


def resolve_root(option: str | None) -> Path:
    """``--workspace`` wins, then ``$EPOCH_BUILDER_HOME``, then the current directory."""
    return Path(option or os.environ.get(HOME_ENV) or ".").expanduser().resolve()


CANDLESTICKS_DIR = "candlesticks"
BUNDLE_FILE = "bundle.json"  # the import's report; written last into a new bundle, so it marks one complete


@dataclass(frozen=True)
class Workspace:
    root: Path

    # --- candlesticks -------------------------------------------------------
    @property
    def candlesticks_dir(self) -> Path:
        """The bundle directory; an import cut short while switching bundles is completed or rolled
        back first, so every path below it is the complete old bundle or the complete new one."""
        from epoch_builder.importer import recover_bundle  # light; imported here as it imports this module

        recover_bundle(self.root)
        return self.root / CANDLESTICKS_DIR

    @property
    def candlesticks_file(self) -> Path:
        return self.candlesticks_dir / "candlesticks.parquet"

    @property
    def prediction_candlesticks_file(self) -> Path:
        return self.candlesticks_dir / "prediction_candlesticks.parquet"

    @property
    def normalized_prediction_candlesticks_file(self) -> Path:
        return self.candlesticks_dir / "normalized_prediction_candlesticks.parquet"

    @property
    def bundle_file(self) -> Path:
        """Import metadata (interval, source files, gap report)."""
        return self.candlesticks_dir / BUNDLE_FILE

    # --- configuration ------------------------------------------------------
    @property
    def config_dir(self) -> Path:
        return self.root / "config"

    @property
    def epoch_config_file(self) -> Path:
        return self.config_dir / "epoch.json"

    def load_epoch_config(self) -> "EpochConfig":  # noqa: F821 - light import below
        from epoch_builder.epoch import EpochConfig

        return EpochConfig.load(self.epoch_config_file)

    def epoch(self) -> "EpochPaths":
        """Paths of the active epoch (from config/epoch.json)."""
        if not self.epoch_config_file.exists():
            raise EpochBuilderError(
                f"{self.epoch_config_file}: no active epoch in workspace {self.root} (run `epoch-builder create-epoch` first)"
            )
        return EpochPaths(self.root / self.load_epoch_config().id)

    @property
    def jobs_dir(self) -> Path:
        return self.root / ".jobs"


@dataclass(frozen=True)
class EpochPaths:
    """Everything under ``<root>/<epoch id>/``."""

    dir: Path

    @property
    def id(self) -> str:
        return self.dir.name

    @property
    def receipt_file(self) -> Path:
        return self.dir / f"{self.id}_receipt.txt"

    @property
    def regression_training_configs_dir(self) -> Path:
        return self.dir / "regression_training_configs"

    @property
    def regressions_dir(self) -> Path:
        return self.dir / "regressions"

    @property
    def regression_batched_certificates_dir(self) -> Path:
        return self.dir / "regression_batched_certificates"

    @property
    def prediction_models_dir(self) -> Path:
        return self.dir / "prediction_models"

    @property
    def assets_dir(self) -> Path:
        return self.prediction_models_dir / "assets"

    @property
    def configs_dir(self) -> Path:
        return self.prediction_models_dir / "configs"

    @property
    def profitable_configs_dir(self) -> Path:
        return self.prediction_models_dir / "profitable_configs"

    @property
    def build_file(self) -> Path:
        return self.prediction_models_dir / "build.json"

    @property
    def epoch_file(self) -> Path:
        return self.dir / f"{self.id}.zip"

    def subdirs(self) -> list[Path]:
        return [
            self.regression_training_configs_dir,
            self.regressions_dir,
            self.regression_batched_certificates_dir,
            self.prediction_models_dir,
        ]
