"""Knowledge distillation from a fully fine-tuned teacher (PC-LoRA style).

The flow is ``fine-tune teacher -> compress student with KD``: the teacher is the same pretrained
model fine-tuned in full on the same training data (a first stage, cached like the vision
pre-training stage), and the decaying student learns from the teacher's logits and, optionally,
its hidden states. Loss of one batch::

    (1 - w) CE(student, labels) + w T^2 KL(softmax(t / T) || softmax(s / T)) + f MSE(h_s, h_t)

with ``w = kd_weight``, ``T = kd_temperature`` and ``f = kd_feature_weight``. Hidden states are
all transformer layers after the embeddings for text models (padding positions excluded) and the
output of the convolutional ``features`` stack for the VGG models.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

StepFn = Callable[[nn.Module, Any], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def kd_logit_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 KL(softmax(teacher / T) || softmax(student / T))``, mean over the batch (the T^2
    keeps gradient magnitudes comparable across temperatures, Hinton et al. 2015)."""
    t = temperature
    log_p_s = F.log_softmax(student.float() / t, dim=-1)
    log_p_t = F.log_softmax(teacher.float() / t, dim=-1)
    return F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean") * (t * t)


def kd_feature_loss(student: list[torch.Tensor], teacher: list[torch.Tensor],
                    mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over layers of the mean squared difference of hidden states (``mask``: 1 for the
    positions that count, broadcast over the feature dimension)."""
    if len(student) != len(teacher) or not student:
        raise ValueError(f"feature distillation needs the same number of hidden states, got "
                         f"{len(student)} (student) and {len(teacher)} (teacher)")
    losses = []
    for hs, ht in zip(student, teacher, strict=True):
        sq = (hs.float() - ht.float()).pow(2)
        if mask is not None:
            m = mask.to(sq.dtype).unsqueeze(-1)
            losses.append((sq * m).sum() / (m.sum() * sq.shape[-1]).clamp_min(1.0))
        else:
            losses.append(sq.mean())
    return torch.stack(losses).mean()


def _combine(ce: torch.Tensor, s_logits: torch.Tensor, t_logits: torch.Tensor, weight: float,
             temperature: float) -> torch.Tensor:
    loss = ce if weight == 0 else (1.0 - weight) * ce + weight * kd_logit_loss(
        s_logits, t_logits, temperature)
    return loss


def text_kd_step(teacher: nn.Module, weight: float, temperature: float,
                 feature_weight: float) -> StepFn:
    """Training step for Hugging Face sequence classifiers (batch: dict with ``labels``)."""
    teacher.eval()
    need_hidden = feature_weight > 0

    def step(model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = model(**batch, output_hidden_states=need_hidden)
        with torch.no_grad():
            t_out = teacher(**batch, output_hidden_states=need_hidden)
        loss = _combine(out.loss, out.logits, t_out.logits, weight, temperature)
        if need_hidden:
            loss = loss + feature_weight * kd_feature_loss(
                list(out.hidden_states[1:]), list(t_out.hidden_states[1:]),
                batch.get("attention_mask"))
        return loss, out.logits, batch["labels"]

    return step


def vision_kd_step(teacher: nn.Module, weight: float, temperature: float,
                   feature_weight: float) -> StepFn:
    """Training step for the VGG models (batch: ``(images, labels)``); features are the output
    of the model's ``features`` module."""
    teacher.eval()

    def step(model: nn.Module, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = batch
        if feature_weight > 0:
            s_logits, s_feat = _with_features(model, x)
            with torch.no_grad():
                t_logits, t_feat = _with_features(teacher, x)
        else:
            s_logits = model(x)
            with torch.no_grad():
                t_logits = teacher(x)
        loss = _combine(F.cross_entropy(s_logits, y), s_logits, t_logits, weight, temperature)
        if feature_weight > 0:
            loss = loss + feature_weight * kd_feature_loss([s_feat], [t_feat])
        return loss, s_logits, y

    return step


def _with_features(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    inner = getattr(model, "module", model)  # DDP wraps the model
    feats = getattr(inner, "features", None)
    if not isinstance(feats, nn.Module):
        raise ValueError(f"feature distillation needs a `features` module on "
                         f"{type(inner).__name__}; set kd_feature_weight 0")
    captured: list[torch.Tensor] = []
    handle = feats.register_forward_hook(lambda m, i, o: captured.append(o))
    try:
        logits = model(x)
    finally:
        handle.remove()
    return logits, captured[-1]
