"""Figures for a decay run: schedule, noise moments, bias C, training curves, comparisons.

The notes single out three figures as important (METHOD.md, "Schedules"):

* **Scheduling** (:func:`plot_schedule`): ``d(p)`` and the noise mean / std factors, with the
  stages (warm-up, compensate, clear, cool-down) shaded.
* **Noise** (:func:`plot_noise`): the measured mean and std of the effective weight ``d W + N``
  against the original's, showing where the moment matching holds and where it breaks.
* **Bias** (:func:`plot_bias`): how the new bias ``C`` and the adapter ``s B A`` grow while the
  frozen path fades out.

:func:`plot_snr` draws the signal-to-noise of ``d W + N`` (when the noise was on),
:func:`plot_curves` draws losses and accuracies (live model and exported, W-free model),
:func:`plot_run` draws all figures of a run directory, :func:`plot_compare` overlays methods.

Every function writes a PNG and returns its path; figures are closed after saving. The Agg
backend is selected here, so plotting works on headless machines.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from .schedules import DecaySchedule  # noqa: E402

__all__ = [
    "STAGE_COLORS",
    "group_colors",
    "plot_accuracy_params",
    "plot_bias",
    "plot_compare",
    "plot_curves",
    "plot_noise",
    "plot_run",
    "plot_schedule",
    "plot_snr",
    "read_metrics",
    "schedule_stages",
]

Record = Mapping[str, Any]

DPI = 120

#: Background shading of the schedule stages (same colours in every figure).
STAGE_COLORS: dict[str, str] = {
    "warm-up": "#e6e6e6",
    "compensate": "#fde2c4",
    "decay": "#d6e6f5",
    "clear": "#d5efd0",
    "cool-down": "#e4def2",
    "cool-down (noise kept)": "#f6cfd3",
}

#: Line colours.
C_D = "#1f3b73"  # decay factor d
C_MEAN = "#d9731a"  # noise mean / effective mean
C_STD = "#2a9d5c"  # noise std / effective std
C_ORIG = "#555555"  # original weight reference
C_TRAIN = "#4c72b0"
C_VAL = "#c44e52"
C_EXPORT = "#8172b2"
C_MAJ = "#777777"

_STYLE: dict[str, Any] = {
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "axes.edgecolor": "#444444",
    "axes.grid": True,
    "grid.color": "#d0d0d0",
    "grid.linewidth": 0.6,
    "grid.alpha": 0.7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 8.5,
    "legend.framealpha": 0.9,
    "legend.edgecolor": "#cccccc",
    "lines.linewidth": 1.8,
    "font.size": 10,
}


# --------------------------------------------------------------------------------------------
# stages
# --------------------------------------------------------------------------------------------


def _stage_at(d: float, noise_on: bool, noise_seen: bool) -> str:
    """Stage name for one point, given whether the noise has been on at some earlier point."""
    if d >= 1.0:
        return "warm-up"
    if d <= 0.0:
        return "cool-down (noise kept)" if noise_on else "cool-down"
    if noise_on:
        return "compensate"
    return "clear" if noise_seen else "decay"


def _schedule_stage(schedule: DecaySchedule, p: float, noise_seen: bool) -> str:
    return _stage_at(schedule.decay(p), schedule.noise_on(p), noise_seen)


def schedule_stages(schedule: DecaySchedule, n: int = 1001) -> list[tuple[str, float, float]]:
    """Contiguous stages of ``schedule`` over progress p in [0, 1] as ``(name, p_from, p_to)``.

    Names: ``"warm-up"`` (d = 1), ``"compensate"`` (decaying, noise on), ``"decay"`` (decaying,
    noise off and never on before), ``"clear"`` (decaying, noise off after having been on),
    ``"cool-down"`` (d = 0) or ``"cool-down (noise kept)"`` (d = 0 with the noise still on,
    e.g. preset A). The schedule is sampled on ``n`` evenly spaced points; each boundary is
    then refined by bisection, so it is exact up to float precision (stages shorter than the
    grid step may be missed). Stages are half-open ``[p_from, p_to)``; the last ends at 1.
    """
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    grid = np.linspace(0.0, 1.0, n)
    names: list[str] = []
    seen: list[bool] = []  # noise seen strictly before each grid point
    noise_seen = False
    for p in grid:
        seen.append(noise_seen)
        names.append(_schedule_stage(schedule, float(p), noise_seen))
        noise_seen = noise_seen or schedule.noise_on(float(p))

    stages: list[tuple[str, float, float]] = []
    cur, cur_from = names[0], 0.0
    for i in range(1, n):
        if names[i] == cur:
            continue
        # transition in (grid[i-1], grid[i]]: bisect for the first p with the new stage
        lo, hi = float(grid[i - 1]), float(grid[i])
        seen_lo = seen[i - 1] or schedule.noise_on(lo)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if mid <= lo or mid >= hi:
                break
            if _schedule_stage(schedule, mid, seen_lo) == cur:
                lo = mid
            else:
                hi = mid
        stages.append((cur, cur_from, hi))
        cur, cur_from = names[i], hi
    stages.append((cur, cur_from, 1.0))
    return stages


def _record_stages(records: Sequence[Record]) -> list[tuple[str, float, float]]:
    """Stages reconstructed from logged ``d`` / ``noise_on``; empty if d stays at 1."""
    pts = [
        (float(r["progress"]), float(r["d"]), bool(r.get("noise_on", False)))
        for r in records
        if _num(r.get("progress")) is not None and _num(r.get("d")) is not None
    ]
    if not pts:
        return []
    pts.sort(key=lambda t: t[0])
    stages: list[tuple[str, float, float]] = []
    noise_seen = False
    cur: str | None = None
    cur_from = 0.0
    for p, d, on in pts:
        name = _stage_at(d, on, noise_seen)
        noise_seen = noise_seen or on
        if cur is None:
            cur, cur_from = name, 0.0
        elif name != cur:
            stages.append((cur, cur_from, p))
            cur, cur_from = name, p
    assert cur is not None
    stages.append((cur, cur_from, max(1.0, pts[-1][0])))
    if all(name == "warm-up" for name, _, _ in stages):
        return []  # the frozen path never decays (e.g. plain LoRA): nothing worth shading
    return stages


def _shade_stages(
    ax: Axes,
    stages: Sequence[tuple[str, float, float]],
    *,
    scale: float = 1.0,
    label: bool = False,
) -> None:
    """Shade stage spans (x in progress units, multiplied by ``scale`` for step axes)."""
    for name, a, b in stages:
        ax.axvspan(a * scale, b * scale, color=STAGE_COLORS.get(name, "#eeeeee"), lw=0, zorder=0)
        if label and (b - a) >= 0.07:
            ax.text(
                0.5 * (a + b) * scale,
                0.985,
                name.replace(" (", "\n("),
                transform=ax.get_xaxis_transform(),
                ha="center",
                va="top",
                fontsize=8,
                color="#333333",
                zorder=5,
            )


def _stage_legend(fig: Figure, stages: Sequence[tuple[str, float, float]]) -> None:
    """Figure-level legend of the stage colours, below the axes."""
    names: list[str] = []
    for name, _, _ in stages:
        if name not in names:
            names.append(name)
    if not names:
        return
    handles = [Patch(facecolor=STAGE_COLORS.get(n, "#eeeeee"), edgecolor="#999999") for n in names]
    fig.legend(
        handles,
        names,
        loc="lower center",
        ncol=len(names),
        frameon=False,
        fontsize=8.5,
        title="stage",
        title_fontsize=8.5,
        bbox_to_anchor=(0.5, 0.0),
    )


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _num(v: Any) -> float | None:
    """``v`` as a finite float, or None (missing, null, bool, NaN, non-numeric)."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _series(records: Iterable[Record], x: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    xs: list[float] = []
    ys: list[float] = []
    for r in records:
        xv, yv = _num(r.get(x)), _num(r.get(y))
        if xv is not None and yv is not None:
            xs.append(xv)
            ys.append(yv)
    order = np.argsort(xs, kind="stable")
    return np.asarray(xs, float)[order], np.asarray(ys, float)[order]


