"""Shared tiny models (random init, seeded) and helpers for the decaylora test suite.

Every builder takes a ``seed`` so that two calls give bit-identical base weights: that is how
tests get "the original model" and "a fresh skeleton / fresh copy" without deep copies.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import decaylora as dl

# ----- tiny transformer configs (hand-checked in test_inspection) ---------------------------
BERT_HIDDEN = 32
BERT_LAYERS = 2
BERT_HEADS = 2
BERT_INTERMEDIATE = 64
BERT_VOCAB = 100
BERT_MAX_POS = 64
BERT_TYPE_VOCAB = 2
BERT_LABELS = 2
BERT_TARGETS = [
    "query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense",
]

GPT2_EMBD = 32
GPT2_LAYERS = 2
GPT2_HEADS = 2
GPT2_VOCAB = 100
GPT2_POSITIONS = 64
GPT2_TARGETS = ["c_attn", "c_proj", "c_fc"]


def make_bert(seed: int = 0) -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        hidden_size=BERT_HIDDEN, num_hidden_layers=BERT_LAYERS,
        num_attention_heads=BERT_HEADS, intermediate_size=BERT_INTERMEDIATE,
        vocab_size=BERT_VOCAB, max_position_embeddings=BERT_MAX_POS,
        type_vocab_size=BERT_TYPE_VOCAB, num_labels=BERT_LABELS,
    )
    torch.manual_seed(seed)
    return BertForSequenceClassification(config).eval()


def make_gpt2(seed: int = 0) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        n_embd=GPT2_EMBD, n_layer=GPT2_LAYERS, n_head=GPT2_HEADS, vocab_size=GPT2_VOCAB,
        n_positions=GPT2_POSITIONS, bos_token_id=0, eos_token_id=0,
    )
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config).eval()


def bert_config(**overrides) -> dl.DecayConfig:
    kw = dict(r=4, target_modules=list(BERT_TARGETS), modules_to_save=["classifier"])
    kw.update(overrides)
    return dl.DecayConfig(**kw)


def gpt2_config(**overrides) -> dl.DecayConfig:
    kw = dict(r=4, target_modules=list(GPT2_TARGETS))
    kw.update(overrides)
    return dl.DecayConfig(**kw)


def bert_inputs(seed: int = 1, batch: int = 3, length: int = 9) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, BERT_VOCAB, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[0, -3:] = 0  # some padding, so the attention mask path is exercised
    types = torch.zeros(batch, length, dtype=torch.long)
    types[:, length // 2:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def gpt2_inputs(seed: int = 1, batch: int = 2, length: int = 8) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.randint(0, GPT2_VOCAB, (batch, length), generator=g)}


# ----- tiny plain-PyTorch models -----------------------------------------------------------
MLP_IN = 16
MLP_SHAPES = [(16, 32, True), (32, 24, False), (24, 8, True)]  # (in, out, bias)
MLP_TARGETS = ["0", "2", "4"]


def make_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    (i0, o0, b0), (i1, o1, b1), (i2, o2, b2) = MLP_SHAPES
    return nn.Sequential(
        nn.Linear(i0, o0, bias=b0), nn.ReLU(), nn.Linear(i1, o1, bias=b1), nn.ReLU(),
        nn.Linear(i2, o2, bias=b2),
    ).eval()


def mlp_config(**overrides) -> dl.DecayConfig:
    kw = dict(r=4, target_modules=list(MLP_TARGETS))
    kw.update(overrides)
    return dl.DecayConfig(**kw)


def mlp_inputs(seed: int = 1, batch: int = 5) -> torch.Tensor:
    return torch.randn(batch, MLP_IN, generator=torch.Generator().manual_seed(seed))


#: Conv layers of ``make_convnet``: index in the Sequential -> constructor kwargs.
CONV_SPECS = {
    "0": dict(in_channels=4, out_channels=16, kernel_size=3, stride=2, dilation=2, groups=2,
              padding=2, padding_mode="reflect", bias=True),
    "2": dict(in_channels=16, out_channels=8, kernel_size=3, stride=1, dilation=2,
              padding="same", padding_mode="reflect", bias=True),
    "4": dict(in_channels=8, out_channels=12, kernel_size=(3, 1), stride=1, padding="same",
              bias=False),
}
CONV_IN_SHAPE = (2, 4, 12, 12)


def make_convnet(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(**CONV_SPECS["0"]), nn.ReLU(), nn.Conv2d(**CONV_SPECS["2"]), nn.ReLU(),
        nn.Conv2d(**CONV_SPECS["4"]),
    ).eval()


def conv_config(**overrides) -> dl.DecayConfig:
    kw = dict(r=4, target_modules=list(CONV_SPECS))
    kw.update(overrides)
    return dl.DecayConfig(**kw)


def conv_inputs(seed: int = 1) -> torch.Tensor:
    return torch.randn(*CONV_IN_SHAPE, generator=torch.Generator().manual_seed(seed))


# ----- helpers ------------------------------------------------------------------------------
def randomize_adapters(model: nn.Module, seed: int = 123, scale: float = 0.1) -> None:
    """Give every wrapped layer a non-zero B and C (a freshly wrapped layer has B = 0, C = 0,
    which would make many comparisons trivially pass)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in dl.decay_layers(model):
            for p in (layer.lora_A.weight, layer.lora_B.weight):
                p.copy_(torch.randn(p.shape, generator=g) * scale)
            if layer.C is not None:
                layer.C.copy_(torch.randn(layer.C.shape, generator=g) * scale)


def param_count(module: nn.Module) -> int:
    """Number of distinct parameters (tied parameters counted once, like ``parameters()``)."""
    return sum(p.numel() for p in module.parameters())


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def run(model: nn.Module, inputs) -> torch.Tensor:
    """Forward that returns a tensor for plain and Hugging Face models alike."""
    with torch.no_grad():
        if isinstance(inputs, dict):
            return model(**inputs).logits
        return model(inputs)


MODELS = {
    "mlp": (make_mlp, mlp_config, mlp_inputs),
    "conv": (make_convnet, conv_config, conv_inputs),
    "bert": (make_bert, bert_config, bert_inputs),
    "gpt2": (make_gpt2, gpt2_config, gpt2_inputs),
}


#: Test modules of the core library that run on the tiny models above.
_TINY_MODEL_MODULES = {"test_layers", "test_schedules", "test_injection", "test_inspection",
                       "test_export", "test_fused"}


@pytest.fixture(autouse=True)
def _single_thread(request):
    """The models here are tiny: intra-op threads only add synchronisation overhead (on a busy
    2-core machine OpenMP spin-waiting makes a 0.1 ms conv take 30 ms). Only for the core
    test modules; other modules keep the session's thread setting."""
    if request.module.__name__.rpartition(".")[2] not in _TINY_MODEL_MODULES:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(params=sorted(MODELS))
def any_model(request):
    """(name, builder, config factory, input factory) for each tiny model."""
    build, config, inputs = MODELS[request.param]
    return request.param, build, config, inputs
