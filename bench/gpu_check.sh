#!/usr/bin/env bash
# The prepared GPU check: in under 10 minutes on one data-centre GPU (sized for an H200), from a fresh venv
# with the GPU build of TensorFlow (the project's `gpu` extra at the versions of constraints.txt):
#   1. what TensorFlow sees (devices, CUDA/cuDNN build info) and where a matmul runs;
#   2. the training throughput bench on the default profile, one sampled config per family, a few epochs,
#      one model at a time and packed (bench/bench_training.py), as JSON and as its text report.
#
#   bash bench/gpu_check.sh                     # installs from the package index
#   WHEELHOUSE=/path/to/wheels bash bench/gpu_check.sh   # a machine without network: wheels carried there
#   OUT=/some/dir EPOCHS=3 FAMILIES=DNN,CDNN,CNN,LSTM,GRU bash bench/gpu_check.sh
#
# Everything it prints also lands in $OUT (default ./gpu-check): gpu_check.log, devices.json, bench.json.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-$ROOT/gpu-check}"
VENV="${GPU_VENV:-${TMPDIR:-/tmp}/epoch-builder-gpu-venv}"
PYTHON="${PYTHON:-python3}"
EPOCHS="${EPOCHS:-2}"
FAMILIES="${FAMILIES:-DNN,CDNN,CNN,LSTM,GRU}"
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1

echo "== gpu check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --constraint "$ROOT/constraints.txt")
if [ -n "${WHEELHOUSE:-}" ]; then
  PIP+=(--no-index --find-links "$WHEELHOUSE")
fi
# Never the CPU build beside the GPU one: they write the same package directory.
"$VENV/bin/python" -m pip uninstall --yes --quiet tensorflow-cpu >/dev/null 2>&1 || true
time "${PIP[@]}" "$ROOT[gpu]"

echo "== devices"
"$VENV/bin/python" - "$OUT/devices.json" <<'EOF'
import json, sys, time
import epoch_builder  # pins the Keras backend to TensorFlow
import tensorflow as tf

gpus = tf.config.list_physical_devices("GPU")
for gpu in gpus:
    tf.config.experimental.set_memory_growth(gpu, True)
info = tf.sysconfig.get_build_info()
tf.debugging.set_log_device_placement(True)
with tf.device("/GPU:0" if gpus else "/CPU:0"):
    a = tf.random.uniform((4096, 4096))
    started = time.perf_counter()
    product = tf.matmul(a, a)
    _ = product.numpy()
    seconds = time.perf_counter() - started
report = {"tensorflow": tf.__version__, "gpus": [g.name for g in gpus],
          "cuda": info.get("cuda_version"), "cudnn": info.get("cudnn_version"),
          "matmul_device": product.device, "matmul_4096_s": round(seconds, 4)}
print(json.dumps(report, indent=2))
json.dump(report, open(sys.argv[1], "w"), indent=2)
if not gpus:
    sys.exit("TensorFlow sees no GPU: the GPU build or the driver is missing")
EOF

echo "== training throughput (default profile, $EPOCHS epochs, families $FAMILIES)"
cd "$ROOT"
"$VENV/bin/python" bench/bench_training.py --families "$FAMILIES" --epochs "$EPOCHS" --json > "$OUT/bench.json"
"$VENV/bin/python" -c "import json, sys; print(json.dumps(json.load(open(sys.argv[1])), indent=2))" "$OUT/bench.json"
echo "== done: $OUT"
