"""build-prediction-models (SEMANTICS §7.6): re-evaluate the profitable configurations,
rank by profit, keep ``limit``, write ``prediction_models/build.json``.

build.json keeps the original's structure: a JSON list of certificates sorted by
profit, high to low::

    {"id": "<epoch id>_<uuid4>", "creation": ms, "test_ds_start": ms, "test_ds_end": ms,
     "model": {"id", "price_change_requirement", "min_sum_function",
               "min_sum_adjustment_factor", "min_increase_sum", "min_decrease_sum",
               "regressions": [each regression's certificate["regression_config"]]},
     "discovery": <§4 payload>,
     "backtest": <engine.evaluate_full's backtest: positions, balance_history,
                  max_drawdown, accuracies, fees ...>}

Every profitable configuration is re-evaluated with the fast engine first (the
same figures as the full payload), then only the kept ones get the full payload.

Beyond the original, each certificate also holds (docs/prediction-models.md, "How much is luck?"):

* ``"deflated_sharpe"``: the deflated Sharpe ratio of its per-position returns
  (``selection.py``), or ``"dsr": null`` with the reason;
* with an out-of-sample window (``create-epoch --oos-days``), ``"out_of_sample"``:
  ``{"start", "end", "days", "in_sample": {profit, accuracy, positions,
  max_drawdown, fees, final_balance}, "out_of_sample": {the same}}`` -- the model,
  min sums included, traded on the window the sweep never saw.

``build_summary.json`` (beside build.json, written just before it) holds the
sweep-wide figures: PBO by CSCV, the trials and variance behind the deflated
Sharpe ratios, and the ids of the models it belongs to (a summary whose ids
differ from build.json's is stale and ignored).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from epoch_builder import events, output
from epoch_builder.errors import EpochBuilderError, UsageError
from epoch_builder.prediction import selection
from epoch_builder.regressions.architectures import family_of_id
from epoch_builder.storage import atomic_write_json, read_json
from epoch_builder.workspace import EpochPaths, Workspace

STAGE = "build-prediction-models"


def profitable_batch_files(paths: EpochPaths) -> list[Path]:
    directory = paths.profitable_configs_dir
    return sorted(directory.glob("*.json")) if directory.is_dir() else []


def regression_config(paths: EpochPaths, regression_id: str) -> dict[str, Any]:
    """The regression's config (the original's IRegressionConfig: id, description, lookback,
    predictions, model summary) from its certificate's ``regression_config``."""
    path = paths.regressions_dir / regression_id / "certificate.json"
    if not path.exists():
        raise EpochBuilderError(f"{path}: certificate of regression {regression_id} not found")
    certificate = read_json(path)
    config = certificate.get("regression_config") if isinstance(certificate, dict) else None
    return {"id": regression_id, **(config if isinstance(config, dict) else {})}


def build_prediction_models(ws: Workspace, limit: int, workers: int | None = None,
                            pbo_blocks: int = selection.DEFAULT_BLOCKS, pbo_sample: int = selection.DEFAULT_SAMPLE,
                            log: Callable[[str], None] = output.info) -> list[dict[str, Any]]:
    from epoch_builder.prediction.assets import OUT_OF_SAMPLE, load_backtest_data
    from epoch_builder.prediction.configs import validate_configs
    from epoch_builder.prediction.engine import Evaluator, backtest_with_min_sums, evaluate_full

    if limit < 1:
        raise UsageError(f"parameter limit={limit} must be >= 1")
    selection.check_options(pbo_blocks, pbo_sample)
    config = ws.load_epoch_config()
    paths = ws.epoch()
    files = profitable_batch_files(paths)
    if not files:
        raise EpochBuilderError(f"{paths.profitable_configs_dir}: no profitable configurations "
                                "(run find-profitable-configs on the batches first)")
    data, _ = load_backtest_data(ws)
    configs: list[dict[str, Any]] = []
    for path in files:
        configs.extend(validate_configs(path, read_json(path), data.regression_ids, list(data.labels)))
    if not configs:
        raise EpochBuilderError(f"{paths.profitable_configs_dir}: the batches hold no profitable configuration; "
                                "nothing to build")
    started = time.monotonic()
    log(f"re-evaluating {len(configs):,} profitable configuration(s) from {len(files)} batch file(s)")
    profits: list[float] = [0.0] * len(configs)
    with Evaluator(data, workers) as evaluator:
        for index, evaluation in evaluator.evaluate(configs):
            profits[index] = evaluation.profit
    ranked = sorted(range(len(configs)), key=lambda i: profits[i], reverse=True)[:limit]  # stable: batch order on ties
    bias = selection.measure(data, paths, blocks=pbo_blocks, sample=pbo_sample, seed=config.seed, workers=workers,
                             log=log)
    outside = load_backtest_data(ws, OUT_OF_SAMPLE)[0] if config.has_oos else None

    creation = int(time.time() * 1000)
    regressions = {rid: regression_config(paths, rid) for i in ranked for rid in configs[i]["ri"]}
    certificates: list[dict[str, Any]] = []
    eta = events.Eta(len(ranked))
    with output.progress_bars() as bars:
        bar = bars.add(f"building {len(ranked)} model(s)", len(ranked))
        for done, i in enumerate(ranked, 1):
            model_config = configs[i]
            payload = evaluate_full(data, model_config)
            model_id = f"{config.id}_{uuid.uuid4()}"
            certificates.append({
                "id": model_id,
                "creation": creation,
                "test_ds_start": config.test_ds_start,
                "test_ds_end": config.test_ds_end,
                "model": {
                    "id": model_id,
                    "price_change_requirement": model_config["pcr"],
                    "min_sum_function": model_config["msf"],
                    "min_sum_adjustment_factor": model_config["msaf"],
                    "min_increase_sum": payload["min_increase_sum"],
                    "min_decrease_sum": payload["min_decrease_sum"],
                    "regressions": [regressions[rid] for rid in model_config["ri"]],
                },
                "discovery": payload["discovery"],
                "backtest": payload["backtest"],
                "deflated_sharpe": bias.deflated_sharpe(payload["backtest"]),
            })
            if outside is not None:
                traded = backtest_with_min_sums(outside, model_config,
                                                (payload["min_increase_sum"], payload["min_decrease_sum"]))
                certificates[-1]["out_of_sample"] = {
                    "start": config.oos_start, "end": config.test_ds_end, "days": config.oos_days,
                    "in_sample": selection.performance_figures(payload["backtest"]),
                    "out_of_sample": selection.performance_figures(traded)}
            bar.advance()
            events.emit(STAGE, done, len(ranked), eta_s=eta.seconds(done))
    certificates.sort(key=lambda c: c["backtest"]["profit"], reverse=True)
    summary = {"models": [c["id"] for c in certificates], "configurations": bias.trials,
               "profitable_configurations": len(configs),
               "out_of_sample": ({"start": config.oos_start, "end": config.test_ds_end, "days": config.oos_days}
                                 if config.has_oos else None),
               **bias.to_json()}
    atomic_write_json(paths.build_summary_file, summary, indent=2)  # first: build.json's ids make it current
    atomic_write_json(paths.build_file, certificates)
    log(f"build: {len(certificates)} model(s) of {len(configs):,} profitable in {time.monotonic() - started:.1f}s "
        f"-> {paths.build_file}")
    return certificates


