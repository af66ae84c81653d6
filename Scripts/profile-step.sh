#!/usr/bin/env bash
# Where a MiniLM training step's time goes: `perf record` on surgeon-bench bert-train (decay
# stage only, noise on), samples grouped by operation. Needs `perf` (linux-perf).
#
#   bash Scripts/profile-step.sh [extra surgeon-bench bert-train options]
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product surgeon-bench >&2
data="$(mktemp)"
trap 'rm -f "$data"' EXIT
# No sgemm replay: its cblas_sgemm calls would be counted as the step's.
perf record -q -o "$data" .build/release/surgeon-bench bert-train --repeats 4 \
  --after-progress 0.5 --gemm-replay no "$@" >/dev/null 2>&1
perf report -i "$data" --no-children --sort dso,symbol 2>/dev/null | awk '
  /^ *[0-9.]+%/ {
    share = $1; sub("%", "", share); symbol = $0
    if (symbol ~ /libdnnl|\[JIT\]/) group = "attention GEMMs (oneDNN, JIT-compiled kernels)"
    else if (symbol ~ /sgemm_(kernel|small|beta)/) group = "GEMM kernels (OpenBLAS)"
    else if (symbol ~ /sgemm_.*copy/) group = "GEMM packing (OpenBLAS)"
    else if (symbol ~ /normalCDF|normalPDF|Activation/) group = "GELU forward + backward"
    else if (symbol ~ /fillNormal|fillBlocks|NoiseModel|effectiveWeight/) group = "noise N (Philox + Box-Muller) and d*W + N"
    else if (symbol ~ /fillDropoutMask|Dropout|multiply2by/) group = "dropout masks and products"
    else if (symbol ~ /maskedSoftmax|VectorMathO3exp/) group = "attention softmax"
    else if (symbol ~ /LayerNorm/) group = "LayerNorm forward + backward"
    else if (symbol ~ /memset|memmove|memcpy|clear_page|page_fault/) group = "zeroing and copying buffers"
    else if (symbol ~ /\[k\]/) group = "kernel (scheduling, page faults)"
    else if (symbol ~ /AdamW/) group = "AdamW"
    else group = "other (bias adds, residual adds, embeddings, sums)"
    total[group] += share
  }
  END { for (g in total) printf "%6.1f%%  %s\n", total[g], g }' | sort -rn
