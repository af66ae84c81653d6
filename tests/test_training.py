"""Training loop pieces: deterministic batches, checkpoint round trip, collapse and NaN checks."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

import decaylora as dl
from decaylora.training import (
    IndexedBatches,
    LoopConfig,
    TrainingError,
    eval_batches,
    group_of,
    load_checkpoint,
    save_checkpoint,
    train_loop,
)


def test_indexed_batches_are_a_function_of_the_step() -> None:
    a = IndexedBatches(103, 10, seed=3, collate=lambda i: i)
    b = IndexedBatches(103, 10, seed=3, collate=lambda i: i)
    seq = [a(s) for s in range(25)]
    # random access (as after a resume) gives the same batches
    assert [b(s) for s in (24, 3, 11)] == [seq[24], seq[3], seq[11]]
    epoch0 = sorted(i for s in range(10) for i in seq[s])
    assert len(set(epoch0)) == 100 and all(0 <= i < 103 for i in epoch0)  # no repeats in an epoch
    assert seq[0] != seq[10]  # a new permutation each epoch
    c = IndexedBatches(103, 10, seed=4, collate=lambda i: i)
    assert c(0) != seq[0]


def test_empty_training_set_is_an_error() -> None:
    with pytest.raises(dl.DecayLoraError, match="empty"):
        IndexedBatches(0, 8, 0, collate=lambda i: i)


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    state = {"step": 7, "model": {"a.weight": torch.randn(3, 4)},
             "opt": {"state": {0: {"exp_avg": torch.ones(2), "step": torch.tensor(5.0)}},
                     "param_groups": [{"lr": 1e-3, "params": [0, 1], "betas": (0.9, 0.999)}]},
             "inf": float("inf"), "records": [{"x": 1.5}]}
    save_checkpoint(tmp_path / "ck", state)
    save_checkpoint(tmp_path / "ck", state)  # overwriting keeps one valid checkpoint
    back = load_checkpoint(tmp_path / "ck")
    assert back["step"] == 7 and back["inf"] == math.inf and back["records"] == [{"x": 1.5}]
    assert torch.equal(back["model"]["a.weight"], state["model"]["a.weight"])
    assert back["opt"]["state"][0]["step"].item() == 5.0
    assert back["opt"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_truncated_checkpoint_is_reported(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "ck", {"w": torch.randn(100)})
    f = tmp_path / "ck" / "state.safetensors"
    f.write_bytes(f.read_bytes()[:50])
    with pytest.raises(dl.DecayLoraError, match="corrupt or incomplete"):
        load_checkpoint(tmp_path / "ck")


def test_group_of() -> None:
    assert group_of("bert.encoder.layer.3.attention.self.query") == "attention.self.query"
    assert group_of("features.4") == "features.4"
    assert group_of("fc") == "fc"


def _toy(seed: int = 0):
    torch.manual_seed(seed)
    x = torch.randn(64, 8)
    y = (x[:, 0] > 0).long()
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))

    def step_fn(m, batch):
        xb, yb = batch
        logits = m(xb)
        return nn.functional.cross_entropy(logits, yb), logits, yb
    batches = IndexedBatches(64, 16, 0, lambda i: (x[i], y[i]))
    val = lambda: eval_batches(64, 32, lambda i: (x[i], y[i]))  # noqa: E731
    return model, step_fn, batches, val


def test_nan_loss_stops_with_advice() -> None:
    model, step_fn, batches, val = _toy()
    with pytest.raises(TrainingError, match="Lower the learning rate"):
        train_loop(model, step_fn, batches, val,
                   LoopConfig(total_steps=50, lr=1e6, grad_clip=0.0, progress=False),
                   wrapped=False)


def test_stuck_at_chance_is_flagged() -> None:
    model, step_fn, batches, val = _toy()
    for p in model.parameters():  # a model that cannot learn: constant logits
        nn.init.zeros_(p)
        p.requires_grad_(False)
    model[2].bias.requires_grad_(True)
    res = train_loop(model, step_fn, batches, val,
                     LoopConfig(total_steps=8, lr=1e-9, eval_every=4, progress=False,
                                majority=0.5, num_labels=2), wrapped=False)
    assert res.stuck and "STUCK AT CHANCE" in res.warnings[0]


def test_learning_run_is_not_flagged() -> None:
    model, step_fn, batches, val = _toy()
    res = train_loop(model, step_fn, batches, val,
                     LoopConfig(total_steps=60, lr=3e-2, eval_every=20, progress=False,
                                majority=0.5, num_labels=2), wrapped=False)
    assert not res.stuck and res.records[-1]["val_acc"] > 0.8


def test_wrapped_loop_reaches_d_zero_and_logs_wfree_accuracy() -> None:
    model, step_fn, batches, val = _toy()
    dl.wrap(model, dl.DecayConfig.from_preset("decay+noise+c", r=2, target_modules=["0"],
                                              noise_stats="per_output"))
    res = train_loop(model, step_fn, batches, val,
                     LoopConfig(total_steps=20, lr=1e-2, eval_every=10, progress=False))
    evals = [r for r in res.records if r["kind"] == "eval"]
    assert evals[-1]["d"] == 0.0 and evals[-1]["val_acc"] == evals[-1]["val_acc_exported"]
    assert evals[0]["weight_stats"]["layer"] == "0"
    assert set(evals[0]["c_norm"]) == {"0"}


class _LearnsLate(nn.Module):
    """Constant logits for its first 5 training steps, then the right answer: at chance at the
    40% evaluation, correct at the end."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.calls += 1
        logits = torch.zeros(x.shape[0], 2) + self.w
        if self.calls > 5:
            logits = logits + torch.stack([-x[:, 0], x[:, 0]], dim=1)
        return logits


