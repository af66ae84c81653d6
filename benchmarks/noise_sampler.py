"""Noise-sampler micro-benchmark: the cost of forming ``d W + N`` for all 36 MiniLM target
weights (one training step's worth), before and after the one-pass sampler, interleaved.

    python -m benchmarks.noise_sampler [--quick] [--threads N]

Variants (global noise statistics, d = 0.5, a fresh step each call):

- ``three_pass``: the previous implementation — ``randn``, ``mul_(std)``, ``add_(mean)``, then
  an out-of-place ``add(W, alpha=d)`` (a second weight-sized buffer);
- ``current``: ``DecayLayer.effective_weight()`` as shipped — ``normal_(mean, std)`` in one
  pass, then ``add_(W, alpha=d)`` in place;
- ``randn_only``: just drawing the standard normals (the floor: the CPU generator is serial).

For scale, ``frozen_matmuls`` times the 36 forward matmuls of the frozen path at batch 32 x 64
tokens (one of the ~3 such passes in a training step). Writes
``benchmarks/out/noise_sampler.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import decaylora as dl
from decaylora.models import default_text_targets, load_text_model

from .common import interleave, machine_info, median, setup_threads, table, write_json


def three_pass_effective_weight(layer: dl.DecayLayer) -> torch.Tensor:
    """The sampler before the optimisation (kept here as the reference it is compared with)."""
    w = layer.base_layer.weight
    g = layer._generator(w.device)
    g.manual_seed(layer.noise_seed_for_step())
    z = torch.randn(w.shape, generator=g, device=w.device, dtype=w.dtype)
    mean, std = layer.noise_params()
    noise = z.mul_(std).add_(mean)
    return noise.add(w, alpha=layer.d)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=None, help="default 30 (quick 8)")
    p.add_argument("--out", type=Path, default=None, help="JSON path (default out/NAME.json)")
    args = p.parse_args(argv)
    rounds = args.rounds or (8 if args.quick else 30)
    setup_threads(args.threads)
    info = machine_info(args.threads)
    model, _ = load_text_model("minilm", 2)
    dl.wrap(model, dl.DecayConfig(r=16, target_modules=default_text_targets(model)))
    model.train()
    layers = [layer for _, layer in dl.decay_layers(model)]
    state = {"step": 0}

    def next_step() -> None:
        state["step"] += 1
        dl.set_decay(model, 0.5, noise=True, step=state["step"])

    def three_pass() -> None:
        next_step()
        with torch.no_grad():
            for layer in layers:
                three_pass_effective_weight(layer)

    def current() -> None:
        next_step()
        with torch.no_grad():
            for layer in layers:
                layer.effective_weight()

    gen = torch.Generator()

    def randn_only() -> None:
        for i, layer in enumerate(layers):
            gen.manual_seed(i + state["step"])
            torch.randn(layer.base_layer.weight.shape, generator=gen)

    x = {384: torch.randn(32 * 64, 384), 1536: torch.randn(32 * 64, 1536)}

    def frozen_matmuls() -> None:
        with torch.no_grad():
            for layer in layers:
                w = layer.base_layer.weight
                F.linear(x[w.shape[1]], w)

    fns = {"three_pass": three_pass, "current": current, "randn_only": randn_only,
           "frozen_matmuls": frozen_matmuls}
    wall, cpu = interleave(fns, rounds=rounds, warmup=2, progress=False)
    med = {k: median(v) for k, v in wall.items()}
    result: dict[str, Any] = {
        "benchmark": "noise_sampler",
        "command": " ".join(["python", "-m", "benchmarks.noise_sampler", *sys.argv[1:]]),
        "machine": info,
        "setup": {"layers": len(layers), "weights": sum(la.base_layer.weight.numel()
                                                        for la in layers),
                  "rounds": rounds, "d": 0.5, "noise_stats": "global"},
        "median_s": med,
        "cpu_median_s": {k: median(v) for k, v in cpu.items()},
        "times_s": wall,
        "ratios": {"current_vs_three_pass": med["current"] / med["three_pass"],
                   "current_vs_frozen_matmuls": med["current"] / med["frozen_matmuls"]},
    }
    path = write_json("noise_sampler", result, args.out)
    rows = [[k, f"{1e3 * med[k]:.1f}", f"{1e3 * result['cpu_median_s'][k]:.1f}",
             f"{med[k] / med['three_pass']:.2f}"] for k in fns]
    print(table(["variant (36 MiniLM weights)", "wall ms", "cpu ms", "x three_pass"], rows))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
