"""Training-step benchmark on MiniLM: full fine-tuning vs PEFT LoRA vs the notes' naive forward
vs decaylora in its three phases, interleaved in one run; peak RSS per variant in subprocesses.

    python -m benchmarks.train_step            # full run (>= 20 measured steps per variant)
    python -m benchmarks.train_step --quick    # < 2 minutes, for smoke tests

A step is forward + backward + ``AdamW.step()`` on the trainable parameters, batch 32 of random
token ids (fixed seed), sequence length exactly 64, full attention masks, ``model.train()``
(dropout on, identical in every variant). Adapters: rank 16, alpha 16 (scale 1), on query, key,
value, attention output, FFN intermediate and FFN output of all 6 blocks (36 Linears); the
classifier head is trained in full in every adapter variant. Writes
``benchmarks/out/train_step.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

import decaylora as dl
from decaylora.layers import DecayLayer
from decaylora.models import default_text_targets, load_text_model

from .common import (
    OUT_DIR,
    current_rss_kib,
    interleave,
    machine_info,
    median,
    paired_ratio,
    peak_rss_kib,
    reset_peak_rss,
    ru_maxrss_kib,
    setup_threads,
    table,
    write_json,
)

RANK = 16
BATCH = 32
SEQ = 64
NOISY_D = 0.5
LR = 1e-4

#: variant -> (kind, decay d, noise on) ; kind picks the builder.
VARIANTS: dict[str, tuple[str, float, bool]] = {
    "full_finetune": ("full", 1.0, False),
    "peft_lora": ("peft", 1.0, False),
    "naive_noisy_decay": ("naive", NOISY_D, True),
    "decay_warmup": ("decay", 1.0, False),
    "decay_noisy": ("decay", NOISY_D, True),
    "decay_cooldown": ("decay", 0.0, False),
}
DESCRIPTIONS = {
    "full_finetune": "all parameters trainable",
    "peft_lora": f"peft LoRA r{RANK} (dropout 0), W frozen",
    "naive_noisy_decay": f"notes' forward at d={NOISY_D}, noise on: W x and x N^T as 2 matmuls",
    "decay_warmup": "decaylora d=1, noise off (warm-up)",
    "decay_noisy": f"decaylora d={NOISY_D}, noise on (one matmul on d W + N)",
    "decay_cooldown": "decaylora d=0, noise off (frozen path skipped)",
}


# ----- the naive reference: the research notes' forward ---------------------------------------
def naive_forward(self: DecayLayer, x: torch.Tensor, noise: torch.Tensor | None = None):
    """The notes' training forward, written the way they wrote it::

        original_output * d + (inputs @ noise) + lora_output + C

    i.e. the frozen layer runs on ``x`` and, separately, ``x`` is multiplied by the noise: two
    full-size matmuls (and two in the backward pass) instead of decaylora's one on ``d W + N``.
    The noise is drawn by the layer's own sampler (same seed, same step), so with the same noise
    this equals ``DecayLayer.forward`` (``tests/test_fused.py`` checks it). The notes also
    recomputed the weight's mean and variance every step; that reduction is left out here (it
    is cheap next to the matmuls), so the comparison isolates the two-matmul structure.
    Like the notes, the frozen layer's output is computed even at d = 0.
    """
    y = self.base_layer(x) * self.d
    if bool(self.noise_active):
        if noise is None:
            noise = self.sample_noise()
        y = y + self._frozen(x, noise, None)
    return self._add_c(y + self.adapter_forward(x))


def use_naive_forward(model: nn.Module) -> nn.Module:
    """Make every wrapped layer of ``model`` run :func:`naive_forward` (in place)."""
    for _, layer in dl.decay_layers(model):
        layer.forward = types.MethodType(naive_forward, layer)
    return model


# ----- models ---------------------------------------------------------------------------------
def _minilm() -> nn.Module:
    model, _ = load_text_model("minilm", 2)
    return model


def build(variant: str) -> nn.Module:
    """The model of one variant, in train mode, with exactly its trainable parameters."""
    kind, d, noise = VARIANTS[variant]
    torch.manual_seed(0)
    model = _minilm()
    targets = default_text_targets(model)
    if kind == "full":
        for p in model.parameters():
            p.requires_grad_(True)
    elif kind == "peft":
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(r=RANK, lora_alpha=RANK, lora_dropout=0.0, target_modules=targets,
                         modules_to_save=["classifier"], bias="none")
        model = get_peft_model(model, cfg)
    else:
        cfg = dl.DecayConfig(r=RANK, alpha=RANK, target_modules=targets,
                             modules_to_save=["classifier"], c_init="zeros")
        dl.wrap(model, cfg)
        dl.set_decay(model, d, noise, 0)
        if kind == "naive":
            use_naive_forward(model)
    return model.train()


def make_batch(vocab: int, batch: int = BATCH, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random token ids (fixed seed, ids >= 1000 so no special tokens), length exactly SEQ,
    full attention mask, random binary labels."""
    g = torch.Generator().manual_seed(seed)
    return {
        "input_ids": torch.randint(1000, vocab, (batch, SEQ), generator=g),
        "attention_mask": torch.ones(batch, SEQ, dtype=torch.long),
        "labels": torch.randint(0, 2, (batch,), generator=g),
    }


