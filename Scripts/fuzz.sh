#!/usr/bin/env bash
# Builds one libFuzzer harness from Tests/Fuzz/ with -sanitize=fuzzer,address and runs it.
#
#   bash Scripts/fuzz.sh TARGET SECONDS [libFuzzer flags...]
#   bash Scripts/fuzz.sh all SECONDS         # every harness in turn, SECONDS each
#
# TARGET is one of: manifest safetensors csv jsonl idx tokenizer compare. The seed corpus is
# Tests/Fuzz/corpus/TARGET (committed); inputs the run discovers go to .build/fuzz/corpus/TARGET (not
# committed), crashes to .build/fuzz/crashes/TARGET. Needs only the Swift toolchain and the
# system libraries the package links (libopenblas-dev, libyaml-dev, zlib1g-dev).
# Exit status: 0 when the run ended without a crash, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
targets="manifest safetensors csv jsonl idx tokenizer compare"
usage() {
  echo "usage: bash Scripts/fuzz.sh TARGET|all SECONDS [libFuzzer flags...]" >&2
  echo "  TARGET: $targets" >&2
  exit 2
}
[ $# -ge 2 ] || usage
target=$1
seconds=$2
shift 2
[[ "$seconds" =~ ^[0-9]+$ ]] || usage
if [ "$target" = all ]; then
  for name in $targets; do bash "$0" "$name" "$seconds" "$@"; done
  exit 0
fi
case " $targets " in *" $target "*) ;; *) usage ;; esac

out=.build/fuzz
mkdir -p "$out/modules" "$out/corpus/$target" "$out/crashes/$target"
flags=(-O -g -parse-as-library -swift-version 6 -sanitize=fuzzer,address
  -I Sources/CBLAS -I Sources/CDNNL -I Sources/CYAML -I Sources/CZlib -I "$out/modules"
  $(pkg-config --cflags-only-I openblas yaml-0.1 zlib | sed 's/-I/-Xcc -I/g'))
# The library modules, compiled once each (whole module) with the fuzzer's coverage
# instrumentation and AddressSanitizer, rebuilt when a source file is newer than the object.
build_module() {
  local name=$1 object="$out/modules/$1.o"
  shift
  local sources stale=""
  sources=$(find "Sources/$name" -name '*.swift' | sort)
  [ -f "$object" ] || stale=1
  [ -n "$stale" ] || [ -z "$(find "Sources/$name" -name '*.swift' -newer "$object")" ] || stale=1
  # A module it imports was rebuilt after it.
  for dependency in "$@"; do
    [ -n "$stale" ] || [ ! "$out/modules/$dependency.o" -nt "$object" ] || stale=1
  done
  [ -n "$stale" ] || return 0
  # The AVX2 build of the vector loops, as Package.swift builds it.
  local extra=()
  [ "$name" != VectorKernelsAVX2 ] || [ "$(uname -m)" != x86_64 ] || extra=(-target-cpu haswell)
  # shellcheck disable=SC2086
  swiftc "${flags[@]}" "${extra[@]}" -wmo -module-name "$name" -emit-module \
    -emit-module-path "$out/modules/$name.swiftmodule" -c -o "$object" $sources
}
case $target in
  manifest) modules="Plumbing Manifest" ;;
  safetensors) modules="Plumbing VectorKernels VectorKernelsAVX2 Tensor SafeTensors" ;;
  compare) modules="Plumbing Manifest VectorKernels VectorKernelsAVX2 Tensor SafeTensors Plots Compare" ;;
  tokenizer | csv | jsonl | idx)
    modules="Plumbing VectorKernels VectorKernelsAVX2 Tensor SafeTensors Models Datasets"
    ;;
esac
objects=()
built=()
for name in $modules; do
  build_module "$name" "${built[@]}"
  built+=("$name")
  objects+=("$out/modules/$name.o")
done
binary="$out/fuzz-$target"
swiftc "${flags[@]}" -module-name "Fuzz_$target" Tests/Fuzz/Harnesses/$target.swift \
  Tests/Fuzz/Harnesses/Support.swift "${objects[@]}" \
  $(pkg-config --libs openblas yaml-0.1 zlib) -ldnnl -o "$binary"
echo "fuzz.sh: $target for ${seconds}s on Tests/Fuzz/corpus/$target" >&2
# -rss_limit_mb: the readers' size caps must keep memory bounded; -timeout: no input may hang
# (wall-clock seconds: 10 once stopped a run niced to 19 on a loaded machine, on an input that
# takes 0.3 s).
set +e
"$binary" -max_total_time="$seconds" -print_final_stats=1 \
  -rss_limit_mb=2048 -timeout=60 -artifact_prefix="$out/crashes/$target/" "$@" \
  "$out/corpus/$target" "Tests/Fuzz/corpus/$target"
status=$?
set -e
if [ $status -ne 0 ]; then
  echo "fuzz.sh: $target found a failure (exit $status); reproducers in $out/crashes/$target" >&2
  exit 1
fi
