#!/usr/bin/env bash
# What CI runs after the test command (Scripts/test.sh): the whole suite under AddressSanitizer,
# then every libFuzzer harness for SURGEON_FUZZ_SECONDS (default 60) seconds from its committed
# seed corpus. Needs only the Swift toolchain and the system packages of Scripts/setup.sh.
# Fails on any sanitizer report, test failure, fuzzer crash, or when no test ran.
set -euo pipefail
cd "$(dirname "$0")/.."
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# The OpenBLAS core the binary runs on, as Scripts/test.sh gives its test process (kept when set).
if [ -z "${OPENBLAS_CORETYPE:-}" ] && [ -x .build/release/surgeon ]; then
  OPENBLAS_CORETYPE="$(.build/release/surgeon --blas-core-choice)"
  export OPENBLAS_CORETYPE
fi
# A build directory of its own, so the sanitized objects never mix with .build/debug.
# LeakSanitizer is off here: what it reports at exit is XCTest's and Foundation's (teardown
# blocks, Process handles, a buffer Data(contentsOf:) keeps for an empty file), not surgeon's;
# the fuzz harnesses below run with leak detection on.
ASAN_OPTIONS=detect_leaks=0 SURGEON_THREADS=1 swift test --sanitize=address --scratch-path .build/asan \
  --disable-swift-testing 2>&1 | tee "$log"
summary=$(grep -E "Executed [0-9]+ tests?," "$log" | tail -1)
executed=$(echo "$summary" | grep -Eo "Executed [0-9]+" | grep -Eo "[0-9]+" || echo 0)
if [ "${executed:-0}" -eq 0 ]; then
  echo "ci-extra.sh: no test ran under AddressSanitizer" >&2
  exit 1
fi
if grep -q "ERROR: AddressSanitizer" "$log"; then
  echo "ci-extra.sh: AddressSanitizer reported an error" >&2
  exit 1
fi
echo "ci-extra.sh: $executed tests passed under AddressSanitizer"
bash Scripts/fuzz.sh all "${SURGEON_FUZZ_SECONDS:-60}"
echo "ci-extra.sh: every fuzz harness ran ${SURGEON_FUZZ_SECONDS:-60} s without a crash"
