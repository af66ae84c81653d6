#!/usr/bin/env bash
# The speed benchmark of docs/performance.md: surgeon against PyTorch 2.13 + HF PEFT on the same
# workloads, on the same CPU, 2 threads each, the two sides alternating round by round (these
# machines are noisy: only ratios measured side by side mean anything). Prints a table and, as
# its last line, one JSON object with the ratios and the raw numbers behind them.
#
# Anchors: ONNX Runtime on the same dense MiniLM forward (exported from PyTorch), and a
# BERT-base-shaped training step (random weights, sequence 128, BENCH_BASE_BATCH sequences) for
# how the cost grows with the model. Each side names its kernels (surgeon: the OpenBLAS core;
# PyTorch: its CPU capability) and the CPU model, so ratios from different machines never mix.
#
#   bash Scripts/bench.sh            # BENCH_ROUNDS=3 BENCH_REPEATS=5 BENCH_BASE_BATCH=4 by default
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${BENCH_ROUNDS:-3}"
repeats="${BENCH_REPEATS:-5}"
threads="${BENCH_THREADS:-2}"
base_batch="${BENCH_BASE_BATCH:-4}"
base_repeats="${BENCH_BASE_REPEATS:-2}"
bash Scripts/setup.sh >&2
bash Scripts/fetch-minilm.sh >&2
swift build -c release --product surgeon-bench >&2

# The reference side lives in a cached venv (torch's CPU wheel is on disk; transformers, peft,
# onnx and onnxruntime come from PyPI). Packages already installed system-wide are reused.
venv=".build/bench-venv"
if ! "$venv/bin/python" -c "import torch, transformers, peft, onnx, onnxruntime" >/dev/null 2>&1; then
  python3 -m venv --system-site-packages "$venv"
  "$venv/bin/pip" install --quiet torch==2.13.0 transformers peft onnx onnxruntime >&2
fi
python="$venv/bin/python"

results="$(mktemp -d)"
trap 'rm -rf "$results"' EXIT
export OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads"
# `tee -a`: appending, so a log file that standard error points at is never truncated.
for round in $(seq 1 "$rounds"); do
  echo "bench.sh: round $round of $rounds" >&2
  for workload in bert-train bert-eval vgg-train; do
    .build/release/surgeon-bench "$workload" --repeats "$repeats" --threads "$threads" \
      | tee -a /dev/stderr | tail -1 >>"$results/surgeon-$workload.jsonl"
    "$python" Scripts/bench/reference.py "$workload" --repeats "$repeats" --threads "$threads" \
      2>/dev/null | tail -1 | tee -a /dev/stderr >>"$results/pytorch-$workload.jsonl"
  done
  "$python" Scripts/bench/reference.py onnx-eval --repeats "$repeats" --threads "$threads" \
    2>/dev/null | tail -1 | tee -a /dev/stderr >>"$results/onnxruntime-bert-eval.jsonl"
  .build/release/surgeon-bench bert-train --manifest Scripts/bench/bert-base-lora.yaml \
    --batch "$base_batch" --length 128 --repeats "$base_repeats" \
    --threads "$threads" | tee -a /dev/stderr | tail -1 >>"$results/surgeon-bert-base-train.jsonl"
  "$python" Scripts/bench/reference.py bert-train --config bert-base --batch "$base_batch" \
    --length 128 --repeats "$base_repeats" --threads "$threads" 2>/dev/null | tail -1 \
    | tee -a /dev/stderr >>"$results/pytorch-bert-base-train.jsonl"
done
"$python" Scripts/bench/report.py "$results"
