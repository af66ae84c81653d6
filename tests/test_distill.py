"""Knowledge distillation: the losses, the KD training steps, the cached teacher stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import make_bert

from decaylora.cli import main
from decaylora.distill import kd_feature_loss, kd_logit_loss, text_kd_step, vision_kd_step
from decaylora.errors import ConfigError
from decaylora.experiment import ExperimentConfig
from decaylora.models import vgg

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tiny.yaml")


def test_logit_loss_is_t2_kl_by_hand() -> None:
    torch.manual_seed(0)
    s, t = torch.randn(5, 3), torch.randn(5, 3)
    T = 3.0
    p_t = torch.softmax(t / T, -1)
    by_hand = (p_t * (p_t.log() - torch.log_softmax(s / T, -1))).sum(-1).mean() * T * T
    assert kd_logit_loss(s, t, T).item() == pytest.approx(by_hand.item(), rel=1e-5)
    assert kd_logit_loss(t, t, T).item() == pytest.approx(0.0, abs=1e-6)


def test_logit_loss_gradient_points_to_the_teacher() -> None:
    torch.manual_seed(1)
    s = torch.randn(4, 2, requires_grad=True)
    t = torch.randn(4, 2)
    kd_logit_loss(s, t, 1.0).backward()
    # d KL / d s = (softmax(s) - softmax(t)) / batch for T = 1
    expected = (torch.softmax(s.detach(), -1) - torch.softmax(t, -1)) / 4
    torch.testing.assert_close(s.grad, expected, rtol=1e-5, atol=1e-6)


def test_feature_loss_masks_padding() -> None:
    hs = [torch.zeros(1, 3, 2)]
    ht = [torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]])]
    mask = torch.tensor([[1, 1, 0]])
    # positions 0 and 1 count: squared errors 1, 1, 9, 9 -> mean 5
    assert kd_feature_loss(hs, ht, mask).item() == pytest.approx(5.0)
    assert kd_feature_loss(hs, ht).item() == pytest.approx((2 + 18 + 20000) / 6)
    with pytest.raises(ValueError, match="same number of hidden states"):
        kd_feature_loss(hs, ht + ht)


def _batch() -> dict:
    torch.manual_seed(3)
    ids = torch.randint(5, 100, (4, 10))
    mask = torch.ones_like(ids)
    mask[0, 7:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 1, 0])}


def test_text_kd_step_combines_ce_kl_and_features() -> None:
    student, teacher = make_bert(0).train(), make_bert(1)
    for m in (student, teacher):
        for mod in m.modules():
            if isinstance(mod, torch.nn.Dropout):
                mod.p = 0.0
    batch = _batch()
    w, T, f = 0.7, 2.0, 0.3
    loss, logits, labels = text_kd_step(teacher, w, T, f)(student, batch)
    out = student(**batch, output_hidden_states=True)
    with torch.no_grad():
        t_out = teacher(**batch, output_hidden_states=True)
    expected = ((1 - w) * F.cross_entropy(out.logits, batch["labels"])
                + w * kd_logit_loss(out.logits, t_out.logits, T)
                + f * kd_feature_loss(list(out.hidden_states[1:]), list(t_out.hidden_states[1:]),
                                      batch["attention_mask"]))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.equal(labels, batch["labels"])
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())  # the teacher is not trained
    assert student.classifier.weight.grad is not None
    # weight 0 and no features: exactly the plain cross-entropy step
    plain, _, _ = text_kd_step(teacher, 0.0, T, 0.0)(student, batch)
    assert plain.item() == pytest.approx(F.cross_entropy(out.logits, batch["labels"]).item(),
                                         rel=1e-6)


def test_vision_kd_step_uses_the_features_module() -> None:
    torch.manual_seed(0)
    student = vgg("vgg11", num_classes=3, in_channels=1, width=0.125, image_size=16).eval()
    torch.manual_seed(1)
    teacher = vgg("vgg11", num_classes=3, in_channels=1, width=0.125, image_size=16).eval()
    x, y = torch.randn(2, 1, 16, 16), torch.tensor([0, 2])
    loss, logits, _ = vision_kd_step(teacher, 0.5, 2.0, 1.0)(student, (x, y))
    with torch.no_grad():
        fs, ft = student.features(x), teacher.features(x)
        s_logits, t_logits = student(x), teacher(x)
    expected = (0.5 * F.cross_entropy(s_logits, y) + 0.5 * kd_logit_loss(s_logits, t_logits, 2.0)
                + (fs - ft).pow(2).mean())
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    torch.testing.assert_close(logits, s_logits)


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="kd_weight must be in"):
        ExperimentConfig(kd_weight=1.5)
    with pytest.raises(ConfigError, match="kd_temperature must be > 0"):
        ExperimentConfig(kd_weight=0.5, kd_temperature=0)
    with pytest.raises(ConfigError, match="teacher of distillation"):
        ExperimentConfig(method="full", kd_weight=0.5)
    with pytest.raises(ConfigError, match="teacher_steps"):
        ExperimentConfig(kd_weight=0.5, teacher_steps=0)


def test_cli_distillation_trains_and_caches_the_teacher(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    args = ["run", "--config", TINY, "--steps", "6", "--eval-every", "3", "--kd-weight", "0.5",
            "--kd-feature-weight", "0.1", "--teacher-steps", "8", "--cache-dir", str(cache)]
    assert main(args + ["--run-dir", str(tmp_path / "a")]) == 0
    a = json.loads((tmp_path / "a" / "results.json").read_text())
    t = a["distillation"]["teacher"]
    assert t["cached"] is False and t["steps"] == 8
    assert len(list(cache.glob("teacher-*.safetensors"))) == 1
    assert "distilled from a fully fine-tuned teacher" in (tmp_path / "a" / "report.md").read_text()
    recs = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs if r["kind"] == "eval"] == [3, 6]
    # second run: the teacher comes from the cache and the run is bitwise the same
    assert main(args + ["--run-dir", str(tmp_path / "b")]) == 0
    b = json.loads((tmp_path / "b" / "results.json").read_text())
    assert b["distillation"]["teacher"]["cached"] is True
    assert b["distillation"]["teacher"]["test_acc"] == t["test_acc"]
    assert b["test_acc"] == a["test_acc"] and b["adapter_fingerprints"] == a["adapter_fingerprints"]
    # a different teacher budget is a different cache entry
    assert main(args[:-4] + ["--teacher-steps", "4", "--cache-dir", str(cache),
                             "--run-dir", str(tmp_path / "c")]) == 0
    assert len(list(cache.glob("teacher-*.safetensors"))) == 2
