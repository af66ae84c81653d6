"""Shared helpers: interleaved timing, peak RSS, multiply-add counting, JSON output, tables.

The machine these benchmarks run on is shared with other jobs, so absolute times drift by tens
of percent within minutes. Every benchmark therefore builds one model per variant up front and
*interleaves* them — ``for round: for variant: time one call`` — so that every variant sees the
same background load, and reports ratios of medians measured side by side (plus the median of
the per-round paired ratios, which cancels slow drifts even better).
"""

from __future__ import annotations

import datetime as _dt
import gc
import json
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

OUT_DIR = Path(__file__).resolve().parent / "out"


# ----- environment --------------------------------------------------------------------------
def setup_threads(n: int) -> None:
    """Fix the intra-op thread count (and inter-op to 1) so every run uses the same cores."""
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set once parallel work started; harmless
        pass


def machine_info(threads: int) -> dict[str, Any]:
    import transformers

    info = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "processor": _cpu_model(),
        "loadavg_start": list(os.getloadavg()),
        # settings that change CPU timings (OpenMP waiting policy, glibc malloc thresholds)
        "env": {k: v for k, v in sorted(os.environ.items())
                if k.startswith(("OMP_", "GOMP_", "KMP_", "MKL_", "MALLOC_"))},
    }
    try:
        import peft

        info["peft"] = peft.__version__
    except ImportError:  # pragma: no cover - peft is only needed by the training benchmark
        pass
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# ----- timing -------------------------------------------------------------------------------
def interleave(
    fns: dict[str, Callable[[], Any]], rounds: int, warmup: int = 1,
    progress: bool = True,
    on_round: Callable[[dict[str, list[float]], dict[str, list[float]]], None] | None = None,
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Time every callable once per round, all variants in the same round, for ``warmup``
    discarded rounds then ``rounds`` measured ones. The order inside a round is rotated each
    round so no variant always runs right after the same neighbour.

    Returns ``(wall, cpu)``: seconds per call by ``time.perf_counter`` (the latency a user sees)
    and by ``time.process_time`` (CPU seconds of this process, all its threads). On a machine
    shared with other jobs the wall time includes the time this process waited for a core;
    the CPU time does not, so with one thread it is the steadier measure of the work done
    (with several threads it also counts OpenMP spin-waiting). ``on_round(wall, cpu)`` is
    called after every measured round (e.g. to save partial results of a long run)."""
    names = list(fns)
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for i in range(warmup + rounds):
        k = i % len(names)
        order = names[k:] + names[:k]
        for name in order:
            c0 = time.process_time()
            t0 = time.perf_counter()
            fns[name]()
            dt = time.perf_counter() - t0
            dc = time.process_time() - c0
            if i >= warmup:
                wall[name].append(dt)
                cpu[name].append(dc)
        if progress:
            if i < warmup:
                print(f"  [warm-up {i + 1}/{warmup}]", flush=True)
            else:
                last = ", ".join(f"{n} {1e3 * wall[n][-1]:.0f}" for n in names)
                print(f"  [round {i - warmup + 1}/{rounds}] wall ms: {last}", flush=True)
        if on_round is not None and i >= warmup:
            on_round(wall, cpu)
    return wall, cpu


def median(xs: Iterable[float]) -> float:
    return float(statistics.median(list(xs)))


def paired_ratio(num: list[float], den: list[float]) -> float:
    """Median over rounds of ``num[i] / den[i]`` (both timed in the same round)."""
    return median(a / b for a, b in zip(num, den, strict=True))


# ----- memory -------------------------------------------------------------------------------
def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{key} not found in /proc/self/status")


def current_rss_kib() -> int:
    """Resident set size now (VmRSS), KiB."""
    return _status_kib("VmRSS")


def peak_rss_kib() -> int:
    """Peak resident set size of this process's memory map (VmHWM), KiB.

    Not ``ru_maxrss``: for ``RUSAGE_SELF`` Linux reports ``max(signal->maxrss, VmHWM)``, and
    ``signal->maxrss`` is set at ``exec`` from the *forked* memory map, i.e. from the parent's
    peak. A subprocess started by a benchmark that already holds six models therefore reports
    the parent's peak (seen: 2,334,880 KiB in every child). VmHWM has no such inheritance."""
    return _status_kib("VmHWM")


def ru_maxrss_kib() -> int:
    """``getrusage(RUSAGE_SELF).ru_maxrss`` (KiB), recorded for reference; see peak_rss_kib."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) to the current RSS (``echo 5 >
    /proc/self/clear_refs``). Returns False if that is not possible."""
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# ----- multiply-adds ------------------------------------------------------------------------
def layer_macs(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    """Multiply-adds of one call of a Linear (rows x in x out) or Conv2d
    (output positions x out_channels x in/groups x kh x kw); 0 for anything else."""
    if isinstance(module, nn.Linear):
        rows = inp.numel() // module.in_features
        return rows * module.in_features * module.out_features
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        fan_in = module.in_channels // module.groups * kh * kw
        return out.numel() * fan_in
    return 0


def count_macs(model: nn.Module, run: Callable[[], Any]) -> dict[str, int]:
    """Multiply-adds of every Linear / Conv2d call during ``run()``, by qualified module name
    (forward hooks; elementwise ops, norms, pooling and embedding lookups count 0)."""
    macs: dict[str, int] = {}
    handles = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            def hook(mod, args, out, name=name):
                macs[name] = macs.get(name, 0) + layer_macs(mod, args[0], out)
            handles.append(m.register_forward_hook(hook))
    try:
        with torch.inference_mode():
            run()
    finally:
        for h in handles:
            h.remove()
    return macs


def count_params(model: nn.Module) -> int:
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


# ----- output -------------------------------------------------------------------------------
def write_json(name: str, data: dict[str, Any], path: str | Path | None = None) -> Path:
    """Write ``data`` to ``path`` (default ``benchmarks/out/NAME.json``)."""
    data.setdefault("machine", {})["loadavg_end"] = list(os.getloadavg())
    path = Path(path) if path is not None else OUT_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def table(head: list[str], rows: list[list[Any]]) -> str:
    """Fixed-width text table; the first column is left-aligned, the others right-aligned."""
    cells = [[str(c) for c in head]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]

    def fmt(r: list[str]) -> str:
        return "  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i])
                         for i, c in enumerate(r))

    return "\n".join([fmt(cells[0]), "  ".join("-" * w for w in widths),
                      *[fmt(r) for r in cells[1:]]])
