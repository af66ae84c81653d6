"""Decay layers: identity at wrap time, fused == unfused forward, noise sampling and moments,
clear stage and eval determinism, SVD initialisation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import make_mlp, max_diff, mlp_config, mlp_inputs
from torch import nn
from transformers.pytorch_utils import Conv1D

import decaylora as dl

# ----- builders -------------------------------------------------------------------------------
CONV_VARIANTS = {
    "stride2-dil2-groups2-reflect": dict(in_channels=4, out_channels=8, kernel_size=3, stride=2,
                                         dilation=2, groups=2, padding=2,
                                         padding_mode="reflect"),
    "same-reflect": dict(in_channels=4, out_channels=8, kernel_size=3, stride=1, dilation=2,
                         padding="same", padding_mode="reflect"),
    "same-groups2-nobias": dict(in_channels=4, out_channels=8, kernel_size=(3, 1), stride=1,
                                groups=2, padding="same", bias=False),
    "plain-stride2": dict(in_channels=3, out_channels=8, kernel_size=3, stride=2, padding=1),
}


def base_layer(kind: str, seed: int = 0) -> nn.Module:
    """A random base layer with a non-zero bias (default inits leave Conv1D's bias at 0)."""
    torch.manual_seed(seed)
    if kind == "linear":
        m = nn.Linear(24, 16)
    elif kind == "linear-nobias":
        m = nn.Linear(24, 16, bias=False)
    elif kind == "conv1d":
        m = Conv1D(16, 24)  # nf=out=16, nx=in=24; weight (in, out)
        nn.init.normal_(m.weight, std=0.2)
    elif kind in CONV_VARIANTS:
        m = nn.Conv2d(**CONV_VARIANTS[kind])
    else:  # pragma: no cover
        raise AssertionError(kind)
    if m.bias is not None:
        with torch.no_grad():
            m.bias.normal_(0.0, 0.5)
    return m


def inputs_for(kind: str, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind in CONV_VARIANTS:
        return torch.randn(2, CONV_VARIANTS[kind]["in_channels"], 11, 10, generator=g)
    return torch.randn(3, 5, 24, generator=g)  # (batch, tokens, in)


def wrapped_seq(kind: str, seed: int = 0, **cfg) -> tuple[nn.Module, nn.Module]:
    """(original Sequential(base), the same model wrapped); two builds with the same seed."""
    orig = nn.Sequential(base_layer(kind, seed)).eval()
    model = nn.Sequential(base_layer(kind, seed)).eval()
    cfg.setdefault("r", 4)
    dl.wrap(model, dl.DecayConfig(target_modules=["0"], **cfg))
    return orig, model


def randomize(layer: dl.DecayLayer, seed: int = 5) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.lora_B.weight.copy_(torch.randn(layer.lora_B.weight.shape, generator=g) * 0.1)
        if layer.C is not None:
            layer.C.copy_(torch.randn(layer.C.shape, generator=g))


def as_2d(layer: dl.DecayLayer, w: torch.Tensor) -> torch.Tensor:
    """A native-layout weight-shaped tensor as (out, fan_in)."""
    if isinstance(layer, dl.DecayConv1D):
        return w.t()
    return w.reshape(layer.geometry.out_features, -1)


ALL_KINDS = ["linear", "linear-nobias", "conv1d", *CONV_VARIANTS]
FUSED_KINDS = ["linear", "conv1d", "stride2-dil2-groups2-reflect", "same-reflect"]


# ----- identity at wrap time ------------------------------------------------------------------
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_fresh_wrap_is_identity(kind):
    orig, model = wrapped_seq(kind)
    layer = model[0]
    assert isinstance(layer, dl.DecayLayer)
    assert layer.d == 1.0 and not bool(layer.noise_active)
    assert torch.count_nonzero(layer.lora_B.weight) == 0
    x = inputs_for(kind)
    with torch.no_grad():
        y0, y1 = orig(x), model(x)
    assert y0.shape == y1.shape
    assert max_diff(y0, y1) <= 1e-6
    # also in training mode (no noise at d = 1)
    model.train()
    with torch.no_grad():
        assert max_diff(model(x), y0) <= 1e-6


def test_copied_c_takes_over_the_bias():
    """c_init='copy': C starts as b, so at d = 0 (W and b gone) the bias is still b."""
    orig, model = wrapped_seq("linear", c_init="copy")
    layer = model[0]
    assert torch.equal(layer.C.detach(), orig[0].bias.detach())
    assert layer.C is not layer.base_layer.bias and layer.C.requires_grad
    dl.set_decay(model, 0.0)
    x = inputs_for("linear")
    with torch.no_grad():
        # B = 0 at wrap time: the d = 0 output is exactly the copied bias
        assert torch.equal(model(x), orig[0].bias.expand(3, 5, 16))
        # the bias moved into C: at d = 1 and d = 0.5 the layer is d W x + b, not + (1 + d) b
        for d in (1.0, 0.5):
            dl.set_decay(model, d)
            expected = torch.nn.functional.linear(x, orig[0].weight) * d + orig[0].bias
            assert max_diff(model(x), expected) <= 1e-6
            assert max_diff(layer.reference_forward(x, None), expected) <= 1e-6


def test_conv2d_adapter_is_real_lowrank_conv():
    for kind, spec in CONV_VARIANTS.items():
        _, model = wrapped_seq(kind)
        layer, base = model[0], model[0].base_layer
        groups, r = spec.get("groups", 1), 4
        k = base.kernel_size
        assert layer.lora_A.weight.shape == (r, spec["in_channels"] // groups, *k)
        assert layer.lora_B.weight.shape == (spec["out_channels"], r // groups, 1, 1)
        for attr in ("stride", "padding", "dilation", "groups", "padding_mode"):
            assert getattr(layer.lora_A, attr) == getattr(base, attr), (kind, attr)
        assert layer.lora_B.groups == groups
        assert layer.lora_B.kernel_size == (1, 1)
        assert layer.C.shape == (spec["out_channels"],)


# ----- fused forward == unfused reference -------------------------------------------------------
@pytest.mark.parametrize("kind", FUSED_KINDS)
@pytest.mark.parametrize("d", [0.7, 0.31])
@pytest.mark.parametrize("stats", ["global", "per_output"])
def test_fused_equals_reference(kind, d, stats):
    _, model = wrapped_seq(kind, noise_stats=stats)
    layer = model[0]
    randomize(layer)
    model.train()
    x = inputs_for(kind)
    dl.set_decay(model, d, noise=True, step=17)
    with torch.no_grad():
        y_fused = model(x)
        noise = layer.sample_noise()
        y_ref = layer.reference_forward(x, noise)
        y_clean = layer.reference_forward(x, None)
        dl.set_decay(model, d, noise=True, step=18)
        y_other = layer.reference_forward(x, layer.sample_noise())
    assert max_diff(y_fused, y_ref) <= 1e-5
    # the comparison has power: the noise term is not negligible, and it changes with the step
    assert max_diff(y_fused, y_clean) > 1e-2
    assert max_diff(y_fused, y_other) > 1e-2


@pytest.mark.parametrize("kind", FUSED_KINDS)
def test_fused_equals_reference_noise_kept_at_zero_decay(kind):
    """Config A's cool-down: d = 0 but the noise stays on, so the frozen path is N x."""
    _, model = wrapped_seq(kind)
    layer = model[0]
    randomize(layer)
    model.train()
    x = inputs_for(kind)
    dl.set_decay(model, 0.0, noise=True, step=9)
    with torch.no_grad():
        y = model(x)
        assert max_diff(y, layer.reference_forward(x, layer.sample_noise())) <= 1e-5
        assert max_diff(y, layer.reference_forward(x, None)) > 1e-2


@pytest.mark.parametrize("kind", ["linear", "conv1d", "stride2-dil2-groups2-reflect"])
def test_fused_equals_reference_without_noise(kind):
    _, model = wrapped_seq(kind)
    randomize(model[0])
    model.train()
    x = inputs_for(kind)
    for d in (1.0, 0.7, 0.31, 0.0):
        dl.set_decay(model, d, noise=False, step=3)
        with torch.no_grad():
            assert max_diff(model(x), model[0].reference_forward(x, None)) <= 1e-5


def test_reference_forward_formula_linear():
    """reference_forward really is d (W x + b) + N x + s B A x + C, computed by hand."""
    _, model = wrapped_seq("linear", alpha=8)  # s = 8 / 4 = 2
    layer = model[0]
    randomize(layer)
    dl.set_decay(model, 0.4, noise=True, step=2)
    x = inputs_for("linear")
    n = layer.sample_noise()
    w, b = layer.base_layer.weight, layer.base_layer.bias
    a, bb = layer.lora_A.weight, layer.lora_B.weight
    with torch.no_grad():
        expected = 0.4 * (x @ w.t() + b) + x @ n.t() + 2.0 * (x @ a.t() @ bb.t()) + layer.C
        assert max_diff(layer.reference_forward(x, n), expected) <= 1e-5


# ----- noise sampling ---------------------------------------------------------------------------
def test_noise_is_a_function_of_the_step():
    _, model = wrapped_seq("linear")
    layer = model[0]
    dl.set_decay(model, 0.5, noise=True, step=5)
    n5 = layer.sample_noise()
    assert torch.equal(n5, layer.sample_noise())
    dl.set_decay(model, 0.5, noise=True, step=6)
    n6 = layer.sample_noise()
    assert n6.shape == layer.base_layer.weight.shape
    assert not torch.allclose(n5, n6)
    dl.set_decay(model, 0.5, noise=True, step=5)  # "resume": back at step 5
    assert torch.equal(layer.sample_noise(), n5)
    # the fused training forward is deterministic at a fixed step too
    model.train()
    x = inputs_for("linear")
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_separately_wrapped_copies_draw_identical_noise():
    a = dl.wrap(make_mlp(), mlp_config(seed=7))
    b = dl.wrap(make_mlp(), mlp_config(seed=7))
    c = dl.wrap(make_mlp(), mlp_config(seed=8))
    for m in (a, b, c):
        dl.set_decay(m, 0.5, noise=True, step=11)
    la, lb, lc = (dict(dl.decay_layers(m)) for m in (a, b, c))
    assert list(la) == list(lb) == ["0", "2", "4"]
    for name in la:
        assert torch.equal(la[name].sample_noise(), lb[name].sample_noise())
        assert not torch.allclose(la[name].sample_noise(), lc[name].sample_noise())
    # distinct layers get distinct seeds
    seeds = [layer.noise_seed for layer in la.values()]
    assert len(set(seeds)) == len(seeds)
    # and the whole model's training forward matches across the two copies
    for m in (a, b):
        m.train()
    x = mlp_inputs()
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_noise_params_shapes_and_values():
    for kind, view in [("linear", (16, 1)), ("conv1d", (1, 16)),
                       ("stride2-dil2-groups2-reflect", (8, 1, 1, 1))]:
        _, model = wrapped_seq(kind, noise_stats="per_output", noise_scale=0.5)
        layer = model[0]
        w2 = as_2d(layer, layer.base_layer.weight).double()
        m, s = w2.mean(dim=1), w2.std(dim=1, unbiased=False)
        mean, std = layer.noise_params(0.6)
        assert mean.shape == view and std.shape == view
        assert torch.allclose(mean.reshape(-1).double(), 0.4 * m, atol=1e-6)
        assert torch.allclose(std.reshape(-1).double(), 0.5 * math.sqrt(1 - 0.36) * s, atol=1e-6)
    _, model = wrapped_seq("linear", noise_stats="global")
    layer = model[0]
    w = layer.base_layer.weight.double()
    mean, std = layer.noise_params(0.6)
    assert mean.shape == (1,) and std.shape == (1,)
    assert mean.item() == pytest.approx(0.4 * w.mean().item(), abs=1e-6)
    assert std.item() == pytest.approx(0.8 * w.std(unbiased=False).item(), rel=1e-5)
    assert torch.all(layer.noise_params(1.0)[1] == 0)


# ----- moments of the effective weight d W + N ---------------------------------------------------
def _shaped_weight(out: int, fan_in: int, seed: int) -> torch.Tensor:
    """(out, fan_in) weight whose rows have clearly different means and stds."""
    g = torch.Generator().manual_seed(seed)
    means = torch.linspace(-0.6, 0.9, out)[:, None]
    stds = torch.linspace(0.05, 0.5, out)[:, None]
    return means + stds * torch.randn(out, fan_in, generator=g)


def _moment_layer(kind: str, stats: str, out: int, fan_in: int) -> dl.DecayLayer:
    w2 = _shaped_weight(out, fan_in, seed=3)
    if kind == "linear":
        base = nn.Linear(fan_in, out)
        native = w2
    elif kind == "conv1d":
        base = Conv1D(out, fan_in)
        native = w2.t().contiguous()
    else:
        base = nn.Conv2d(fan_in // 16, out, 4)
        native = w2.reshape(out, fan_in // 16, 4, 4)
    with torch.no_grad():
        base.weight.copy_(native)
    cls = {"linear": dl.DecayLinear, "conv1d": dl.DecayConv1D, "conv2d": dl.DecayConv2d}[kind]
    return cls(base, 2, noise_stats=stats, noise_seed=99)


def _moment_tolerances(d: float, var: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """5 standard errors of the sample mean and sample variance of d W + N over n entries.

    With W fixed (its sample moments are exactly m, sigma^2) and N = mean_N + s_N z:
    mean error = s_N * mean(z), SE s_N / sqrt(n); variance error = s_N^2 (mean(z^2) - 1)
    + 2 d s_N cov(W, z), SE sqrt(2 s_N^4 + 4 d^2 sigma^2 s_N^2) / sqrt(n).
    """
    var_n = (1 - d * d) * var
    se_mean = var_n.sqrt() / math.sqrt(n)
    se_var = (2 * var_n**2 + 4 * d * d * var * var_n).sqrt() / math.sqrt(n)
    return 5 * se_mean, 5 * se_var


@pytest.mark.parametrize("d", [0.9, 0.5, 0.31])
@pytest.mark.parametrize("kind", ["linear", "conv1d", "conv2d"])
def test_effective_weight_moments_global(d, kind):
    layer = _moment_layer(kind, "global", out=64, fan_in=1024)
    layer.train()
    layer.set_state(d, True, 1)
    w2 = as_2d(layer, layer.base_layer.weight).double()
    m, var = w2.mean(), w2.var(unbiased=False)
    n = w2.numel()
    tol_mean, tol_var = _moment_tolerances(d, var, n)
    for step in (1, 2, 3):
        layer.set_state(d, True, step)
        e = as_2d(layer, layer.effective_weight()).double()
        assert abs(e.mean() - m) <= tol_mean
        assert abs(e.var(unbiased=False) - var) <= tol_var
        # the noise really is there: it is not just d W (which has variance d^2 sigma^2)
        assert abs(e.var(unbiased=False) - d * d * var) > 10 * tol_var


@pytest.mark.parametrize("d", [0.9, 0.5, 0.31])
@pytest.mark.parametrize("kind", ["linear", "conv1d", "conv2d"])
def test_effective_weight_moments_per_output(d, kind):
    out, fan_in = 6, 4096
    layer = _moment_layer(kind, "per_output", out=out, fan_in=fan_in)
    layer.train()
    layer.set_state(d, True, 4)
    w2 = as_2d(layer, layer.base_layer.weight).double()
    m, var = w2.mean(dim=1), w2.var(dim=1, unbiased=False)
    tol_mean, tol_var = _moment_tolerances(d, var, fan_in)
    e = as_2d(layer, layer.effective_weight()).double()
    assert torch.all((e.mean(dim=1) - m).abs() <= tol_mean)
    assert torch.all((e.var(dim=1, unbiased=False) - var).abs() <= tol_var)
    # power: global statistics on the same weight would miss the per-row moments
    glob = _moment_layer(kind, "global", out=out, fan_in=fan_in)
    glob.train()
    glob.set_state(d, True, 4)
    e_glob = as_2d(glob, glob.effective_weight()).double()
    assert torch.any((e_glob.mean(dim=1) - m).abs() > tol_mean)
    assert torch.any((e_glob.var(dim=1, unbiased=False) - var).abs() > tol_var)


# ----- clear stage and eval --------------------------------------------------------------------
def test_noise_cleared_below_threshold():
    model = dl.wrap(make_mlp(), mlp_config(schedule=dl.PRESET_SCHEDULES["B"]))
    model.train()
    total = 1000
    # preset B: d = 1 - (p - 0.05) / 0.8 < 0.3  <=>  p > 0.61
    for step in (650, 700, 800):
        d = dl.set_progress(model, step, total)
        assert 0.0 < d < 0.3
        for _, layer in dl.decay_layers(model):
            assert not bool(layer.noise_active)
            assert torch.equal(layer.effective_weight(), layer.base_layer.weight * d)
    x = mlp_inputs()
    dl.set_progress(model, 700, total)
    with torch.no_grad():
        y700 = model(x)
        dl.set_progress(model, 700, total)  # same d, and no randomness -> identical
        assert torch.equal(model(x), y700)
        for _, layer in dl.decay_layers(model):
            h = torch.randn(4, layer.geometry.in_features)
            assert max_diff(layer(h), layer.reference_forward(h, None)) <= 1e-5
    # ... while just above the threshold the noise is on
    d = dl.set_progress(model, 600, total)
    assert d > 0.3
    assert all(bool(layer.noise_active) for _, layer in dl.decay_layers(model))


@pytest.mark.parametrize("stats", ["global", "per_output"])
@pytest.mark.parametrize("kind", ["linear", "conv1d", "stride2-dil2-groups2-reflect"])
def test_eval_replaces_noise_by_its_mean(stats, kind):
    _, model = wrapped_seq(kind, noise_stats=stats)
    layer = model[0]
    randomize(layer)
    d = 0.6
    dl.set_decay(model, d, noise=True, step=3)
    model.eval()
    w = layer.base_layer.weight
    w2 = as_2d(layer, w).double()
    m = w2.mean(dim=1) if stats == "per_output" else w2.mean().expand(w2.shape[0])
    expected_2d = d * w2 + (1 - d) * m[:, None]
    e3 = layer.effective_weight()
    assert e3.shape == w.shape
    assert max_diff(as_2d(layer, e3).double(), expected_2d) <= 1e-6
    dl.set_decay(model, d, noise=True, step=4)
    assert torch.equal(layer.effective_weight(), e3)  # no randomness in eval
    x = inputs_for(kind)
    with torch.no_grad():
        y = model(x)
        dl.set_decay(model, d, noise=True, step=5)
        assert torch.equal(model(x), y)
        # and the eval forward uses that weight: frozen op with d W + (1-d) m, bias d b
        b = layer.base_layer.bias
        bias = layer.C if b is None else d * b + layer.C
        expected = layer._frozen(x, e3, bias) + layer.adapter_forward(x)
        assert max_diff(y, expected) <= 1e-5


def test_cooldown_skips_frozen_path():
    """d = 0 with the noise off: the output is s B A x + C whatever W is."""
    _, model = wrapped_seq("linear")
    layer = model[0]
    randomize(layer)
    dl.set_decay(model, 0.0, noise=False)
    x = inputs_for("linear")
    with torch.no_grad():
        y = model(x)
        layer.base_layer.weight.fill_(float("nan"))
        assert torch.equal(model(x), y)
        assert max_diff(y, layer.adapter_forward(x) + layer.C) <= 1e-6


# ----- gradients -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["linear", "conv1d", "stride2-dil2-groups2-reflect"])
def test_layer_gradients_only_reach_adapter(kind):
    _, model = wrapped_seq(kind)
    layer = model[0]
    randomize(layer)
    model.train()
    dl.set_decay(model, 0.5, noise=True, step=1)
    model(inputs_for(kind)).square().mean().backward()
    for p in (layer.lora_A.weight, layer.lora_B.weight, layer.C):
        assert p.requires_grad and p.grad is not None
        assert torch.count_nonzero(p.grad) > 0
    for p in layer.base_layer.parameters():
        assert not p.requires_grad and p.grad is None


# ----- SVD initialisation ----------------------------------------------------------------------
def _svd_expected(layer: dl.DecayLayer, x: torch.Tensor, r: int) -> torch.Tensor:
    w = layer.base_layer.weight
    w2 = as_2d(layer, w).double()
    u, s, vh = torch.linalg.svd(w2, full_matrices=False)
    wr2 = (u[:, :r] * s[:r]) @ vh[:r]
    b = layer.base_layer.bias
    if isinstance(layer, dl.DecayConv1D):
        wr = wr2.t().float()
        return x @ wr + b
    wr = wr2.reshape(w.shape).float()
    if isinstance(layer, dl.DecayConv2d):
        return F.conv2d(x, wr, b, layer.base_layer.stride, layer.base_layer.padding,
                        layer.base_layer.dilation)
    return F.linear(x, wr, b)


@pytest.mark.parametrize("kind", ["linear", "conv1d", "plain-stride2"])
@pytest.mark.parametrize("alpha", [None, 12.0])
def test_svd_init_is_truncated_svd(kind, alpha):
    r = 3
    cfg = dl.DecayConfig.from_preset("svd", r=r, alpha=alpha, target_modules=["0"])
    orig = nn.Sequential(base_layer(kind)).eval()
    model = dl.wrap(nn.Sequential(base_layer(kind)), cfg).eval()
    layer = model[0]
    assert layer.d == 0.0 and not bool(layer.noise_active)
    x = inputs_for(kind)
    with torch.no_grad():
        expected = _svd_expected(layer, x, r)
        y = model(x)
        assert max_diff(y, expected) <= 1e-4
        model.train()
        assert max_diff(model(x), expected) <= 1e-4
        # power: a rank-3 approximation is not the original layer
        assert max_diff(y, orig(x)) > 1e-2


@pytest.mark.parametrize("kind", ["linear", "conv1d", "plain-stride2"])
def test_svd_full_rank_reproduces_layer(kind):
    base = base_layer(kind)
    full = dl.layers.geometry(base).max_rank
    cfg = dl.DecayConfig.from_preset("svd", r=full, target_modules=["0"], allow_larger=True)
    orig = nn.Sequential(base_layer(kind)).eval()
    model = dl.wrap(nn.Sequential(base), cfg).eval()
    x = inputs_for(kind)
    with torch.no_grad():
        assert max_diff(model(x), orig(x)) <= 1e-4


def test_svd_refuses_grouped_conv_before_touching_the_model():
    model = nn.Sequential(base_layer("stride2-dil2-groups2-reflect"))
    cfg = dl.DecayConfig.from_preset("svd", r=4, target_modules=["0"])
    with pytest.raises(dl.InjectionError, match="svd.*grouped"):
        dl.wrap(model, cfg)
    # a failed wrap leaves the model as it was
    assert isinstance(model[0], nn.Conv2d)
    assert all(p.requires_grad for p in model.parameters())


def test_extra_repr_mentions_state():
    _, model = wrapped_seq("linear")
    dl.set_decay(model, 0.25, noise=True)
    text = repr(model[0])
    assert "r=4" in text and "d=0.25" in text and "noise=on" in text


@pytest.mark.parametrize("kind", ["linear", "conv1d", "plain-stride2"])
def test_svd_residual_keeps_function_then_ends_at_truncated_svd(kind):
    """init='svd-residual': at d = 1 the layer is the original (W - sBA + sBA, b moved into C);
    at d = 0 only the rank-r truncated SVD (+ b) is left; the caller's W is not modified."""
    r = 3
    orig = nn.Sequential(base_layer(kind)).eval()
    base = base_layer(kind)
    w_tensor = base.weight  # e.g. shared with another module: must not change
    cfg = dl.DecayConfig.from_preset("svd-residual", r=r, alpha=6.0, target_modules=["0"])
    model = dl.wrap(nn.Sequential(base), cfg).eval()
    layer = model[0]
    ref = dl.wrap(nn.Sequential(base_layer(kind)),
                  dl.DecayConfig.from_preset("svd", r=r, target_modules=["0"]))[0]
    x = inputs_for(kind)
    with torch.no_grad():
        assert torch.equal(w_tensor, orig[0].weight)  # the caller's tensor is untouched
        assert layer.d == 1.0
        assert max_diff(model(x), orig(x)) <= 1e-5
        # the frozen weight is the residual: the top-r energy is removed
        assert layer.base_layer.weight.norm() < 0.95 * orig[0].weight.norm()
        dl.set_decay(model, 0.0)
        assert max_diff(model(x), _svd_expected(ref, x, r)) <= 1e-4
