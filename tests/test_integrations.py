"""transformers.Trainer integration: DecayLoraCallback drives the schedule, only the adapters
train, compress works afterwards, an unwrapped model is refused; the example script runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import BERT_VOCAB, bert_config, bert_inputs, make_bert, run
from transformers import Trainer, TrainerCallback, TrainingArguments

import decaylora as dl
from decaylora.integrations import DecayLoraCallback

ROOT = Path(__file__).resolve().parents[1]
STEPS = 10


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: intra-op threads only add synchronisation (slow on a busy machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class RandomTokens(torch.utils.data.Dataset):
    """Random token sequences (a torch Dataset of dicts); label = first token in the upper
    half of the vocabulary, so there is something to learn."""

    def __init__(self, n: int = 64, length: int = 12, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, BERT_VOCAB, (n, length), generator=g)
        self.labels = (self.ids[:, 0] >= BERT_VOCAB // 2).long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones_like(self.ids[i]),
                "labels": self.labels[i]}


class Probe(TrainerCallback):
    """Records, before every optimizer step, the state every wrapped layer trained with."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, set[float], set[bool], set[int]]] = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        layers = [layer for _, layer in dl.decay_layers(model)]
        self.seen.append((state.global_step, {layer.d for layer in layers},
                          {bool(layer.noise_active) for layer in layers},
                          {int(layer.step) for layer in layers}))


class ForwardProbe:
    """A forward pre-hook on one wrapped layer: (d, noise step) of every training forward."""

    def __init__(self, layer) -> None:
        self.calls: list[tuple[float, int]] = []
        layer.register_forward_pre_hook(self)

    def __call__(self, module, inputs):
        if module.training:
            self.calls.append((module.d, int(module.step)))


