#!/usr/bin/env bash
# Regenerates docs/results/ (the numbers and figures of docs/benchmarks.md).
# Usage: scripts/run_benchmarks.sh [python]   (default: .venv/bin/python)
# On a shared CPU one thread per process gives the steadiest timings; drop --threads on a
# dedicated machine. Takes ~30 min on the 2-core CPU of docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
OUT=docs/results
mkdir -p "$OUT"
"$PY" -m arsam.bench accuracy --noise 0,0.2,0.4 --seeds 3 --epochs 30 --threads 1 \
    --json "$OUT/accuracy_digits.json" --trace-json "$OUT/trace_digits.json"
"$PY" -m arsam.bench throughput --model resnet18 --batch-size 128 --warmup 1 --steps 5 \
    --threads 1 --json "$OUT/throughput_resnet18.json"
"$PY" -m arsam.bench plot --accuracy-json "$OUT/accuracy_digits.json" \
    --trace-json "$OUT/trace_digits.json" --out "$OUT"