def load_build(paths: EpochPaths) -> list[dict[str, Any]]:
    if not paths.build_file.exists():
        raise EpochBuilderError(f"{paths.build_file}: no build (run build-prediction-models first)")
    build = read_json(paths.build_file)
    if not isinstance(build, list):
        raise EpochBuilderError(f"{paths.build_file}: expected a JSON list of model certificates")
    return build


def load_summary(paths: EpochPaths, model_ids: list[str]) -> dict[str, Any] | None:
    """build_summary.json when it belongs to the build of these model ids, else None."""
    path = paths.build_summary_file
    if not path.is_file():
        return None
    try:
        summary = read_json(path)
    except EpochBuilderError:
        return None  # a damaged summary is only missing figures; build.json stands alone
    if not isinstance(summary, dict) or sorted(map(str, summary.get("models") or [])) != sorted(model_ids):
        return None
    return summary


def luck_line(summary: dict[str, Any] | None) -> str:
    """The build's selection-bias figure in one line (models list, the console's model table)."""
    if summary is None:
        return "no build_summary.json for this build (built before it existed, or damaged): no PBO figure"
    pbo = summary.get("pbo") or {}
    value = pbo.get("pbo")
    shown = "n/a" if value is None else f"{value:.2f}"
    return (f"probability of backtest overfitting {shown} (CSCV, {pbo.get('blocks')} blocks, "
            f"{pbo.get('sampled_configurations', 0):,} of {summary.get('configurations', 0):,} configurations); "
            "near 0.5: the ranking is luck, near 0: it holds out of sample")


def model_ids(certificates: list[Any]) -> list[str]:
    return [str(c.get("id")) for c in certificates if isinstance(c, dict)]


def summary_rows(certificates: list[dict[str, Any]], stopped: Mapping[str, int] | None = None) -> list[dict[str, Any]]:
    """Figures the CLI and the demo print per model (out-of-sample and DSR: None when absent). ``stopped``:
    the regressions ``--search halving`` stopped early (``rank.stopped_regressions``); each row counts its own."""
    stopped = stopped or {}
    rows = []
    for cert in certificates:
        backtest = cert["backtest"]
        oos = (cert.get("out_of_sample") or {}).get("out_of_sample") or {}
        dsr = (cert.get("deflated_sharpe") or {}).get("dsr")
        rows.append({"id": cert["id"], "profit": round(backtest["profit"], 2), "accuracy": backtest["accuracy"],
                     "positions": len(backtest["positions"]), "max_drawdown": backtest["max_drawdown"],
                     "pcr": cert["model"]["price_change_requirement"], "msf": cert["model"]["min_sum_function"],
                     "msaf": cert["model"]["min_sum_adjustment_factor"],
                     "regressions": len(cert["model"]["regressions"]),
                     "oos_profit": oos.get("profit"), "oos_accuracy": oos.get("accuracy"),
                     "oos_positions": oos.get("positions"), "dsr": dsr,
                     "families": sorted({f for r in cert["model"]["regressions"] if (f := family_of_id(r["id"]))}),
                     "search_stopped": sum(1 for r in cert["model"]["regressions"] if r["id"] in stopped)})
    return rows
