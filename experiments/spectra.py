"""How much of each pretrained target weight a rank-r truncation keeps (docs/results.md, "Why
MiniLM does not close").

For every target layer of the two tasks' starting models — MiniLM-L6 as shipped, and the VGG11
after stage 1 of configs/vision.yaml (loaded from the run cache; trained if missing) — prints the
share of the weight's energy (sum of squared singular values) in its top r singular values,
summarised per layer group. Usage::

    python experiments/spectra.py [--ranks 8,12,32] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics

import torch

from decaylora.budget import energy_shares
from decaylora.config import DecayConfig
from decaylora.experiment import ExperimentConfig, load_task
from decaylora.injection import find_targets


def layer_spectra(model: torch.nn.Module, targets: list[str], ranks: list[int]) -> dict:
    """{group: {rank: (mean energy share, min, max)}}, groups = names with layer indices
    replaced by '*'. The shares are the rank budgets' (``decaylora.budget.energy_shares``) and
    the layers are the ones a run wraps (``find_targets``)."""
    modules = dict(model.named_modules())
    per_group: dict[str, dict[int, list[float]]] = {}
    for name in find_targets(model, DecayConfig(target_modules=targets)):
        shares = energy_shares(modules[name])
        group = re.sub(r"\.\d+\.", ".*.", name)
        for r in ranks:
            per_group.setdefault(group, {}).setdefault(r, []).append(sum(shares[:r]))
    return {g: {r: (statistics.mean(v), min(v), max(v)) for r, v in by_r.items()}
            for g, by_r in per_group.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", default="8,12,32", help="comma-separated ranks")
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args()
    ranks = [int(r) for r in args.ranks.split(",")]
    out = {}
    for label, cfg in (("MiniLM-L6 (pretrained)", ExperimentConfig.from_yaml(
            "configs/default.yaml", max_train=64, max_val=32, max_eval=32, progress=False)),
                       ("VGG11 after stage 1", ExperimentConfig.from_yaml(
            "configs/vision.yaml", progress=False))):
        task = load_task(cfg)
        spec = layer_spectra(task.model, task.targets, ranks)
        out[label] = spec
        print(f"\n{label}: share of each weight's energy in its top-r singular values "
              "(mean [min, max] over the group's layers)")
        print(f"{'layer group':<40}" + "".join(f"{'r=' + str(r):>22}" for r in ranks))
        for group, by_r in spec.items():
            cells = "".join(f"{m:>8.3f} [{lo:.2f}, {hi:.2f}]" for m, lo, hi in
                            (by_r[r] for r in ranks))
            print(f"{group:<40}{cells}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
