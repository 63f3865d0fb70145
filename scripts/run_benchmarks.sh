#!/usr/bin/env bash
# Regenerates docs/results/ (the numbers and figures of docs/benchmarks.md and docs/arsam.md).
# Usage: scripts/run_benchmarks.sh [python]   (default: .venv/bin/python)
# On a shared CPU one thread per process gives the steadiest timings; drop --threads on a
# dedicated machine. Takes about 2 hours on the 2-core CPU of docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
OUT=docs/results
mkdir -p "$OUT"
"$PY" -m arsam.bench accuracy --noise 0.4,0.6 --seeds 5 --epochs 30 --threads 1 \
    --optimizers SGD,SAM,ESAM,KSAM,PeriodicSAM-2,PeriodicSAM-5,LookSAM-5,ARSAM-vsam,ARSAM-matched,ARSAM-fixed,ARSAM@0.05,ARSAM@0.1,ARSAM@0.25,ARSAM@0.5,ARSAM@0.05:0.7,ARSAM@0.1:0.7,ARSAM@0.25:0.7,ARSAM@0.5:0.7 \
    --json "$OUT/accuracy_digits.json"
"$PY" -m arsam.bench accuracy --noise 0.6 --seeds 1 --epochs 100 --threads 1 \
    --optimizers SGD,SAM,ARSAM-vsam,ARSAM-matched \
    --json "$OUT/long_digits.json" --trace-json "$OUT/trace_long_digits.json"
"$PY" -m arsam.bench throughput --model resnet18 --batch-size 128 --warmup 1 --steps 12 \
    --threads 1 --rates 0.1,0.2 \
    --optimizers SGD,SAM,ESAM,KSAM,PeriodicSAM-5,LookSAM-5,ARSAM-vsam,ARSAM \
    --json "$OUT/throughput_resnet18.json"
"$PY" -m arsam.bench plot --accuracy-json "$OUT/accuracy_digits.json" \
    --trace-json "$OUT/trace_long_digits.json" --out "$OUT"
