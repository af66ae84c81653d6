#!/usr/bin/env bash
# Trains a tiny plain-LoRA run with surgeon on the tiny BERT fixture, then checks that Hugging
# Face PEFT loads its peft/ adapter and reproduces surgeon's logits. Uses SURGEON_VENV_PYTHON
# when set, else the venv of Scripts/python-env.sh; builds surgeon in release.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${SURGEON_VENV_PYTHON:-$(bash Scripts/python-env.sh)}"
# shellcheck source=Scripts/lib/tiny-workspace.sh
source Scripts/lib/tiny-workspace.sh
cat > "$work/peft.yaml" <<'YAML'
surgeon: 1
name: peft-check
model: {family: bert, checkpoint: checkpoints/tiny-bert}
surgery:
  - lora: {layers: [query, value, ffn_intermediate], rank: 4, alpha: 8, bias_c: none}
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
YAML
swift build -c release --product surgeon >/dev/null
binary="$PWD/.build/release/surgeon"
(cd "$work" && "$binary" apply peft.yaml --progress none >/dev/null)
"$python" - "$work" <<'PY'
import sys, torch
from safetensors.torch import save_file
ids = torch.tensor([[2, 5, 6, 7, 3, 0], [2, 8, 5, 9, 10, 3]], dtype=torch.int32)
save_file({"input_ids": ids, "attention_mask": (ids != 0).int(), "token_type_ids": torch.zeros_like(ids)},
          f"{sys.argv[1]}/inputs.safetensors")
PY
"$binary" forward "$work/checkpoints/peft-check" --inputs "$work/inputs.safetensors" --out "$work/surgeon.safetensors"
"$python" Scripts/peft/check_peft.py "$work/checkpoints/tiny-bert" "$work/checkpoints/peft-check" \
  "$work/inputs.safetensors" "$work/surgeon.safetensors"
