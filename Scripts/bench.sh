#!/usr/bin/env bash
# The speed benchmark of docs/performance.md: surgeon against PyTorch 2.13 + HF PEFT on the same
# workloads, on the same CPU, 2 threads each, the two sides alternating round by round (these
# machines are noisy: only ratios measured side by side mean anything). Prints a table and, as
# its last line, one JSON object with the ratios and the raw numbers behind them.
#
#   bash Scripts/bench.sh            # BENCH_ROUNDS=3 BENCH_REPEATS=5 by default
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${BENCH_ROUNDS:-3}"
repeats="${BENCH_REPEATS:-5}"
threads="${BENCH_THREADS:-2}"
bash Scripts/setup.sh >&2
bash Scripts/fetch-minilm.sh >&2
swift build -c release --product surgeon-bench >&2

# The reference side lives in a cached venv (torch's CPU wheel is on disk; transformers and
# peft come from PyPI). Packages already installed system-wide are reused.
venv=".build/bench-venv"
if ! "$venv/bin/python" -c "import torch, transformers, peft" >/dev/null 2>&1; then
  python3 -m venv --system-site-packages "$venv"
  "$venv/bin/pip" install --quiet torch==2.13.0 transformers peft >&2
fi
python="$venv/bin/python"

results="$(mktemp -d)"
trap 'rm -rf "$results"' EXIT
export OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads"
for round in $(seq 1 "$rounds"); do
  echo "bench.sh: round $round of $rounds" >&2
  for workload in bert-train bert-eval vgg-train; do
    .build/release/surgeon-bench "$workload" --repeats "$repeats" --threads "$threads" \
      | tee /dev/stderr | tail -1 >>"$results/surgeon-$workload.jsonl"
    "$python" Scripts/bench/reference.py "$workload" --repeats "$repeats" --threads "$threads" \
      2>/dev/null | tail -1 | tee /dev/stderr >>"$results/pytorch-$workload.jsonl"
  done
done
"$python" Scripts/bench/report.py "$results"