def make_step(variant: str, model: nn.Module, batch: dict[str, torch.Tensor]) -> Callable[[], float]:
    """One training step of ``model``; decay variants draw fresh noise every step (step += 1)."""
    kind, d, noise = VARIANTS[variant]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR)
    counter = {"step": 0}

    def step() -> float:
        if kind in ("decay", "naive"):
            counter["step"] += 1
            dl.set_decay(model, d, noise, counter["step"])
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step


def trainable_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ----- memory (one subprocess per variant) -----------------------------------------------------
def memory_only(variant: str, steps: int, threads: int, batch: int) -> dict[str, Any]:
    """Peak RSS of ``steps`` training steps of one variant, run in this (fresh) process.

    ``rss_after_build_kib``: RSS once the model, optimizer and batch exist (after gc).
    The kernel's peak counter is then reset to that value, so ``peak_rss_kib`` (``ru_maxrss``
    after the steps, read from VmHWM) is the peak *during training*; ``train_increment_kib`` is
    the difference: activations saved for backward, gradients, AdamW state, effective weights /
    noise, allocator slack. ``peak_rss_process_kib`` is the peak including model loading.
    """
    setup_threads(threads)
    model = build(variant)
    data = make_batch(model.config.vocab_size, batch)
    step = make_step(variant, model, data)
    peak_loading = peak_rss_kib()
    reset = reset_peak_rss()
    base = current_rss_kib()
    for _ in range(steps):
        step()
    peak = peak_rss_kib()
    return {
        "variant": variant,
        "steps": steps,
        "batch": batch,
        "rss_after_build_kib": base,
        "peak_rss_kib": peak,
        "train_increment_kib": peak - base,
        "peak_rss_process_kib": max(peak, peak_loading),
        "ru_maxrss_kib": ru_maxrss_kib(),
        "peak_reset_ok": reset,
    }


def measure_memory(variants: list[str], steps: int, threads: int,
                   batch: int) -> dict[str, dict[str, Any]]:
    root = Path(__file__).resolve().parent.parent
    out = {}
    for v in variants:
        cmd = [sys.executable, "-m", "benchmarks.train_step", "--memory-only", v,
               "--mem-steps", str(steps), "--threads", str(threads), "--batch", str(batch)]
        res = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"memory run of {v} failed:\n{res.stderr[-3000:]}")
        out[v] = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"  memory {v}: +{out[v]['train_increment_kib'] / 1024:.0f} MiB over "
              f"{out[v]['rss_after_build_kib'] / 1024:.0f} MiB", flush=True)
    return out


