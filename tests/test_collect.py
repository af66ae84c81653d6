"""decaylora collect: several compare outputs in one table and figure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import decaylora as dl
from decaylora.cli import main
from decaylora.collect import collect, kept_fraction, parse_sources

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tiny.yaml")


def _row(method: str, acc: float, *, w_free: bool, before: int = 1000, after: int = 125,
         std: float | None = None) -> dict:
    return {"method": method, "w_free": w_free, "seeds": [0, 1], "test_acc": acc,
            "test_acc_std": std, "lr": 1e-3, "val_acc": acc, "deployed_params": 5000 if w_free
            else 20000, "trainable_params": 100, "wrapped_after": after if w_free else 0,
            "wrapped_before": before if w_free else 0, "train_seconds": 1.0, "stuck": False,
            "majority_baseline": 0.5}


def _write(path: Path, rows: list[dict], *, data: str = "rotten_tomatoes", rank: int = 8,
           **config) -> Path:
    path.mkdir(parents=True)
    (path / "compare.json").write_text(json.dumps(
        {"rows": rows, "config": {"data": data, "rank": rank, "steps": 200, **config}}))
    return path


def test_collect_labels_rows_and_measures_against_full(tmp_path: Path) -> None:
    a = _write(tmp_path / "r8", [_row("full", 0.81, w_free=False),
                                 _row("default", 0.744, w_free=True, after=31, before=1000)])
    b = _write(tmp_path / "r32", [_row("default", 0.773, w_free=True, after=125, std=0.004)],
               rank=32)
    rows = collect(parse_sources([str(a), f"{b}=rank 32"]), tmp_path / "out")
    by = {r["label"]: r for r in rows}
    assert set(by) == {"full · r8", "default · r8", "default · rank 32"}
    assert by["default · rank 32"]["delta"] == pytest.approx(0.773 - 0.81)
    assert by["full · r8"]["delta"] == 0.0
    assert by["default · rank 32"]["kept"] == pytest.approx(1 / 8)
    assert by["full · r8"]["kept"] is None and by["full · r8"]["rank"] is None
    assert by["default · rank 32"]["rank"] == 32
    md = (tmp_path / "out" / "collect.md").read_text()
    # best first; Δ in points; kept as 1/x
    body = [ln for ln in md.splitlines() if ln.startswith("| ") and "---" not in ln][1:]
    assert [ln.split("|")[1].strip() for ln in body] == ["full", "default", "default"]
    assert "| rank 32 | 32 | 1/8.0 | 0.773 | 0.004 | 0,1 |" in md and "| -3.7 |" in md
    saved = json.loads((tmp_path / "out" / "collect.json").read_text())
    assert saved["reference"] == "full · r8" and len(saved["rows"]) == 3
    assert (tmp_path / "out" / "accuracy_params.png").stat().st_size > 10_000


def test_collect_reference_by_label_or_method(tmp_path: Path) -> None:
    a = _write(tmp_path / "a", [_row("lora", 0.80, w_free=False),
                                _row("svd", 0.70, w_free=True)])
    rows = collect(parse_sources([str(a)]), tmp_path / "o1", reference="lora")
    assert {r["method"]: r["delta"] for r in rows}["svd"] == pytest.approx(-0.10)
    rows = collect(parse_sources([str(a)]), tmp_path / "o2", reference="svd · a")
    assert {r["method"]: r["delta"] for r in rows}["lora"] == pytest.approx(0.10)
    # no full row and no reference: no Δ rather than a made-up one
    rows = collect(parse_sources([str(a)]), tmp_path / "o3")
    assert all(r["delta"] is None for r in rows)
    with pytest.raises(dl.ConfigError, match="reference 'ful' is neither .* lora · a, svd · a"):
        collect(parse_sources([str(a)]), tmp_path / "o4", reference="ful")


def test_collect_refuses_bad_input(tmp_path: Path) -> None:
    a = _write(tmp_path / "text", [_row("full", 0.8, w_free=False)])
    b = _write(tmp_path / "vision", [_row("full", 0.9, w_free=False)], data="fashion_mnist")
    with pytest.raises(dl.ConfigError, match="do not share one test set.*one task and one split at a time"):
        collect(parse_sources([str(a), str(b)]), tmp_path / "o")
    with pytest.raises(dl.ConfigError, match="has no compare.json.*run the comparison first"):
        collect(parse_sources([str(tmp_path / "missing")]), tmp_path / "o")
    with pytest.raises(dl.ConfigError, match="share the label 'x'; name them with DIR=LABEL"):
        parse_sources([f"{a}=x", f"{b}=x"])
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "compare.json").write_text("{")
    with pytest.raises(dl.ConfigError, match="not valid JSON"):
        collect(parse_sources([str(tmp_path / "broken")]), tmp_path / "o")
    assert not (tmp_path / "o").exists()  # nothing written for refused input


def test_collect_names_a_rank_budget_instead_of_the_unused_rank(tmp_path: Path) -> None:
    a = _write(tmp_path / "b", [_row("svd", 0.88, w_free=True)], rank=16, rank_budget=0.118,
               rank_budget_min_rank=6)
    b = _write(tmp_path / "c", [_row("svd", 0.87, w_free=True)], rank=16, rank_budget=0.125)
    rows = collect(parse_sources([str(a), str(b)]), tmp_path / "o")
    assert [r["rank"] for r in rows] == ["budget 0.118, min 6", "budget 0.125"]
    assert "| svd | b | budget 0.118, min 6 |" in (tmp_path / "o" / "collect.md").read_text()


def test_kept_fraction() -> None:
    assert kept_fraction({"w_free": True, "wrapped_before": 800, "wrapped_after": 100}) == 0.125
    assert kept_fraction({"w_free": False, "wrapped_before": 800, "wrapped_after": 100}) is None


def test_cli_collect_real_compare_outputs(tmp_path: Path, capsys) -> None:
    """The schema collect reads is the one compare writes."""
    for rank in (2, 4):
        assert main(["compare", "--config", TINY, "--steps", "2", "--eval-every", "2",
                     "--rank", str(rank), "--methods", "full,decay" if rank == 2 else "decay",
                     "--out", str(tmp_path / f"r{rank}")]) == 0
    capsys.readouterr()
    assert main(["collect", str(tmp_path / "r2"), f"{tmp_path / 'r4'}=rank4", "--out",
                 str(tmp_path / "all"), "--title", "tiny"]) == 0
    printed = capsys.readouterr().out
    assert "## tiny" in printed and "decay · rank4" not in printed  # table shows the source
    saved = json.loads((tmp_path / "all" / "collect.json").read_text())
    by = {r["label"]: r for r in saved["rows"]}
    cmp4 = json.loads((tmp_path / "r4" / "compare.json").read_text())["rows"][0]
    full = by["full · r2"]
    assert by["decay · rank4"]["test_acc"] == cmp4["test_acc"]
    assert by["decay · rank4"]["delta"] == pytest.approx(cmp4["test_acc"] - full["test_acc"])
    assert by["decay · rank4"]["rank"] == 4 and by["decay · r2"]["rank"] == 2
    # rank 4 keeps twice the wrapped weights of rank 2 (A and B only scale with r; C is fixed)
    assert by["decay · rank4"]["kept"] > by["decay · r2"]["kept"]
    assert main(["collect", str(tmp_path / "nothing-here"), "--out", str(tmp_path / "x")]) == 2
    assert "has no compare.json" in capsys.readouterr().err
