"""Compressed-inference benchmark: the dense model vs ``compress``-ed low-rank models, interleaved.

    python -m benchmarks.inference            # MiniLM ranks 8/16/32/64, VGG11; full rounds
    python -m benchmarks.inference --quick    # rank 16 only, few rounds, < 2 minutes

MiniLM (offline ``minilm``, 2-label classifier): batch 1 and 32, sequence length 64, random
token ids, full attention masks; adapters on query, key, value, attention output, FFN
intermediate and FFN output (36 Linears). VGG11 (width 0.25, 1 x 28 x 28 input): batch 1 and 64;
every conv except the first is a target, minus any layer a rank would not shrink (a rank-r
factorisation of a conv with out x fan_in weights only saves work when
r < out * fan_in / (out + fan_in); those layers stay dense and the JSON lists them).

Compressed models are built the way users get them: ``wrap`` -> (training) -> ``set_decay(0)``
-> ``compress``. The adapters are given random values (speed does not depend on them).
Latency is the median of single forward passes under ``torch.inference_mode()``, ``eval()``.
Writes ``benchmarks/out/inference.json``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

import decaylora as dl
from decaylora.layers import geometry
from decaylora.models import default_text_targets, default_vision_targets, load_text_model, vgg

from .common import (
    count_macs,
    count_params,
    interleave,
    machine_info,
    median,
    paired_ratio,
    setup_threads,
    table,
    write_json,
)

SEQ = 64
TEXT_BATCHES = (1, 32)
VGG_BATCHES = (1, 64)
RANKS = (8, 16, 32, 64)


# ----- multiply-adds ----------------------------------------------------------------------------
def bert_macs_per_sequence(config: Any, seq: int, rank: int | None) -> dict[str, int]:
    """Analytic multiply-adds of one sequence through a BERT-style classifier.

    Per encoder block, per token: the six target Linears cost ``in * out`` each when dense,
    ``r * (in + out)`` each when compressed (``A``: in -> r, ``B``: r -> out):
    ``4 H^2 + 2 H I`` dense (H hidden, I intermediate). Attention scores ``Q K^T`` and context
    ``P V`` cost ``L^2 * H`` each per block (``2 L^2 H``). The pooler (``H^2``) and classifier
    (``H * labels``) run once per sequence, on the first token. Embedding lookups, layer norms,
    softmax, GELU, residual adds: 0 multiply-adds (counted as such, not negligible in time).

        total = layers * (L * target_per_token + 2 L^2 H) + H^2 + H * labels
    """
    h, i, n = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    shapes = [(h, h)] * 4 + [(h, i), (i, h)]
    if rank is None:
        per_token = sum(a * b for a, b in shapes)
    else:
        per_token = sum(rank * (a + b) for a, b in shapes)
    target = n * seq * per_token
    attention = n * 2 * seq * seq * h
    head = h * h + h * config.num_labels
    return {"target": target, "attention": attention, "head": head,
            "total": target + attention + head}


def target_macs(macs: dict[str, int], targets: list[str]) -> int:
    """Sum of hooked MACs of the target modules (a compressed target is ``name.0``/``name.1``)."""
    return sum(v for k, v in macs.items()
               if any(k == t or k.startswith(t + ".") for t in targets))


# ----- models -----------------------------------------------------------------------------------
def _randomize(model: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in dl.decay_layers(model):
            layer.lora_B.weight.copy_(0.02 * torch.randn(layer.lora_B.weight.shape, generator=g))
            if layer.C is not None:
                layer.C.copy_(0.02 * torch.randn(layer.C.shape, generator=g))


def compressed(model: nn.Module, rank: int, targets: list[str]) -> nn.Module:
    dl.wrap(model, dl.DecayConfig(r=rank, target_modules=targets))
    _randomize(model)
    dl.set_decay(model, 0.0, noise=False)
    return dl.compress(model).eval()


def minilm_targets(model: nn.Module) -> list[str]:
    """Full names of the wrapped Linears (what ``find_targets`` resolves the suffixes to)."""
    cfg = dl.DecayConfig(r=8, target_modules=default_text_targets(model))
    return dl.find_targets(model, cfg)


def vgg_targets(model: nn.Module, rank: int) -> tuple[list[str], list[str]]:
    """(targets a rank-``rank`` factorisation shrinks, default targets it would not shrink)."""
    modules = dict(model.named_modules())
    keep, skip = [], []
    for name in default_vision_targets(model):
        g = geometry(modules[name])
        ok = rank <= g.max_rank and g.lowrank_macs(rank) < g.dense_macs()
        (keep if ok else skip).append(name)
    return keep, skip


# ----- benchmark --------------------------------------------------------------------------------
def bench_family(
    name: str,
    models: dict[str, nn.Module],
    inputs: dict[int, Callable[[nn.Module], Any]],
    rounds: dict[int, int],
    macs_fn: Callable[[str, nn.Module, int], dict[str, int]],
    warmup: int,
    compile_models: bool = False,
) -> dict[str, Any]:
    """Interleaved latency of every model at every batch size, plus params and MACs.
    ``compile_models``: time ``torch.compile``-d copies of every model (dense included, so the
    ratio stays like for like); MACs are counted on the eager modules (hooks)."""
    out: dict[str, Any] = {"variants": {}, "ratios": {}, "compiled": compile_models}
    # one compiled wrapper per model; the first (warm-up) call of each batch size compiles
    compiled = {v: torch.compile(m) for v, m in models.items()} if compile_models else {}
    for v, m in models.items():
        out["variants"][v] = {"params": count_params(m), "batches": {}}
    for b, call in inputs.items():
        print(f"{name}: batch {b}, {warmup} warm-up + {rounds[b]} rounds, "
              f"{len(models)} models interleaved", flush=True)

        def timed(m: nn.Module, call=call) -> Callable[[], Any]:
            def f() -> Any:
                with torch.inference_mode():
                    return call(m)
            return f

        runnable = {v: (compiled[v] if compile_models else m) for v, m in models.items()}
        times, cpu = interleave({v: timed(m) for v, m in runnable.items()}, rounds=rounds[b],
                                warmup=warmup, progress=False)
        for v, m in models.items():
            macs = macs_fn(v, m, b)
            out["variants"][v]["batches"][str(b)] = {
                "median_s": median(times[v]), "min_s": min(times[v]), "times_s": times[v],
                "cpu_median_s": median(cpu[v]),
                **{f"macs_{k}": val for k, val in macs.items()},
            }
        dense = out["variants"]["dense"]["batches"][str(b)]
        for v in models:
            if v == "dense":
                continue
            cur = out["variants"][v]["batches"][str(b)]
            out["ratios"].setdefault(v, {})[f"b{b}"] = {
                "latency_ratio_dense_over_compressed": dense["median_s"] / cur["median_s"],
                "paired_latency_ratio_dense_over_compressed":
                    paired_ratio(times["dense"], times[v]),
                "cpu_time_ratio_dense_over_compressed":
                    dense["cpu_median_s"] / cur["cpu_median_s"],
                "macs_ratio_dense_over_compressed": dense["macs_total"] / cur["macs_total"],
                "target_macs_ratio_dense_over_compressed":
                    dense["macs_target"] / cur["macs_target"],
                "params_ratio_dense_over_compressed":
                    out["variants"]["dense"]["params"] / out["variants"][v]["params"],
            }
    return out


def op_breakdown(model: nn.Module, call: Callable[[nn.Module], Any], reps: int = 3,
                 top: int = 12) -> dict[str, float]:
    """Self CPU milliseconds per forward of the ``top`` most expensive aten ops (profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode():
        call(model)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(reps):
                call(model)
    rows = {e.key: e.self_cpu_time_total / 1e3 / reps for e in prof.key_averages()}
    ranked = sorted(rows.items(), key=lambda kv: -kv[1])
    out = dict(ranked[:top])
    out["(all ops)"] = sum(rows.values())
    return out


def run_minilm(ranks: tuple[int, ...], rounds: dict[int, int], warmup: int,
               profile: bool = False, compile_models: bool = False) -> dict[str, Any]:
    print("building MiniLM models ...", flush=True)
    dense, _ = load_text_model("minilm", 2)
    dense.eval()
    targets = minilm_targets(dense)
    models: dict[str, nn.Module] = {"dense": dense}
    for r in ranks:
        m, _ = load_text_model("minilm", 2)
        models[f"r{r}"] = compressed(m.eval(), r, targets)
    cfg = dense.config
    g = torch.Generator().manual_seed(0)
    data = {b: {"input_ids": torch.randint(1000, cfg.vocab_size, (b, SEQ), generator=g),
                "attention_mask": torch.ones(b, SEQ, dtype=torch.long)}
            for b in TEXT_BATCHES}
    inputs = {b: (lambda m, b=b: m(**data[b]).logits) for b in TEXT_BATCHES}

    def macs_fn(v: str, m: nn.Module, b: int) -> dict[str, int]:
        rank = None if v == "dense" else int(v[1:])
        ana = bert_macs_per_sequence(cfg, SEQ, rank)
        hooked = count_macs(m, lambda: m(**data[b]))
        linear = sum(hooked.values())
        # cross-check: the hooks see exactly the analytic Linear work
        expect = b * (ana["target"] + ana["head"])
        if linear != expect:
            raise AssertionError(f"{v} b{b}: hooked Linear MACs {linear} != analytic {expect}")
        return {"target": b * ana["target"], "attention": b * ana["attention"],
                "total": b * ana["total"], "target_hooked": target_macs(hooked, targets)}

    res = bench_family("minilm", models, inputs, rounds, macs_fn, warmup, compile_models)
    res["setup"] = {"seq": SEQ, "batches": list(TEXT_BATCHES), "ranks": list(ranks),
                    "targets": len(targets), "formula": bert_macs_per_sequence.__doc__}
    if profile:
        b = max(TEXT_BATCHES)
        res[f"profile_b{b}_ms_per_forward"] = {v: op_breakdown(m, inputs[b])
                                               for v, m in models.items()}
    return res


def run_vgg(ranks: tuple[int, ...], rounds: dict[int, int], warmup: int,
            compile_models: bool = False) -> dict[str, Any]:
    print("building VGG models ...", flush=True)

    def fresh() -> nn.Module:
        torch.manual_seed(0)
        return vgg("vgg11", width=0.25, in_channels=1, image_size=28).eval()

    dense = fresh()
    all_targets = default_vision_targets(dense)
    models: dict[str, nn.Module] = {"dense": dense}
    skipped: dict[str, list[str]] = {}
    for r in ranks:
        keep, skip = vgg_targets(dense, r)
        if not keep:
            print(f"  vgg r{r}: no layer shrinks at this rank; skipped", flush=True)
            continue
        models[f"r{r}"] = compressed(fresh(), r, keep)
        skipped[f"r{r}"] = skip
    g = torch.Generator().manual_seed(0)
    data = {b: torch.randn(b, 1, 28, 28, generator=g) for b in VGG_BATCHES}
    inputs = {b: (lambda m, b=b: m(data[b])) for b in VGG_BATCHES}

    def macs_fn(v: str, m: nn.Module, b: int) -> dict[str, int]:
        hooked = count_macs(m, lambda: m(data[b]))
        return {"target": target_macs(hooked, all_targets), "total": sum(hooked.values())}

    res = bench_family("vgg", models, inputs, rounds, macs_fn, warmup, compile_models)
    res["setup"] = {"model": "vgg11 width 0.25, 1x28x28", "batches": list(VGG_BATCHES),
                    "ranks": [int(k[1:]) for k in models if k != "dense"],
                    "targets": all_targets, "left_dense": skipped,
                    "macs": "per conv: output positions x out_channels x in/groups x kh x kw "
                            "(forward hooks); Linear: rows x in x out; BN/ReLU/pool: 0"}
    return res


def report(result: dict[str, Any]) -> str:
    lines = []
    for fam in ("minilm", "vgg"):
        res = result[fam]
        rows = []
        dense = res["variants"]["dense"]
        for v, d in res["variants"].items():
            for b, bd in d["batches"].items():
                db = dense["batches"][b]
                rows.append([
                    f"{fam} {v}", b, f"{d['params']:,}", f"{bd['macs_target'] / int(b):,.0f}",
                    f"{bd['macs_total'] / int(b):,.0f}", f"{1e3 * bd['median_s']:.2f}",
                    f"{db['macs_target'] / bd['macs_target']:.1f}",
                    f"{db['macs_total'] / bd['macs_total']:.2f}",
                    f"{db['median_s'] / bd['median_s']:.2f}",
                ])
        lines.append(table(["model", "batch", "params", "target MACs/sample",
                            "total MACs/sample", "median ms", "target MACs x",
                            "total MACs x", "speed-up x"], rows))
        lines.append("")
    prof = {k: v for k, v in result["minilm"].items() if k.startswith("profile_")}
    for key, per_model in prof.items():
        ops = list(dict.fromkeys(op for d in per_model.values() for op in d))
        rows = [[op, *(f"{per_model[v].get(op, 0.0):.1f}" for v in per_model)] for op in ops]
        lines.append(f"minilm {key} (self CPU ms per forward; top ops of each model)")
        lines.append(table(["op", *per_model], rows))
        lines.append("")
    for k, ok in result["targets_met"].items():
        lines.append(f"target {k}: {'MET' if ok else 'NOT MET'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="rank 16 only, few rounds, < 2 min")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2)")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON path (default benchmarks/out/inference.json)")
    p.add_argument("--rounds", type=int, default=None,
                   help="measured rounds at the large batch (default 20; 4 quick); batch 1 "
                        "gets 3x as many")
    p.add_argument("--ranks", type=str, default=None, help="comma-separated (default 8,16,32,64)")
    p.add_argument("--profile", action="store_true",
                   help="also record a per-op time breakdown of every MiniLM model at batch 32")
    p.add_argument("--compile", action="store_true",
                   help="time torch.compile-d models (dense and compressed alike); the first "
                        "warm-up call compiles (minutes on 2 cores); default JSON "
                        "benchmarks/out/inference_compiled.json")
    args = p.parse_args(argv)
    ranks = tuple(int(r) for r in args.ranks.split(",")) if args.ranks else (
        (16,) if args.quick else RANKS)
    n = args.rounds or (4 if args.quick else 20)
    warmup = 1 if args.quick else 2
    setup_threads(args.threads)
    info = machine_info(args.threads)
    minilm = run_minilm(ranks, {1: 3 * n, 32: n}, warmup, args.profile, args.compile)
    vgg_res = run_vgg(ranks, {1: 3 * n, 64: n}, warmup, args.compile)
    result: dict[str, Any] = {
        "benchmark": "inference",
        "command": " ".join(["python", "-m", "benchmarks.inference", *sys.argv[1:]]),
        "machine": info,
        "compiled": args.compile,
        "minilm": minilm,
        "vgg": vgg_res,
        "ratios": {"minilm": minilm["ratios"], "vgg": vgg_res["ratios"]},
    }
    targets = {}
    if "r16" in minilm["ratios"]:
        r16 = minilm["ratios"]["r16"]
        targets["minilm r16 target-layer MACs >= 10x fewer"] = (
            r16["b32"]["target_macs_ratio_dense_over_compressed"] >= 10)
        targets["minilm r16 batch-32 latency >= 3x faster"] = (
            r16["b32"]["latency_ratio_dense_over_compressed"] >= 3)
    result["targets_met"] = targets
    path = write_json("inference_compiled" if args.compile else "inference", result, args.out)
    print()
    print(report(result))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