def _kind(records: Iterable[Record], kind: str) -> list[Record]:
    return [r for r in records if isinstance(r, Mapping) and r.get("kind") == kind]


def _smooth(y: np.ndarray, frac: float = 0.04) -> np.ndarray:
    """Trailing moving average (window ~ ``frac`` of the points) for noisy training losses."""
    n = len(y)
    w = max(1, int(n * frac))
    if w <= 1:
        return y
    c = np.cumsum(np.insert(y, 0, 0.0))
    out = np.empty(n)
    for i in range(n):
        lo = max(0, i - w + 1)
        out[i] = (c[i + 1] - c[lo]) / (i + 1 - lo)
    return out


def _empty_panel(ax: Axes, message: str) -> None:
    ax.text(
        0.5,
        0.5,
        message,
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=10,
        color="#666666",
        style="italic",
        bbox={"boxstyle": "round,pad=0.6", "facecolor": "#f5f5f5", "edgecolor": "#cccccc"},
    )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def _save(fig: Figure, path: str | Path, *, bottom: float | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.tight_layout(rect=(0.0, bottom or 0.0, 1.0, 1.0))
        fig.savefig(path, dpi=DPI, facecolor="white")
    finally:
        plt.close(fig)
    return path


#: tab10 reordered so that the first colours contrast with the (orange) compensate shading.
_PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf",
            "#7f7f7f", "#bcbd22", "#ff7f0e"]


def group_colors(names: Iterable[str]) -> dict[str, Any]:
    """One palette colour per name, in order (the palette repeats after its last colour)."""
    return {name: _PALETTE[i % len(_PALETTE)] for i, name in enumerate(names)}


def _ordered_keys(dicts: Iterable[Any]) -> list[str]:
    keys: list[str] = []
    for d in dicts:
        if isinstance(d, Mapping):
            for k in d:
                if k not in keys:
                    keys.append(str(k))
    return keys


