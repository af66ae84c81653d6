"""Decay-factor and noise schedules (METHOD.md, "Schedules")."""

from __future__ import annotations

import math

import pytest
from conftest import make_mlp, mlp_config

import decaylora as dl
from decaylora.schedules import SHAPES, noise_moments

CURVES = ["linear", "cosine", "sine"]
EPS = 1e-9


def p_at(t: float, start: float, end: float) -> float:
    """Progress at fraction t of the decay window."""
    return start + t * (end - start)


@pytest.mark.parametrize("shape", CURVES)
@pytest.mark.parametrize(("start", "end"), [(0.05, 0.85), (0.10, 0.90), (0.0, 1.0), (0.3, 0.4)])
def test_endpoints(shape, start, end):
    s = dl.DecaySchedule(shape, start, end)
    assert s.decay(0.0) == 1.0
    assert s.decay(start) == 1.0
    if start > 0:
        assert s.decay(start - 1e-6) == 1.0
        assert s.decay(start / 2) == 1.0
    # just inside the window: strictly between 0 and 1
    assert 0.0 < s.decay(start + 1e-3 * (end - start)) < 1.0
    assert 0.0 < s.decay(end - 1e-3 * (end - start)) < 1.0
    assert s.decay(end) == 0.0
    assert s.decay(1.0) == 0.0
    if end < 1:
        assert s.decay(end + 1e-6) == 0.0
    # clamping outside [0, 1]
    assert s.decay(-0.5) == 1.0
    assert s.decay(1.5) == 0.0


@pytest.mark.parametrize(
    ("shape", "t", "expected"),
    [
        ("linear", 0.5, 0.5),
        ("cosine", 0.5, 0.5),
        ("sine", 0.5, 1.0 - math.sin(math.pi / 4)),
        ("linear", 0.25, 0.75),
        ("cosine", 0.25, 0.5 * (1.0 + math.cos(math.pi / 4))),
        ("sine", 0.25, 1.0 - math.sin(math.pi / 8)),
        ("linear", 0.75, 0.25),
        ("cosine", 0.75, 0.5 * (1.0 + math.cos(3 * math.pi / 4))),
        ("sine", 0.75, 1.0 - math.sin(3 * math.pi / 8)),
    ],
)
def test_interior_values(shape, t, expected):
    start, end = 0.05, 0.85
    s = dl.DecaySchedule(shape, start, end)
    assert s.decay(p_at(t, start, end)) == pytest.approx(expected, abs=1e-12)
    assert dl.decay_factor(p_at(t, start, end), shape, start, end) == pytest.approx(expected, abs=1e-12)


def test_shapes_differ_and_order():
    """cosine is slow at first (above linear), sine fast at first (below linear)."""
    start, end = 0.1, 0.9
    p = p_at(0.2, start, end)
    lin, cos, sin = (dl.DecaySchedule(s, start, end).decay(p) for s in CURVES)
    assert sin < lin < cos


@pytest.mark.parametrize("shape", CURVES)
def test_monotone_non_increasing(shape):
    s = dl.DecaySchedule(shape, 0.05, 0.85)
    grid = [i / 4000 for i in range(4001)]
    values = [s.decay(p) for p in grid]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert all(b <= a + 1e-15 for a, b in zip(values, values[1:], strict=False))
    # and it actually moves: strictly decreasing inside the window
    inside = [s.decay(p_at(i / 100, 0.05, 0.85)) for i in range(1, 100)]
    assert all(b < a for a, b in zip(inside, inside[1:], strict=False))


def test_none_and_off():
    none, off = dl.DecaySchedule("none"), dl.DecaySchedule("off")
    for p in (0.0, 0.05, 0.5, 0.99, 1.0):
        assert none.decay(p) == 1.0
        assert off.decay(p) == 0.0
    # neither ever draws noise, even if asked to
    for shape in ("none", "off"):
        s = dl.DecaySchedule(shape, noise=True, clear_below=None)
        assert not any(s.noise_on(i / 20) for i in range(21))


def test_preset_a():
    a = dl.PRESET_SCHEDULES["A"]
    assert (a.shape, a.start, a.end, a.noise, a.clear_below) == ("linear", 0.10, 0.90, True, None)
    assert a.decay(0.10) == 1.0
    assert a.decay(0.50) == pytest.approx(0.5)
    assert a.decay(0.90) == 0.0
    assert not a.noise_on(0.0)  # warm-up: d = 1, nothing to compensate
    assert not a.noise_on(0.10)
    assert a.noise_on(0.11)
    assert a.noise_on(0.5)
    assert a.noise_on(0.89)
    # no clear stage: noise stays on after the decay ended (d = 0)
    assert a.decay(0.95) == 0.0
    assert a.noise_on(0.95)
    assert a.noise_on(1.0)


