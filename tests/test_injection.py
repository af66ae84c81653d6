"""wrap(): target selection, identity at wrap time on whole models, what is trainable, errors,
DecayConfig handling, set_decay/set_progress and as_exported."""

from __future__ import annotations

import pytest
import torch
from conftest import (
    BERT_LAYERS,
    GPT2_LAYERS,
    bert_config,
    bert_inputs,
    conv_config,
    conv_inputs,
    gpt2_config,
    gpt2_inputs,
    make_bert,
    make_convnet,
    make_gpt2,
    make_mlp,
    max_diff,
    mlp_config,
    mlp_inputs,
    randomize_adapters,
    run,
)
from torch import nn

import decaylora as dl


# ----- freshly wrapped models are the original models -----------------------------------------
def test_fresh_wrap_identity_all_models(any_model):
    _, build, config, inputs = any_model
    orig, model = build(), build()
    dl.wrap(model, config())
    model.eval()
    x = inputs()
    y0, y1 = run(orig, x), run(model, x)
    assert y0.shape == y1.shape
    assert max_diff(y0, y1) <= 1e-6
    assert len(list(dl.decay_layers(model))) > 0


def test_bert_targets():
    model = dl.wrap(make_bert(), bert_config())
    names = [n for n, _ in dl.decay_layers(model)]
    expected = []
    for i in range(BERT_LAYERS):
        p = f"bert.encoder.layer.{i}."
        expected += [p + "attention.self.query", p + "attention.self.key",
                     p + "attention.self.value", p + "attention.output.dense",
                     p + "intermediate.dense", p + "output.dense"]
    assert names == expected
    assert all(isinstance(m, dl.DecayLinear) for _, m in dl.decay_layers(model))
    assert isinstance(model.bert.pooler.dense, nn.Linear)  # not a target
    assert dl.get_config(model).r == 4


def test_gpt2_targets_are_conv1d():
    model = dl.wrap(make_gpt2(), gpt2_config())
    layers = dict(dl.decay_layers(model))
    assert len(layers) == 4 * GPT2_LAYERS  # c_attn, attn.c_proj, c_fc, mlp.c_proj
    assert all(isinstance(m, dl.DecayConv1D) for m in layers.values())
    assert layers["transformer.h.0.attn.c_attn"].geometry.out_features == 3 * 32
    assert layers["transformer.h.0.mlp.c_fc"].geometry.out_features == 4 * 32
    assert layers["transformer.h.0.mlp.c_proj"].geometry.in_features == 4 * 32


def test_find_targets_matches_wrap():
    cfg = bert_config()
    names = dl.find_targets(make_bert(), cfg)
    model = dl.wrap(make_bert(), cfg)
    assert names == [n for n, _ in dl.decay_layers(model)]


def test_target_selection_modes():
    # by type only
    model = dl.wrap(make_mlp(), dl.DecayConfig(r=2, target_types=["Linear"]))
    assert [n for n, _ in dl.decay_layers(model)] == ["0", "2", "4"]
    # regex over the whole qualified name
    names = dl.find_targets(make_bert(), dl.DecayConfig(r=4, target_modules=r".*layer\.1\..*(query|value)"))
    assert names == ["bert.encoder.layer.1.attention.self.query",
                     "bert.encoder.layer.1.attention.self.value"]
    # names and types together, with an exclusion
    cfg = dl.DecayConfig(r=4, target_modules=["dense"], target_types=["Linear"],
                         exclude_modules=["pooler.dense", "layer.0.intermediate.dense"])
    names = dl.find_targets(make_bert(), cfg)
    assert "bert.pooler.dense" not in names
    assert "bert.encoder.layer.0.intermediate.dense" not in names
    assert "bert.encoder.layer.1.intermediate.dense" in names
    assert len(names) == 3 * BERT_LAYERS - 1  # attention.output, intermediate, output per layer


# ----- what is trainable ---------------------------------------------------------------------
def _is_adapter(name: str) -> bool:
    return ".lora_A." in name or ".lora_B." in name or name.endswith(".C")


