"""compress(), save/load of compressed models and of adapters."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import (
    CONV_SPECS,
    conv_config,
    conv_inputs,
    gpt2_config,
    gpt2_inputs,
    make_convnet,
    make_gpt2,
    make_mlp,
    max_diff,
    mlp_config,
    mlp_inputs,
    param_count,
    randomize_adapters,
    run,
)
from safetensors.torch import load_file
from torch import nn
from transformers.pytorch_utils import Conv1D

import decaylora as dl

TOTAL = 100


def lowrank_size(base: nn.Module, r: int, with_c: bool) -> tuple[int, int]:
    """(dense params of the base layer, params of its compressed form), from its shapes:
    dense = out * fan_in + bias; compressed = r * fan_in + out * (r / groups) + out (if C)."""
    if isinstance(base, nn.Conv2d):
        out, groups = base.out_channels, base.groups
        fan_in = base.in_channels // groups * base.kernel_size[0] * base.kernel_size[1]
    elif isinstance(base, Conv1D):
        fan_in, out = base.weight.shape
        groups = 1
    else:
        fan_in, out, groups = base.in_features, base.out_features, 1
    dense = out * fan_in + (out if base.bias is not None else 0)
    return dense, r * fan_in + out * (r // groups) + (out if with_c else 0)


def trained(build, config, **cfg) -> nn.Module:
    """A wrapped model with non-trivial adapters (and modules_to_save), driven to d = 0."""
    model = dl.wrap(build(), config(**cfg))
    randomize_adapters(model)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.requires_grad and ".lora_" not in n and not n.endswith(".C"):
                p.add_(0.05 * torch.randn_like(p))  # modules_to_save "trained" too
    dl.set_progress(model, TOTAL, TOTAL)
    return model.eval()


# ----- compress --------------------------------------------------------------------------------
def test_compress_matches_exported_view(any_model):
    _, build, config, inputs = any_model
    model = trained(build, config)
    assert all(layer.d == 0.0 for _, layer in dl.decay_layers(model))
    x = inputs()
    with dl.as_exported(model):
        y_exported = run(model, x)
    # at d = 0 without noise, the eval model already is the exported model
    assert max_diff(run(model, x), y_exported) <= 1e-5
    r = dl.get_config(model).r
    layers = dict(dl.decay_layers(model))
    sizes = [lowrank_size(layer.base_layer, r, layer.C is not None) for layer in layers.values()]
    original = param_count(build())

    dl.compress(model)

    y = run(model, x)
    assert max_diff(y, y_exported) <= 1e-5
    assert not list(dl.decay_layers(model))
    modules = dict(model.named_modules())
    for name in layers:
        assert isinstance(modules[name], nn.Sequential) and len(modules[name]) == 2
    keys = list(model.state_dict())
    assert not any("base_layer" in k for k in keys)
    assert not any(s in k for k in keys for s in ("lora_", "noise_mean", "noise_std", ".decay"))
    dense = sum(d for d, _ in sizes)
    compressed = sum(c for _, c in sizes)
    assert param_count(model) == original - dense + compressed
    assert compressed < dense
    # after compression the model is no longer "wrapped"
    with pytest.raises(dl.InjectionError, match="not wrapped"):
        dl.get_config(model)


def test_compress_matches_summary_prediction():
    model = trained(make_convnet, conv_config)
    predicted = dl.summary(model).params_after_compression
    dl.compress(model)
    assert param_count(model) == predicted


def test_compressed_conv_shapes():
    r = 4
    model = trained(make_convnet, conv_config, r=r)
    dl.compress(model)
    for name, spec in CONV_SPECS.items():
        seq = model.get_submodule(name)
        a, b = seq
        assert isinstance(a, nn.Conv2d) and isinstance(b, nn.Conv2d)
        g = spec.get("groups", 1)
        k = spec["kernel_size"]
        k = k if isinstance(k, tuple) else (k, k)
        assert a.weight.shape == (r, spec["in_channels"] // g, *k)
        assert a.bias is None
        assert b.weight.shape == (spec["out_channels"], r // g, 1, 1)
        assert b.bias.shape == (spec["out_channels"],)
        stride = spec.get("stride", 1)
        dilation = spec.get("dilation", 1)
        assert a.stride == (stride, stride) and a.dilation == (dilation, dilation)
        assert a.padding_mode == spec.get("padding_mode", "zeros")
        pad = spec["padding"]
        assert a.padding == (pad if isinstance(pad, str) else (pad, pad))
        assert a.groups == b.groups == g
        assert b.stride == (1, 1) and b.kernel_size == (1, 1)


def test_compressed_linear_folds_scale_and_c():
    model = trained(make_mlp, mlp_config, alpha=12.0)  # r = 4 -> s = 3
    layer = model[0]
    a, b, c = (t.detach().clone() for t in (layer.lora_A.weight, layer.lora_B.weight, layer.C))
    dl.compress(model)
    assert torch.equal(model[0][0].weight, a)
    assert torch.allclose(model[0][1].weight, 3.0 * b)
    assert torch.equal(model[0][1].bias, c)


def test_compress_without_c_has_no_bias():
    model = trained(make_mlp, mlp_config, c_init="none")
    x = mlp_inputs()
    with dl.as_exported(model):
        y_exported = run(model, x)
    dl.compress(model)
    assert all(model.get_submodule(n)[1].bias is None for n in ("0", "2", "4"))
    assert max_diff(run(model, x), y_exported) <= 1e-5


def test_compress_refuses_while_frozen_path_is_live():
    model = trained(make_mlp, mlp_config)
    dl.set_decay(model, 0.2)
    with pytest.raises(dl.ExportError, match=r"3 wrapped layers still use.*d=0\.2.*force=True"):
        dl.compress(model)
    assert len(list(dl.decay_layers(model))) == 3  # nothing changed
    x = mlp_inputs()
    with dl.as_exported(model):
        y_exported = run(model, x)
    assert max_diff(run(model, x), y_exported) > 1e-3  # W still matters at d = 0.2
    dl.compress(model, force=True)
    assert max_diff(run(model, x), y_exported) <= 1e-5


def test_compress_with_noise_kept_on_at_the_end():
    """Preset notes-a keeps the noise on after d reached 0: compress is allowed (d = 0) and
    gives the exported view."""
    model = trained(make_mlp, mlp_config, schedule=dl.PRESET_SCHEDULES["A"])
    assert all(bool(layer.noise_active) for _, layer in dl.decay_layers(model))
    x = mlp_inputs()
    with dl.as_exported(model):
        y_exported = run(model, x)
    dl.compress(model)
    assert max_diff(run(model, x), y_exported) <= 1e-5


def test_compress_needs_wrapped_model():
    with pytest.raises(dl.InjectionError, match="not wrapped"):
        dl.compress(make_mlp())


# ----- save / load compressed -----------------------------------------------------------------
def test_save_load_compressed_is_bitwise(any_model, tmp_path):
    name, build, config, inputs = any_model
    model = trained(build, config)
    wrapped = {n: layer.r for n, layer in dl.decay_layers(model)}
    dl.compress(model)
    x = inputs()
    y = run(model, x)
    dl.save_compressed(model, tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors").is_file()
    manifest = json.loads((tmp_path / "out" / "decaylora.json").read_text())
    assert manifest["format"] == "decaylora-compressed"
    assert {n: spec["r"] for n, spec in manifest["modules"].items()} == wrapped
    skeleton = build(seed=5).eval()  # a dense skeleton with other random weights
    dl.load_compressed(skeleton, tmp_path / "out")
    sd0, sd1 = model.state_dict(), skeleton.state_dict()
    assert list(sd0) == list(sd1)
    for k in sd0:
        assert torch.equal(sd0[k], sd1[k]), k
    assert torch.equal(run(skeleton, x), y)
    if name == "gpt2":
        assert skeleton.lm_head.weight is skeleton.transformer.wte.weight
        assert torch.equal(skeleton.transformer.wte.weight, model.transformer.wte.weight)


def test_gpt2_tied_embeddings_survive_compressed_round_trip(tmp_path):
    model = trained(make_gpt2, gpt2_config)
    dl.compress(model)
    assert model.lm_head.weight is model.transformer.wte.weight
    dl.save_compressed(model, tmp_path)
    skeleton = make_gpt2(seed=9)
    dl.load_compressed(skeleton, tmp_path)
    assert skeleton.lm_head.weight is skeleton.transformer.wte.weight
    with torch.no_grad():
        skeleton.transformer.wte.weight[0, 0] += 1.0
    assert skeleton.lm_head.weight[0, 0] == skeleton.transformer.wte.weight[0, 0]


def test_compressed_errors(tmp_path):
    with pytest.raises(dl.ExportError, match="not compressed"):
        dl.save_compressed(dl.wrap(make_mlp(), mlp_config()), tmp_path / "x")
    with pytest.raises(dl.ExportError, match="not found"):
        dl.load_compressed(make_mlp(), tmp_path / "missing")
    model = trained(make_mlp, mlp_config)
    dl.compress(model)
    out = dl.save_compressed(model, tmp_path / "ok")
    # a skeleton of another architecture
    with pytest.raises(dl.ExportError, match="has no module '2'.*pass a skeleton"):
        dl.load_compressed(nn.Sequential(nn.Linear(16, 8)), out)
    # truncated weights
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "decaylora.json").write_text((out / "decaylora.json").read_text())
    (bad / "model.safetensors").write_bytes((out / "model.safetensors").read_bytes()[:50])
    with pytest.raises(dl.ExportError, match="cannot read"):
        dl.load_compressed(make_mlp(), bad)
    # corrupt and future manifests
    (bad / "decaylora.json").write_text("{not json")
    with pytest.raises(dl.ExportError, match="corrupt"):
        dl.load_compressed(make_mlp(), bad)
    (bad / "decaylora.json").write_text(json.dumps({"format": "decaylora-compressed", "version": 99}))
    with pytest.raises(dl.ExportError, match="newer decaylora"):
        dl.load_compressed(make_mlp(), bad)


# ----- save / load adapter -------------------------------------------------------------------
def _outputs(model, x, train: bool):
    model.train(train)
    torch.manual_seed(0)  # dropout masks (HF models); decaylora noise has its own generator
    return run(model, x)


def test_adapter_round_trip_into_fresh_model(any_model, tmp_path):
    name, build, config, inputs = any_model
    model = trained(build, config)
    dl.set_decay(model, 0.5, noise=True, step=7)
    x = inputs()
    y_eval, y_train = _outputs(model, x, False), _outputs(model, x, True)
    dl.save_adapter(model, tmp_path)

    fresh = build()  # same pretrained weights, not wrapped
    dl.load_adapter(fresh, tmp_path)
    assert dl.get_config(fresh) == dl.get_config(model)
    for _, layer in dl.decay_layers(fresh):
        assert layer.d == 0.5 and bool(layer.noise_active) and int(layer.step) == 7
    assert torch.equal(_outputs(fresh, x, False), y_eval)
    assert torch.equal(_outputs(fresh, x, True), y_train)
    assert [n for n, p in fresh.named_parameters() if p.requires_grad] == \
        [n for n, p in model.named_parameters() if p.requires_grad]


def test_adapter_round_trip_into_wrapped_model(any_model, tmp_path):
    _, build, config, inputs = any_model
    model = trained(build, config)
    dl.set_decay(model, 0.3, noise=False, step=2)
    x = inputs()
    y = _outputs(model, x, False)
    dl.save_adapter(model, tmp_path)
    torch.manual_seed(1234)  # different A init
    other = dl.wrap(build(), config())
    assert max_diff(_outputs(other, x, False), y) > 1e-4
    dl.load_adapter(other, tmp_path)
    assert torch.equal(_outputs(other, x, False), y)


def test_adapter_file_holds_only_adapter_state(tmp_path):
    model = trained(make_convnet, conv_config)
    dl.save_adapter(model, tmp_path)
    tensors = load_file(tmp_path / "adapter.safetensors")
    suffixes = ("lora_A.weight", "lora_B.weight", ".C", ".decay", ".noise_active", ".step",
                ".noise_mean", ".noise_std")
    assert tensors and all(k.endswith(suffixes) for k in tensors)
    assert not any("base_layer" in k for k in tensors)
    assert len(tensors) == len(CONV_SPECS) * len(suffixes)
    manifest = json.loads((tmp_path / "decaylora.json").read_text())
    assert manifest["format"] == "decaylora-adapter"
    assert dl.DecayConfig.from_dict(manifest["config"]) == dl.get_config(model)


def test_gpt2_adapter_with_tied_head_saved(tmp_path):
    """modules_to_save=["lm_head"]: lm_head is tied to wte, the adapter must still save and
    load (safetensors refuses shared tensors) and the tie must survive."""
    model = trained(make_gpt2, gpt2_config, modules_to_save=["lm_head"])
    assert model.lm_head.weight is model.transformer.wte.weight
    x = gpt2_inputs()
    y = run(model, x)
    dl.save_adapter(model, tmp_path)
    fresh = make_gpt2()
    dl.load_adapter(fresh, tmp_path)
    assert fresh.lm_head.weight is fresh.transformer.wte.weight
    assert torch.equal(fresh.lm_head.weight, model.lm_head.weight)
    assert torch.equal(run(fresh, x), y)


def test_adapter_errors(tmp_path):
    model = trained(make_mlp, mlp_config)
    dl.save_adapter(model, tmp_path / "a")
    with pytest.raises(dl.ExportError, match=r"different rank"):
        dl.load_adapter(dl.wrap(make_mlp(), mlp_config(r=2)), tmp_path / "a")
    with pytest.raises(dl.ExportError, match=r"does not fit the model: missing"):
        dl.load_adapter(dl.wrap(make_mlp(), mlp_config(target_modules=["0", "2"])),
                        tmp_path / "a")
    with pytest.raises(dl.ExportError, match=r"not a 'decaylora-compressed'"):
        dl.load_compressed(make_mlp(), tmp_path / "a")
    with pytest.raises(dl.InjectionError, match="not wrapped"):
        dl.save_adapter(make_mlp(), tmp_path / "b")
    (tmp_path / "a" / "adapter.safetensors").write_bytes(b"garbage")
    with pytest.raises(dl.ExportError, match=r"corrupt or truncated"):
        dl.load_adapter(make_mlp(), tmp_path / "a")


def test_build_lowrank_unknown_kind():
    with pytest.raises(dl.ExportError, match="unknown compressed module kind"):
        dl.build_lowrank({"kind": "conv3d", "r": 2})


def test_compress_then_conv_inputs_shape():
    model = trained(make_convnet, conv_config)
    x = conv_inputs()
    y0 = run(make_convnet(), x)
    dl.compress(model)
    assert run(model, x).shape == y0.shape


# ----- mixed ranks (rank_pattern) ------------------------------------------------------------------
#: Per-model rank patterns (each rank valid for its layer: within full rank, shrinking, and a
#: multiple of the groups for the grouped conv "0"), mixing ranks below and above r = 4.
MIXED = {
    "mlp": (make_mlp, mlp_config, mlp_inputs, {"2": 2, "4": 5}),
    "conv": (make_convnet, conv_config, conv_inputs, {"0": 6, "4": 2}),
    "gpt2": (make_gpt2, gpt2_config, gpt2_inputs, {"c_attn": 2, "h.1.mlp.c_proj": 6}),
}


@pytest.mark.parametrize("which", sorted(MIXED))
def test_mixed_ranks_compress_save_load_round_trip(which, tmp_path):
    build, config, inputs, pattern = MIXED[which]
    model = trained(build, config, rank_pattern=pattern, alpha=8)  # scales 8 / r differ
    ranks = {n: layer.r for n, layer in dl.decay_layers(model)}
    assert len(set(ranks.values())) > 1
    x = inputs()
    with dl.as_exported(model):
        y_view = run(model, x)
    dl.compress(model)
    y = run(model, x)
    # folding the per-layer scale into B only changes float32 rounding
    assert max_diff(y, y_view) <= 1e-5
    dl.save_compressed(model, tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / "decaylora.json").read_text())
    assert {n: spec["r"] for n, spec in manifest["modules"].items()} == ranks
    assert manifest["config"]["rank_pattern"] == pattern
    skeleton = build(seed=5).eval()  # dense, other weights: every low-rank shape from the manifest
    dl.load_compressed(skeleton, tmp_path / "out")
    modules = dict(skeleton.named_modules())
    for name, r in ranks.items():
        a, b = modules[name]
        r_b = b.in_channels if isinstance(b, nn.Conv2d) else b.in_features
        assert a.weight.shape[0] == r and r_b == r, name
    assert max_diff(run(skeleton, x), y_view) <= 1e-5
    assert torch.equal(run(skeleton, x), y)


@pytest.mark.parametrize("which", sorted(MIXED))
def test_mixed_ranks_adapter_round_trip(which, tmp_path):
    build, config, inputs, pattern = MIXED[which]
    model = trained(build, config, rank_pattern=pattern)
    dl.set_decay(model, 0.4, noise=False, step=3)
    x = inputs()
    y = _outputs(model, x, False)
    dl.save_adapter(model, tmp_path)
    fresh = build()
    dl.load_adapter(fresh, tmp_path)  # wraps with the saved config, rank_pattern included
    assert {n: la.r for n, la in dl.decay_layers(fresh)} == \
        {n: la.r for n, la in dl.decay_layers(model)}
    assert torch.equal(_outputs(fresh, x, False), y)
    # a model wrapped with one rank everywhere does not fit these adapters
    with pytest.raises(dl.ExportError, match="different rank"):
        dl.load_adapter(dl.wrap(build(), config()), tmp_path)
