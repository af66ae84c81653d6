"""Tests for decaylora.plots: schedule stages and every figure on synthetic records."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from decaylora.plots import (
    plot_bias,
    plot_compare,
    plot_curves,
    plot_noise,
    plot_run,
    plot_schedule,
    schedule_stages,
)
from decaylora.schedules import PRESET_SCHEDULES, DecaySchedule

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
N = 1001
TOL = 1.0 / (N - 1)  # one grid step


# --------------------------------------------------------------------------------------------
# synthetic data
# --------------------------------------------------------------------------------------------


def make_records(
    schedule: DecaySchedule | None = PRESET_SCHEDULES["B"],
    *,
    total: int = 200,
    eval_every: int = 20,
    with_stats: bool = True,
    with_c: bool = True,
    seed: int = 0,
) -> list[dict]:
    """A plausible run: train record every 2 steps, eval record every ``eval_every`` steps."""
    rng = np.random.default_rng(seed)
    m, sigma = 0.002, 0.05
    recs: list[dict] = []
    for step in range(0, total + 1):
        p = step / total
        d = schedule.decay(p) if schedule else 1.0
        on = schedule.noise_on(p) if schedule else False
        base = {"step": step, "progress": p, "d": d, "noise_on": on, "lr": 1e-3 * (1 - 0.5 * p)}
        if step % 2 == 0:
            loss = 0.69 * math.exp(-3 * p) + 0.25 + 0.05 * rng.standard_normal()
            recs.append({**base, "kind": "train", "train_loss": loss})
        if step % eval_every == 0:
            eff_std = sigma * math.sqrt(d * d + (1 - d * d if on else 0.0))
            eff_mean = m * (d + ((1 - d) if on else 0.0))
            stats = {
                "layer": "encoder.layer.0.attention.self.query",
                "orig_mean": m,
                "orig_std": sigma,
                "eff_mean": eff_mean + 2e-4 * rng.standard_normal(),
                "eff_std": eff_std * (1 + 0.01 * rng.standard_normal()),
                "d": d,
            }
            groups = ("query", "key", "value", "intermediate.dense")
            recs.append(
                {
                    **base,
                    "kind": "eval",
                    "val_loss": 0.69 * math.exp(-2.5 * p) + 0.3,
                    "val_acc": 0.55 + 0.3 * (1 - math.exp(-4 * p)),
                    "val_acc_exported": None if d > 0.5 else 0.5 + 0.3 * (1 - d),
                    "c_norm": {g: (1 - d) * (0.5 + 0.1 * i) for i, g in enumerate(groups)}
                    if with_c
                    else {},
                    "ba_norm": {g: 0.2 + 2 * (1 - d) * (1 + 0.2 * i) for i, g in enumerate(groups)},
                    "weight_stats": stats if with_stats and on is not None else None,
                }
            )
    return recs


def assert_png(path: Path, *, min_w: int = 400, min_h: int = 200) -> np.ndarray:
    """Valid PNG of a reasonable size that is not a single flat colour."""
    assert path.exists(), path
    assert path.read_bytes()[:8] == PNG_MAGIC
    img = mpimg.imread(path)
    h, w = img.shape[:2]
    assert min_w <= w <= 3000 and min_h <= h <= 3000, (w, h)
    rgb = (img[::3, ::3, :3] * 255).astype(np.int64)
    assert float(rgb.std()) > 2.0, "image is a flat colour"
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    assert len(np.unique(packed)) > 20, "too few colours for a plot"
    return img


# --------------------------------------------------------------------------------------------
# stages
# --------------------------------------------------------------------------------------------


def _check(stages, expected):
    assert [s[0] for s in stages] == [e[0] for e in expected], stages
    for (name, a, b), (_, ea, eb) in zip(stages, expected, strict=True):
        assert a == pytest.approx(ea, abs=TOL), (name, a, ea)
        assert b == pytest.approx(eb, abs=TOL), (name, b, eb)
    # contiguous cover of [0, 1]
    assert stages[0][1] == 0.0 and stages[-1][2] == 1.0
    for (_, _, b), (_, a, _) in zip(stages[:-1], stages[1:], strict=True):
        assert a == b


def test_stages_preset_b():
    stages = schedule_stages(PRESET_SCHEDULES["B"], n=N)
    _check(
        stages,
        [
            ("warm-up", 0.0, 0.05),
            ("compensate", 0.05, 0.05 + 0.7 * 0.8),  # d < 0.3 from p = 0.61
            ("clear", 0.61, 0.85),
            ("cool-down", 0.85, 1.0),
        ],
    )


def test_stages_preset_a_keeps_noise_in_cool_down():
    stages = schedule_stages(PRESET_SCHEDULES["A"], n=N)
    _check(
        stages,
        [
            ("warm-up", 0.0, 0.10),
            ("compensate", 0.10, 0.90),
            ("cool-down (noise kept)", 0.90, 1.0),
        ],
    )


def test_stages_without_noise():
    sched = DecaySchedule(shape="linear", start=0.2, end=0.7, noise=False)
    _check(
        schedule_stages(sched, n=N),
        [("warm-up", 0.0, 0.2), ("decay", 0.2, 0.7), ("cool-down", 0.7, 1.0)],
    )


def test_stages_noise_end_and_cosine_and_coarse_grid():
    sched = DecaySchedule(shape="cosine", start=0.1, end=0.9, noise=True, clear_below=None,
                          noise_end=0.5)
    _check(
        schedule_stages(sched, n=N),
        [("warm-up", 0.0, 0.1), ("compensate", 0.1, 0.5), ("clear", 0.5, 0.9),
         ("cool-down", 0.9, 1.0)],
    )
    # boundaries are refined by bisection, so a coarse grid gives the same answer
    fine = schedule_stages(PRESET_SCHEDULES["B"], n=N)
    coarse = schedule_stages(PRESET_SCHEDULES["B"], n=11)
    assert [s[0] for s in coarse] == [s[0] for s in fine]
    for (_, a, b), (_, fa, fb) in zip(coarse, fine, strict=True):
        assert a == pytest.approx(fa, abs=1e-9) and b == pytest.approx(fb, abs=1e-9)


def test_stages_degenerate_shapes():
    assert [s[0] for s in schedule_stages(DecaySchedule(shape="none"))] == ["warm-up"]
    assert [s[0] for s in schedule_stages(DecaySchedule(shape="off", noise=True))] == [
        "cool-down"
    ]
    with pytest.raises(ValueError):
        schedule_stages(DecaySchedule(), n=1)


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["A", "B"])
def test_plot_schedule(tmp_path, preset):
    sched = PRESET_SCHEDULES[preset]
    out = plot_schedule(sched, tmp_path / f"sched_{preset}.png", records=make_records(sched))
    assert out == tmp_path / f"sched_{preset}.png"
    assert_png(out)


def test_plot_schedule_no_noise(tmp_path):
    sched = DecaySchedule(shape="sine", noise=False)
    assert_png(plot_schedule(sched, tmp_path / "s1.png", noise_scale=0.5))


def test_plot_noise_partial_and_several_layers(tmp_path):
    # stats missing on some eval records, a list of layers, a record missing optional keys
    recs = make_records()
    for i, r in enumerate(recs):
        if r["kind"] == "eval" and i % 3 == 0:
            r["weight_stats"] = None
        elif r["kind"] == "eval":
            r["weight_stats"] = [r["weight_stats"], {**r["weight_stats"], "layer": "out"}]
    recs.append({"kind": "eval", "step": 3})
    assert_png(plot_noise(recs, tmp_path / "noise_partial.png"))


def test_plot_noise_without_stats(tmp_path):
    img = assert_png(plot_noise(make_records(with_stats=False), tmp_path / "noise_empty.png"))
    assert img.shape[0] < 500  # a single message panel


def test_plot_bias_without_c(tmp_path):
    # the full figure is drawn by test_plot_run; here: a method without C, and no records at all
    assert_png(plot_bias(make_records(with_c=False), tmp_path / "bias_no_c.png"))
    assert plot_bias([], tmp_path / "bias_empty.png").read_bytes()[:8] == PNG_MAGIC


def test_plot_curves_partial(tmp_path):
    # the full figure is drawn by test_plot_run; here: only train records, missing keys
    recs = [r for r in make_records() if r["kind"] == "train"]
    recs += [{"kind": "eval"}, {"kind": "train", "step": 1}]
    assert_png(plot_curves(recs, tmp_path / "curves_train.png"))


def _write_run(run_dir: Path, schedule: DecaySchedule | None, records: list[dict]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "metrics.jsonl", "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
        fh.write('{"kind": "train", "step": ')  # half-written last line of a running job
    results = {
        "schedule": schedule.to_dict() if schedule else None,
        "noise_scale": 1.0,
        "majority_baseline": 0.543,
        "test_acc": 0.75,
    }
    (run_dir / "results.json").write_text(json.dumps(results), encoding="utf-8")


def test_plot_run(tmp_path):
    sched = PRESET_SCHEDULES["B"]
    _write_run(tmp_path / "run", sched, make_records(sched))
    paths = plot_run(tmp_path / "run")
    assert sorted(p.name for p in paths) == ["bias.png", "curves.png", "noise.png", "schedule.png"]
    for p in paths:
        assert p.parent == tmp_path / "run"
        assert_png(p, min_h=200)


def test_plot_run_without_schedule(tmp_path):
    _write_run(tmp_path / "lora", None, make_records(None, with_stats=False, with_c=False))
    paths = plot_run(tmp_path / "lora")
    assert sorted(p.name for p in paths) == ["bias.png", "curves.png", "noise.png"]
    assert not (tmp_path / "lora" / "schedule.png").exists()


def test_plot_compare(tmp_path):
    histories = {
        "full fine-tuning": make_records(None, with_stats=False, with_c=False, seed=1),
        "lora r16": make_records(None, with_stats=False, with_c=False, seed=2),
        "decay+noise+C r16": make_records(PRESET_SCHEDULES["B"], seed=3),
        "decay only r16": make_records(DecaySchedule(), seed=4),
    }
    rows = [
        {"method": "full fine-tuning", "test_acc": 0.823, "test_acc_std": 0.01,
         "deployed_params": 10_640_000, "w_free": False, "majority_baseline": 0.543},
        {"method": "lora r16", "test_acc": 0.826, "test_acc_std": None,
         "deployed_params": 11_300_000, "w_free": False, "majority_baseline": 0.543},
        {"method": "decay+noise+C r16", "test_acc": 0.543, "test_acc_std": 0.002,
         "deployed_params": 680_000, "w_free": True, "majority_baseline": 0.543},
        {"method": "decay only r16", "test_acc": 0.729, "test_acc_std": 0.02,
         "deployed_params": 660_000, "w_free": True, "majority_baseline": 0.543},
    ]
    paths = plot_compare(histories, rows, tmp_path / "cmp")
    assert [p.name for p in paths] == ["compare_curves.png", "compare_accuracy_params.png"]
    for p in paths:
        assert p.parent == tmp_path / "cmp"
        assert_png(p)
    # degenerate inputs still give images
    paths = plot_compare({}, [], tmp_path / "cmp_empty")
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in paths)


def test_compare_accuracy_series_uses_the_deployed_model() -> None:
    from decaylora.plots import _acc_series

    recs = [{"kind": "eval", "step": 1, "progress": 0.5, "val_acc": 0.9, "val_acc_exported": 0.1}]
    assert list(_acc_series(recs, w_free=True)[1]) == [0.1]   # W-free: the exported model
    assert list(_acc_series(recs, w_free=False)[1]) == [0.9]  # LoRA keeps W: the live model
