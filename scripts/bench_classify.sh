#!/usr/bin/env bash
# End-to-end images/s of osprey's image classification (read, decode, preprocess, infer,
# write) on all cores, for EfficientNet-Lite0 and ResNet-18 (random init), with onnxruntime
# (pip, CPU, one thread, inference only) as the anchor.
#
#   OSPREY_SHARED=/work/shared scripts/bench_classify.sh
#
# The job: `dir` source over the 200 sample photos (stop_when_idle) → classify_image
# (max_batch 32, workers = cores) → null sink. Wall time of `osprey run` includes model load
# and the final checkpoint, so the figure is a lower bound. Needs `cargo build` first
# (uses $CARGO_TARGET_DIR/debug/osprey, or OSPREY_BIN) and, for the anchor, a venv with
# `pip install onnxruntime Pillow numpy` at $VENV (default /var/cache/osprey-services/venv-classify).
set -euo pipefail
SHARED="${OSPREY_SHARED:?set OSPREY_SHARED to the folder holding models/ and images/}"
BIN="${OSPREY_BIN:-${CARGO_TARGET_DIR:-target}/debug/osprey}"
VENV="${VENV:-/var/cache/osprey-services/venv-classify}"
HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
N=$(ls "$SHARED/images/imagenet-sample" | wc -l)
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GB; $N photos"

run() { # model-file input-name
  cat >"$WORK/job.toml" <<TOML
name = "bench-classify"
[source]
type = "dir"
path = "$SHARED/images/imagenet-sample"
stop_when_idle = true
[[operators]]
type = "classify_image"
max_batch = 32
[operators.model]
path = "$SHARED/models/$1"
labels = "$SHARED/models/imagenet_labels.txt"
input = "$2"
[sink]
type = "null"
[state]
dir = "$WORK/state"
[metrics]
enabled = false
TOML
  rm -rf "$WORK/state"
  local t0 t1
  t0=$(date +%s.%N)
  OSPREY_LOG=warn "$BIN" run "$WORK/job.toml"
  t1=$(date +%s.%N)
  awk -v n="$N" -v a="$t0" -v b="$t1" -v m="$1" \
    'BEGIN { printf "osprey end-to-end %s: %.1f images/s (%.1f s for %d)\n", m, n / (b - a), b - a, n }'
}

run efficientnet_lite0_imagenetnorm.onnx input_imagenet_norm
run resnet18_random_init.onnx input
if [ -x "$VENV/bin/python" ]; then
  "$VENV/bin/python" "$HERE/classify_reference.py" --bench "$SHARED/models/efficientnet_lite0_imagenetnorm.onnx" input_imagenet_norm
  "$VENV/bin/python" "$HERE/classify_reference.py" --bench "$SHARED/models/resnet18_random_init.onnx" input
else
  echo "no onnxruntime venv at $VENV: skipping the anchor"
fi
