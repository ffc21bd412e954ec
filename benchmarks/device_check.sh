#!/usr/bin/env bash
# The first run on a GPU (or TPU) machine: everything to $OUT as device_check.json, plus device_check.log.
#
#   OUT=/path/to/results benchmarks/device_check.sh
#
# What it measures and how: benchmarks/device_check.py's docstring and benchmarks/README.md ("Device check").
# Environment:
#   OUT                       where the JSON and the log go (required)
#   PYTHON                    the interpreter (default: python3); needs this repository's packages, jax with GPU support
#   DEVICE_CHECK_CONFIG       full (default: the documented run, under 8 minutes on an H100) | tiny | a JSON file of overrides
#   DEVICE_CHECK_TEXTS        texts to cycle (default: samples/posts.jsonl; e.g. shared/data/davidson/train.csv)
#   DEVICE_CHECK_PEAK_TFLOPS  "bf16,fp32" dense peaks for the MFU, where the device kind is not in the script's table
#   DEVICE_CHECK_ALLOW_CPU=1  run without an accelerator (the CPU test of this script only)
set -euo pipefail

: "${OUT:?set OUT to the folder for device_check.json and device_check.log}"
PYTHON=${PYTHON:-python3}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
exec > >(tee -a "$OUT/device_check.log") 2>&1

echo "device_check: $(date -u +%FT%TZ) on $(hostname), config ${DEVICE_CHECK_CONFIG:-full}"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
elif [ "${DEVICE_CHECK_ALLOW_CPU:-0}" != 1 ]; then
  echo "device_check: no nvidia-smi on this machine; looking for another accelerator through JAX"
fi

# Fail in seconds, not minutes, when a package is missing: the machine's image may not hold them all.
missing=$("$PYTHON" - <<'PY'
import importlib.util
need = ("jax", "flax", "apache_beam", "tokenizers", "pyarrow", "psutil", "flaxmodel", "pipelines")
print(" ".join(n for n in need if importlib.util.find_spec(n) is None))
PY
)
if [ -n "$missing" ]; then
  echo "device_check: $PYTHON cannot import: $missing. Install this repository (pip install -e '.[gpu]') or carry wheels." >&2
  exit 2
fi

start=$(date +%s)
status=0
"$PYTHON" -m benchmarks.device_check --out "$OUT" || status=$?
echo "device_check: exit $status after $(( $(date +%s) - start )) s"
exit "$status"