def test_bert_trainable_flags():
    model = dl.wrap(make_bert(), bert_config())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    expected = {n for n, _ in model.named_parameters() if _is_adapter(n) or n.startswith("classifier.")}
    assert trainable == expected
    # 12 layers x (A, B, C) + classifier weight and bias
    assert len(trainable) == 6 * BERT_LAYERS * 3 + 2


def test_bert_backward_grads_only_on_adapters_and_saved_modules():
    model = dl.wrap(make_bert(), bert_config(schedule=dl.PRESET_SCHEDULES["B"]))
    randomize_adapters(model)
    model.train()
    dl.set_decay(model, 0.5, noise=True, step=3)
    out = model(**bert_inputs(), labels=torch.tensor([0, 1, 1]))
    out.loss.backward()
    for name, p in model.named_parameters():
        if _is_adapter(name) or name.startswith("classifier."):
            assert p.grad is not None, name
            assert torch.isfinite(p.grad).all(), name
        else:
            assert p.grad is None, name
    # the frozen parts named in the brief really are frozen and got no gradient
    emb = model.bert.embeddings
    for p in (emb.word_embeddings.weight, emb.position_embeddings.weight,
              emb.LayerNorm.weight, model.bert.encoder.layer[0].output.LayerNorm.bias,
              model.bert.encoder.layer[0].attention.self.query.base_layer.weight,
              model.bert.encoder.layer[0].attention.self.query.base_layer.bias,
              model.bert.pooler.dense.weight):
        assert p.grad is None and not p.requires_grad
    # and the gradients are not trivially zero
    q = model.bert.encoder.layer[1].attention.self.query
    assert torch.count_nonzero(q.lora_B.weight.grad) > 0
    assert torch.count_nonzero(q.C.grad) > 0
    assert torch.count_nonzero(model.classifier.weight.grad) > 0


def test_conv_backward_grads():
    model = dl.wrap(make_convnet(), conv_config())
    randomize_adapters(model)
    model.train()
    dl.set_decay(model, 0.5, noise=True, step=1)
    model(conv_inputs()).sum().backward()
    for name, p in model.named_parameters():
        assert (p.grad is not None) == _is_adapter(name), name


# ----- set_decay / set_progress / as_exported ----------------------------------------------------
def test_set_decay_sets_every_layer():
    model = dl.wrap(make_mlp(), mlp_config())
    dl.set_decay(model, 0.25, noise=True, step=42)
    for _, layer in dl.decay_layers(model):
        assert layer.d == 0.25 and bool(layer.noise_active) and int(layer.step) == 42


def test_wrap_sets_step_zero_state_from_schedule():
    model = dl.wrap(make_mlp(), mlp_config(schedule=dl.DecaySchedule("off")))
    assert all(layer.d == 0.0 for _, layer in dl.decay_layers(model))
    model = dl.wrap(make_mlp(), mlp_config(schedule=dl.DecaySchedule("linear", 0.0, 1.0)))
    assert all(layer.d == 1.0 for _, layer in dl.decay_layers(model))


def test_as_exported_computes_adapter_only_and_restores():
    model = dl.wrap(make_mlp(), mlp_config())
    randomize_adapters(model)
    dl.set_decay(model, 0.5, noise=False)
    x = mlp_inputs()
    layers = [layer for _, layer in dl.decay_layers(model)]
    y_before = run(model, x)
    with dl.as_exported(model) as m:
        assert m is model
        assert all(layer.export_view for layer in layers)
        y_exp = run(model, x)
        # by hand: every layer is s B A h + C
        h = x
        for i, layer in enumerate(layers):
            h = layer.lora_B(layer.lora_A(h)) * layer.scale + layer.C
            if i < 2:
                h = torch.relu(h)
        assert max_diff(y_exp, h.detach()) <= 1e-6
    assert not any(layer.export_view for layer in layers)
    assert torch.equal(run(model, x), y_before)
    assert max_diff(y_exp, y_before) > 1e-3