def _label_points(
    fig: Figure,
    ax: Axes,
    pts: Sequence[tuple[str, float, float, float | None]],
    colors: Mapping[str, Any],
    hlines: Sequence[float] = (),
) -> None:
    """Annotate scatter points (name, x, y, yerr) with their names, greedily choosing for each
    label the first nearby position that overlaps no marker, error bar, horizontal reference
    line, legend or earlier label (checked in display space: call after the final layout)."""
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    taken: list[Bbox] = []
    for _, x, y, err in pts:
        cx, cy = ax.transData.transform((x, y))
        taken.append(Bbox.from_extents(cx - 8, cy - 8, cx + 8, cy + 8))
        if err:
            _, top = ax.transData.transform((x, y + err))
            _, bot = ax.transData.transform((x, y - err))
            taken.append(Bbox.from_extents(cx - 6, bot, cx + 6, top))
    for yline in hlines:
        _, cy = ax.transData.transform((1.0, yline))
        taken.append(Bbox.from_extents(frame.x0, cy - 2, frame.x1, cy + 2))
    legend = ax.get_legend()
    if legend is not None:
        taken.append(legend.get_window_extent(renderer))
    cands = [
        (10, 0, "left", "center"), (-10, 0, "right", "center"), (0, 10, "center", "bottom"),
        (0, -11, "center", "top"), (9, 9, "left", "bottom"), (9, -9, "left", "top"),
        (-9, 9, "right", "bottom"), (-9, -9, "right", "top"),
    ]
    cands = cands + [(2.2 * dx, 2.2 * dy, ha, va) for dx, dy, ha, va in cands]
    for name, x, y, _ in sorted(pts, key=lambda t: (t[1], -t[2])):
        chosen = None
        for dx, dy, ha, va in cands:
            ann = ax.annotate(name, (x, y), xytext=(dx, dy), textcoords="offset points",
                              ha=ha, va=va, fontsize=8.5, color=colors.get(name, "#333333"))
            box = ann.get_window_extent(renderer).expanded(1.04, 1.1)
            inside = (box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0
                      and box.y1 <= frame.y1)
            if inside and not any(box.overlaps(t) for t in taken):
                chosen = (ann, box)
                break
            ann.remove()
        if chosen is None:  # crowded: fall back to the right of the point
            ann = ax.annotate(name, (x, y), xytext=(10, 0), textcoords="offset points",
                              ha="left", va="center", fontsize=8.5,
                              color=colors.get(name, "#333333"))
            chosen = (ann, ann.get_window_extent(renderer))
        chosen[0].set_in_layout(False)
        taken.append(chosen[1])


def _fmt_params(x: float, _pos: Any = None) -> str:
    if x >= 1e9:
        return f"{x / 1e9:.3g}B"
    if x >= 1e6:
        return f"{x / 1e6:.3g}M"
    if x >= 1e3:
        return f"{x / 1e3:.3g}k"
    return f"{x:.0f}"


# --------------------------------------------------------------------------------------------
# Scheduling figure
# --------------------------------------------------------------------------------------------


def plot_schedule(
    schedule: DecaySchedule,
    path: str | Path,
    *,
    noise_scale: float = 1.0,
    records: list[dict] | None = None,
) -> Path:
    """Decay factor ``d(p)`` and the noise moments over progress, stages shaded.

    Top: ``d(p)`` (with the logged ``d`` of ``records`` as dots, if given). Bottom: the noise
    mean factor ``1 - d`` (units of the weight mean m) and std factor
    ``noise_scale * sqrt(1 - d^2)`` (units of sigma), both zero while the noise is off, and the
    std of the effective weight ``d W + N`` in units of sigma (1 = moments matched).
    """
    p = np.linspace(0.0, 1.0, 1001)
    d = np.array([schedule.decay(x) for x in p])
    on = np.array([schedule.noise_on(x) for x in p])
    mean_f = np.where(on, 1.0 - d, 0.0)
    std_f = np.where(on, noise_scale * np.sqrt(np.clip(1.0 - d * d, 0.0, None)), 0.0)
    eff_std = np.sqrt(d * d + std_f * std_f)
    stages = schedule_stages(schedule)

    with plt.rc_context(_STYLE):
        fig, (ax1, ax2) = plt.subplots(
            2, 1, figsize=(8.0, 6.4), sharex=True, gridspec_kw={"height_ratios": [1, 1.15]}
        )
        _shade_stages(ax1, stages, label=True)
        _shade_stages(ax2, stages)

        ax1.plot(p, d, color=C_D, label="d(p) (schedule)")
        if records:
            rp, rd = _series(records, "progress", "d")
            if len(rp):
                n_logged = len(rp)
                if len(rp) > 60:  # thin out so that the curve stays visible under the dots
                    keep = np.unique(np.linspace(0, len(rp) - 1, 60).round().astype(int))
                    rp, rd = rp[keep], rd[keep]
                ax1.plot(
                    rp, rd, "o", ms=5, color="#e07b39", mec="white", mew=0.6, alpha=0.95,
                    label=f"logged d ({n_logged} records)", zorder=4,
                )
        ax1.set_ylim(-0.05, 1.22)
        ax1.set_ylabel("decay factor d")
        noise_txt = (
            "no noise"
            if not schedule.noise
            else "noise never cleared"
            if schedule.clear_below is None
            else f"noise cleared when d < {schedule.clear_below:g}"
        )
        ax1.set_title(
            f"Decay schedule: {schedule.shape}, decay on [{schedule.start:g}, {schedule.end:g}]"
            f", {noise_txt}"
        )
        ax1.legend(loc="center left", bbox_to_anchor=(0.0, 0.4))

        ax2.plot(p, mean_f, color=C_MEAN, label="noise mean  (1 - d) · m")
        ax2.plot(
            p, std_f, color=C_STD,
            label=f"noise std  {noise_scale:g}·sqrt(1 - d²) · σ" if noise_scale != 1.0
            else "noise std  sqrt(1 - d²) · σ",
        )
        ax2.plot(
            p, eff_std, color="#333333", ls="--", lw=1.3,
            label="std of d·W + N  (units of σ; 1 = matched)",
        )
        ax2.axhline(1.0, color="#999999", lw=0.8, ls=":")
        top = max(1.0, float(np.max(std_f)), float(np.max(eff_std)))
        ax2.set_ylim(-0.05, top * 1.3 + 0.05)
        ax2.set_xlim(0.0, 1.0)
        ax2.set_xlabel("training progress p = step / total steps")
        ax2.set_ylabel("factor (× m for means, × σ for stds)")
        ax2.set_title("Compensating noise N ~ Normal(mean, std²)")
        ax2.legend(loc="upper left", ncol=2 if top * 1.3 < 1.4 else 1)

        _stage_legend(fig, stages)
        return _save(fig, path, bottom=0.08)


