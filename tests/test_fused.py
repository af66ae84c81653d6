"""Correctness of the fast paths measured by ``benchmarks/``: the benchmark's naive reference
(the notes' two-matmul forward) equals decaylora's fused forward given the same noise, forward
and backward; the one-pass noise sampler draws the same numbers as ``randn * std + mean`` and
has the right moments; the in-place effective weight ``d W + N`` touches nothing it does not
own. No timing assertions here: speed is measured by ``python -m benchmarks.train_step``."""

from __future__ import annotations

import copy
import math
import sys
from pathlib import Path

import pytest
import torch
from conftest import bert_config, bert_inputs, make_bert, max_diff
from torch import nn
from transformers.pytorch_utils import Conv1D

import decaylora as dl

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:  # `pytest` (not `python -m pytest`) does not put the repo root there
    sys.path.insert(0, _ROOT)

from benchmarks.train_step import naive_forward, use_naive_forward  # noqa: E402


def make_layer(kind: str, stats: str = "global", seed: int = 0, dtype=torch.float32):
    """A wrapped layer with non-zero bias, B and C (B = C = 0 would make comparisons trivial)."""
    torch.manual_seed(seed)
    if kind == "linear":
        base, cls = nn.Linear(24, 16), dl.DecayLinear
    elif kind == "conv1d":
        base, cls = Conv1D(16, 24), dl.DecayConv1D
        nn.init.normal_(base.weight, std=0.2)
    else:
        base = nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2)
        cls = dl.DecayConv2d
    with torch.no_grad():
        base.bias.normal_(0.0, 0.5)
    base.to(dtype)
    layer = cls(base, 4, scale=2.0, noise_stats=stats, noise_seed=31)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        layer.lora_B.weight.copy_(torch.randn(layer.lora_B.weight.shape, generator=g) * 0.1)
        layer.C.copy_(torch.randn(layer.C.shape, generator=g))
    return layer.train()