def _args(tmp: Path, **kw) -> TrainingArguments:
    base = dict(output_dir=str(tmp), max_steps=STEPS, per_device_train_batch_size=8,
                learning_rate=1e-2, logging_steps=2, report_to=[], use_cpu=True,
                save_strategy="no", disable_tqdm=True, seed=0, dataloader_num_workers=0)
    base.update(kw)
    return TrainingArguments(**base)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One 10-step Trainer run of a tiny BERT wrapped with a noisy preset (notes-b)."""
    model = make_bert()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    x = bert_inputs()
    dense_logits = run(model, x)
    config = bert_config(**{k: v for k, v in dl.PRESETS["notes-b"].items()})
    dl.wrap(model, config)
    probe = Probe()
    trainer = Trainer(model=model, args=_args(tmp_path_factory.mktemp("hf")),
                      train_dataset=RandomTokens(), callbacks=[DecayLoraCallback(), probe])
    trainer.train()
    return dict(model=model, trainer=trainer, probe=probe, before=before, config=config,
                x=x, dense_logits=dense_logits)


def test_d_and_noise_follow_the_schedule(trained) -> None:
    schedule = trained["config"].schedule
    seen = trained["probe"].seen
    assert [s for s, *_ in seen] == list(range(STEPS))
    for step, ds, noisy, steps in seen:
        assert len(ds) == 1, step  # every layer the same d ...
        assert next(iter(ds)) == pytest.approx(schedule.decay(step / STEPS), abs=1e-6), step  # scheduled
        assert noisy == {schedule.noise_on(step / STEPS)}, step
        assert steps == {step}  # the noise of step k is seeded by k
    noise = [n for _, _, (n,), _ in seen]
    assert True in noise and False in noise  # notes-b: noise on mid-decay, cleared below 0.3
    assert seen[0][1] == {1.0} and seen[-1][1] == {0.0}


def test_final_state_is_d_zero_and_logged(trained) -> None:
    layers = [layer for _, layer in dl.decay_layers(trained["model"])]
    assert {layer.d for layer in layers} == {0.0}
    assert not any(bool(layer.noise_active) for layer in layers)
    schedule = trained["config"].schedule
    logs = [h for h in trained["trainer"].state.log_history if "loss" in h]
    assert [h["step"] for h in logs] == [2, 4, 6, 8, 10]
    for h in logs:  # logged at the progress reached (the state the next step uses)
        assert h["decaylora_d"] == pytest.approx(schedule.decay(h["step"] / STEPS))
        assert h["decaylora_noise"] == int(schedule.noise_on(h["step"] / STEPS))
    assert logs[0]["decaylora_noise"] == 1 and logs[-1]["decaylora_d"] == 0.0


def test_optimizer_holds_only_adapters_and_head(trained) -> None:
    model, trainer = trained["model"], trained["trainer"]
    in_opt = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in in_opt}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names == trainable
    assert names and all(n.endswith(("lora_A.weight", "lora_B.weight", ".C"))
                         or n.startswith("classifier.") for n in names)
    assert len([n for n in names if n.endswith(".C")]) == 12  # 2 layers x 6 Linears


def test_frozen_weights_unchanged_adapters_changed(trained) -> None:
    model, before = trained["model"], trained["before"]
    after = dict(model.named_parameters())
    for name, old in before.items():
        wrapped_name = name
        if name not in after:  # a wrapped layer: W and b moved under base_layer
            owner, _, leaf = name.rpartition(".")
            wrapped_name = f"{owner}.base_layer.{leaf}"
        if name.startswith("classifier."):
            assert not torch.equal(after[wrapped_name], old), name
        else:
            assert torch.equal(after[wrapped_name], old), name  # bitwise
    for _, layer in dl.decay_layers(model):
        assert layer.lora_B.weight.abs().sum() > 0  # B starts at 0
        assert layer.C is not None and layer.C.abs().sum() > 0


def test_compress_after_training(trained, tmp_path) -> None:
    model, x = trained["model"], trained["x"]
    model.eval()
    with dl.as_exported(model):
        expected = run(model, x)
    assert torch.allclose(run(model, x), expected, atol=1e-6)  # d = 0: already W-free
    assert not torch.allclose(expected, trained["dense_logits"], atol=1e-3)  # it trained
    dl.compress(model)  # no force needed: the callback left d = 0
    assert not any("base_layer" in n for n, _ in model.named_parameters())
    torch.testing.assert_close(run(model, x), expected, atol=1e-5, rtol=1e-5)
    out = dl.save_compressed(model, tmp_path / "w-free")
    fresh = dl.load_compressed(make_bert(seed=5), out)
    assert torch.equal(run(fresh.eval(), x), run(model, x))


def test_epochs_and_gradient_accumulation(tmp_path) -> None:
    """max_steps derived by the Trainer from num_train_epochs; with gradient accumulation
    every micro-batch of one optimizer step trains with the same d and the same noise."""
    model = dl.wrap(make_bert(), bert_config(**dict(dl.PRESETS["decay+noise+c"])))
    name, layer = next(iter(dl.decay_layers(model)))
    probe = ForwardProbe(layer)
    trainer = Trainer(model=model, train_dataset=RandomTokens(n=48),
                      args=_args(tmp_path, max_steps=-1, num_train_epochs=2,
                                 gradient_accumulation_steps=2),
                      callbacks=[DecayLoraCallback()])
    trainer.train()
    max_steps = trainer.state.max_steps
    assert max_steps == 6  # 48 examples / (8 x 2) per optimizer step, 2 epochs
    schedule = dl.get_config(model).schedule
    expected = [(schedule.decay(k / max_steps), k) for k in range(max_steps) for _ in range(2)]
    assert [s for _, s in probe.calls] == [s for _, s in expected]
    assert [d for d, _ in probe.calls] == pytest.approx([d for d, _ in expected], abs=1e-6)
    assert layer.d == 0.0


def test_unwrapped_model_is_refused(tmp_path) -> None:
    model = make_bert()
    trainer = Trainer(model=model, args=_args(tmp_path), train_dataset=RandomTokens(n=16),
                      callbacks=[DecayLoraCallback()])
    with pytest.raises(dl.InjectionError,
                       match=r"DecayLoraCallback: .*not wrapped by decaylora.*decaylora\.wrap"):
        trainer.train()
    assert trainer.state.global_step == 0  # refused before the first step
    compressed = dl.compress(dl.wrap(make_bert(), bert_config()), force=True)
    trainer = Trainer(model=compressed, args=_args(tmp_path), train_dataset=RandomTokens(n=16),
                      callbacks=[DecayLoraCallback()])
    with pytest.raises(dl.InjectionError, match=r"already compressed"):
        trainer.train()


def test_import_decaylora_does_not_import_trainer() -> None:
    code = ("import sys, decaylora; "
            "assert 'decaylora.integrations' not in sys.modules; "
            "assert 'transformers.trainer' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_example_script_runs(tmp_path) -> None:
    out = tmp_path / "w-free"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "hf_trainer.py"), "--model", "tiny-bert",
         "--steps", "20", "--max-train", "200", "--max-eval", "100", "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "after training: d = 0 in every wrapped layer" in proc.stdout
    assert "test accuracy" in proc.stdout and "W-free view before compress" in proc.stdout
    assert "decaylora_d" in proc.stdout  # the Trainer's printed logs carry d
    assert (out / "model.safetensors").is_file() and (out / "decaylora.json").is_file()
    assert "Traceback" not in proc.stderr
