#!/usr/bin/env bash
# Exports the tiny BERT and tiny VGG fixtures, rewritten models (adapters at d = 1 and caught
# mid-way through the decay, lowrank and loralib convs), W-free compressed models and BERTs with
# other activations to ONNX with `surgeon export --format onnx`, then checks each with
# onnx.checker and ONNX Runtime: logits (and BERT's last_hidden_state) within 1e-4 of
# `surgeon forward`. Never skips: without onnx/onnxruntime it builds a venv, and fails if it
# cannot.
#
# Python: $SURGEON_VENV_PYTHON if set, else .venv-reference/bin/python (created with
# `pip install onnx onnxruntime numpy safetensors` when those do not import).
set -euo pipefail
cd "$(dirname "$0")/.."

modules="import onnx, onnxruntime, numpy, safetensors"
if [[ -n "${SURGEON_VENV_PYTHON:-}" ]]; then
  python="$SURGEON_VENV_PYTHON"
else
  python=".venv-reference/bin/python"
  if ! "$python" -c "$modules" >/dev/null 2>&1; then
    echo "check-onnx: building .venv-reference (onnx, onnxruntime, numpy, safetensors)" >&2
    if ! { python3 -m venv --system-site-packages .venv-reference \
      && .venv-reference/bin/pip install --quiet onnx onnxruntime numpy safetensors >&2; }; then
      echo "check-onnx: FAILED: cannot build the Python venv .venv-reference (no network or no pip?);" \
        "install onnx, onnxruntime, numpy and safetensors, or point SURGEON_VENV_PYTHON at a python that has them" >&2
      exit 1
    fi
  fi
fi
if ! "$python" -c "$modules" >/dev/null 2>&1; then
  echo "check-onnx: FAILED: $python cannot import onnx, onnxruntime, numpy and safetensors" >&2
  exit 1
fi
"$python" -c 'import onnx, onnxruntime; print(f"check-onnx: onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}")'

swift build -c release --product surgeon >/dev/null
binary="$PWD/.build/release/surgeon"
helper="$PWD/Scripts/onnx/check_onnx.py"
work="$(mktemp -d)"
trap '[[ -n "${KEEP_WORK:-}" ]] || rm -rf "$work"' EXIT
mkdir -p "$work/checkpoints" "$work/onnx" "$work/reference"
cp -r Tests/SurgeonTests/Fixtures/tiny-bert "$work/checkpoints/tiny-bert"
cp -r Tests/SurgeonTests/Fixtures/tiny-vgg "$work/checkpoints/tiny-vgg"
"$python" "$helper" data "$work"
# The activations with FFN pre-activations scaled up (40×) to where their shapes differ: the
# fixture's are near 0, where gelu and gelu_new agree to 1e-6.
for activation in gelu gelu_new relu; do
  cp -r "$work/checkpoints/tiny-bert" "$work/checkpoints/tiny-bert-$activation"
  sed -i "s/\"hidden_act\": \"gelu\"/\"hidden_act\": \"$activation\"/" \
    "$work/checkpoints/tiny-bert-$activation/config.json"
  "$python" "$helper" scale "$work/checkpoints/tiny-bert-$activation" intermediate.dense.weight 40
done
"$python" "$helper" inputs "$work"
# Batch norm, 3 channels, and the adaptive pool's three forms (7×7 map → 1, 7, 3).
"$python" "$helper" vgg "$work/checkpoints/vgg-bn-pool1" 1 4 11
"$python" "$helper" vgg "$work/checkpoints/vgg-bn-pool7" 7 4 12
"$python" "$helper" vgg "$work/checkpoints/vgg-bn-pool3" 3 4 13

bert_train='train:
  task: text-classification
  data:
    train: {format: csv, path: tiny.csv, text: text, label: label}
    labels: ["no", "yes"]
    split: {validation: 0.2, test: 0.2, seed: 0}
    max_length: 16
  steps: 12
  batch_size: 8
  optimizer: {name: adamw, lr: 1.0e-2}
  eval_every: 6'
vgg_train='train:
  task: image-classification
  data:
    train: {format: idx, images: images-idx3-ubyte, labels: labels-idx1-ubyte}
    split: {validation: 0.2, test: 0.2, seed: 0}
  steps: 8
  batch_size: 8
  optimizer: {name: adamw, lr: 1.0e-2}
  eval_every: 4'
cat >"$work/bert-lora.yaml" <<YAML
surgeon: 1
name: bert-lora
model: {family: bert, checkpoint: checkpoints/tiny-bert}
surgery:
  - lora: {layers: [query, value, ffn_intermediate, pooler], rank: 4, alpha: 8, bias_c: zeros}
  - train: [classifier]