def test_as_exported_restores_on_exception():
    model = dl.wrap(make_mlp(), mlp_config())
    layers = [layer for _, layer in dl.decay_layers(model)]
    layers[1].export_view = True  # a previous state that is not all-False
    with pytest.raises(RuntimeError, match="boom"), dl.as_exported(model):
        assert all(layer.export_view for layer in layers)
        raise RuntimeError("boom")
    assert [layer.export_view for layer in layers] == [False, True, False]


def test_as_exported_restores_training_mode_untouched():
    model = dl.wrap(make_mlp(), mlp_config())
    model.train()
    with dl.as_exported(model):
        pass
    assert model.training


# ----- errors --------------------------------------------------------------------------------
def test_error_target_typo_lists_close_names():
    with pytest.raises(dl.InjectionError, match=r"'qury' matched no module.*Close names: .*query"):
        dl.wrap(make_bert(), bert_config(target_modules=["qury", "value"]))


def test_error_no_module_of_type():
    with pytest.raises(dl.InjectionError, match=r"no module matched the targets.*Linear"):
        dl.wrap(make_mlp(), dl.DecayConfig(r=2, target_types=["Conv2d"]))


def test_error_regex_matches_nothing():
    with pytest.raises(dl.InjectionError, match=r"matched no module"):
        dl.wrap(make_mlp(), dl.DecayConfig(r=2, target_modules=r"encoder\..*"))


def test_error_exclude_and_save_typos():
    with pytest.raises(dl.InjectionError, match=r"excluded module 'pooler.dens'.*pooler.dense"):
        dl.wrap(make_bert(), bert_config(exclude_modules=["pooler.dens"]))
    with pytest.raises(dl.InjectionError, match=r"module to save 'classifer'.*classifier"):
        dl.wrap(make_bert(), bert_config(modules_to_save=["classifer"]))


def _lin(n_in: int, n_out: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(n_in, n_out))


def test_error_rank_above_full_rank():
    # Linear(16 -> 8): full rank 8
    with pytest.raises(dl.InjectionError, match=r"rank 9 is larger than the layer's full rank 8"):
        dl.wrap(_lin(16, 8), dl.DecayConfig(r=9, target_modules=["0"]))
    with pytest.raises(dl.InjectionError, match=r"full rank 8"):
        dl.wrap(_lin(16, 8), dl.DecayConfig(r=9, target_modules=["0"], allow_larger=True))


@pytest.mark.parametrize("r", [6, 7, 8])
def test_error_rank_makes_layer_larger(r):
    # Linear(16 -> 8) shrinks only for r < 16 * 8 / 24 = 5.33
    with pytest.raises(dl.InjectionError, match=rf"rank {r} would make the layer larger.*r < 5\.3.*allow_larger"):
        dl.wrap(_lin(16, 8), dl.DecayConfig(r=r, target_modules=["0"]))
    model = dl.wrap(_lin(16, 8), dl.DecayConfig(r=r, target_modules=["0"], allow_larger=True))
    assert model[0].r == r


def test_break_even_rank_is_refused():
    # Linear(8 -> 8), r = 4: r (in + out) = 64 = in * out, the layer would not shrink
    with pytest.raises(dl.InjectionError, match=r"rank 4 would make the layer larger.*r < 4\.0"):
        dl.wrap(_lin(8, 8), dl.DecayConfig(r=4, target_modules=["0"]))
    assert dl.wrap(_lin(8, 8), dl.DecayConfig(r=3, target_modules=["0"]))[0].r == 3


def test_largest_shrinking_rank_is_accepted():
    model = dl.wrap(_lin(16, 8), dl.DecayConfig(r=5, target_modules=["0"]))
    assert model[0].r == 5


def test_error_unsupported_type_by_name():
    with pytest.raises(dl.InjectionError, match=r"unsupported layer type LayerNorm"):
        dl.wrap(make_bert(), bert_config(target_modules=["attention.output.LayerNorm"]))
    with pytest.raises(dl.InjectionError, match=r"unsupported layer type Embedding"):
        dl.wrap(make_bert(), bert_config(target_modules=["word_embeddings"]))


