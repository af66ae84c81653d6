"""The training loop: schedule-driven, resumable, with W-free evaluation and a collapse check.

Batches are a pure function of (seed, step): epoch ``e`` visits the examples in the order of a
permutation seeded by ``seed + e``. So the data-loader position is the step itself and a resumed
run sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from .errors import DecayLoraError
from .injection import as_exported, decay_layers, set_progress

Batch = Any
#: (model, batch) -> (loss, logits, labels)
StepFn = Callable[[nn.Module, Batch], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


class TrainingError(DecayLoraError):
    """Training cannot go on (e.g. the loss became NaN/Inf)."""


class IndexedBatches:
    """Deterministic batches of a dataset held in memory, addressed by global step."""

    def __init__(self, size: int, batch_size: int, seed: int, collate: Callable[[list[int]], Batch],
                 shuffle: bool = True) -> None:
        if size == 0:
            raise DecayLoraError("the training set is empty: check the data file and filters")
        self.size, self.batch_size, self.seed = size, min(batch_size, size), seed
        self.collate, self.shuffle = collate, shuffle
        self.per_epoch = max(1, size // self.batch_size)  # drop the ragged last batch
        self._epoch, self._order = -1, None

    def __call__(self, step: int, shard: tuple[int, int] = (0, 1)) -> Batch:
        """The global batch of ``step``; with ``shard=(rank, world)`` this process's part."""
        epoch, i = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 7_919 + epoch)
            self._order = torch.randperm(self.size, generator=g) if self.shuffle else torch.arange(self.size)
            self._epoch = epoch
        idx = self._order[i * self.batch_size:(i + 1) * self.batch_size].tolist()
        rank, world = shard
        return self.collate(idx[rank::world])


def eval_batches(size: int, batch_size: int, collate: Callable[[list[int]], Batch]):
    for start in range(0, size, batch_size):
        yield collate(list(range(start, min(size, start + batch_size))))


def label_prior(labels: list[int] | torch.Tensor, num_labels: int) -> tuple[float, float]:
    """(majority-class accuracy, cross-entropy of predicting the label frequencies)."""
    counts = torch.bincount(torch.as_tensor(labels, dtype=torch.long), minlength=num_labels)
    freq = counts.double() / max(int(counts.sum()), 1)
    nz = freq[freq > 0]
    return float(freq.max()), float(-(nz * nz.log()).sum())


@torch.no_grad()
def evaluate(model: nn.Module, step_fn: StepFn, batches, *, exported: bool = False,
             desc: str = "eval", progress: bool = True) -> dict[str, float]:
    """Mean loss and accuracy; ``exported=True`` evaluates the W-free (as-exported) model."""
    was_training = model.training
    model.eval()
    total, correct, loss_sum = 0, 0, 0.0
    ctx = as_exported(model) if exported else _null()
    with ctx:
        for batch in tqdm(list(batches), desc=desc, leave=False, disable=not progress):
            loss, logits, labels = step_fn(model, batch)
            n = labels.shape[0]
            total += n
            loss_sum += float(loss) * n
            correct += int((logits.argmax(-1) == labels).sum())
    model.train(was_training)
    return {"loss": loss_sum / max(total, 1), "acc": correct / max(total, 1), "n": total}


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def group_of(name: str) -> str:
    """Layer group of a wrapped layer for plots: the name without layer indices and the
    container prefix, e.g. 'bert.encoder.layer.3.attention.self.query' -> 'attention.self.query'."""
    parts = name.split(".")
    last_digit = max((i for i, p in enumerate(parts) if p.isdigit()), default=-1)
    return ".".join(parts[last_digit + 1:]) or name