def test_preset_b():
    b = dl.PRESET_SCHEDULES["B"]
    assert (b.shape, b.start, b.end, b.noise, b.clear_below) == ("linear", 0.05, 0.85, True, 0.3)
    assert not b.noise_on(0.0)
    assert not b.noise_on(0.05)
    assert b.noise_on(0.06)
    # d = 0.31 -> still noisy; d = 0.29 -> cleared (threshold 0.3)
    p31, p29 = p_at(1 - 0.31, 0.05, 0.85), p_at(1 - 0.29, 0.05, 0.85)
    assert b.decay(p31) == pytest.approx(0.31)
    assert b.noise_on(p31)
    assert b.decay(p29) == pytest.approx(0.29)
    assert not b.noise_on(p29)
    assert not b.noise_on(0.95)
    assert not b.noise_on(1.0)


def test_notes_presets_use_preset_schedules():
    a = dl.DecayConfig.from_preset("notes-a", target_modules=["x"])
    b = dl.DecayConfig.from_preset("notes-b", target_modules=["x"])
    assert a.schedule == dl.PRESET_SCHEDULES["A"]
    assert a.c_init == "none"
    assert b.schedule == dl.PRESET_SCHEDULES["B"]
    assert b.c_init == "zeros"
    assert a.noise_stats == b.noise_stats == "global"


def test_noise_end_switches_noise_off():
    s = dl.DecaySchedule("linear", 0.0, 1.0, noise=True, clear_below=None, noise_end=0.5)
    assert s.noise_on(0.49)
    assert not s.noise_on(0.5)
    assert not s.noise_on(0.7)


def test_noise_off_when_disabled():
    s = dl.DecaySchedule("linear", 0.0, 1.0, noise=False)
    assert not any(s.noise_on(i / 20) for i in range(21))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(start=0.5, end=0.5), r"out of order.*start=0\.5, end=0\.5"),
        (dict(start=0.9, end=0.1), r"out of order.*start=0\.9, end=0\.1"),
        (dict(start=0.1, end=1.2), r"out of order.*end=1\.2"),
        (dict(start=-0.1, end=0.5), r"out of order.*start=-0\.1"),
        (dict(start=float("nan"), end=0.5), "start must be a number"),
        (dict(start=0.1, end=float("nan")), "end must be a number"),
        (dict(start="0.1", end=0.5), "start must be a number"),
        (dict(start=True, end=0.5), "start must be a number"),
        (dict(shape="cosin"), "unknown decay schedule shape 'cosin'"),
        (dict(shape="exp"), "unknown decay schedule shape"),
        (dict(clear_below=-0.1), "clear_below"),
        (dict(clear_below=1.5), "clear_below"),
        (dict(clear_below=float("nan")), "clear_below"),
        (dict(noise_end=2.0), "noise_end"),
    ],
)
def test_invalid_schedules(kwargs, match):
    with pytest.raises(dl.ConfigError, match=match):
        dl.DecaySchedule(**kwargs)


def test_decay_factor_unknown_shape():
    with pytest.raises(dl.ConfigError, match="unknown decay schedule shape"):
        dl.decay_factor(0.5, "exp")
    assert set(CURVES) <= set(SHAPES)


@pytest.mark.parametrize("d", [1.0, 0.9, 0.5, 0.31, 0.0])
@pytest.mark.parametrize(("mean", "std", "scale"), [(0.0, 1.0, 1.0), (0.3, 0.05, 1.0), (-2.0, 3.0, 0.5)])
def test_noise_moments(d, mean, std, scale):
    m, s = noise_moments(d, mean, std, scale)
    assert m == pytest.approx((1 - d) * mean, abs=1e-15)
    assert s == pytest.approx(scale * math.sqrt(1 - d * d) * std, abs=1e-15)
    if scale == 1.0:
        # d W + N keeps mean and variance: d m + m_N = m, d^2 s^2 + s_N^2 = s^2
        assert d * mean + m == pytest.approx(mean)
        assert d * d * std * std + s * s == pytest.approx(std * std)


def test_schedule_dict_round_trip():
    s = dl.DecaySchedule("cosine", 0.2, 0.7, noise=True, clear_below=None, noise_end=0.6)
    assert dl.DecaySchedule(**s.to_dict()) == s


def test_set_progress_drives_layers():
    model = dl.wrap(make_mlp(), mlp_config(schedule=dl.PRESET_SCHEDULES["B"]))
    total = 1000
    for step in (0, 50, 300, 500, 700, 850, 999, 1000, 1200):
        d = dl.set_progress(model, step, total)
        p = min(step / total, 1.0)
        assert d == pytest.approx(dl.PRESET_SCHEDULES["B"].decay(p))
        for _, layer in dl.decay_layers(model):
            assert layer.d == pytest.approx(d)
            assert bool(layer.noise_active) == dl.PRESET_SCHEDULES["B"].noise_on(p)
            assert int(layer.step) == step
    with pytest.raises(dl.InjectionError, match="total_steps must be positive"):
        dl.set_progress(model, 1, 0)


def test_set_progress_needs_wrapped_model():
    with pytest.raises(dl.InjectionError, match="not wrapped"):
        dl.set_progress(make_mlp(), 1, 10)