# --------------------------------------------------------------------------------------------
# Noise figure
# --------------------------------------------------------------------------------------------


def _weight_stats(record: Record) -> list[Mapping[str, Any]]:
    """``weight_stats`` of a record as a list (accepts one dict, a list of dicts, or None)."""
    ws = record.get("weight_stats")
    if isinstance(ws, Mapping):
        return [ws]
    if isinstance(ws, (list, tuple)):
        return [w for w in ws if isinstance(w, Mapping)]
    return []


def plot_noise(records: list[dict], path: str | Path) -> Path:
    """Measured mean and std of the effective weight ``d W + N`` vs the original weight's.

    Uses eval records' ``weight_stats`` (``layer``, ``orig_mean``, ``orig_std``, ``eff_mean``,
    ``eff_std``, ``d``); records without them are skipped. During the compensate stage the
    effective moments should sit on the original's (horizontal lines); in the clear stage the
    noise is gone and the std falls to ``d · sigma`` (dotted).
    """
    evals = [r for r in _kind(records, "eval") if _weight_stats(r)]
    evals.sort(key=lambda r: _num(r.get("progress")) or 0.0)
    stages = _record_stages([r for r in records if isinstance(r, Mapping)])

    with plt.rc_context(_STYLE):
        if not evals:
            fig, ax = plt.subplots(figsize=(8.0, 3.2))
            ax.set_title("Effective weight d·W + N vs original weight")
            _empty_panel(ax, "no noise statistics logged\n(no eval record has weight_stats)")
            return _save(fig, path)

        layers = _ordered_keys([{str(w.get("layer", "layer")): 1} for r in evals
                                for w in _weight_stats(r)])
        single = len(layers) == 1
        colors = group_colors(layers)
        fig, (ax_m, ax_s) = plt.subplots(
            2, 1, figsize=(8.0 if single else 10.0, 6.6), sharex=True
        )
        _shade_stages(ax_m, stages, label=True)
        _shade_stages(ax_s, stages)

        for layer in layers:
            rows: list[tuple[float, Mapping[str, Any], float]] = []
            for r in evals:
                p = _num(r.get("progress"))
                if p is None:
                    continue
                for w in _weight_stats(r):
                    if str(w.get("layer", "layer")) == layer:
                        d = _num(w.get("d"))
                        rows.append((p, w, d if d is not None else (_num(r.get("d")) or 0.0)))
            if not rows:
                continue
            ps = np.array([x[0] for x in rows])
            ds = np.array([x[2] for x in rows])

            def col_of(key: str, rows: list = rows) -> np.ndarray:
                vals = (_num(x[1].get(key)) for x in rows)
                return np.array([np.nan if v is None else v for v in vals])

            for ax, eff_key, orig_key, what, theme in (
                (ax_m, "eff_mean", "orig_mean", "mean", C_MEAN),
                (ax_s, "eff_std", "orig_std", "std", C_STD),
            ):
                col = theme if single else colors[layer]
                ref_col = C_ORIG if single else col
                eff, orig = col_of(eff_key), col_of(orig_key)
                ax.plot(ps, eff, "o-", color=col, ms=4, lw=1.5, label=f"d·W + N {what}")
                ref = float(np.nanmedian(orig)) if np.any(np.isfinite(orig)) else np.nan
                if np.isfinite(ref):
                    ax.axhline(ref, color=ref_col, ls="--", lw=1.2, alpha=0.85,
                               label=f"original W {what}")
                if what == "std" and np.any(np.isfinite(orig)):
                    ax.plot(ps, ds * orig, ":", color=ref_col, lw=1.4, alpha=0.9,
                            label="d · σ (W alone, no noise)")

        layer_txt = f" — {layers[0]}" if len(layers) == 1 else f" — {len(layers)} layers"
        ax_m.set_title(f"Effective weight mean{layer_txt}")
        ax_m.set_ylabel("weight mean")
        ax_s.set_title("Effective weight std: matched while the noise compensates")
        ax_s.set_ylabel("weight std")
        ax_s.set_xlabel("training progress p")
        ax_s.set_xlim(0.0, 1.0)
        ax_s.set_ylim(bottom=0.0)
        lo, hi = ax_m.get_ylim()
        ax_m.set_ylim(lo, hi + 0.25 * (hi - lo))  # headroom for the stage labels
        if single:
            ax_m.legend(loc="best", fontsize=8)
            ax_s.legend(loc="best", fontsize=8)
        else:  # colour = layer (legend outside), line style = quantity
            ax_m.legend(
                [Patch(facecolor=colors[x], edgecolor="none") for x in layers], layers,
                loc="upper left", bbox_to_anchor=(1.01, 1.0), title="layer", title_fontsize=8.5,
                fontsize=8,
            )
            style = [
                Line2D([], [], color="#444444", marker="o", ms=4, label="d·W + N (measured)"),
                Line2D([], [], color="#444444", ls="--", label="original W"),
                Line2D([], [], color="#444444", ls=":", label="d · σ (W alone, no noise)"),
            ]
            ax_s.legend(handles=style, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
        _stage_legend(fig, stages)
        return _save(fig, path, bottom=0.08 if stages else 0.0)


# --------------------------------------------------------------------------------------------
# Bias figure
# --------------------------------------------------------------------------------------------


def plot_bias(records: list[dict], path: str | Path) -> Path:
    """Evolution of the new bias C (mean L2 norm per layer group) and of the adapter ``s·B·A``.

    Two panels over progress, one line per layer group (e.g. ``query``,
    ``intermediate.dense``), same colour per group in both panels, stages shaded.
    """
    evals = sorted(_kind(records, "eval"), key=lambda r: _num(r.get("progress")) or 0.0)
    stages = _record_stages([r for r in records if isinstance(r, Mapping)])
    c_groups = _ordered_keys(r.get("c_norm") for r in evals)
    ba_groups = _ordered_keys(r.get("ba_norm") for r in evals)
    colors = group_colors(_ordered_keys([dict.fromkeys(c_groups + ba_groups)]))

    def draw(ax: Axes, key: str, groups: list[str], title: str, ylabel: str, empty: str) -> None:
        _shade_stages(ax, stages, label=True)
        ax.set_title(title)
        if not groups:
            ax.text(0.5, 0.5, empty, transform=ax.transAxes, ha="center", va="center",
                    fontsize=10, color="#666666", style="italic",
                    bbox={"boxstyle": "round,pad=0.6", "facecolor": "#f5f5f5",
                          "edgecolor": "#cccccc"})
            ax.set_yticks([])
            return
        for g in groups:
            xs, ys = [], []
            for r in evals:
                p, v = _num(r.get("progress")), None
                vals = r.get(key)
                if isinstance(vals, Mapping):
                    v = _num(vals.get(g))
                if p is not None and v is not None:
                    xs.append(p)
                    ys.append(v)
            ax.plot(xs, ys, "o-", ms=3, lw=1.6, color=colors[g], label=g)
        ax.set_ylabel(ylabel)
        lo, hi = ax.get_ylim()
        ax.set_ylim(min(0.0, lo), hi + 0.22 * (hi - min(0.0, lo)))
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), title="layer group",
                  title_fontsize=8.5)

    with plt.rc_context(_STYLE):
        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9.0, 6.6), sharex=True)
        draw(ax1, "c_norm", c_groups, "Bias C taking over from the decayed bias b",
             "‖C‖₂ (mean per layer)", "no bias C in this method\n(c_norm empty)")
        draw(ax2, "ba_norm", ba_groups, "Low-rank adapter taking over from W",
             "‖s·B·A‖_F (mean per layer)", "no adapter norms logged\n(ba_norm empty)")
        ax2.set_xlim(0.0, 1.0)
        ax2.set_xlabel("training progress p")
        if not evals:
            ax1.text(0.5, 0.15, "no eval records", transform=ax1.transAxes, ha="center",
                     fontsize=9, color="#888888")
        _stage_legend(fig, stages)
        return _save(fig, path, bottom=0.08 if stages else 0.0)


