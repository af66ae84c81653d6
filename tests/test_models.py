"""Tests for decaylora.models: offline MiniLM, tiny-bert, hub failure offline, VGG, targets."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from decaylora.data import hub_unreachable_reason
from decaylora.errors import DecayLoraError
from decaylora.models import (
    DEFAULT_MODULES_TO_SAVE,
    TEXT_MODEL_ALIASES,
    VGG,
    ModelError,
    count_parameters,
    default_modules_to_save,
    default_text_targets,
    default_vision_targets,
    load_text_model,
    resolve_text_model,
    vgg,
)


def _peft_match(name: str, targets: list[str]) -> bool:
    """PEFT's rule for a list of target_modules: exact name or a '.'-separated suffix."""
    return any(name == t or name.endswith("." + t) for t in targets)


@pytest.fixture(scope="module")
def minilm():
    return load_text_model("minilm", num_labels=2)


def test_minilm_loads_offline_with_expected_size(minilm):
    model, tok = minilm
    n = count_parameters(model)
    assert abs(n - 22_713_986) < 100_000  # 22.7M incl. the new 2-way head
    assert model.config.num_labels == 2 and tok.vocab_size == 30522
    enc = tok(["a good film", "bad"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert model(**enc).logits.shape == (2, 2)


def test_default_text_targets_match_the_36_encoder_linears(minilm):
    model, _ = minilm
    targets = default_text_targets(model)
    assert targets == [
        "query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"
    ]
    linears = {n for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    matched = {n for n in linears if _peft_match(n, targets)}
    assert len(matched) == 36
    assert matched == {n for n in linears if ".encoder.layer." in n}
    assert not any("pooler" in n or "classifier" in n for n in matched)
    assert default_modules_to_save(model) == DEFAULT_MODULES_TO_SAVE == ["classifier"]


def test_targets_agree_with_peft_matching(minilm):
    peft_utils = pytest.importorskip("peft.tuners.tuners_utils")
    from peft import LoraConfig

    model, _ = minilm
    cfg = LoraConfig(target_modules=default_text_targets(model), r=2)
    hits = [n for n, _ in model.named_modules() if peft_utils.check_target_module_exists(cfg, n)]
    assert len(hits) == 36


def test_tiny_bert_forward_and_seeded():
    model, tok = load_text_model("tiny-bert", num_labels=3, seed=0)
    cfg = model.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (32, 2, 2)
    assert (cfg.intermediate_size, cfg.max_position_embeddings, cfg.vocab_size) == (64, 128, 30522)
    assert tok.model_max_length == 128
    enc = tok(["hello world", "a much longer sentence here"], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits
    assert logits.shape == (2, 3)
    same, _ = load_text_model("tiny-bert", num_labels=3, seed=0)
    other, _ = load_text_model("tiny-bert", num_labels=3, seed=1)
    w = "bert.encoder.layer.0.attention.self.query.weight"
    assert torch.equal(model.state_dict()[w], same.state_dict()[w])
    assert not torch.equal(model.state_dict()[w], other.state_dict()[w])
    assert len([n for n, m in model.named_modules()
                if isinstance(m, nn.Linear) and _peft_match(n, default_text_targets(model))]) == 12


def test_tiny_bert_does_not_disturb_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_text_model("tiny-bert", num_labels=2, seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_aliases_and_local_folder(minilm, tmp_path):
    assert TEXT_MODEL_ALIASES["bert-tiny"] == "google/bert_uncased_L-2_H-128_A-2"
    folder = resolve_text_model("minilm")
    assert folder.endswith("model")
    model, _ = load_text_model(folder, num_labels=4)  # a local folder works like 'minilm'
    assert model.classifier.out_features == 4
    with pytest.raises(ModelError, match="config.json"):
        load_text_model(str(tmp_path), num_labels=2)
    with pytest.raises(ModelError, match="does not exist"):
        load_text_model(str(tmp_path / "missing"), num_labels=2)


@pytest.mark.skipif(hub_unreachable_reason(timeout=2.0) is None, reason="needs no internet")
def test_hub_model_offline_fails_fast_with_instructions():
    t0 = time.monotonic()
    with pytest.raises(ModelError) as e:
        load_text_model("bert-tiny", num_labels=2)
    assert time.monotonic() - t0 < 30
    msg = str(e.value)
    assert "no internet" in msg
    assert "huggingface-cli download google/bert_uncased_L-2_H-128_A-2 --local-dir DIR" in msg
    assert "--model DIR" in msg
    assert isinstance(e.value, DecayLoraError)


def test_dead_endpoint_model_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(v, raising=False)
    t0 = time.monotonic()
    with pytest.raises(ModelError, match="no internet"):
        load_text_model("someone/not-cached-model-xyz", num_labels=2)
    assert time.monotonic() - t0 < 30


def test_unknown_architecture_asks_for_targets():
    with pytest.raises(ModelError, match="--targets"):
        default_text_targets(nn.Sequential(nn.Linear(3, 3)))


def test_gpt2_style_targets():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.Module()
            self.attn.c_attn = nn.Linear(4, 12)
            self.attn.c_proj = nn.Linear(4, 4)
            self.mlp = nn.Module()
            self.mlp.c_fc = nn.Linear(4, 16)

    model = nn.Module()
    model.h = nn.ModuleList([Block()])
    model.score = nn.Linear(4, 2)
    assert default_text_targets(model) == ["c_attn", "c_proj", "c_fc"]
    assert default_modules_to_save(model) == ["score"]


@pytest.mark.parametrize("name", ["vgg11", "vgg16"])
def test_vgg_forward_28x28(name):
    model = vgg(name, num_classes=10, in_channels=1, width=0.25, image_size=28)
    assert isinstance(model, VGG)
    model.eval()
    out = model(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, 10)
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == {"vgg11": 8, "vgg16": 13}[name]
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 4  # 28 -> 14 -> 7 -> 3 -> 1, fifth pool skipped
    targets = default_vision_targets(model)
    assert targets == convs[1:]
    assert all(isinstance(model.get_submodule(t), nn.Conv2d) for t in targets)
    widths = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert widths[0] == 16 and max(widths) == 128  # 64 * 0.25, 512 * 0.25


def test_vgg_small_inputs_min_width_and_errors():
    model = vgg("vgg11", in_channels=3, width=0.01, image_size=8)
    assert min(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)) == 8
    model.train()
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 10)
    with pytest.raises(ModelError, match="vgg16"):
        vgg("vgg12")


def test_count_parameters():
    lin = nn.Linear(3, 4)
    assert count_parameters(lin) == 16
    lin.bias.requires_grad_(False)
    assert count_parameters(lin, trainable_only=True) == 12
    tied = nn.Sequential(lin, nn.ReLU())
    tied.append(tied[0])  # shared module counted once
    assert count_parameters(tied) == 16