@torch.no_grad()
def layer_statistics(model: nn.Module) -> dict[str, Any]:
    """Norms of C and s·B·A per layer group, and the effective-weight moments of the first
    wrapped layer (a fresh noise sample in training mode) against the original weight's.

    ``snr_fro`` / ``snr_spec``: signal-to-noise of the effective weight ``d W + N`` per layer
    group (``DecayLayer.signal_to_noise``, analytic, no sampling), the group's lowest (most
    drowned) layer; ``None`` (JSON null) while the noise is off."""
    c_norm: dict[str, list[float]] = {}
    ba_norm: dict[str, list[float]] = {}
    snr: dict[str, dict[str, list[float]]] = {"snr_fro": {}, "snr_spec": {}}
    weight_stats = None
    for name, layer in decay_layers(model):
        g = group_of(name)
        for key, value in zip(("snr_fro", "snr_spec"), layer.signal_to_noise(), strict=True):
            snr[key].setdefault(g, []).append(value)
        if layer.C is not None:
            c_norm.setdefault(g, []).append(float(layer.C.norm()))
        a = layer.lora_A.weight.reshape(layer.r, -1)
        b = layer.lora_B.weight.reshape(layer.lora_B.weight.shape[0], -1)
        if layer.geometry.groups == 1:
            ba_norm.setdefault(g, []).append(float((b @ a).norm() * layer.scale))
        if weight_stats is None:
            w = layer.base_layer.weight
            was = layer.training
            layer.train(True)
            eff = layer.effective_weight()
            layer.train(was)
            weight_stats = {"layer": name, "d": layer.d,
                            "orig_mean": float(w.mean()), "orig_std": float(w.std()),
                            "eff_mean": float(eff.mean()), "eff_std": float(eff.std())}
    return {"c_norm": {k: float(np.mean(v)) for k, v in c_norm.items()},
            "ba_norm": {k: float(np.mean(v)) for k, v in ba_norm.items()},
            "weight_stats": weight_stats,
            **{key: {k: (min(v) if math.isfinite(min(v)) else None) for k, v in groups.items()}
               for key, groups in snr.items()}}


@dataclass
class LoopConfig:
    total_steps: int
    lr: float
    weight_decay: float = 0.01
    warmup_fraction: float = 0.06
    grad_clip: float = 1.0
    eval_every: int = 50
    log_every: int = 10
    checkpoint_every: int = 100
    seed: int = 0
    num_labels: int = 2
    majority: float | None = None      # of the validation labels (what "chance" means there)
    prior_loss: float | None = None    # cross-entropy of predicting the label frequencies
    progress: bool = True


@dataclass
class LoopResult:
    records: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stuck: bool = False
    seconds: float = 0.0
    resumed_from: int | None = None


def build_optimizer(model: nn.Module, cfg: LoopConfig):
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise TrainingError("no trainable parameters: the method froze everything")
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    warm = max(1, int(cfg.warmup_fraction * cfg.total_steps))

    def lr_lambda(step: int) -> float:  # linear warm-up, then linear decay to 0
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (cfg.total_steps - step) / max(1, cfg.total_steps - warm))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)