# --------------------------------------------------------------------------------------------
# Signal-to-noise figure
# --------------------------------------------------------------------------------------------


def has_snr(records: Iterable[Record]) -> bool:
    """Whether some eval record logged a (finite, non-null) signal-to-noise value, i.e. the
    noise was on at some evaluation."""
    return any(
        isinstance(v := r.get(key), Mapping) and any(_num(x) is not None for x in v.values())
        for r in _kind(records, "eval") for key in ("snr_spec", "snr_fro")
    )


def plot_snr(records: list[dict], path: str | Path, *, noise_cap: float | None = None) -> Path:
    """Signal-to-noise of the effective weight ``d W + N`` vs progress, one line per layer
    group (the group's lowest), log scale; evaluations with the noise off (null) are gaps.

    Top: spectral ``d ||W||_2 / E||N - mean||_2``; bottom: Frobenius ``d ||W||_F /
    E||N - mean||_F``. Below 1 (dashed) the noise is larger than the signal; ``noise_cap``
    (if given) bounds the spectral ratio from below at ``1 / noise_cap`` (dotted)."""
    evals = sorted(_kind(records, "eval"), key=lambda r: _num(r.get("progress")) or 0.0)
    stages = _record_stages([r for r in records if isinstance(r, Mapping)])
    groups = _ordered_keys([r.get("snr_spec") for r in evals] + [r.get("snr_fro") for r in evals])
    colors = group_colors(groups)

    with plt.rc_context(_STYLE):
        fig, axes = plt.subplots(2, 1, figsize=(9.0, 6.6), sharex=True)
        for ax, key, title, ylabel in (
            (axes[0], "snr_spec", "Signal-to-noise of d·W + N (spectral norm)",
             "d‖W‖₂ / E‖N − mean‖₂"),
            (axes[1], "snr_fro", "Signal-to-noise of d·W + N (Frobenius norm)",
             "d‖W‖_F / E‖N − mean‖_F"),
        ):
            _shade_stages(ax, stages, label=True)
            ax.set_title(title)
            drawn = False
            for g in groups:
                xs, ys = [], []
                for r in evals:
                    vals = r.get(key)
                    p = _num(r.get("progress"))
                    v = _num(vals.get(g)) if isinstance(vals, Mapping) else None
                    xs.append(np.nan if p is None else p)
                    ys.append(np.nan if v is None or v <= 0 else v)  # gaps where noise is off
                if np.any(np.isfinite(ys)):
                    drawn = True
                    ax.plot(xs, ys, "o-", ms=3, lw=1.6, color=colors[g], label=g)
            if not drawn:
                _empty_panel(ax, "noise off at every evaluation\n(no signal-to-noise logged)")
                continue
            ax.set_yscale("log")
            ax.axhline(1.0, color=C_MAJ, ls="--", lw=1.2, label="signal = noise")
            if noise_cap and key == "snr_spec":
                ax.axhline(1.0 / noise_cap, color=C_ORIG, ls=":", lw=1.4,
                           label=f"1 / noise_cap = {1.0 / noise_cap:g}")
            lo, hi = ax.get_ylim()
            ax.set_ylim(lo, hi * 4.0)  # headroom for the stage labels
            ax.set_ylabel(ylabel)
            ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), title="layer group",
                      title_fontsize=8.5)
        axes[1].set_xlim(0.0, 1.0)
        axes[1].set_xlabel("training progress p")
        _stage_legend(fig, stages)
        return _save(fig, path, bottom=0.08 if stages else 0.0)


