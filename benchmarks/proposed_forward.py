"""Measures a *proposed* (not shipped) DecayLinear forward against the shipped one, interleaved.

    python -m benchmarks.proposed_forward [--quick] [--threads N] [--steps N]

The shipped ``DecayLayer.forward`` computes ``frozen(x, d W + N, d b + C) + s * B(A(x))``:
besides the GEMMs it runs two elementwise passes over the output per layer (``* s`` and the
final ``+``), and in the cool-down a third (``+ C``), each with its own backward. The proposal
(:func:`proposed_linear_forward`) removes them for ``nn.Linear`` targets:

- ``s`` is folded into ``B``'s weight (an ``out x r`` multiply, skipped when ``s == 1``);
- ``d b + C`` becomes the bias of the ``B`` matmul;
- the frozen GEMM accumulates into the adapter's output in place (``addmm_`` with beta = 1),
  so there is no separate add;
- cool-down / export view: ``F.linear(A x, s B, C)`` — one GEMM with bias, no ``* s``, no ``+ C``.

``tests/test_fused.py`` checks that it equals the shipped forward (values and gradients). This
module only *measures* it, by patching the layers of one model; ``src/decaylora/layers.py`` is
unchanged. Training step as in ``benchmarks.train_step`` (MiniLM, batch 32 x 64, rank 16).
Writes ``benchmarks/out/proposed_forward.json``.
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import decaylora as dl
from decaylora.layers import DecayLinear

from . import train_step as ts
from .common import interleave, machine_info, median, paired_ratio, setup_threads, table, write_json


def proposed_linear_forward(self: DecayLinear, x: torch.Tensor) -> torch.Tensor:
    """Drop-in ``forward`` for ``DecayLinear`` (not ``DecayConv1D``): same result, fewer passes."""
    d, noisy = self.d, bool(self.noise_active)
    b_weight = self.lora_B.weight if self.scale == 1.0 else self.lora_B.weight * self.scale
    h = self.lora_A(x)
    if self.export_view or (d == 0.0 and not noisy):  # cool-down: the frozen path is gone
        return F.linear(h, b_weight, self.C)
    b = self.base_layer.bias
    bias = None if b is None else (b if d == 1.0 else b * d)
    if self.C is not None:
        bias = self.C if bias is None else bias + self.C
    with torch.no_grad():
        weight = self.effective_weight()
    y = F.linear(h, b_weight, bias)  # s B A x + d b + C
    # += x (d W + N)^T, accumulated by the GEMM itself (beta = 1): no separate add pass.
    # In place is safe: linear saves its inputs, not its output, for backward.
    y.view(-1, y.shape[-1]).addmm_(x.reshape(-1, x.shape[-1]), weight.t())
    return y


def use_proposed_forward(model: nn.Module) -> nn.Module:
    """Patch every ``DecayLinear`` (exact type) of ``model`` to :func:`proposed_linear_forward`."""
    for _, layer in dl.decay_layers(model):
        if type(layer) is DecayLinear:
            layer.forward = types.MethodType(proposed_linear_forward, layer)
    return model


VARIANTS = ["peft_lora", "decay_warmup", "decay_warmup_proposed", "decay_noisy",
            "decay_noisy_proposed", "decay_cooldown", "decay_cooldown_proposed"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="batch 8, 2 rounds")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=None, help="measured rounds (default 12)")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--out", type=Path, default=None,
                   help="JSON path (default benchmarks/out/proposed_forward.json)")
    args = p.parse_args(argv)
    rounds = args.steps or (2 if args.quick else 12)
    batch_size = args.batch or (8 if args.quick else ts.BATCH)
    setup_threads(args.threads)
    info = machine_info(args.threads)
    models = {}
    for v in VARIANTS:
        base = v.removesuffix("_proposed")
        models[v] = ts.build(base)
        if v.endswith("_proposed"):
            use_proposed_forward(models[v])
    batch = ts.make_batch(models["peft_lora"].config.vocab_size, batch_size)
    steps = {v: ts.make_step(v.removesuffix("_proposed"), models[v], batch) for v in VARIANTS}
    wall, cpu = interleave(steps, rounds=rounds, warmup=1)
    med = {v: median(wall[v]) for v in VARIANTS}
    med_cpu = {v: median(cpu[v]) for v in VARIANTS}
    ratios: dict[str, Any] = {}
    for phase in ("warmup", "noisy", "cooldown"):
        cur, prop = f"decay_{phase}", f"decay_{phase}_proposed"
        ratios[f"{phase}_proposed_vs_shipped"] = med[prop] / med[cur]
        ratios[f"{phase}_proposed_vs_shipped_paired"] = paired_ratio(wall[prop], wall[cur])
        ratios[f"{phase}_proposed_vs_shipped_cpu"] = med_cpu[prop] / med_cpu[cur]
        ratios[f"{phase}_shipped_vs_peft_lora"] = med[cur] / med["peft_lora"]
        ratios[f"{phase}_proposed_vs_peft_lora"] = med[prop] / med["peft_lora"]
    result = {
        "benchmark": "proposed_forward",
        "command": " ".join(["python", "-m", "benchmarks.proposed_forward", *sys.argv[1:]]),
        "machine": info,
        "setup": {"batch": batch_size, "seq": ts.SEQ, "rank": ts.RANK, "rounds": rounds},
        "median_s": med, "cpu_median_s": med_cpu, "times_s": wall, "cpu_times_s": cpu,
        "ratios": ratios,
    }
    path = write_json("proposed_forward", result, args.out)
    rows = [[v, f"{1e3 * med[v]:.0f}", f"{med[v] / med['peft_lora']:.3f}",
             f"{1e3 * med_cpu[v]:.0f}", f"{med_cpu[v] / med_cpu['peft_lora']:.3f}"]
            for v in VARIANTS]
    print(table(["variant", "wall ms", "x peft", "cpu ms", "x peft"], rows))
    for k, v in ratios.items():
        print(f"{k}: {v:.3f}")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
