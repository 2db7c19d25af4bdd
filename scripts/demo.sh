#!/usr/bin/env bash
# The whole pipeline on the bundled 21-day sample with the small profile:
# import -> epoch -> 8 regressions of all six families -> 90 prediction-model
# configs (4 of the top 6 regressions each, pcr 1) -> sweep -> build -> Epoch File
# -> verify (the platform's installer rules, every .h5 loading).
# Usage: scripts/demo.sh [WORKSPACE]   (make demo)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
eb="$here/.venv/bin/epoch-builder"
ws="${1:-demo-workspace}"
rm -rf "$ws"
mkdir -p "$ws"
export EPOCH_BUILDER_HOME="$(cd "$ws" && pwd)"
export TF_CPP_MIN_LOG_LEVEL=2
start=$(date +%s)
step() { printf '\n== %s\n' "$*"; }

step "import the bundled sample (30-minute prediction candles)"
"$eb" candlesticks import --sample --interval 30

step "create a small-profile epoch (20 days, lookback 16, predictions 4)"
"$eb" create-epoch --id _DEMO --profile small

step "generate the demo regression grid (8 regressions: 3 DNN, CNN, CDNN, LSTM, CLSTM, GRU)"
"$eb" generate-regression-training-configs --grid "$here/epoch_builder/data/demo_grid.json"

step "train every category's batch (30 epochs max, early stopping)"
for category in DNN CNN CDNN LSTM CLSTM GRU; do
  for batch in "$EPOCH_BUILDER_HOME/_DEMO/regression_training_configs/$category/"*.json; do
    "$eb" train-regression-batch --category "$category" --batch "$(basename "$batch")" --max-epochs 30
  done
done

step "rank the regressions"
"$eb" regressions rank --by test_loss

step "initialize prediction models (top 6, 4 per model, pcr 1)"
"$eb" initialize-prediction-models --top 6 --by test_loss --allow-few-regressions --pcr 1 --regressions-per-model 4

step "find profitable configurations"
for b in "$EPOCH_BUILDER_HOME"/_DEMO/prediction_models/configs/*.json; do
  "$eb" find-profitable-configs --batch "$(basename "$b")"
done

step "build the prediction models (top models: profit, accuracy, positions, drawdown)"
"$eb" build-prediction-models --top 5

step "the built models (most profitable first)"
"$eb" models list

step "export the Epoch File of the best model"
"$eb" export-epoch --best
"$eb" verify-epoch "$EPOCH_BUILDER_HOME/_DEMO/_DEMO.zip"

printf '\ndemo finished in %ss\nEpoch File: %s\n' "$(( $(date +%s) - start ))" "$EPOCH_BUILDER_HOME/_DEMO/_DEMO.zip"
