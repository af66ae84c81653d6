"""Diagnostic: the cost of single ops of a MiniLM training step at 1 vs N intra-op threads,
interleaved (the thread count is switched between calls), to show how much a busy machine
charges for every parallel op.

    python -m benchmarks.threads [--quick] [--threads N]

Ops (shapes of one MiniLM layer at batch 32 x 64 tokens): the frozen FFN GEMM
(2048 x 384 -> 1536), the adapter's up-projection (2048 x 16 -> 1536), an elementwise multiply
and a GELU over 2048 x 1536, a LayerNorm over 2048 x 384, and drawing 384 x 1536 standard
normals. Writes ``benchmarks/out/threads.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from .common import machine_info, median, table, write_json


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=2, help="compared with 1 thread (default 2)")
    p.add_argument("--rounds", type=int, default=None, help="default 40 (quick 10)")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON path (default benchmarks/out/threads.json)")
    args = p.parse_args(argv)
    rounds = args.rounds or (10 if args.quick else 40)
    import time

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2048, 384, generator=g)
    w = torch.randn(1536, 384, generator=g)
    h = torch.randn(2048, 16, generator=g)
    b = torch.randn(1536, 16, generator=g)
    big = torch.randn(2048, 1536, generator=g)
    ln_w, ln_b = torch.ones(384), torch.zeros(384)
    gen = torch.Generator()
    ops = {
        "gemm 2048x384 @ 384x1536": lambda: F.linear(x, w),
        "gemm 2048x16 @ 16x1536 (adapter B)": lambda: F.linear(h, b),
        "mul 2048x1536": lambda: big * 1.5,
        "gelu 2048x1536": lambda: F.gelu(big),
        "layer_norm 2048x384": lambda: F.layer_norm(x, (384,), ln_w, ln_b),
        "randn 1536x384": lambda: torch.randn(1536, 384, generator=gen),
    }
    counts = [1, args.threads]
    times: dict[str, dict[int, list[float]]] = {k: {n: [] for n in counts} for k in ops}
    for i in range(rounds + 2):
        for k, f in ops.items():
            for n in (counts if i % 2 == 0 else counts[::-1]):
                torch.set_num_threads(n)
                t0 = time.perf_counter()
                f()
                dt = time.perf_counter() - t0
                if i >= 2:
                    times[k][n].append(dt)
    info = machine_info(args.threads)
    med = {k: {str(n): median(v) for n, v in d.items()} for k, d in times.items()}
    result = {
        "benchmark": "threads",
        "command": " ".join(["python", "-m", "benchmarks.threads", *sys.argv[1:]]),
        "machine": info, "rounds": rounds, "median_s": med,
        "ratios": {k: med[k][str(args.threads)] / med[k]["1"] for k in ops},
    }
    path = write_json("threads", result, args.out)
    n = str(args.threads)
    rows = [[k, f"{1e3 * med[k]['1']:.2f}", f"{1e3 * med[k][n]:.2f}",
             f"{med[k][n] / med[k]['1']:.2f}"] for k in ops]
    print(table(["op", "1 thread ms", f"{n} threads ms", f"{n} / 1"], rows))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
