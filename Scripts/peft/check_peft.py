"""Checks that Hugging Face PEFT loads the adapter `surgeon apply` wrote and computes the same
logits as surgeon. Usage: check_peft.py BASE_CHECKPOINT RUN_DIR INPUTS.safetensors SURGEON_OUT.safetensors
(BASE_CHECKPOINT: the manifest's model directory; RUN_DIR: output.dir with peft/)."""
import json
import sys

import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import BertForSequenceClassification

base_dir, run_dir, inputs_path, surgeon_path = sys.argv[1:5]
config = json.load(open(f"{run_dir}/config.json"))
labels = len(config.get("id2label", {})) or 2
base = BertForSequenceClassification.from_pretrained(
    base_dir, num_labels=labels, attn_implementation="eager")
model = PeftModel.from_pretrained(base, f"{run_dir}/peft")
model.eval()
inputs = load_file(inputs_path)
with torch.no_grad():
    logits = model(
        input_ids=inputs["input_ids"].long(),
        attention_mask=inputs["attention_mask"].long(),
        token_type_ids=inputs["token_type_ids"].long()).logits
expected = load_file(surgeon_path)["logits"]
error = (logits - expected).abs().max().item()
print(f"check_peft: PEFT logits vs surgeon logits: max abs difference {error:.2e}")
sys.exit(0 if error <= 1e-4 else 1)
