"""One-off: runs made before the current stuck rule flagged any mid-run collapse as stuck, and
did not flag a final test accuracy at the majority class. Re-derive the flag (stuck = the run
ends at chance) from each run's own metrics.jsonl and results.json, so the compare tables state
what the runs ended at."""

import json
import sys
from pathlib import Path

from decaylora.training import LoopConfig, _at_chance

for results in sorted(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/results").glob("*/*/results.json")):
    r = json.loads(results.read_text())
    evals = [json.loads(x) for x in (results.parent / "metrics.jsonl").read_text().splitlines()]
    evals = [e for e in evals if e["kind"] == "eval"]
    cfg = LoopConfig(total_steps=1, lr=1.0, majority=r["majority_baseline"],
                     num_labels=r["num_labels"])
    stuck = bool(evals) and _at_chance(evals[-1], cfg)
    if abs(r["test_acc"] - r["majority_baseline"]) <= 0.01 and not r["stuck_at_chance"]:
        r["stuck_at_chance"] = True  # the current rule also flags a test accuracy at majority
        r["warnings"].append(f"test accuracy {r['test_acc']:.3f} is at the majority class")
        results.write_text(json.dumps(r, indent=2))
        print(f"{results.parent}: stuck (test accuracy at the majority class)")
    elif r["stuck_at_chance"] and not stuck:
        r["stuck_at_chance"] = False
        r["warnings"].append(f"the run recovered from chance level: final val acc "
                             f"{evals[-1]['val_acc']:.3f}")
        results.write_text(json.dumps(r, indent=2))
        print(f"{results.parent}: recovered (final val acc {evals[-1]['val_acc']:.3f})")
