#!/usr/bin/env bash
# Downloads the ONNX model zoo's pretrained ResNet-18 (resnet18-v2-7.onnx) next to this script
# and verifies its sha256. Needs internet access; never run by tests.
set -euo pipefail
cd "$(dirname "$0")"
URL=https://github.com/onnx/models/raw/main/validated/vision/classification/resnet/model/resnet18-v2-7.onnx
SHA256=3b4d048057854022232aa20bf68262e31718ab7119a17f920b8a2dc1433f824b
OUT=resnet18-v2-7.onnx
if [ -f "$OUT" ] && echo "$SHA256  $OUT" | sha256sum -c --status; then
  echo "$OUT is already here and verified."
  exit 0
fi
curl -fL --retry 3 -o "$OUT.part" "$URL"
if ! echo "$SHA256  $OUT.part" | sha256sum -c --status; then
  echo "checksum mismatch for $OUT (expected $SHA256); not keeping it" >&2
  rm -f "$OUT.part"
  exit 1
fi
mv "$OUT.part" "$OUT"
echo "Downloaded and verified $OUT (46,806,737 bytes)."
