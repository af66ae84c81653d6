"""One-off: runs made before results.json recorded ``val_majority_baseline`` (the majority class
of the validation split, the baseline the validation curves are drawn against). Rebuild each
run's data split from its own config.yaml (same seed, same sizes) and add it; then rerun the
``compare`` command to redraw its figures (finished runs are reused, nothing retrains).

    python experiments/add_val_majority.py runs/results
"""

import json
import sys
from pathlib import Path

from decaylora.experiment import ExperimentConfig, load_task
from decaylora.training import label_prior

root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/results")
cache: dict[str, float] = {}
for results in sorted(root.glob("*/*/results.json")):
    r = json.loads(results.read_text())
    if r.get("val_majority_baseline") is not None:
        continue
    cfg = ExperimentConfig.from_yaml(results.parent / "config.yaml", progress=False)
    key = json.dumps({k: v for k, v in cfg.to_dict().items()
                      if k in ("task", "model", "data", "max_train", "max_val", "max_eval",
                               "val_fraction", "seed", "pretrain_steps", "pretrain_fraction")},
                     sort_keys=True)
    if key not in cache:
        task = load_task(cfg)
        cache[key] = label_prior(task.val_labels, task.num_labels)[0]
    r["val_majority_baseline"] = cache[key]
    results.write_text(json.dumps(r, indent=2))
    print(f"{results.parent}: validation majority {cache[key]:.3f}")
