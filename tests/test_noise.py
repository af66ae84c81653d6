"""Capped noise (``noise_cap``) and the signal-to-noise of the effective weight ``d W + N``:
the capped std against a hand computation, the sampled noise's spectral norm against the cap,
``noise_cap=None`` leaving the notes' noise bit for bit, the analytic SNR against sampled
noise, config validation, the ``decay+capped-noise`` preset / ``--noise-cap`` wiring, the
``snr_*`` records and ``snr.png``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

import decaylora as dl
from decaylora.cli import _config_from_args as config_from_args
from decaylora.cli import build_parser, main
from decaylora.experiment import METHODS, WFREE_METHODS, ExperimentConfig
from decaylora.plots import plot_run
from decaylora.training import layer_statistics

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tiny.yaml")


# ----- builders -------------------------------------------------------------------------------
def _base(kind: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    if kind == "linear":
        m = nn.Linear(48, 32)
    elif kind == "conv1d":  # GPT-2 layout: weight (in, out)
        m = Conv1D(32, 48)
        nn.init.normal_(m.weight, std=0.2)
    elif kind == "conv2d-groups2":
        m = nn.Conv2d(4, 8, 3, groups=2, padding=1)
    else:  # pragma: no cover
        raise AssertionError(kind)
    with torch.no_grad():  # rows of different scale: per-output stats differ from global ones
        w2 = m.weight.t() if kind == "conv1d" else m.weight.reshape(m.weight.shape[0], -1)
        w2.mul_(torch.linspace(0.5, 2.0, w2.shape[0]).unsqueeze(1))
    return m


def _layer(kind: str, *, seed: int = 0, r: int = 2, **cfg) -> dl.DecayLayer:
    model = nn.Sequential(_base(kind, seed))
    dl.wrap(model, dl.DecayConfig(r=r, target_modules=["0"], **cfg))
    return model[0]


def _random_layer(out: int, fan_in: int, seed: int, row_scale: bool = False,
                  **cfg) -> dl.DecayLayer:
    """A Linear(fan_in, out) with an iid N(0, 1) weight (rows scaled 0.5 .. 2 with
    ``row_scale``, so per-output stds differ), wrapped."""
    m = nn.Linear(fan_in, out, bias=False)
    with torch.no_grad():
        m.weight.copy_(torch.randn(out, fan_in, generator=torch.Generator().manual_seed(seed)))
        if row_scale:
            m.weight.mul_(torch.linspace(0.5, 2.0, out).unsqueeze(1))
    model = nn.Sequential(m)
    dl.wrap(model, dl.DecayConfig(r=4, target_modules=["0"], **cfg))
    return model[0]


def _w2(layer: dl.DecayLayer) -> torch.Tensor:
    return layer.weight_2d().detach().float()


def _std_2d(layer: dl.DecayLayer, d: float | None = None) -> torch.Tensor:
    """The noise std as (out, 1) (per output) or (1,) (global)."""
    std = layer.noise_params(d)[1]
    return std.reshape(-1, 1) if layer.noise_stats == "per_output" else std.reshape(1)


def _hand_std(layer: dl.DecayLayer, d: float, scale: float, cap: float | None,
              stats: str) -> tuple[torch.Tensor, float]:
    """(expected std, cap factor) straight from the definition."""
    w = _w2(layer)
    sigma = w.std(dim=1, unbiased=False).reshape(-1, 1) if stats == "per_output" else \
        w.std(unbiased=False).reshape(1)
    std0 = scale * math.sqrt(1 - d * d) * sigma
    if cap is None:
        return std0, 1.0
    out, fan_in = w.shape
    spec = float(torch.linalg.svdvals(w)[0])
    cap_std = cap * d * spec / (math.sqrt(out) + math.sqrt(fan_in))
    factor = min(1.0, cap_std / float(std0.max()))
    return std0 * factor, factor


# ----- the capped std -------------------------------------------------------------------------
@pytest.mark.parametrize("stats", ["global", "per_output"])
@pytest.mark.parametrize("kind", ["linear", "conv1d", "conv2d-groups2"])
def test_capped_std_equals_hand_computation(kind, stats):
    d, scale = 0.6, 1.5
    binding = _layer(kind, noise_stats=stats, noise_scale=scale, noise_cap=0.3)
    binding.set_state(d, True, 0)
    expected, factor = _hand_std(binding, d, scale, 0.3, stats)
    assert factor < 0.9  # the cap really binds here (else this case would test nothing)
    torch.testing.assert_close(_std_2d(binding), expected, rtol=1e-5, atol=0.0)
    # the mean is unchanged by the cap: (1 - d) m
    w = _w2(binding)
    m = w.mean(dim=1) if stats == "per_output" else w.mean().reshape(1)
    torch.testing.assert_close(binding.noise_params()[0].reshape(-1), (1 - d) * m,
                               rtol=1e-5, atol=1e-8)
    # a cap that does not bind leaves the std exactly as without a cap
    loose = _layer(kind, noise_stats=stats, noise_scale=scale, noise_cap=1e6)
    free = _layer(kind, noise_stats=stats, noise_scale=scale)
    for layer in (loose, free):
        layer.set_state(d, True, 0)
    assert _hand_std(loose, d, scale, 1e6, stats)[1] == 1.0
    assert torch.equal(_std_2d(loose), _std_2d(free))
    torch.testing.assert_close(_std_2d(free), _hand_std(free, d, scale, None, stats)[0],
                               rtol=1e-5, atol=0.0)


def test_spectral_norm_is_of_the_weight_that_decays_and_not_persistent():
    torch.manual_seed(3)
    base = nn.Linear(64, 48)
    s = torch.linalg.svdvals(base.weight.detach().float())
    capped = _layer("linear", noise_cap=0.5)
    assert float(capped.weight_spectral_norm) == pytest.approx(
        float(torch.linalg.svdvals(_w2(capped))[0]), rel=1e-5)  # computed at wrap time
    assert "0.weight_spectral_norm" not in nn.Sequential(capped).state_dict()  # format unchanged
    lazy = _layer("linear")
    assert math.isnan(float(lazy.weight_spectral_norm))  # no SVD at wrap time without a cap
    lazy.set_state(0.5, True, 0)
    lazy.signal_to_noise()
    assert float(lazy.weight_spectral_norm) == pytest.approx(
        float(torch.linalg.svdvals(_w2(lazy))[0]), rel=1e-5)
    # svd-residual: the frozen path holds W - s B A, whose top singular value is W's (r+1)-th
    model = nn.Sequential(base)
    dl.wrap(model, dl.DecayConfig(r=4, target_modules=["0"], init="svd-residual", noise_cap=0.5))
    assert float(model[0].weight_spectral_norm) == pytest.approx(float(s[4]), rel=1e-4)


def test_sampled_capped_noise_spectral_norm_matches_the_estimate():
    """256 x 128 iid W, d = 0.5, cap 0.5. The largest singular value of an iid Gaussian matrix
    concentrates at std (sqrt(out) + sqrt(fan_in)) with Tracy-Widom fluctuations of relative
    size O(n^{-2/3}) (here about 1%, mean offset about -1%): 10% is many standard deviations,
    while an uncapped noise (std 0.87 vs 0.25 capped) would miss the bound by a factor ~3.5."""
    d, cap = 0.5, 0.5
    layer = _random_layer(256, 128, seed=0, noise_cap=cap)
    layer.train()
    spec_w = float(torch.linalg.svdvals(_w2(layer))[0])
    bound = cap * d * spec_w
    for step in (0, 1, 7):
        layer.set_state(d, True, step)
        mean, std = layer.noise_params()
        estimate = float(std) * (math.sqrt(256) + math.sqrt(128))
        assert estimate == pytest.approx(bound, rel=1e-5)  # the cap binds exactly
        spec_n = float(torch.linalg.svdvals((layer.sample_noise() - mean).float())[0])
        assert spec_n == pytest.approx(estimate, rel=0.10)
        assert spec_n <= bound * 1.1
    uncapped = _random_layer(256, 128, seed=0)
    uncapped.set_state(d, True, 0)
    assert float(uncapped.noise_params()[1]) > 3 * float(layer.noise_params()[1])


def test_cap_vanishes_at_zero_decay():
    layer = _layer("linear", noise_cap=0.5)
    layer.train()
    layer.set_state(0.0, True, 3)
    mean, std = layer.noise_params()
    assert float(std) == 0.0 and float(mean) != 0.0
    assert torch.equal(layer.sample_noise(), torch.broadcast_to(mean, layer.base_layer.weight.shape))
    assert layer.signal_to_noise() == (math.inf, math.inf)


@pytest.mark.parametrize("stats", ["global", "per_output"])
@pytest.mark.parametrize("kind", ["linear", "conv1d", "conv2d-groups2"])
def test_no_cap_leaves_the_noise_bitwise_as_before(kind, stats):
    """noise_cap=None (the default) draws exactly the notes' noise: the pre-cap sampler,
    restated here (normal_ with scalar moments for global stats on CPU, randn * std + mean
    otherwise)."""
    assert dl.DecayConfig(target_modules=["0"]).noise_cap is None
    layer = _layer(kind, noise_stats=stats)
    layer.train()
    d, step = 0.45, 11
    layer.set_state(d, True, step)
    w = layer.base_layer.weight
    mean = layer.noise_mean * (1.0 - d)
    std = layer.noise_std * (1.0 * math.sqrt(1.0 - d * d))
    g = torch.Generator().manual_seed(layer.noise_seed_for_step())
    if stats == "global":
        expected = torch.empty(w.shape, dtype=w.dtype).normal_(float(mean), float(std), generator=g)
    else:
        view = layer._per_out_view
        expected = torch.randn(w.shape, generator=g, dtype=w.dtype).mul_(
            std.view(view)).add_(mean.view(view))
    assert torch.equal(layer.sample_noise(), expected)


# ----- signal-to-noise ------------------------------------------------------------------------
@pytest.mark.parametrize("cap", [None, 0.5])
@pytest.mark.parametrize("stats", ["global", "per_output"])
def test_signal_to_noise_matches_sampled_noise(stats, cap):
    """||N - mean||_F over 256 x 128 = 32768 entries has relative standard deviation about
    1 / sqrt(2 n) = 0.4%: 2% is 5 standard deviations. The spectral ratio uses the Gaussian
    estimate (see above), checked for global stats at 10%."""
    layer = _random_layer(256, 128, seed=1, row_scale=True, noise_stats=stats, noise_cap=cap)
    layer.train()
    d = 0.4
    layer.set_state(d, True, 5)
    snr_fro, snr_spec = layer.signal_to_noise()
    mean = layer.noise_params()[0]
    z = (layer.sample_noise() - mean).float()
    w = layer.base_layer.weight.float()
    assert snr_fro == pytest.approx(d * float(w.norm()) / float(z.norm()), rel=0.02)
    assert layer.signal_to_noise(d) == pytest.approx((snr_fro, snr_spec), rel=1e-6)  # d: f32
    if stats == "global":
        sampled_spec = d * float(torch.linalg.svdvals(w)[0]) / float(torch.linalg.svdvals(z)[0])
        assert snr_spec == pytest.approx(sampled_spec, rel=0.10)
    if cap is not None:
        assert snr_spec >= (1 / cap) * (1 - 1e-5)  # what the cap guarantees
    else:
        assert snr_spec < 1  # the notes' noise at d = 0.4 is larger than the signal
    layer.set_state(d, False, 5)
    assert layer.signal_to_noise() == (math.inf, math.inf)  # noise off


def test_layer_statistics_logs_snr_per_group_and_null_when_off():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16))
    dl.wrap(model, dl.DecayConfig(r=2, target_types=["Linear"], noise_cap=0.5))
    dl.set_decay(model, 0.5, noise=True, step=2)
    stats = layer_statistics(model)
    assert set(stats["snr_fro"]) == set(stats["snr_spec"]) == {"0", "2"}
    for name in ("0", "2"):
        fro, spec = model.get_submodule(name).signal_to_noise()
        assert stats["snr_fro"][name] == fro and stats["snr_spec"][name] == spec
    json.dumps(stats, allow_nan=False)
    dl.set_decay(model, 0.5, noise=False, step=2)
    stats = layer_statistics(model)
    assert stats["snr_fro"] == stats["snr_spec"] == {"0": None, "2": None}
    json.dumps(stats, allow_nan=False)  # null, never Infinity


# ----- configuration --------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [0, -0.5, "0.5", True, math.inf, math.nan])
def test_noise_cap_validation(bad):
    with pytest.raises(dl.ConfigError, match=r"noise_cap must be a number > 0, or null/None.*e\.g\."):
        dl.DecayConfig(target_modules=["0"], noise_cap=bad)


def test_noise_cap_valid_values_and_round_trip():
    for ok in (None, 0.5, 2):
        cfg = dl.DecayConfig(target_modules=["0"], noise_cap=ok)
        assert dl.DecayConfig.from_dict(cfg.to_dict()) == cfg
    old = dl.DecayConfig(target_modules=["0"]).to_dict()
    old.pop("noise_cap")  # a manifest written before the option existed
    assert dl.DecayConfig.from_dict(old).noise_cap is None


def test_capped_noise_preset_and_method():
    cfg = dl.DecayConfig.from_preset("decay+capped-noise", target_modules=["0"])
    assert cfg.noise_cap == 0.5 and cfg.c_init == "zeros"
    assert cfg.schedule == dl.PRESETS["decay+noise"]["schedule"] and cfg.schedule.noise
    assert "decay+capped-noise" in WFREE_METHODS and "decay+capped-noise" in METHODS
    exp = ExperimentConfig(method="decay+capped-noise")
    assert exp.wfree and exp.decay_config().noise_cap == 0.5
    assert ExperimentConfig(method="decay+capped-noise", noise_cap=0.1).decay_config().noise_cap == 0.1
    assert ExperimentConfig(method="notes-b", noise_cap=0.25).decay_config().noise_cap == 0.25
    assert ExperimentConfig(method="notes-b").decay_config().noise_cap is None
    with pytest.raises(dl.ConfigError, match="noise_cap must be a number > 0"):
        ExperimentConfig(method="notes-b", noise_cap=-1.0)
    model = nn.Sequential(_base("linear"))
    dl.wrap(model, cfg)
    assert model[0].noise_cap == 0.5


def test_noise_cap_cli_flag():
    for command in ("run", "compare"):
        args = build_parser().parse_args([command, "--config", TINY, "--noise-cap", "0.5"])
        cfg = config_from_args(args)
        assert cfg.noise_cap == 0.5 and cfg.decay_config().noise_cap == 0.5
    args = build_parser().parse_args(["run", "--config", TINY, "--method", "decay+capped-noise",
                                      "--noise-cap", "null"])
    assert config_from_args(args).decay_config().noise_cap == 0.5  # null: the preset's value


# ----- a tiny run and the figure --------------------------------------------------------------
def test_tiny_capped_noise_run_logs_snr_and_draws_it(tmp_path):
    run_dir = tmp_path / "capped"
    assert main(["run", "--config", TINY, "--method", "decay+capped-noise", "--noise-cap", "0.25",
                 "--run-dir", str(run_dir)]) == 0
    results = json.loads((run_dir / "results.json").read_text())
    assert results["decay_config"]["noise_cap"] == 0.25
    assert "snr.png" in results["figures"]
    assert (run_dir / "snr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (run_dir / "metrics.jsonl").read_text()
    assert "Infinity" not in text and "NaN" not in text
    evals = {r["step"]: r for r in map(json.loads, text.splitlines()) if r["kind"] == "eval"}
    # tiny: 12 steps, evals at 4 (d = 0.65, noise on), 8 (d = 0.23 < 0.3: cleared) and 12
    assert evals[4]["noise_on"] and not evals[8]["noise_on"]
    assert evals[4]["snr_spec"] and all(v >= 4.0 * (1 - 1e-5)  # 1 / noise_cap
                                        for v in evals[4]["snr_spec"].values())
    assert all(v is not None and v > 0 for v in evals[4]["snr_fro"].values())
    assert all(v is None for r in (evals[8], evals[12]) for key in ("snr_fro", "snr_spec")
               for v in r[key].values())


def _write_run(run_dir: Path, records: list[dict]) -> None:
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run_dir / "results.json").write_text(json.dumps({
        "schedule": dl.PRESETS["decay+capped-noise"]["schedule"].to_dict(),
        "decay_config": {"noise_cap": 0.5}, "majority_baseline": 0.5}))


def _records(noise: bool) -> list[dict]:
    recs = []
    for i, p in enumerate((0.25, 0.5, 0.75, 1.0)):
        d = max(0.0, 1 - (p - 0.05) / 0.8)
        on = noise and d >= 0.3
        snr = {g: (2.0 + i + k if on else None) for k, g in enumerate(("query", "value"))}
        recs.append({"kind": "eval", "step": 10 * (i + 1), "progress": p, "d": d, "noise_on": on,
                     "val_acc": 0.6, "val_loss": 0.6, "c_norm": {}, "ba_norm": {},
                     "weight_stats": None, "snr_fro": dict(snr), "snr_spec": dict(snr)})
    return recs


def test_plot_run_draws_snr_only_when_the_noise_was_on(tmp_path):
    _write_run(tmp_path / "noisy", _records(noise=True))
    names = sorted(p.name for p in plot_run(tmp_path / "noisy"))
    assert names == ["bias.png", "curves.png", "noise.png", "schedule.png", "snr.png"]
    _write_run(tmp_path / "quiet", _records(noise=False))
    names = sorted(p.name for p in plot_run(tmp_path / "quiet"))
    assert names == ["bias.png", "curves.png", "noise.png", "schedule.png"]
    assert not (tmp_path / "quiet" / "snr.png").exists()