# --------------------------------------------------------------------------------------------
# Training curves
# --------------------------------------------------------------------------------------------


def plot_curves(
    records: list[dict], path: str | Path, *, majority: float | None = None
) -> Path:
    """Losses and accuracies vs step.

    Top: training loss (raw and smoothed) and validation loss. Bottom: validation accuracy of
    the live model and of the exported, W-free model, and the majority-class baseline (dashed)
    when given. Stages reconstructed from the logged ``d`` / ``noise_on`` are shaded.
    """
    recs = [r for r in records if isinstance(r, Mapping)]
    train, evals = _kind(recs, "train"), _kind(recs, "eval")
    # progress -> step scale for the stage shading
    sp = [(s, p) for r in recs if (s := _num(r.get("step"))) is not None
          and (p := _num(r.get("progress"))) is not None and p > 0]
    total = float(np.median([s / p for s, p in sp])) if sp else None
    stages = _record_stages(recs) if total else []

    with plt.rc_context(_STYLE):
        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8.5, 6.8), sharex=True)
        for ax in (ax1, ax2):
            _shade_stages(ax, stages, scale=total or 1.0)

        xs, ys = _series(train, "step", "train_loss")
        if len(xs):
            if len(xs) > 25:
                ax1.plot(xs, ys, color=C_TRAIN, lw=0.8, alpha=0.3)
                ax1.plot(xs, _smooth(ys), color=C_TRAIN, label="train loss (smoothed)")
            else:
                ax1.plot(xs, ys, color=C_TRAIN, label="train loss")
        xv, yv = _series(evals, "step", "val_loss")
        if len(xv):
            ax1.plot(xv, yv, "o-", color=C_VAL, ms=4, label="validation loss")
        if not len(xs) and not len(xv):
            ax1.text(0.5, 0.5, "no losses logged", transform=ax1.transAxes, ha="center",
                     va="center", color="#666666", style="italic")
        else:
            ax1.legend(loc="best")
        ax1.set_ylabel("loss")
        ax1.set_title("Loss")

        xa, ya = _series(evals, "step", "val_acc")
        xe, ye = _series(evals, "step", "val_acc_exported")
        if len(xa):
            ax2.plot(xa, ya, "o-", color=C_VAL, ms=4, label="val acc (live model)")
        if len(xe):
            ax2.plot(xe, ye, "s--", color=C_EXPORT, ms=4, lw=1.5,
                     label="val acc (exported, W deleted)")
        if majority is not None and _num(majority) is not None:
            ax2.axhline(float(majority), color=C_MAJ, ls="--", lw=1.2,
                        label=f"majority class ({float(majority):.3f})")
        if len(xa) or len(xe):
            vals = np.concatenate([ya, ye, [majority] if _num(majority) is not None else []])
            lo = float(np.min(vals))
            ax2.set_ylim(max(0.0, lo - 0.08), min(1.02, float(np.max(vals)) + 0.06))
            ax2.legend(loc="best")
        else:
            ax2.text(0.5, 0.5, "no accuracies logged", transform=ax2.transAxes, ha="center",
                     va="center", color="#666666", style="italic")
        ax2.set_ylabel("accuracy")
        ax2.set_xlabel("step")
        ax2.set_title("Validation accuracy")
        if total:
            ax2.set_xlim(0.0, total)
        _stage_legend(fig, stages)
        return _save(fig, path, bottom=0.08 if stages else 0.0)


