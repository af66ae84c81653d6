#!/usr/bin/env bash
# MiniLM forward (batch 32 × 64 tokens) in a release build, beside cblas_sgemm on the same GEMM
# shapes in the same run. The last line is JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
bash Scripts/fetch-minilm.sh >/dev/null
swift build -c release --product surgeon-bench >/dev/null
exec .build/release/surgeon-bench forward "$@"
