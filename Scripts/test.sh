#!/usr/bin/env bash
# The test command: installs the system packages when missing, fetches MiniLM and the Rotten
# Tomatoes snippets for the tests that read them (when absent), checks formatting, builds the
# release binary without warnings, validates manifests/, runs the whole suite, then the PEFT,
# Hugging Face and ONNX Runtime round trips in the reference venv.
# Fails when no test ran.
set -euo pipefail
cd "$(dirname "$0")/.."
bash Scripts/setup.sh
bash Scripts/fetch-minilm.sh
bash Scripts/fetch-rotten-tomatoes.sh
swift format lint --strict -r Sources Tests Package.swift
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
swift build -c release 2>&1 | tee "$log"
if grep -q "warning:" "$log"; then
  echo "test.sh: the release build has compiler warnings" >&2
  exit 1
fi
# Every shipped manifest must validate (what a user's CI would run).
.build/release/surgeon validate manifests/*.yaml
# ... and be locked (validate has just compared each plan with its NAME.lock.json).
for manifest in manifests/*.yaml; do
  [ -f "${manifest%.yaml}.lock.json" ] || {
    echo "test.sh: $manifest has no lock; write it with: surgeon plan $manifest --lock" >&2
    exit 1
  }
done
# Every shipped sweep must derive valid manifests (lists the cells; runs nothing).
for sweep in manifests/sweeps/*.yaml; do .build/release/surgeon compare "$sweep" --dry-run >/dev/null; done
# The test process runs on the OpenBLAS core the binary runs on: OpenBLAS reads
# OPENBLAS_CORETYPE once, when it loads, and falls back to SSE3 kernels on a CPU it does not
# know; `surgeon` corrects that by re-executing itself, a test process cannot. A value already
# set is the user's and is kept.
if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
  OPENBLAS_CORETYPE="$(.build/release/surgeon --blas-core-choice)"
  export OPENBLAS_CORETYPE
fi
echo "test.sh: $(.build/release/surgeon --version | tail -1)"
# Both builds of surgeon's vector loops agree bit for bit where the AVX2 one is really AVX2 code
# (in the release binary; the debug test build does not inline it).
.build/release/surgeon --check-vector-kernels
# One BLAS thread per test process: XCTest runs serially and the machine has 2 cores.
SURGEON_THREADS=1 swift test --disable-swift-testing 2>&1 | tee "$log"
# XCTest's last summary line: "Executed N tests, with [K tests skipped and] F failures ...".
summary=$(grep -E "Executed [0-9]+ tests?," "$log" | tail -1)
executed=$(echo "$summary" | grep -Eo "Executed [0-9]+" | grep -Eo "[0-9]+" || echo 0)
failed=$(echo "$summary" | grep -Eo "[0-9]+ failures?" | grep -Eo "[0-9]+" || echo 0)
skipped=$(echo "$summary" | grep -Eo "[0-9]+ tests? skipped" | grep -Eo "[0-9]+" || echo 0)
if [ "${executed:-0}" -eq 0 ]; then
  echo "test.sh: no test ran" >&2
  exit 1
fi
# Runs the tests matching FILTER again with the environment assignments given before it;
# fails with WHAT unless at least one test ran and none failed.
rerun() {
  local what=$1 filter=$2 rerun_log summary
  shift 2
  rerun_log="$(mktemp)"
  env "$@" SURGEON_THREADS=1 swift test --skip-build --disable-swift-testing --filter "$filter" \
    2>&1 | tee "$rerun_log"
  summary=$(grep -E "Executed [0-9]+ tests?," "$rerun_log" | tail -1)
  rm -f "$rerun_log"
  if ! echo "$summary" | grep -qE "Executed [1-9][0-9]* tests?, with 0 failures"; then
    echo "test.sh: $what: $summary" >&2
    exit 1
  fi
}
# Bitwise independence from the thread count must hold under every kernel: the GEMM split and
# determinism tests again on Prescott's SSE3 kernels (the fallback of CPUs OpenBLAS does not know).
rerun "the determinism tests did not pass on OpenBLAS's Prescott kernels" \
  'GEMMSplitTests|DeterminismTests' OPENBLAS_CORETYPE=Prescott
# The baseline build of surgeon's vector loops (what a CPU without AVX2 runs) against the same
# fixtures: the determinism tests and the PyTorch golden checks of the layers that use them.
rerun "the tests did not pass on the baseline vector kernels" \
  'DeterminismTests|GoldenTests|RandomFillTests|VectorMathTests' SURGEON_VECTOR_KERNELS=baseline
# The round trips through the real clients, never skipped: python-env.sh fails when the venv
# (torch 2.13.0, transformers, peft, onnx, onnxruntime) cannot be built.
SURGEON_VENV_PYTHON="$(bash Scripts/python-env.sh)"
export SURGEON_VENV_PYTHON
bash Scripts/check-peft.sh
bash Scripts/check-hf.sh
bash Scripts/check-onnx.sh
# Name what was skipped (for example the 2-process test where mpirun is absent).
grep -E "Test Case .* skipped" "$log" | sed 's/^/test.sh: skipped: /' || true
echo "tests: $((executed - failed - skipped)) passed, $failed failed, $skipped skipped"
# The shipped pre-commit hook passes a good commit and blocks a bad one (pre-commit from PyPI).
bash Scripts/check-pre-commit.sh