# --------------------------------------------------------------------------------------------
# Run directory and comparisons
# --------------------------------------------------------------------------------------------


def read_metrics(path: str | Path) -> list[dict]:
    """Records of a ``metrics.jsonl`` file; blank or unparsable lines (e.g. a half-written
    last line of a running job) are skipped."""
    out: list[dict] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
    return out


def _schedule_from_dict(d: Mapping[str, Any]) -> DecaySchedule:
    names = {f.name for f in fields(DecaySchedule)}
    return DecaySchedule(**{k: v for k, v in d.items() if k in names})


def plot_run(run_dir: str | Path) -> list[Path]:
    """Draw ``schedule.png`` (if the run has a schedule), ``noise.png``, ``bias.png``,
    ``snr.png`` (if the noise was on at some evaluation) and ``curves.png`` into ``run_dir``
    from its ``metrics.jsonl`` and ``results.json``."""
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.jsonl"
    records = read_metrics(metrics) if metrics.exists() else []
    results_path = run_dir / "results.json"
    results: dict[str, Any] = {}
    if results_path.exists():
        loaded = json.loads(results_path.read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            results = loaded

    out: list[Path] = []
    sched = results.get("schedule")
    if isinstance(sched, Mapping):
        scale = _num(results.get("noise_scale"))
        out.append(
            plot_schedule(
                _schedule_from_dict(sched),
                run_dir / "schedule.png",
                noise_scale=1.0 if scale is None else scale,
                records=records,
            )
        )
    out.append(plot_noise(records, run_dir / "noise.png"))
    out.append(plot_bias(records, run_dir / "bias.png"))
    if has_snr(records):
        dcfg = results.get("decay_config")
        cap = _num(dcfg.get("noise_cap")) if isinstance(dcfg, Mapping) else None
        out.append(plot_snr(records, run_dir / "snr.png", noise_cap=cap))
    out.append(
        plot_curves(records, run_dir / "curves.png", majority=_num(
            results.get("val_majority_baseline", results.get("majority_baseline"))))
    )
    return out


def _acc_series(records: Sequence[Record], w_free: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy of the model the method deploys vs progress: the exported (W-free) model for
    W-free methods, the live model otherwise (LoRA keeps W: its W-free view is meaningless)."""
    pts = []
    for r in _kind(records, "eval"):
        p = _num(r.get("progress"))
        a = _num(r.get("val_acc_exported")) if w_free else None
        if a is None:
            a = _num(r.get("val_acc"))
        if p is not None and a is not None:
            pts.append((p, a))
    pts.sort()
    return np.array([x[0] for x in pts]), np.array([x[1] for x in pts])


def plot_compare(
    histories: dict[str, list[dict]], rows: list[dict], out_dir: str | Path
) -> list[Path]:
    """Compare methods: ``compare_curves.png`` (accuracy and training loss vs progress per
    method) and ``compare_accuracy_params.png`` (test accuracy vs deployed parameters, W-free
    methods filled, W-keeping methods hollow, majority-class line if known)."""
    out_dir = Path(out_dir)
    methods = list(histories) + [str(r.get("method")) for r in rows
                                 if str(r.get("method")) not in histories]
    colors = group_colors(methods)
    # the curves are validation accuracies: compare them with the validation majority class
    majority = next((m for r in rows if (m := _num(r.get("val_majority_baseline",
                                                         r.get("majority_baseline")))) is not None),
                    None)
    paths: list[Path] = []

    with plt.rc_context(_STYLE):
        # ---- curves
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12.0, 4.8))
        any_acc = any_loss = False
        w_free = {str(r.get("method")): bool(r.get("w_free", True)) for r in rows}
        for m, recs in histories.items():
            recs = [r for r in recs if isinstance(r, Mapping)]
            px, acc = _acc_series(recs, w_free.get(m, True))
            if len(px):
                any_acc = True
                ax1.plot(px, acc, "o-", ms=3, lw=1.6, color=colors[m], label=m)
            lx, ly = _series(_kind(recs, "train"), "progress", "train_loss")
            if len(lx):
                any_loss = True
                ax2.plot(lx, _smooth(ly, 0.08), lw=1.6, color=colors[m], label=m)
        if majority is not None:
            ax1.axhline(majority, color=C_MAJ, ls="--", lw=1.2,
                        label=f"validation majority class ({majority:.3f})")
        ax1.set_title("Validation accuracy of the deployed model (W-free ones: as exported)")
        ax1.set_xlabel("training progress p")
        ax1.set_ylabel("accuracy")
        ax2.set_title("Training loss (smoothed)")
        ax2.set_xlabel("training progress p")
        ax2.set_ylabel("loss")
        for ax, ok, msg in ((ax1, any_acc, "no accuracies logged"),
                            (ax2, any_loss, "no training losses logged")):
            ax.set_xlim(0.0, 1.0)
            if ok:
                ax.legend(loc="best")
            else:
                ax.text(0.5, 0.5, msg, transform=ax.transAxes, ha="center", va="center",
                        color="#666666", style="italic")
        paths.append(_save(fig, out_dir / "compare_curves.png"))

    paths.append(plot_accuracy_params(rows, out_dir / "compare_accuracy_params.png",
                                      colors=colors))
    return paths


def plot_accuracy_params(rows: list[dict], path: str | Path, *,
                         colors: Mapping[str, Any] | None = None,
                         title: str = "Test accuracy vs size of the deployed model") -> Path:
    """Test accuracy (± std over seeds) vs parameters of the deployed model, one point per row
    of a comparison (``method``, ``deployed_params``, ``test_acc``, ``test_acc_std``, ``w_free``):
    W-free methods filled, W-keeping methods hollow, majority-class line if known."""
    if colors is None:
        colors = group_colors(str(r.get("method")) for r in rows)
    test_majority = next((m for r in rows if (m := _num(r.get("majority_baseline"))) is not None),
                         None)
    with plt.rc_context(_STYLE):
        fig, ax = plt.subplots(figsize=(8.5, 5.2))
        ax.set_title(title)
        ax.set_xlabel("parameters of the deployed model")
        ax.set_ylabel("test accuracy")
        pts = [
            (str(r.get("method")), p, a, _num(r.get("test_acc_std")), bool(r.get("w_free")))
            for r in rows
            if (p := _num(r.get("deployed_params"))) is not None
            and (a := _num(r.get("test_acc"))) is not None
        ]
        if pts:
            for method, p, a, s, wfree in pts:
                col = colors.get(method, "#333333")
                ax.errorbar(
                    p, a, yerr=s if s else None, fmt="o" if wfree else "s", ms=9,
                    color=col, mfc=col if wfree else "white", mew=2, capsize=4, elinewidth=1.2,
                    zorder=3,
                )
            params = [x[1] for x in pts]
            if min(params) > 0 and max(params) / min(params) > 8:
                ax.set_xscale("log")
                ax.set_xlim(min(params) / 2.5, max(params) * 3.5)
            else:
                span = max(params) - min(params) or max(params) or 1.0
                ax.set_xlim(min(params) - 0.15 * span, max(params) + 0.35 * span)
            ax.xaxis.set_major_formatter(FuncFormatter(_fmt_params))
            ax.xaxis.set_minor_formatter(FuncFormatter(lambda *_: ""))
            accs = [x[2] for x in pts] + ([test_majority] if test_majority is not None else [])
            ax.set_ylim(max(0.0, min(accs) - 0.06), min(1.02, max(accs) + 0.06))
            handles = [
                Line2D([], [], marker="o", ls="", color="#444444", ms=8,
                           label="W-free (frozen weights deleted)"),
                Line2D([], [], marker="s", ls="", color="#444444", mfc="white", mew=2,
                           ms=8, label="keeps W"),
            ]
            if test_majority is not None:
                ax.axhline(test_majority, color=C_MAJ, ls="--", lw=1.2)
                handles.append(Line2D([], [], color=C_MAJ, ls="--",
                                          label=f"majority class ({test_majority:.3f})"))
            ax.legend(handles=handles, loc="best")
            fig.tight_layout()
            _label_points(fig, ax, [(x[0], x[1], x[2], x[3]) for x in pts], colors,
                          hlines=[test_majority] if test_majority is not None else [])
        else:
            _empty_panel(ax, "no results with test accuracy and deployed parameters")
        return _save(fig, path)