# ----- checkpoints (safetensors + JSON, atomic; never pickle) ---------------------------------
def _flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().contiguous().cpu()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _flatten(v, prefix, tensors) for k, v in obj.items()}  # readable JSON
        return {"__dict__": [[_flatten(k, prefix, tensors), _flatten(v, prefix, tensors)]
                             for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {"__list__": [_flatten(v, prefix, tensors) for v in obj],
                "tuple": isinstance(obj, tuple)}
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"__float__": repr(obj)}
    return obj


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {_unflatten(k, tensors): _unflatten(v, tensors) for k, v in obj["__dict__"]}
        if "__list__" in obj:
            items = [_unflatten(v, tensors) for v in obj["__list__"]]
            return tuple(items) if obj.get("tuple") else items
        if "__float__" in obj:
            return float(obj["__float__"])
        return {k: _unflatten(v, tensors) for k, v in obj.items()}
    return obj


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (nested dicts/lists of tensors and JSON values) as
    ``path/state.safetensors`` + ``path/state.json``; the directory is replaced atomically."""
    tensors: dict[str, torch.Tensor] = {}
    meta = _flatten(state, "", tensors)
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        for f in tmp.iterdir():
            f.unlink()
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(tmp / "state.safetensors"))
        (tmp / "state.json").write_text(json.dumps(meta))
    except OSError as e:  # e.g. disk full: drop the partial copy, keep the previous checkpoint
        shutil.rmtree(tmp, ignore_errors=True)
        then = (f"the previous checkpoint in {path} is kept: free disk space, then continue with "
                f"`decaylora run --resume {path.parent}`" if path.exists() else
                "no earlier checkpoint exists: free disk space and start the run again")
        raise TrainingError(f"could not write checkpoint {path}: {e.strerror or e}; {then}") from None
    old = path.with_name(path.name + ".old")
    if path.exists():
        os.replace(path, old) if not old.exists() else (_rmtree(old), os.replace(path, old))
    os.replace(tmp, path)
    if old.exists():
        _rmtree(old)


def _rmtree(p: Path) -> None:
    for f in p.iterdir():
        f.unlink()
    p.rmdir()


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        tensors = load_file(str(path / "state.safetensors"))
        meta = json.loads((path / "state.json").read_text())
    except Exception as e:
        raise DecayLoraError(f"checkpoint {path} is corrupt or incomplete ({e}); it cannot be "
                             "resumed: restore an earlier copy, or start the run again (delete "
                             f"{path.parent} or choose another --run-dir)") from None
    return _unflatten(meta, tensors)


def _rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": list(np.random.get_state()[1].tolist()),
            "numpy_pos": int(np.random.get_state()[2]), "python": repr(random.getstate())}


def _set_rng_state(s: dict[str, Any]) -> None:
    import ast
    torch.set_rng_state(s["torch"])
    np.random.set_state(("MT19937", np.array(s["numpy"], dtype=np.uint32), s["numpy_pos"], 0, 0.0))
    random.setstate(ast.literal_eval(s["python"]))


def train_loop(model: nn.Module, step_fn: StepFn, train_batches: IndexedBatches,
               val_batches: Callable[[], Any], cfg: LoopConfig, *,
               run_dir: Path | None = None, wrapped: bool = True,
               on_record: Callable[[dict], None] | None = None,
               accelerator: Any = None, eval_step_fn: StepFn | None = None) -> LoopResult:
    """Train for ``cfg.total_steps`` steps, evaluating every ``eval_every`` steps both the
    current model and (when wrapped) the W-free as-exported model. Checkpoints to
    ``run_dir/checkpoint`` and resumes from it when present.

    Under ``accelerate launch``/``torchrun`` (an ``accelerate.Accelerator`` with several
    processes) the model runs as DDP: every process takes its slice of each global batch, d and
    the noise are identical on every process (functions of the step), every process evaluates
    the whole validation set, and only the main process writes checkpoints and records.
    ``eval_step_fn`` (default ``step_fn``) computes the validation loss, e.g. plain cross-entropy
    when the training loss is a distillation loss."""
    world, rank, is_main = 1, 0, True
    if accelerator is not None:
        world, rank = accelerator.num_processes, accelerator.process_index
        is_main = accelerator.is_main_process
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    opt, sched = build_optimizer(model, cfg)
    result = LoopResult()
    ckpt = run_dir / "checkpoint" if run_dir is not None else None
    start = 0
    pending_losses: list[float] = []
    if ckpt is not None and ckpt.exists():
        state = load_checkpoint(ckpt)
        missing = model.load_state_dict(
            {k: v for k, v in state["model"].items()}, strict=False).unexpected_keys
        if missing:
            raise DecayLoraError(f"checkpoint {ckpt} does not fit this model ({missing[:3]}...)")
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        start = int(state["step"])
        result.records = state["records"]
        result.warnings = state.get("warnings", [])
        result.stuck = bool(state.get("stuck", False))
        result.resumed_from = start
        pending_losses = state.get("pending_losses", [])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n for n, _ in model.named_buffers()}

    ddp_model = accelerator.prepare(model) if world > 1 else model

    def checkpoint(step: int) -> None:
        if ckpt is None or not is_main:
            return
        sd = model.state_dict()
        save_checkpoint(ckpt, {
            "step": step,
            "model": {k: v for k, v in sd.items() if k in trainable or k in buffers},
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "rng": _rng_state(), "records": result.records,
            "warnings": result.warnings, "stuck": result.stuck,
            "pending_losses": list(losses),  # the next train record averages these too
        })

    interrupted = {"flag": False}

    def on_signal(signum, frame):  # finish the step, checkpoint, stop
        interrupted["flag"] = True

    old_handlers = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            old_handlers[sig] = signal.signal(sig, on_signal)
        except ValueError:  # not the main thread
            pass

    t0 = time.time()
    model.train()
    losses: list[float] = list(pending_losses)
    bar = tqdm(total=cfg.total_steps, initial=start, desc="train",
               disable=not (cfg.progress and is_main), dynamic_ncols=True)
    try:
        for step in range(start, cfg.total_steps):
            d = set_progress(model, step, cfg.total_steps) if wrapped else 1.0
            batch = train_batches(step, (rank, world))
            loss, _, _ = step_fn(ddp_model, batch)
            loss_value = loss.detach()
            if world > 1:  # log and check the global batch's loss, the same on every process
                loss_value = accelerator.reduce(loss_value.clone(), reduction="mean")
            if not torch.isfinite(loss_value):
                raise TrainingError(_diverged(loss_value.item(), step, sched, cfg, model,
                                              wrapped, ckpt))
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(
                    [p for p in model.parameters() if p.requires_grad], cfg.grad_clip)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss_value.item())
            done = step + 1
            bar.update(1)
            if done % cfg.log_every == 0 or done == cfg.total_steps:
                if wrapped:  # log d at the progress the record names (the next step's state)
                    set_progress(model, done, cfg.total_steps)
                rec = _base_record(model, done, cfg, wrapped, sched)
                rec.update(kind="train", train_loss=float(np.mean(losses)))
                losses.clear()
                bar.set_postfix(loss=f"{rec['train_loss']:.3f}", d=f"{d:.2f}")
                _emit(result, rec, on_record if is_main else None)
            if done % cfg.eval_every == 0 or done == cfg.total_steps:
                rec = _eval_record(model, eval_step_fn or step_fn, val_batches, done, cfg,
                                   wrapped, sched)
                _emit(result, rec, on_record if is_main else None)
                _check_stuck(result, rec, cfg, warn=is_main)
                model.train()
            if interrupted["flag"]:
                checkpoint(done)
                raise KeyboardInterrupt(f"interrupted at step {done}; resume with --resume")
            if done % cfg.checkpoint_every == 0 and done < cfg.total_steps:
                checkpoint(done)
    finally:
        bar.close()
        for sig, h in old_handlers.items():
            signal.signal(sig, h)
    result.seconds = time.time() - t0
    evals = [r for r in result.records if r["kind"] == "eval"]
    if result.stuck and evals and not _at_chance(evals[-1], cfg):
        # at chance for a while (e.g. while W faded out), but not at the end
        result.stuck = False
        result.warnings.append(
            f"the run recovered from chance level: final val acc {evals[-1]['val_acc']:.3f}")
    return result


def _at_chance(rec: dict, cfg: LoopConfig) -> bool:
    at_majority = cfg.majority is not None and abs(rec["val_acc"] - cfg.majority) <= 0.01
    at_prior = cfg.prior_loss is not None and abs(rec["val_loss"] - cfg.prior_loss) < 0.01
    return at_majority or at_prior or abs(rec["val_loss"] - math.log(cfg.num_labels)) < 0.01


def _diverged(value: float, step: int, sched, cfg: LoopConfig, model: nn.Module, wrapped: bool,
              ckpt: Path | None) -> str:
    """The message for a NaN/Inf loss: what happened, what to change, what was kept."""
    fixes = [f"Lower the learning rate (e.g. --lr {cfg.lr / 10:.1g})"]
    if wrapped and any(bool(layer.noise_active) for _, layer in decay_layers(model)):
        fixes.append("the noise (--noise-scale; it is on at this step)")
    if not cfg.grad_clip:
        fixes.append("turn gradient clipping back on (--grad-clip 1.0)")
    msg = (f"loss became {value} at step {step} (lr={sched.get_last_lr()[0]:.3g}). "
           f"{', or '.join(fixes)} and start a new run (--resume keeps the old settings)")
    if ckpt is None:
        return msg
    try:
        saved = json.loads((ckpt / "state.json").read_text())["step"]
        return f"{msg}; the last good checkpoint (step {saved}) is kept in {ckpt}"
    except (OSError, ValueError, KeyError):
        return f"{msg}; no checkpoint had been written yet"


def _emit(result: LoopResult, rec: dict, on_record: Callable[[dict], None] | None) -> None:
    result.records.append(rec)
    if on_record is not None:
        on_record(rec)


def _base_record(model, done: int, cfg: LoopConfig, wrapped: bool, sched) -> dict:
    layers = [layer for _, layer in decay_layers(model)] if wrapped else []
    d = layers[0].d if layers else 1.0
    noisy = bool(layers[0].noise_active) if layers else False
    return {"step": done, "progress": done / cfg.total_steps, "d": d, "noise_on": noisy,
            "lr": float(sched.get_last_lr()[0])}


def _eval_record(model, step_fn, val_batches, done, cfg, wrapped, sched) -> dict:
    if wrapped:  # evaluate at the schedule position reached after this step
        set_progress(model, done, cfg.total_steps)
    rec = _base_record(model, done, cfg, wrapped, sched)
    cur = evaluate(model, step_fn, val_batches(), desc="val", progress=cfg.progress)
    rec.update(kind="eval", val_loss=cur["loss"], val_acc=cur["acc"], val_acc_exported=None)
    if wrapped:
        exp = evaluate(model, step_fn, val_batches(), exported=True, desc="val (W-free)",
                       progress=cfg.progress)
        rec["val_acc_exported"] = exp["acc"]
        rec["val_loss_exported"] = exp["loss"]
        rec.update(layer_statistics(model))
    else:
        rec.update(c_norm={}, ba_norm={}, weight_stats=None, snr_fro={}, snr_spec={})
    return rec


def _check_stuck(result: LoopResult, rec: dict, cfg: LoopConfig, warn: bool = True) -> None:
    """Flag a run stuck at chance (the notes' BERT-small at 50%): after 30% of training, the
    validation accuracy within 1 point of the validation majority class, or the loss at ln K or
    at the entropy of the label prior (what a model that ignores its input reaches)."""
    if rec["progress"] < 0.3 or result.stuck:
        return
    if _at_chance(rec, cfg):
        result.stuck = True
        msg = (f"run looks STUCK AT CHANCE at step {rec['step']}: val acc {rec['val_acc']:.3f} "
               f"(majority class {cfg.majority if cfg.majority is not None else float('nan'):.3f}), "
               f"val loss {rec['val_loss']:.3f} (ln K = {math.log(cfg.num_labels):.3f}, label "
               f"prior {cfg.prior_loss if cfg.prior_loss is not None else float('nan'):.3f}). "
               "Likely "
               "causes: learning rate too high for this model (try 10x lower), noise drowning "
               "the signal (try --method default, --noise-cap 0.5 or a smaller --noise-scale; "
               "snr.png shows it), or the wrong "
               "parameters trainable (check the summary table).")
        result.warnings.append(msg)
        if warn:
            tqdm.write("WARNING: " + msg)