$bert_train
YAML
cat >"$work/bert-decay.yaml" <<YAML
surgeon: 1
name: bert-decay
model: {family: bert, checkpoint: checkpoints/tiny-bert}
surgery:
  - lora: {layers: [query, key, value, dense], exclude: [pooler], rank: 4, alpha: 8, init: svd,
           bias_c: copy, decay: {shape: linear, start: 0.0, end: 0.5}}
  - train: [classifier]
$bert_train
output: {compress: true, onnx: true}
YAML
cat >"$work/vgg-decay.yaml" <<YAML
surgeon: 1
name: vgg-decay
model: {family: vgg, checkpoint: checkpoints/tiny-vgg}
surgery:
  - lora: {layers: [conv, fc], rank: 2, alpha: 4, conv_form: lowrank, init: svd, bias_c: copy,
           decay: {shape: cosine, start: 0.0, end: 0.5}}
  - train: [head]
$vgg_train
output: {compress: true, onnx: true}
YAML
cat >"$work/vgg-loralib.yaml" <<YAML
surgeon: 1
name: vgg-loralib
model: {family: vgg, checkpoint: checkpoints/tiny-vgg}
surgery:
  - lora: {layers: [conv], rank: 2, alpha: 4, conv_form: loralib, bias_c: zeros}
  - train: [head]
$vgg_train
YAML
for run in bert-lora bert-decay vgg-decay vgg-loralib; do
  (cd "$work" && "$binary" apply "$run.yaml" --progress none >/dev/null 2>"$run.log") || {
    cat "$work/$run.log" >&2
    echo "check-onnx: FAILED: surgeon apply $run.yaml" >&2
    exit 1
  }
done
# Rewritten models caught mid-way: the same tensors with every adapter at d = 0.4.
for run in bert-decay vgg-decay; do
  cp -r "$work/checkpoints/$run" "$work/checkpoints/$run-midway"
  rm -rf "$work/checkpoints/$run-midway/onnx" "$work/checkpoints/$run-midway/compressed"
  "$python" "$helper" decay "$work/checkpoints/$run-midway" 0.4
done

failures=0
check() {
  local name="$1" checkpoint="$2" inputs="$3" exported="${4:-}"
  if [[ -z "$exported" ]]; then
    exported="$work/onnx/$name"
    if ! "$binary" export "$checkpoint" --format onnx --out "$exported" >/dev/null; then
      echo "FAIL $name: surgeon export --format onnx"
      failures=$((failures + 1))
      return
    fi
  fi
  "$binary" forward "$checkpoint" --inputs "$inputs" --out "$work/reference/$name.safetensors"
  "$python" "$helper" check "$name" "$exported" "$inputs" "$work/reference/$name.safetensors" \
    || failures=$((failures + 1))
}
c="$work/checkpoints"
check tiny-bert "$c/tiny-bert" "$work/bert-inputs.safetensors"
check tiny-bert-gelu-scaled "$c/tiny-bert-gelu" "$work/bert-inputs.safetensors"
check tiny-bert-gelu_new-scaled "$c/tiny-bert-gelu_new" "$work/bert-inputs.safetensors"
check tiny-bert-relu-scaled "$c/tiny-bert-relu" "$work/bert-inputs.safetensors"
check tiny-vgg "$c/tiny-vgg" "$work/vgg1-inputs.safetensors"
check vgg-bn-pool1 "$c/vgg-bn-pool1" "$work/vgg3-inputs.safetensors"
check vgg-bn-pool7 "$c/vgg-bn-pool7" "$work/vgg3-inputs.safetensors"
check vgg-bn-pool3 "$c/vgg-bn-pool3" "$work/vgg3-inputs.safetensors"
check bert-rewritten-d1 "$c/bert-lora" "$work/bert-inputs.safetensors"
check bert-rewritten-midway "$c/bert-decay-midway" "$work/bert-inputs.safetensors"
check bert-compressed "$c/bert-decay/compressed" "$work/bert-inputs.safetensors"
check bert-apply-onnx "$c/bert-decay/compressed" "$work/bert-inputs.safetensors" "$c/bert-decay/onnx"
check vgg-rewritten-lowrank-midway "$c/vgg-decay-midway" "$work/vgg1-inputs.safetensors"
check vgg-rewritten-loralib "$c/vgg-loralib" "$work/vgg1-inputs.safetensors"
check vgg-compressed "$c/vgg-decay/compressed" "$work/vgg1-inputs.safetensors"
check vgg-apply-onnx "$c/vgg-decay/compressed" "$work/vgg1-inputs.safetensors" "$c/vgg-decay/onnx"

if ((failures > 0)); then
  echo "check-onnx: FAILED: $failures of 16 ONNX exports differ from surgeon or fail onnx.checker" >&2
  exit 1
fi
echo "check-onnx: all 16 ONNX exports pass onnx.checker and match surgeon forward within 1e-4"