def test_failed_wrap_leaves_model_untouched():
    model = make_bert()
    flags = [p.requires_grad for p in model.parameters()]
    with pytest.raises(dl.InjectionError):
        dl.wrap(model, bert_config(target_modules=["query", "attention.output.LayerNorm"]))
    assert not list(dl.decay_layers(model))
    assert [p.requires_grad for p in model.parameters()] == flags
    dl.wrap(model, bert_config())  # and it can still be wrapped


def test_error_depthwise_conv():
    model = nn.Sequential(nn.Conv2d(8, 8, 3, groups=8))
    with pytest.raises(dl.InjectionError, match=r"depthwise"):
        dl.wrap(model, dl.DecayConfig(r=8, target_modules=["0"], allow_larger=True))


def test_error_rank_not_multiple_of_groups():
    model = nn.Sequential(nn.Conv2d(4, 16, 3, groups=2))
    with pytest.raises(dl.InjectionError, match=r"rank 3 must be a multiple of the conv's groups \(2\).*r=2"):
        dl.wrap(model, dl.DecayConfig(r=3, target_modules=["0"]))


def test_error_wrap_twice():
    model = dl.wrap(make_mlp(), mlp_config())
    with pytest.raises(dl.InjectionError, match=r"already wrapped"):
        dl.wrap(model, mlp_config())


def test_error_wrap_needs_config():
    with pytest.raises(dl.InjectionError, match=r"needs a DecayConfig"):
        dl.wrap(make_mlp(), {"r": 4, "target_modules": ["0"]})


def test_error_get_config_unwrapped():
    with pytest.raises(dl.InjectionError, match=r"not wrapped"):
        dl.get_config(make_mlp())


# ----- DecayConfig -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("schedule", "match"),
    [
        ({"start": 0.9, "end": 0.1}, r"out of order"),
        ({"end": 1.5}, r"out of order"),
        ({"start": float("nan")}, r"start must be a number"),
        ({"shape": "cosinus"}, r"unknown decay schedule shape 'cosinus'"),
        ({"strat": 0.1}, r"unknown schedule key 'strat' \(did you mean 'start'\?\)"),
        ("linear", r"schedule must be a DecaySchedule or dict"),
    ],
)
def test_error_invalid_schedule_in_config(schedule, match):
    with pytest.raises(dl.ConfigError, match=match):
        dl.DecayConfig(r=4, target_modules=["0"], schedule=schedule)


def test_config_schedule_dict_is_converted():
    cfg = dl.DecayConfig(r=4, target_modules=["0"], schedule={"shape": "cosine", "start": 0.2})
    assert cfg.schedule == dl.DecaySchedule("cosine", 0.2, 0.85)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(r=0), r"rank r must be a positive integer"),
        (dict(r=True), r"rank r must be a positive integer"),
        (dict(r=2.5), r"rank r must be a positive integer"),
        (dict(alpha=-1.0), r"alpha must be a positive number"),
        (dict(noise_stats="per-output"), r"unknown noise_stats 'per-output' \(did you mean 'per_output'\?\)"),
        (dict(c_init="copi"), r"did you mean 'copy'"),
        (dict(init="svdd"), r"did you mean 'svd'"),
        (dict(noise_scale=-0.5), r"noise_scale must be a number >= 0"),
    ],
)
def test_error_invalid_config_values(kwargs, match):
    with pytest.raises(dl.ConfigError, match=match):
        dl.DecayConfig(target_modules=["0"], **kwargs)


def test_error_config_without_targets():
    with pytest.raises(dl.ConfigError, match=r"no targets"):
        dl.DecayConfig(r=4)


def test_error_unknown_preset():
    with pytest.raises(dl.ConfigError, match=r"unknown preset 'notes-c' \(did you mean 'notes-"):
        dl.DecayConfig.from_preset("notes-c", target_modules=["0"])
    with pytest.raises(dl.ConfigError, match=r"unknown preset 'whatever'.*choose one of: .*default"):
        dl.DecayConfig.from_preset("whatever", target_modules=["0"])


