"""Checks what Hugging Face transformers makes of surgeon's output directories.
Usage: check_hf.py MERGED COMPRESSED REWRITTEN INPUTS.safetensors SURGEON_OUT.safetensors
MERGED (`surgeon export --merge` of a run without decay) must load in
BertForSequenceClassification and give SURGEON_OUT's logits (the run's, from `surgeon forward`)
within 1e-4; COMPRESSED (W-free) and REWRITTEN (with adapters, decayed) must be refused by
AutoModelForSequenceClassification.from_pretrained, whose tensors it cannot compute."""
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, BertForSequenceClassification

merged_dir, compressed_dir, rewritten_dir, inputs_path, surgeon_path = sys.argv[1:6]
failures = []
model = BertForSequenceClassification.from_pretrained(
    merged_dir, attn_implementation="eager", output_loading_info=True)
model, info = model
missing = [k for k in info["missing_keys"]]
unexpected = [k for k in info["unexpected_keys"] if not k.endswith("position_ids")]
if missing or unexpected or info["mismatched_keys"]:
    failures.append(f"merged: not a clean load: missing {missing}, unexpected {unexpected}, "
                    f"mismatched {info['mismatched_keys']}")
model.eval()
inputs = load_file(inputs_path)
with torch.no_grad():
    logits = model(input_ids=inputs["input_ids"].long(),
                   attention_mask=inputs["attention_mask"].long(),
                   token_type_ids=inputs["token_type_ids"].long()).logits
expected = load_file(surgeon_path)["logits"]
error = (logits - expected).abs().max().item()
print(f"check_hf: transformers on the --merge export vs surgeon forward on the run: "
      f"max abs logit difference {error:.2e}")
if not error <= 1e-4:
    failures.append(f"merged: logits differ by {error:.2e} > 1e-4")
for name, directory in [("compressed", compressed_dir), ("rewritten", rewritten_dir)]:
    try:
        AutoModelForSequenceClassification.from_pretrained(directory)
    except (ValueError, KeyError, OSError) as error:
        first = str(error).splitlines()[0]
        print(f"check_hf: from_pretrained refuses the {name} directory: {first}")
    else:
        failures.append(f"{name}: from_pretrained loaded {directory}, whose tensors it cannot compute")
for failure in failures:
    print(f"check_hf: FAILED: {failure}")
sys.exit(1 if failures else 0)
