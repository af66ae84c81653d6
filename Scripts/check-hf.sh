#!/usr/bin/env bash
# The Hugging Face round trip of what surgeon writes, on the tiny BERT fixture: a plain-LoRA run
# (no decay) exported with `surgeon export --merge` must load in transformers'
# BertForSequenceClassification and give surgeon forward's logits (≤ 1e-4); the W-free
# compressed/ directory of a run that decays to d = 0 must be refused by from_pretrained
# (its config.json names surgeon's architecture). Uses SURGEON_VENV_PYTHON when set, else the
# venv of Scripts/python-env.sh; builds surgeon in release.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${SURGEON_VENV_PYTHON:-$(bash Scripts/python-env.sh)}"
# shellcheck source=Scripts/lib/tiny-workspace.sh
source Scripts/lib/tiny-workspace.sh
# $1 name, $2 the lora rule's extra keys.
manifest() {
  cat > "$work/$1.yaml" <<YAML
surgeon: 1
name: $1
model: {family: bert, checkpoint: checkpoints/tiny-bert, head: {classes: 2}}
surgery:
  - lora: {layers: [query, value, ffn_intermediate], rank: 4, alpha: 8, bias_c: zeros$2}
  - train: [classifier]
train:
  task: text-classification
  data:
    train: {format: csv, path: tiny.csv, text: text, label: label}
    labels: ["no", "yes"]
    split: {validation: 0.2, test: 0.2, seed: 0}
    max_length: 16
  steps: 12
  batch_size: 8
  optimizer: {name: adamw, lr: 1.0e-2}
  eval_every: 6
output: {dir: checkpoints/$1, compress: $3}
YAML
}
manifest plain "" false
manifest decayed ", decay: {shape: linear, start: 0.1, end: 0.8}" true
swift build -c release --product surgeon >/dev/null
binary="$PWD/.build/release/surgeon"
for run in plain decayed; do
  (cd "$work" && "$binary" apply "$run.yaml" --progress none >"$run.log" 2>&1) \
    || { cat "$work/$run.log" >&2; exit 1; }
done
"$binary" export "$work/checkpoints/plain" --merge --out "$work/merged"
"$python" - "$work" <<'PY'
import sys, torch
from safetensors.torch import save_file
ids = torch.tensor([[2, 5, 6, 7, 3, 0], [2, 8, 5, 9, 10, 3]], dtype=torch.int32)
save_file({"input_ids": ids, "attention_mask": (ids != 0).int(), "token_type_ids": torch.zeros_like(ids)},
          f"{sys.argv[1]}/inputs.safetensors")
PY
"$binary" forward "$work/checkpoints/plain" --inputs "$work/inputs.safetensors" --out "$work/surgeon.safetensors"
"$python" Scripts/hf/check_hf.py "$work/merged" "$work/checkpoints/decayed/compressed" \
  "$work/checkpoints/decayed" "$work/inputs.safetensors" "$work/surgeon.safetensors"