def test_error_unknown_config_key():
    data = {"r": 4, "targt_modules": ["query"]}
    with pytest.raises(dl.ConfigError, match=r"unknown DecayConfig key 'targt_modules' \(did you mean 'target_modules'\?\)"):
        dl.DecayConfig.from_dict(data)
    with pytest.raises(dl.ConfigError, match=r"must be a mapping"):
        dl.DecayConfig.from_dict([("r", 4)])


def test_config_round_trip_and_presets():
    cfg = dl.DecayConfig.from_preset("notes-b", r=8, alpha=16, target_modules=["query"],
                                     modules_to_save="classifier", seed=3)
    assert cfg.scale == 2.0
    assert cfg.modules_to_save == ["classifier"]
    back = dl.DecayConfig.from_dict(cfg.to_dict())
    assert back == cfg
    for name in dl.PRESETS:
        preset = dl.DecayConfig.from_preset(name, target_modules=["x"])
        assert dl.DecayConfig.from_dict(preset.to_dict()) == preset
    # a schedule override dict is merged into the preset's schedule
    cfg = dl.DecayConfig.from_preset("notes-b", target_modules=["x"], schedule={"end": 0.8})
    assert cfg.schedule == dl.DecaySchedule("linear", 0.05, 0.8, noise=True, clear_below=0.3)
    assert dl.DecayConfig(r=4, target_modules=["x"]).scale == 1.0


def test_default_preset_is_decay_plus_c_without_noise():
    cfg = dl.DecayConfig.from_preset("default", target_modules=["x"])
    assert cfg.c_init == "zeros" and cfg.schedule.noise is False
    assert cfg.schedule.decay(1.0) == 0.0  # the default ends W-free
    assert dl.DecayConfig.from_preset("lora", target_modules=["x"]).schedule.decay(1.0) == 1.0


def test_modules_to_save_regex_like_names_and_types():
    """modules_to_save names match like target names (exact or dotted suffix)."""
    model = dl.wrap(make_bert(), bert_config(modules_to_save=["classifier", "pooler.dense"]))
    assert model.bert.pooler.dense.weight.requires_grad
    assert model.classifier.bias.requires_grad
    assert not model.bert.embeddings.word_embeddings.weight.requires_grad


def test_wrap_gpt2_leaves_tied_embeddings_tied():
    model = dl.wrap(make_gpt2(), gpt2_config())
    assert model.lm_head.weight is model.transformer.wte.weight
    assert not model.lm_head.weight.requires_grad
    out = model(**gpt2_inputs())
    assert out.logits.shape == (2, 8, 100)


# ----- rank_pattern: per-layer ranks ---------------------------------------------------------------
def test_rank_pattern_shapes_scales_and_trainable_count():
    # MLP: "0" Linear(16 -> 32), "2" Linear(32 -> 24), "4" Linear(24 -> 8); r=4 elsewhere
    model = dl.wrap(make_mlp(), mlp_config(rank_pattern={"2": 2, "4": 5}, alpha=8))
    shapes = {n: (tuple(la.lora_A.weight.shape), tuple(la.lora_B.weight.shape))
              for n, la in dl.decay_layers(model)}
    assert shapes == {"0": ((4, 16), (32, 4)), "2": ((2, 32), (24, 2)), "4": ((5, 24), (8, 5))}
    assert {n: la.r for n, la in dl.decay_layers(model)} == {"0": 4, "2": 2, "4": 5}
    assert {n: la.scale for n, la in dl.decay_layers(model)} == {"0": 2.0, "2": 4.0, "4": 1.6}
    # A + B: 4 (16 + 32) + 2 (32 + 24) + 5 (24 + 8); C: 32 + 24 + 8
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 192 + 112 + 160 + 64
    # alpha=None: every layer has scale 1 whatever its rank
    plain = dl.wrap(make_mlp(), mlp_config(rank_pattern={"2": 2, "4": 5}))
    assert {la.scale for _, la in dl.decay_layers(plain)} == {1.0}
    # the summary reports each layer's own rank and sizes
    rows = {row.name: row for row in dl.summary(model).wrapped}
    assert {n: row.rank for n, row in rows.items()} == {"0": 4, "2": 2, "4": 5}
    assert rows["2"].params_after == 2 * (32 + 24) + 24