# ----- main -----------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict[str, Any]:
    setup_threads(args.threads)
    info = machine_info(args.threads)
    variants = list(VARIANTS)
    # Memory first, one fresh subprocess per variant, while this process is still small.
    mem_variants = variants if not args.quick else ["peft_lora", "decay_noisy"]
    memory = {} if args.no_memory else measure_memory(mem_variants, args.mem_steps, args.threads,
                                                      args.batch)
    print(f"building {len(variants)} models ...", flush=True)
    models = {v: build(v) for v in variants}
    vocab = models["full_finetune"].config.vocab_size
    batch = make_batch(vocab, args.batch)
    steps = {v: make_step(v, models[v], batch) for v in variants}
    print(f"timing: {args.warmup} warm-up + {args.steps} measured rounds, "
          f"{len(variants)} variants interleaved, batch {args.batch} x {SEQ} tokens, "
          f"{args.threads} threads", flush=True)
    final = Path(args.out) if args.out is not None else None
    partial = (final or OUT_DIR / "train_step.json").with_suffix(".partial.json")

    def save_partial(wall: dict[str, list[float]], cpu: dict[str, list[float]]) -> None:
        """Raw times so far, so that an interrupted long run still leaves its data."""
        write_json("train_step", {"benchmark": "train_step", "partial": True,
                                  "command": " ".join(["python", "-m", "benchmarks.train_step",
                                                       *sys.argv[1:]]),
                                  "machine": dict(info), "memory": memory,
                                  "times_s": wall, "cpu_times_s": cpu}, partial)

    times, cpu = interleave(steps, rounds=args.steps, warmup=args.warmup,
                            on_round=save_partial)
    med = {v: median(times[v]) for v in variants}
    med_cpu = {v: median(cpu[v]) for v in variants}

    ref = "peft_lora"
    pairs = {  # ratio name -> (numerator variant, denominator variant)
        "noisy_decay_vs_peft_lora": ("decay_noisy", ref),
        "cooldown_vs_peft_lora": ("decay_cooldown", ref),
        "naive_vs_peft_lora": ("naive_noisy_decay", ref),
        "warmup_vs_peft_lora": ("decay_warmup", ref),
        "full_finetune_vs_peft_lora": ("full_finetune", ref),
        "noisy_decay_vs_naive": ("decay_noisy", "naive_noisy_decay"),
    }
    # Primary: ratio of wall-clock medians. Also: median of per-round paired ratios, and the
    # same two on process CPU time (steadier on a shared machine, see common.interleave).
    ratios: dict[str, float | None] = {k: med[a] / med[b] for k, (a, b) in pairs.items()}
    paired = {k: paired_ratio(times[a], times[b]) for k, (a, b) in pairs.items()}
    cpu_ratios = {k: med_cpu[a] / med_cpu[b] for k, (a, b) in pairs.items()}
    cpu_paired = {k: paired_ratio(cpu[a], cpu[b]) for k, (a, b) in pairs.items()}
    if ref in memory and "decay_noisy" in memory:
        ratios["peak_mem_noisy_decay_vs_peft_lora"] = (
            memory["decay_noisy"]["train_increment_kib"] / memory[ref]["train_increment_kib"])
        ratios["peak_rss_noisy_decay_vs_peft_lora"] = (
            memory["decay_noisy"]["peak_rss_kib"] / memory[ref]["peak_rss_kib"])
    else:
        ratios["peak_mem_noisy_decay_vs_peft_lora"] = None
    targets = {
        "noisy_decay_vs_peft_lora <= 1.10": ratios["noisy_decay_vs_peft_lora"] <= 1.10,
        "cooldown_vs_peft_lora <= 0.70": ratios["cooldown_vs_peft_lora"] <= 0.70,
    }
    if ratios["peak_mem_noisy_decay_vs_peft_lora"] is not None:
        targets["peak_mem_noisy_decay_vs_peft_lora <= 1.10"] = (
            ratios["peak_mem_noisy_decay_vs_peft_lora"] <= 1.10)

    result = {
        "benchmark": "train_step",
        "command": " ".join(["python", "-m", "benchmarks.train_step", *sys.argv[1:]]),
        "setup": {"model": "minilm (all-MiniLM-L6-v2, 6 x 384, 2 labels)", "batch": args.batch,
                  "seq": SEQ, "rank": RANK, "alpha": RANK, "noisy_d": NOISY_D,
                  "targets": default_text_targets(models["full_finetune"]),
                  "optimizer": f"AdamW lr={LR}", "warmup_rounds": args.warmup,
                  "measured_rounds": args.steps, "mem_steps": args.mem_steps,
                  "quick": args.quick},
        "machine": info,
        "variants": {v: {"description": DESCRIPTIONS[v],
                         "trainable_params": trainable_count(models[v]),
                         "median_s": med[v], "min_s": min(times[v]), "times_s": times[v],
                         "cpu_median_s": med_cpu[v], "cpu_times_s": cpu[v],
                         **({"memory": memory[v]} if v in memory else {})}
                     for v in variants},
        "ratios": ratios,
        "paired_ratios": paired,
        "cpu_time_ratios": cpu_ratios,
        "cpu_time_paired_ratios": cpu_paired,
        "targets_met": targets,
    }
    path = write_json("train_step", result, args.out)
    partial.unlink(missing_ok=True)
    print()
    print(report(result))
    print(f"\nwrote {path}")
    return result


