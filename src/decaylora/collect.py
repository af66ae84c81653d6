"""Collect several ``decaylora compare`` outputs into one table and one accuracy-vs-size figure.

A study of one task is usually several comparisons (ranks, learning-rate grids, options such as
distillation); ``collect`` puts their rows side by side, each labelled by the comparison it came
from, with the share of the wrapped layers' parameters each W-free model keeps and the
difference to a reference row (by default full fine-tuning). Every directory must hold the
``compare.json`` that ``compare`` writes, and all must share one test set.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import ConfigError


def _read_compare(path: Path) -> dict[str, Any]:
    f = path / "compare.json"
    if not f.is_file():
        raise ConfigError(f"{path} has no compare.json: not the output of `decaylora compare` "
                          "(or it has not finished); run the comparison first or check the path")
    try:
        data = json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{f} is not valid JSON ({e}); rerun the comparison") from None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list) or not data["rows"]:
        raise ConfigError(f"{f} has no result rows; rerun the comparison")
    return data


def parse_sources(specs: list[str]) -> list[tuple[Path, str]]:
    """``DIR`` or ``DIR=LABEL`` → ``(path, label)``; the label defaults to the directory name."""
    out: list[tuple[Path, str]] = []
    for spec in specs:
        path, _, label = spec.partition("=")
        p = Path(path)
        out.append((p, label or p.name))
    labels = [label for _, label in out]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ConfigError(f"two comparisons share the label {dup[0]!r}; name them with "
                          "DIR=LABEL")
    return out


def kept_fraction(row: dict[str, Any]) -> float | None:
    """Share of the wrapped layers' parameters the deployed W-free model keeps: ``A + B (+ C)``
    over ``W (+ b)``, biases counted on both sides; None if the model keeps W."""
    before, after = row.get("wrapped_before"), row.get("wrapped_after")
    if not row.get("w_free") or not before:
        return None
    return after / before


def collect(sources: list[tuple[Path, str]], out_dir: str | Path, *,
            reference: str | None = None, title: str | None = None) -> list[dict[str, Any]]:
    """Rows of every comparison in ``sources`` (``[(dir, label)]``), labelled ``method · label``,
    with ``kept`` (see ``kept_fraction``) and ``delta`` (test accuracy minus the reference
    row's). ``reference``: a row label or a method name (its first row); default: the first
    ``full`` row, if any. Writes ``collect.md``, ``collect.json`` and ``accuracy_params.png``
    into ``out_dir``."""
    from .plots import group_colors, plot_accuracy_params

    if not sources:
        raise ConfigError("collect needs at least one compare directory")
    rows: list[dict[str, Any]] = []
    tests: dict[str, tuple[Any, Any]] = {}
    for path, label in sources:
        data = _read_compare(path)
        cfg = data.get("config") or {}
        tests[label] = (cfg.get("data"), data["rows"][0].get("majority_baseline"))
        for r in data["rows"]:
            row = dict(r)
            row["source"] = label
            row["label"] = f"{r['method']} · {label}"
            row["rank"] = _rank_label(cfg) if r.get("w_free") or r["method"] == "lora" else None
            row["steps"] = cfg.get("steps")
            row["kept"] = kept_fraction(r)
            rows.append(row)
    if len(set(tests.values())) > 1:
        listing = "; ".join(f"{k}: data {d!r}, majority class {m}" for k, (d, m) in tests.items())
        raise ConfigError(f"the comparisons do not share one test set ({listing}); collect "
                          "comparisons of one task and one split at a time (on some datasets "
                          "the seed draws the split)")

    ref = _reference(rows, reference)
    for row in rows:
        row["delta"] = None if ref is None else row["test_acc"] - ref["test_acc"]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "collect.json").write_text(json.dumps(
        {"reference": ref["label"] if ref else None, "sources": {lab: str(p) for p, lab in sources},
         "rows": rows}, indent=2))
    (out / "collect.md").write_text(render_collect(rows, ref, title))
    plot_rows = [dict(r, method=r["label"]) for r in rows]
    # one colour per method, so the same method under different settings reads as one family
    by_method = group_colors(dict.fromkeys(r["method"] for r in rows))
    plot_accuracy_params(plot_rows, out / "accuracy_params.png",
                         colors={r["label"]: by_method[r["method"]] for r in rows},
                         title=title or "Test accuracy vs size of the deployed model")
    return rows


def _rank_label(cfg: dict[str, Any]) -> int | str | None:
    """The uniform rank, or the rank budget that chose per-layer ranks (see results.json)."""
    if cfg.get("rank_budget") is not None:
        floor = cfg.get("rank_budget_min_rank") or 1
        return f"budget {cfg['rank_budget']:g}" + (f", min {floor}" if floor > 1 else "")
    return cfg.get("rank")


def _reference(rows: list[dict[str, Any]], reference: str | None) -> dict[str, Any] | None:
    if reference is None:
        return next((r for r in rows if r["method"] == "full"), None)
    for key in ("label", "method"):
        hit = next((r for r in rows if r[key] == reference), None)
        if hit is not None:
            return hit
    labels = ", ".join(r["label"] for r in rows)
    raise ConfigError(f"reference {reference!r} is neither a method nor a row label of the "
                      f"collected comparisons; choose one of: {labels}")


def _fmt_kept(v: float | None) -> str:
    return "W kept" if v is None else f"1/{1 / v:.1f}" if v > 0 else "0"


def render_collect(rows: list[dict[str, Any]], ref: dict[str, Any] | None,
                   title: str | None = None) -> str:
    """Markdown table of collected rows, best test accuracy first."""
    lines = [f"## {title}" if title else "## Collected comparisons", ""]
    if ref is not None:
        lines += [f"Δ: test accuracy minus that of `{ref['label']}` ({ref['test_acc']:.3f}), "
                  "in points.", ""]
    lines += ["| method | comparison | rank | wrapped params kept | test acc | ± (std) | seeds | "
              "lr | steps | Δ | note |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: -r["test_acc"]):
        std = "–" if r.get("test_acc_std") is None else f"{r['test_acc_std']:.3f}"
        # + 0.0 turns a rounded -0.0 into 0.0
        delta = "" if r["delta"] is None else f"{round(100 * r['delta'], 1) + 0.0:+.1f}"
        seeds = ",".join(str(s) for s in r.get("seeds", []))
        lr = "–" if r.get("lr") is None else f"{r['lr']:.0e}"
        note = "stuck at chance" if r.get("stuck") else ""
        if r.get("lr_grid_val_acc"):
            note = (note + "; " if note else "") + "lr chosen on validation"
        lines.append(f"| {r['method']} | {r['source']} | {r['rank'] or '–'} | "
                     f"{_fmt_kept(r['kept'])} | {r['test_acc']:.3f} | {std} | {seeds} | {lr} | "
                     f"{r['steps'] or '–'} | {delta} | {note} |")
    lines += ["", f"Majority class: {rows[0]['majority_baseline']:.3f}.", ""]
    return "\n".join(lines)


__all__ = ["collect", "kept_fraction", "parse_sources", "render_collect"]