def test_rank_pattern_longest_key_wins():
    pattern = {"query": 2, "self.query": 3, "layer.1.attention.self.query": 6}
    model = dl.wrap(make_bert(), bert_config(rank_pattern=pattern))
    ranks = {n: la.r for n, la in dl.decay_layers(model)}
    assert ranks["bert.encoder.layer.0.attention.self.query"] == 3
    assert ranks["bert.encoder.layer.1.attention.self.query"] == 6
    others = {r for n, r in ranks.items() if not n.endswith("query")}
    assert others == {4}
    # still the original function at wrap time
    assert max_diff(run(model, bert_inputs()), run(make_bert(), bert_inputs())) <= 1e-5


def test_rank_pattern_config_round_trip():
    cfg = mlp_config(rank_pattern={"2": 2})
    assert dl.DecayConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.rank_for("2") == 2 and cfg.rank_for("0") == 4 and cfg.rank_for("x.2") == 2
    assert cfg.rank_for("12") == 4  # "2" is not a dotted suffix of "12"


def test_error_rank_pattern_key_matches_no_wrapped_layer():
    with pytest.raises(dl.InjectionError, match=r"rank_pattern key 'qurey' matched no wrapped "
                                                r"layer.*Close names:.*query") as err:
        dl.wrap(make_bert(), bert_config(rank_pattern={"qurey": 2}))
    assert "regex" not in str(err.value)  # keys are names only, unlike target_modules
    # the classifier exists but is not wrapped
    with pytest.raises(dl.InjectionError, match=r"'classifier' matched no wrapped layer"):
        dl.wrap(make_bert(), bert_config(rank_pattern={"classifier": 2}))


@pytest.mark.parametrize("pattern, match", [
    ({"0": 0}, r"rank_pattern\['0'\] must be a positive integer"),
    ({"0": -2}, r"positive integer"), ({"0": 2.5}, r"positive integer"),
    ({"0": True}, r"positive integer"), ({"0": "4"}, r"positive integer"),
    ({"": 2}, r"keys must be module names"), (["0"], r"must be a mapping"),
])
def test_error_rank_pattern_bad_values(pattern, match):
    with pytest.raises(dl.ConfigError, match=match):
        dl.DecayConfig(target_modules=["0"], rank_pattern=pattern)


def test_rank_pattern_goes_through_the_rank_checks():
    # Linear(16 -> 8): full rank 8, shrinks for r < 5.33; r=2 itself is fine
    with pytest.raises(dl.InjectionError, match=r"rank 9 is larger than the layer's full rank "
                                                r"8.*choose rank_pattern\['0'\] < 8"):
        dl.wrap(_lin(16, 8), dl.DecayConfig(r=2, target_modules=["0"], rank_pattern={"0": 9}))
    with pytest.raises(dl.InjectionError, match=r"rank 6 would make the layer larger.*Lower "
                                                r"rank_pattern\['0'\]"):
        dl.wrap(_lin(16, 8), dl.DecayConfig(r=2, target_modules=["0"], rank_pattern={"0": 6}))
    conv = nn.Sequential(nn.Conv2d(4, 16, 3, groups=2))
    with pytest.raises(dl.InjectionError, match=r"rank 3 must be a multiple of the conv's "
                                                r"groups \(2\).*rank_pattern\['0'\]=2"):
        dl.wrap(conv, dl.DecayConfig(r=2, target_modules=["0"], rank_pattern={"0": 3}))
    # a pattern rank can also make a too-large r acceptable for that layer
    model = dl.wrap(_lin(16, 8), dl.DecayConfig(r=9, target_modules=["0"], rank_pattern={"0": 5}))
    assert model[0].r == 5