def report(result: dict[str, Any]) -> str:
    rows = []
    ref = result["variants"]["peft_lora"]
    for v, d in result["variants"].items():
        mem = d.get("memory")
        rows.append([
            v, f"{d['trainable_params']:,}", f"{1e3 * d['median_s']:.0f}",
            f"{d['median_s'] / ref['median_s']:.2f}", f"{1e3 * d['cpu_median_s']:.0f}",
            f"{d['cpu_median_s'] / ref['cpu_median_s']:.2f}",
            f"{mem['peak_rss_kib'] / 1024:.0f}" if mem else "-",
            f"{mem['train_increment_kib'] / 1024:.0f}" if mem else "-",
            (f"{mem['train_increment_kib'] / ref['memory']['train_increment_kib']:.2f}"
             if mem and "memory" in ref else "-"),
        ])
    head = ["variant", "trainable", "wall ms", "x peft", "cpu ms", "x peft", "peak RSS MiB",
            "train +MiB", "x peft"]
    lines = [table(head, rows), "",
             "ratio                                  wall   wall paired   cpu   cpu paired"]
    for k, v in result["ratios"].items():
        if v is None:
            lines.append(f"{k:36s}  n/a")
        elif k in result["paired_ratios"]:
            lines.append(f"{k:36s} {v:6.3f} {result['paired_ratios'][k]:10.3f} "
                         f"{result['cpu_time_ratios'][k]:8.3f} "
                         f"{result['cpu_time_paired_ratios'][k]:9.3f}")
        else:
            lines.append(f"{k:36s} {v:6.3f}")
    for k, ok in result["targets_met"].items():
        lines.append(f"target {k}: {'MET' if ok else 'NOT MET'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="few steps, < 2 minutes")
    p.add_argument("--steps", type=int, default=None, help="measured rounds (default 20; 2 quick)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up rounds (default 2; 1 quick)")
    p.add_argument("--batch", type=int, default=None,
                   help=f"batch size (default {BATCH}; 8 quick, so it fits in 2 minutes)")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2)")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON path (default benchmarks/out/train_step.json)")
    p.add_argument("--mem-steps", type=int, default=None,
                   help="steps per memory subprocess (default 3; 2 quick)")
    p.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    p.add_argument("--memory-only", metavar="VARIANT", choices=list(VARIANTS),
                   help="internal: print the peak-RSS measurement of one variant as JSON")
    args = p.parse_args(argv)
    args.steps = args.steps or (2 if args.quick else 20)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    args.batch = args.batch or (8 if args.quick else BATCH)
    args.mem_steps = args.mem_steps or (2 if args.quick else 3)
    if args.memory_only:
        print(json.dumps(memory_only(args.memory_only, args.mem_steps, args.threads,
                                     args.batch)))
        return
    run(args)


if __name__ == "__main__":
    main()
