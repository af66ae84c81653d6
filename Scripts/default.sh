#!/usr/bin/env bash
# The offline default job on a fresh machine: system packages, MiniLM, a release build, then
# surgeon on MiniLM with a 2-class head. (Until `surgeon apply` lands this prints the model's
# parameter summary; the default manifest's training run replaces it.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash Scripts/setup.sh
bash Scripts/fetch-minilm.sh
swift build -c release --product surgeon
.build/release/surgeon summary checkpoints/all-minilm-l6-v2 --classes 2
