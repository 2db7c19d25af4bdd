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

from epoch_builder.bundle import BUNDLE_FILE, CANDLESTICKS_DIR  # the bundle's names, re-exported
from epoch_builder.errors import EpochBuilderError

HOME_ENV = "EPOCH_BUILDER_HOME"

CATEGORIES = ("CNN", "DNN", "CDNN", "LSTM", "CLSTM", "GRU")


def resolve_root(option: str | None) -> Path:
    """``--workspace`` wins, then ``$EPOCH_BUILDER_HOME``, then the current directory."""
    return Path(option or os.environ.get(HOME_ENV) or ".").expanduser().resolve()


CONFIG_DIR = "config"
EPOCH_CONFIG_FILE = "epoch.json"
TRAINING_RATES_FILE = "training_rates.json"  # epoch-cluster calibrate's records
JOBS_DIR = ".jobs"  # detached jobs of the remote layer (layout in remote/host_program.py)
CERTIFICATE_FILE = "certificate.json"  # one per trained regression, in its own directory
REGRESSION_CHECKPOINTS_DIR = ".regression_checkpoints"  # per epoch: models in training
DOWNLOADS_DIR = "downloads"  # `candlesticks download`: <root>/downloads/<market>/<SYMBOL>/
TENSORBOARD_DIR = "tensorboard"  # <epoch>/tensorboard/<regression id>/: one TensorBoard run per regression
HISTORY_FILE = "history.csv"  # a trained regression's per-epoch history, beside its certificate
# One fixed name, not TensorFlow's time/host/pid one: rewriting a history (a resume, a retrain, a second pull)
# replaces the file instead of adding a second run with the same steps. TensorBoard reads any "*tfevents*" name.
TENSORBOARD_EVENTS_FILE = "events.out.tfevents.training_history.v2"


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def open(cls, root: Path) -> Workspace:
        """The workspace at ``root``, made whole before anything reads it: an import cut short while
        switching candle bundles is completed or rolled back (``bundle.recover_bundle``), so every path
        below ``candlesticks_dir`` is the complete old bundle or the complete new one.  Every command
        and the console open their workspace this way; a bare ``Workspace(root)`` only names paths."""
        from epoch_builder.bundle import recover_bundle  # light; imported here: only opening needs it

        recover_bundle(root)
        return cls(root)

    # --- candlesticks -------------------------------------------------------
    @property
    def candlesticks_dir(self) -> Path:
        """The bundle directory (complete once the workspace was opened with ``Workspace.open``)."""
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
        return self.root / CONFIG_DIR

    @property
    def epoch_config_file(self) -> Path:
        return self.config_dir / EPOCH_CONFIG_FILE

    @property
    def training_rates_file(self) -> Path:
        """Each server's calibrated training rate per family (``regressions.calibrate``)."""
        return self.config_dir / TRAINING_RATES_FILE

    def load_epoch_config(self) -> "EpochConfig":  # noqa: F821 - light import below
        from epoch_builder.epoch import EpochConfig

        return EpochConfig.load(self.epoch_config_file)

    def _require_epoch_config(self) -> None:
        if not self.epoch_config_file.exists():
            raise EpochBuilderError(
                f"{self.epoch_config_file}: no active epoch in workspace {self.root} (run `epoch-builder create-epoch` first)"
            )

    def epoch(self) -> "EpochPaths":
        """Paths of the active epoch, its whole config checked (the pipeline's stages trust its values)."""
        self._require_epoch_config()
        return EpochPaths(self.root / self.load_epoch_config().id)

    def active_epoch_id(self) -> str:
        """The active epoch's id alone, checked as at creation: what the controller needs to name the
        epoch's paths on its servers (the rest of config/epoch.json is the pipeline's business)."""
        from epoch_builder.epoch import validate_epoch_id
        from epoch_builder.storage import read_json

        self._require_epoch_config()
        config = read_json(self.epoch_config_file)
        epoch_id = config.get("id") if isinstance(config, dict) else None
        if not isinstance(epoch_id, str):
            raise EpochBuilderError(f"{self.epoch_config_file}: key 'id' missing (a damaged epoch config)")
        try:
            return validate_epoch_id(epoch_id)
        except EpochBuilderError as exc:
            raise EpochBuilderError(f"{self.epoch_config_file}: {exc}") from None

    def epoch_paths(self, epoch_id: str) -> "EpochPaths":
        """The paths of epoch ``epoch_id`` in this workspace (active or not)."""
        return EpochPaths(self.root / epoch_id)

    def relative(self, path: Path) -> str:
        """``path`` as the workspace-relative POSIX path the remote layer sends to servers."""
        return Path(path).relative_to(self.root).as_posix()

    @property
    def jobs_dir(self) -> Path:
        return self.root / JOBS_DIR

    def epoch_files(self) -> list[Path]:
        """The Epoch Files of the workspace (``<id>/<id>.zip``, where export writes them), newest first."""
        if not self.root.is_dir():
            return []
        files = [p for p in self.root.glob("*/*.zip") if p.stem == p.parent.name and p.is_file()]
        return sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)


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
    def build_summary_file(self) -> Path:
        """Beside build.json (which keeps the original's list of certificates): the build's
        selection-bias figures (PBO, the trials behind the deflated Sharpe ratios)."""
        return self.prediction_models_dir / "build_summary.json"

    @property
    def epoch_file(self) -> Path:
        return self.dir / f"{self.id}.zip"

    @property
    def tensorboard_dir(self) -> Path:
        """``tensorboard --logdir`` this: every regression of the epoch is one run."""
        return self.dir / TENSORBOARD_DIR

    # --- one batch's or one model's files (what a server reads and hands back) ---
    def regression_batch_file(self, category: str, batch_name: str) -> Path:
        return self.regression_training_configs_dir / category / f"{batch_name}.json"

    def regression_dir(self, regression_id: str) -> Path:
        return self.regressions_dir / regression_id

    def regression_certificate_file(self, regression_id: str) -> Path:
        return self.regression_dir(regression_id) / CERTIFICATE_FILE

    def regression_history_file(self, regression_id: str) -> Path:
        return self.regression_dir(regression_id) / HISTORY_FILE

    def regression_tensorboard_dir(self, regression_id: str) -> Path:
        return self.tensorboard_dir / regression_id

    def regression_events_file(self, regression_id: str) -> Path:
        return self.regression_tensorboard_dir(regression_id) / TENSORBOARD_EVENTS_FILE

    def regression_checkpoint_dir(self, regression_id: str) -> Path:
        """Where a model in training keeps its checkpoint (removed once the model is done)."""
        return self.dir / REGRESSION_CHECKPOINTS_DIR / regression_id

    def search_state_file(self, batch_name: str) -> Path:
        """A batch's successive-halving state beside its models' checkpoints (``--search halving``; removed once
        the batch is done). A file, where checkpoints are directories: no model id holds a dot."""
        return self.dir / REGRESSION_CHECKPOINTS_DIR / f"{batch_name}.search.json"

    def sweep_journal_file(self, batch_name: str) -> Path:
        """find-profitable-configs' progress of a batch (removed once its output is written)."""
        return self.profitable_configs_dir / f"{batch_name}.journal"

    def batched_certificates_file(self, batch_name: str) -> Path:
        return self.regression_batched_certificates_dir / f"{batch_name}.json"

    def config_batch_file(self, batch_name: str) -> Path:
        return self.configs_dir / f"{batch_name}.json"

    def profitable_configs_file(self, batch_name: str) -> Path:
        return self.profitable_configs_dir / f"{batch_name}.json"

    def relative(self, path: Path) -> str:
        """``path`` (under this epoch) as a workspace-relative POSIX path: ``<epoch id>/...``."""
        return Path(path).relative_to(self.dir.parent).as_posix()

    def subdirs(self) -> list[Path]:
        return [
            self.regression_training_configs_dir,
            self.regressions_dir,
            self.regression_batched_certificates_dir,
            self.prediction_models_dir,
        ]

    # --- reports ---
    def report_file(self, name: str) -> Path:
        """`epoch-builder report`'s default page, ``<epoch>/reports/<name>.html`` (its PNG beside it)."""
        return self.dir / "reports" / f"{name}.html"