def layer_input(kind: str, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    shape = (2, 4, 9, 9) if kind == "conv2d" else (3, 5, 24)
    return torch.randn(shape, generator=g).to(dtype)


# ----- the benchmark's naive reference == the fused forward ---------------------------------------
@pytest.mark.parametrize("kind", ["linear", "conv1d", "conv2d"])
@pytest.mark.parametrize("stats", ["global", "per_output"])
@pytest.mark.parametrize("d,noisy", [(1.0, False), (0.5, True), (0.31, True), (0.0, True),
                                     (0.0, False)])
def test_naive_forward_equals_fused_layer(kind, stats, d, noisy):
    layer = make_layer(kind, stats)
    x = layer_input(kind)
    layer.set_state(d, noisy, 12)
    with torch.no_grad():
        fused = layer(x)
        naive = naive_forward(layer, x)  # draws the same noise: same seed, same step
        explicit = naive_forward(layer, x, layer.sample_noise() if noisy else None)
    assert max_diff(fused, naive) <= 1e-5
    assert max_diff(fused, explicit) <= 1e-5
    assert max_diff(fused, layer.reference_forward(x, layer.sample_noise() if noisy else None)) \
        <= 1e-5
    if noisy:  # power: the noise term is not negligible
        layer.set_state(d, False, 12)
        with torch.no_grad():
            assert max_diff(fused, layer(x)) > 1e-2


@pytest.mark.parametrize("d,noisy", [(1.0, False), (0.5, True), (0.0, False)])
def test_naive_model_equals_fused_model_forward_and_backward(d, noisy):
    """The benchmark's naive variant and decaylora train the same function: same loss and the
    same gradients on every trainable parameter (tiny BERT, dropout masks seeded alike)."""
    fused = dl.wrap(make_bert(), bert_config(r=4))
    naive = use_naive_forward(copy.deepcopy(fused))
    for m in (fused, naive):
        g = torch.Generator().manual_seed(3)
        with torch.no_grad():
            for _, layer in dl.decay_layers(m):
                layer.lora_B.weight.copy_(torch.randn(layer.lora_B.weight.shape, generator=g))
                layer.C.copy_(0.1 * torch.randn(layer.C.shape, generator=g))
        m.train()
        dl.set_decay(m, d, noise=noisy, step=5)
    inputs = bert_inputs()
    labels = torch.tensor([0, 1, 1])
    losses = []
    for m in (fused, naive):
        torch.manual_seed(0)  # identical dropout masks
        loss = m(**inputs, labels=labels).loss
        loss.backward()
        losses.append(loss.detach())
    assert torch.allclose(losses[0], losses[1], atol=1e-5)
    grads_f = {n: p.grad for n, p in fused.named_parameters() if p.requires_grad}
    grads_n = {n: p.grad for n, p in naive.named_parameters() if p.requires_grad}
    assert grads_f.keys() == grads_n.keys() and len(grads_f) > 0
    for n in grads_f:
        assert grads_f[n] is not None and grads_n[n] is not None, n
        assert max_diff(grads_f[n], grads_n[n]) <= 1e-4 * (1 + grads_f[n].abs().max().item()), n
    # frozen weights stay frozen in the naive variant too
    assert all(p.grad is None for n, p in naive.named_parameters() if ".base_layer." in n)


# ----- one-pass noise sampler ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["linear", "conv1d", "conv2d"])
@pytest.mark.parametrize("stats", ["global", "per_output"])
@pytest.mark.parametrize("d", [0.9, 0.5, 0.0])
def test_sample_noise_equals_randn_formula(kind, stats, d):
    """sample_noise() is z * std + mean with z = randn from the (seed, step) generator: the
    one-pass normal_ path draws the same stream (equal up to float rounding)."""
    layer = make_layer(kind, stats)
    layer.set_state(d, True, 40)
    w = layer.base_layer.weight
    g = torch.Generator().manual_seed(layer.noise_seed_for_step())
    z = torch.randn(w.shape, generator=g, dtype=w.dtype)
    mean, std = layer.noise_params()
    expected = z * std + mean
    got = layer.sample_noise()
    assert got.shape == w.shape and got.dtype == w.dtype
    assert max_diff(got, expected) <= 1e-6 * (1 + expected.abs().max().item())
    assert torch.equal(got, layer.sample_noise())  # a pure function of (seed, layer, step)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_sample_noise_other_dtypes(dtype):
    layer = make_layer("linear", dtype=dtype)
    layer.set_state(0.5, True, 3)
    n = layer.sample_noise()
    assert n.dtype == dtype
    g = torch.Generator().manual_seed(layer.noise_seed_for_step())
    z = torch.randn(n.shape, generator=g, dtype=dtype)  # the same stream, in the layer's dtype
    mean, std = (t.double() for t in layer.noise_params())
    expected = z.double() * std + mean
    # bfloat16 keeps 8 bits of mantissa: one rounding of |value| <= 4 sigma is <= 2^-8 of it
    tol = 1e-12 if dtype == torch.float64 else 2**-7 * expected.abs().max().item()
    assert max_diff(n.double(), expected) <= tol


def test_sample_noise_is_zero_spread_at_d_one():
    layer = make_layer("linear")
    layer.set_state(1.0, True, 1)  # std = sqrt(1 - d^2) sigma = 0, mean = (1 - d) m = 0
    assert torch.count_nonzero(layer.sample_noise()) == 0


@pytest.mark.parametrize("stats", ["global", "per_output"])
@pytest.mark.parametrize("d", [0.8, 0.5, 0.2])
def test_sample_noise_moments(stats, d):
    """N ~ Normal((1 - d) m, (1 - d^2) sigma^2) with m, sigma^2 the moments of W (per matrix or
    per output row): sample mean and variance within 5 standard errors."""
    out, fan_in = 8, 4096
    base = nn.Linear(fan_in, out)
    g = torch.Generator().manual_seed(0)
    rows_m = torch.linspace(-0.5, 0.7, out)[:, None]
    rows_s = torch.linspace(0.05, 0.4, out)[:, None]
    with torch.no_grad():
        base.weight.copy_(rows_m + rows_s * torch.randn(out, fan_in, generator=g))
    layer = dl.DecayLinear(base, 2, noise_stats=stats, noise_seed=5).train()
    w = base.weight.detach().double()
    if stats == "global":
        m, var = w.mean().expand(out), w.var(unbiased=False).expand(out)
        n_per = out * fan_in
    else:
        m, var = w.mean(dim=1), w.var(dim=1, unbiased=False)
        n_per = fan_in
    exp_mean, exp_var = (1 - d) * m, (1 - d * d) * var
    for step in (1, 2):
        layer.set_state(d, True, step)
        n = layer.sample_noise().double()
        if stats == "global":
            got_mean, got_var = n.mean().expand(out), n.var(unbiased=False).expand(out)
        else:
            got_mean, got_var = n.mean(dim=1), n.var(dim=1, unbiased=False)
        se_mean = (exp_var / n_per).sqrt()
        se_var = exp_var * math.sqrt(2.0 / n_per)
        assert torch.all((got_mean - exp_mean).abs() <= 5 * se_mean)
        assert torch.all((got_var - exp_var).abs() <= 5 * se_var)
    # and it is Gaussian-shaped: 4th standardised moment near 3
    z = (n - exp_mean[:, None]) / exp_var.sqrt()[:, None]
    assert abs((z**4).mean().item() - 3.0) < 0.15


# ----- in-place effective weight -----------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["linear", "conv1d", "conv2d"])
@pytest.mark.parametrize("d", [0.6, 0.0])
def test_effective_weight_in_place_owns_only_its_sample(kind, d):
    layer = make_layer(kind)
    layer.set_state(d, True, 8)
    w_before = layer.base_layer.weight.detach().clone()
    noise = layer.sample_noise()
    noise_copy = noise.clone()
    eff = layer.effective_weight()  # samples internally, adds d W in place
    assert max_diff(eff, d * w_before + noise_copy) <= 1e-6
    assert torch.equal(layer.base_layer.weight, w_before)  # W untouched
    given = layer.effective_weight(noise)  # caller's noise: must not be modified
    assert torch.equal(noise, noise_copy)
    assert max_diff(given, eff) <= 1e-6
    assert given.data_ptr() != noise.data_ptr() or d == 0.0
    # eval: N replaced by its mean, deterministic, W untouched
    layer.eval()
    e1, e2 = layer.effective_weight(), layer.effective_weight()
    assert torch.equal(e1, e2)
    assert torch.equal(layer.base_layer.weight, w_before)


# ----- the proposed (not shipped) DecayLinear forward measured by benchmarks.proposed_forward -----
@pytest.mark.parametrize("scale", [1.0, 2.0])
@pytest.mark.parametrize("d,noisy,export", [(1.0, False, False), (0.5, True, False),
                                            (0.7, False, False), (0.0, True, False),
                                            (0.0, False, False), (0.5, True, True)])
def test_proposed_linear_forward_equals_shipped(scale, d, noisy, export):
    """Same values and same gradients (x, A, B, C) as DecayLayer.forward, so the proposal can be
    adopted without changing results."""
    from benchmarks.proposed_forward import proposed_linear_forward

    layer = make_layer("linear")
    layer.scale = scale
    layer.set_state(d, noisy, 21)
    layer.export_view = export
    results = []
    for fwd in (layer.forward, lambda x: proposed_linear_forward(layer, x)):
        x = layer_input("linear").requires_grad_(True)
        layer.zero_grad(set_to_none=True)
        y = fwd(x)
        (y * torch.linspace(-1, 1, y.shape[-1])).sum().backward()
        grads = [x.grad] + [p.grad for p in (layer.lora_A.weight, layer.lora_B.weight, layer.C)]
        results.append((y.detach(), grads))
    (y0, g0), (y1, g1) = results
    assert max_diff(y0, y1) <= 1e-5
    for a, b in zip(g0, g1, strict=True):
        assert a is not None and b is not None
        assert max_diff(a, b) <= 1e-5 * (1 + a.abs().max().item())
    assert layer.base_layer.weight.grad is None