def test_temporary_collapse_is_reported_as_recovered() -> None:
    _, step_fn, batches, val = _toy()
    res = train_loop(_LearnsLate(), step_fn, batches, val,
                     LoopConfig(total_steps=10, lr=1e-3, eval_every=4, progress=False,
                                majority=0.5, num_labels=2), wrapped=False)
    assert not res.stuck
    assert "STUCK AT CHANCE at step 4" in res.warnings[0]
    assert "recovered" in res.warnings[1]


def test_chance_level_uses_the_validation_label_prior() -> None:
    """On imbalanced labels a model that ignores its input sits at the prior's entropy, not at
    ln K, and at the validation majority, which may differ from the test majority."""
    from decaylora.training import _at_chance, label_prior

    majority, prior = label_prior([0] * 62 + [1] * 38, 2)
    assert majority == pytest.approx(0.62)
    assert prior == pytest.approx(-(0.62 * math.log(0.62) + 0.38 * math.log(0.38)))
    cfg = LoopConfig(total_steps=1, lr=1.0, majority=majority, prior_loss=prior)
    assert _at_chance({"val_acc": 0.70, "val_loss": prior + 0.005}, cfg)      # loss at the prior
    assert _at_chance({"val_acc": 0.615, "val_loss": 0.5}, cfg)               # acc at majority
    assert not _at_chance({"val_acc": 0.70, "val_loss": 0.55}, cfg)           # learning


def test_eval_step_fn_computes_the_validation_loss() -> None:
    """A training loss with an extra term (e.g. distillation) must not leak into val_loss."""
    model, step_fn, batches, val = _toy()

    def shifted(m, batch):
        loss, logits, y = step_fn(m, batch)
        return loss + 1000.0, logits, y  # same gradient, loss offset by 1000

    res = train_loop(model, shifted, batches, val,
                     LoopConfig(total_steps=4, lr=1e-2, eval_every=4, progress=False),
                     wrapped=False, eval_step_fn=step_fn)
    ev = [r for r in res.records if r["kind"] == "eval"][-1]
    tr = [r for r in res.records if r["kind"] == "train"][-1]
    assert ev["val_loss"] < 10 and tr["train_loss"] > 1000
    res2 = train_loop(_toy()[0], shifted, batches, val,
                      LoopConfig(total_steps=4, lr=1e-2, eval_every=4, progress=False),
                      wrapped=False)
    assert [r for r in res2.records if r["kind"] == "eval"][-1]["val_loss"] > 1000
