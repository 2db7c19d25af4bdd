#!/usr/bin/env bash
# The whole pipeline on the bundled 21-day sample with the small profile.
# Usage: scripts/demo.sh [WORKSPACE]   (make demo)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
eb="$here/.venv/bin/epoch-builder"
ws="${1:-demo-workspace}"
rm -rf "$ws"
mkdir -p "$ws"
export EPOCH_BUILDER_HOME="$(cd "$ws" && pwd)"
start=$(date +%s)
step() { printf '\n== %s\n' "$*"; }

step "import the bundled sample (30-minute prediction candles)"
"$eb" candlesticks import --sample --interval 30

step "create a small-profile epoch (20 days, lookback 16, predictions 4)"
"$eb" create-epoch --id _DEMO --profile small

printf '\ndemo finished in %ss; workspace: %s\n' "$(( $(date +%s) - start ))" "$EPOCH_BUILDER_HOME"
