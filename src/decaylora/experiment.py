"""Experiments: one config -> data, model, method, training, W-free export, report, figures.

``run_experiment`` is what ``decaylora run`` does; ``compare`` runs several methods with the same
model, data, seed, steps and evaluation and writes one table.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
import types
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from tqdm.auto import tqdm

from .config import PRESETS, DecayConfig, _unknown
from .errors import ConfigError
from .export import compress, load_compressed, save_adapter, save_compressed
from .injection import as_exported, set_progress, wrap
from .inspection import summary
from .training import (
    IndexedBatches,
    LoopConfig,
    eval_batches,
    evaluate,
    label_prior,
    train_loop,
)

#: Methods of ``compare``. W-free methods end with W deleted; the others are references.
WFREE_METHODS = ("default", "decay", "decay+c", "decay+noise", "decay+noise+c",
                 "decay+capped-noise", "notes-a", "notes-b", "svd", "svd-residual")
REFERENCE_METHODS = ("full", "lora", "head")
METHODS = REFERENCE_METHODS + WFREE_METHODS
METHOD_ALIASES = {"preset-a": "notes-a", "preset-b": "notes-b"}

#: Learning rates that train each kind of method (adapters tolerate much larger steps than full
#: fine-tuning; SVD-initialised factors start at W's scale and need ~10x less, METHOD.md).
DEFAULT_LR = {
    "text": {"full": 5e-5, "head": 1e-3, "svd": 1e-4, "svd-residual": 1e-4, "adapter": 1e-3},
    "vision": {"full": 1e-3, "head": 3e-3, "svd": 3e-4, "svd-residual": 3e-4, "adapter": 3e-3},
}


@dataclass
class ExperimentConfig:
    """Everything one run needs; every field is also a ``--flag`` of the CLI."""

    name: str = "default"
    task: str = "text"                      # text | vision
    model: str = "minilm"                   # text: alias/hub id/folder; vision: vgg11 | vgg16
    data: str = "rotten_tomatoes"           # dataset name or local file
    text_column: str = "text"
    label_column: str = "label"
    method: str = "default"                 # see METHODS
    rank: int = 16
    rank_budget: float | None = None        # per-layer ranks from a fraction of the wrapped
                                            # layers' dense weights (0.125 = 1/8); None: rank
    rank_budget_min_rank: int = 1           # floor of every layer's rank under a rank budget
    alpha: float | None = None              # None: alpha = rank (scale 1)
    targets: list[str] | None = None        # None: the architecture's default targets
    modules_to_save: list[str] | None = None  # None: the classifier head
    schedule: dict | None = None            # overrides of the method's DecaySchedule fields
    noise_stats: str | None = None          # overrides of the method preset
    noise_scale: float | None = None
    noise_cap: float | None = None          # > 0: cap the noise's spectral norm (see DecayConfig)
    c_init: str | None = None
    steps: int | None = None                # None: epochs over the training set
    epochs: float = 2.0
    batch_size: int = 32
    eval_batch_size: int = 128
    max_length: int = 64
    dropout: float | None = None            # None: the model's own; else every nn.Dropout's p
    lr: float | None = None                 # None: DEFAULT_LR for the method
    weight_decay: float = 0.01
    warmup_fraction: float = 0.06
    grad_clip: float = 1.0
    eval_every: int | None = None           # None: 8 evaluations per run
    log_every: int = 10
    checkpoint_every: int = 100
    max_train: int | None = 4000
    max_eval: int | None = 1500
    max_val: int | None = 500
    val_fraction: float = 0.1
    seed: int = 0
    output_dir: str = "runs"
    threads: int | None = None
    progress: bool = True
    # vision
    width: float = 0.25
    augment: bool = False
    pretrain_steps: int = 0                 # > 0: two-stage flow, pretrain the base first
    pretrain_fraction: float = 0.5
    pretrain_lr: float = 3e-3
    cache_dir: str = "runs/cache"
    # knowledge distillation from a fully fine-tuned teacher (a cached first stage)
    kd_weight: float = 0.0                  # w: (1 - w) CE + w T^2 KL(teacher || student)
    kd_temperature: float = 2.0
    kd_feature_weight: float = 0.0          # MSE between student and teacher hidden states
    teacher_steps: int | None = None        # None: as many steps as the student run
    teacher_lr: float | None = None         # None: the full fine-tuning default

    def __post_init__(self) -> None:
        _check_types(self)
        self.method = METHOD_ALIASES.get(self.method, self.method)
        if self.method not in METHODS:
            raise ConfigError(_unknown("method", self.method, METHODS))
        if self.task not in ("text", "vision"):
            raise ConfigError(_unknown("task", self.task, ("text", "vision")))
        for name in ("rank", "batch_size", "eval_batch_size", "max_length", "log_every",
                     "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")
        if self.dropout is not None and not (0.0 <= self.dropout < 1.0):
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.lr is not None and not (0 < self.lr < 10):
            raise ConfigError(f"lr must be in (0, 10), got {self.lr}")
        for name in ("max_train", "max_eval", "max_val", "threads"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1 (or null for no limit/default), got "
                                  f"{getattr(self, name)}")
        if self.steps is None and not self.epochs > 0:
            raise ConfigError(f"epochs must be > 0 (or set steps), got {self.epochs}")
        for name in ("weight_decay", "grad_clip"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0 (0 turns it off), got {getattr(self, name)}")
        if not 0 <= self.kd_weight <= 1:
            raise ConfigError(f"kd_weight must be in [0, 1] (0 turns distillation off), got "
                              f"{self.kd_weight}")
        if not self.kd_temperature > 0:
            raise ConfigError(f"kd_temperature must be > 0, got {self.kd_temperature}")
        if self.kd_feature_weight < 0:
            raise ConfigError(f"kd_feature_weight must be >= 0 (0 turns it off), got "
                              f"{self.kd_feature_weight}")
        if self.teacher_steps is not None and self.teacher_steps < 1:
            raise ConfigError(f"teacher_steps must be >= 1 (or null: as many as the run), got "
                              f"{self.teacher_steps}")
        if self.teacher_lr is not None and not (0 < self.teacher_lr < 10):
            raise ConfigError(f"teacher_lr must be in (0, 10), got {self.teacher_lr}")
        if self.distills and self.method == "full":
            raise ConfigError("method 'full' is the teacher of distillation; set kd_weight and "
                              "kd_feature_weight to 0 for it")
        if not 0 <= self.warmup_fraction < 1:
            raise ConfigError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.rank_budget is not None:
            self.rank_budget = float(self.rank_budget)
            if not 0 < self.rank_budget <= 1:
                raise ConfigError(
                    f"rank_budget must be a fraction in (0, 1] of the wrapped layers' dense "
                    f"weights (e.g. 0.125 = 1/8 of them), got {self.rank_budget}; or null to "
                    "use one rank everywhere")
        if (isinstance(self.rank_budget_min_rank, bool)
                or not isinstance(self.rank_budget_min_rank, int) or self.rank_budget_min_rank < 1):
            raise ConfigError(f"rank_budget_min_rank must be a positive integer, got "
                              f"{self.rank_budget_min_rank!r}")
        if self.method not in REFERENCE_METHODS or self.method == "lora":
            self.decay_config()  # validates rank/schedule/noise settings early

    @property
    def wfree(self) -> bool:
        return self.method in WFREE_METHODS

    @property
    def distills(self) -> bool:
        return self.kd_weight > 0 or self.kd_feature_weight > 0

    @property
    def wrapped(self) -> bool:
        return self.method not in ("full", "head")

    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        table = DEFAULT_LR[self.task]
        return table.get(self.method, table["adapter"])

    def decay_config(self, targets: list[str] | None = None,
                     modules_to_save: list[str] | None = None) -> DecayConfig:
        preset = self.method if self.method in PRESETS else "default"
        overrides: dict[str, Any] = {"r": self.rank, "alpha": self.alpha, "seed": self.seed,
                                     "target_modules": targets or self.targets or ["__any__"],
                                     "modules_to_save": modules_to_save or self.modules_to_save}
        for key in ("noise_stats", "noise_scale", "noise_cap", "c_init"):
            if getattr(self, key) is not None:
                overrides[key] = getattr(self, key)
        if self.schedule:
            overrides["schedule"] = dict(self.schedule)
        try:
            return DecayConfig.from_preset(preset, **overrides)
        except TypeError as e:
            raise ConfigError(f"invalid schedule override {self.schedule!r}: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentConfig:
        names = [f.name for f in fields(cls)]
        for key in data:
            if key not in names:
                raise ConfigError(_unknown("config key", key, names))
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, **overrides: Any) -> ExperimentConfig:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} not found; pass an existing YAML file, e.g. "
                              "configs/default.yaml")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p} is not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p} must hold a mapping of config keys, got {type(data).__name__}")
        data.update(overrides)
        return cls.from_dict(data)


def _check_types(cfg: Any) -> None:
    """Reject values of the wrong type with the field name (YAML makes these easy to get wrong)."""
    hints = typing.get_type_hints(type(cfg))
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        hint = hints[f.name]
        allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        if float in allowed and isinstance(value, str):
            # PyYAML reads 1e-3 and 1.0e20 as strings (YAML 1.1 wants "1.0e-3"/"1.0e+20")
            try:
                value = float(value)
                setattr(cfg, f.name, value)
            except ValueError:
                pass
        ok = False
        for t in allowed:
            origin = typing.get_origin(t) or t
            if t is type(None) and value is None:
                ok = True
            elif origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
                ok = True
            elif origin is int and isinstance(value, int) and not isinstance(value, bool):
                ok = True
            elif origin is list and isinstance(value, (list, tuple)):
                ok = all(isinstance(v, str) for v in value)
            elif origin in (str, bool, dict) and isinstance(value, origin):
                ok = True
        if not ok:
            raise ConfigError(f"config key {f.name!r} must be {_type_name(hint)}, "
                              f"got {value!r} ({type(value).__name__})")
        if isinstance(value, float) and math.isnan(value):
            raise ConfigError(f"config key {f.name!r} is NaN")


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


# ----- set-up ----------------------------------------------------------------------------------
@dataclass
class Task:
    """A loaded model + data with the functions the training loop needs."""

    model: nn.Module
    step_fn: Callable
    train_batches: IndexedBatches
    val_batches: Callable[[], Any]
    test_batches: Callable[[], Any]
    num_labels: int
    majority: float
    targets: list[str]
    head: list[str]
    skeleton: Callable[[], nn.Module]       # a fresh dense model of the same architecture
    describe: dict[str, Any]
    save_extras: Callable[[Path], None] = lambda p: None
    val_labels: Any = None                  # for the stuck-at-chance check


def _text_step(model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    out = model(**batch)
    return out.loss, out.logits, batch["labels"]


def _vision_step(model: nn.Module, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x, y = batch
    logits = model(x)
    return torch.nn.functional.cross_entropy(logits, y), logits, y


def load_text_task(cfg: ExperimentConfig) -> Task:
    from .data import load_text_dataset
    from .models import default_text_targets, load_text_model

    splits = load_text_dataset(cfg.data, text_column=cfg.text_column,
                               label_column=cfg.label_column, val_fraction=cfg.val_fraction,
                               max_train=cfg.max_train, max_eval=cfg.max_eval, seed=cfg.seed)
    if not splits.train_texts:
        raise ConfigError(f"dataset {cfg.data} has no training examples after filtering")
    _check_classes(splits.num_labels, splits.label_names, cfg)
    model, tokenizer = load_text_model(cfg.model, splits.num_labels)
    positions = _max_positions(model, tokenizer)
    if positions is not None and cfg.max_length > positions:
        raise ConfigError(f"max_length {cfg.max_length} is longer than the {positions} positions "
                          f"model {cfg.model!r} can read; use --max-length {positions} or less")
    val_texts, val_labels = splits.val_texts, splits.val_labels
    if cfg.max_val is not None:
        val_texts, val_labels = val_texts[: cfg.max_val], val_labels[: cfg.max_val]

    def encoded(texts: list[str], labels: list[int]) -> Callable[[list[int]], dict]:
        enc = tokenizer(texts, truncation=True, max_length=cfg.max_length)
        lab = torch.tensor(labels, dtype=torch.long)

        def collate(idx: list[int]) -> dict:
            batch = tokenizer.pad({k: [enc[k][i] for i in idx] for k in enc.keys()},
                                  return_tensors="pt")
            batch["labels"] = lab[idx]
            return dict(batch)
        return collate

    train_c = encoded(splits.train_texts, splits.train_labels)
    val_c, test_c = encoded(val_texts, val_labels), encoded(splits.test_texts, splits.test_labels)
    bs = cfg.eval_batch_size
    config = model.config

    def skeleton() -> nn.Module:
        from transformers import AutoModelForSequenceClassification
        return AutoModelForSequenceClassification.from_config(config)

    def save_extras(path: Path) -> None:
        config.save_pretrained(path)
        tokenizer.save_pretrained(path)

    return Task(
        model=model, step_fn=_text_step,
        train_batches=IndexedBatches(len(splits.train_texts), cfg.batch_size, cfg.seed, train_c),
        val_batches=lambda: eval_batches(len(val_texts), bs, val_c),
        test_batches=lambda: eval_batches(len(splits.test_texts), bs, test_c),
        num_labels=splits.num_labels, majority=splits.majority_baseline, val_labels=val_labels,
        targets=cfg.targets or default_text_targets(model),
        head=cfg.modules_to_save or ["classifier"], skeleton=skeleton,
        describe={"data": splits.source, "train": len(splits.train_texts), "val": len(val_texts),
                  "test": len(splits.test_texts), "label_names": splits.label_names},
        save_extras=save_extras,
    )


def _check_classes(k: int, names: list[str], cfg: ExperimentConfig) -> None:
    if k < 2:
        from .data import DataError
        raise DataError(f"{cfg.data}: the labels hold only {k} class ({', '.join(names)}); a "
                        "classifier needs at least 2. Check --label-column and the file's labels")


def _max_positions(model: nn.Module, tokenizer: Any) -> int | None:
    """Longest input (in tokens) the text model can read, if it says."""
    limits = [getattr(model.config, k, None) for k in ("max_position_embeddings", "n_positions")]
    limit = getattr(tokenizer, "model_max_length", None)
    limits.append(limit if isinstance(limit, int) and limit < 1_000_000 else None)
    limits = [v for v in limits if isinstance(v, int) and v > 0]
    return min(limits) if limits else None


def load_vision_task(cfg: ExperimentConfig, accelerator: Any = None) -> Task:
    from .data import load_image_dataset
    from .models import default_vision_targets, vgg

    splits = load_image_dataset(cfg.data, val_fraction=cfg.val_fraction, max_train=cfg.max_train,
                                max_eval=cfg.max_eval, seed=cfg.seed)
    _check_classes(splits.num_classes, splits.class_names, cfg)
    arch = dict(name=cfg.model, num_classes=splits.num_classes, in_channels=splits.in_channels,
                width=cfg.width, image_size=splits.image_size)

    def skeleton() -> nn.Module:
        return vgg(**arch)

    torch.manual_seed(cfg.seed)
    model = skeleton()
    describe: dict[str, Any] = {"data": splits.source, "arch": arch}
    if cfg.pretrain_steps > 0:
        pre, splits = splits.pretrain_finetune_split(cfg.pretrain_fraction, cfg.seed)
        describe["pretrain"] = pretrain_vision(model, pre, cfg, arch, accelerator)
    val_x, val_y = splits.val_x, splits.val_y
    if cfg.max_val is not None:
        val_x, val_y = val_x[: cfg.max_val], val_y[: cfg.max_val]
    train_x, train_y = splits.train_x, splits.train_y

    def train_collate(idx: list[int]):
        x = train_x[idx]
        return (_augment(x, idx) if cfg.augment else x), train_y[idx]

    bs = cfg.eval_batch_size
    describe.update(train=len(train_y), val=len(val_y), test=len(splits.test_y))

    def save_extras(path: Path) -> None:
        (path / "architecture.json").write_text(json.dumps({"vgg": arch}, indent=2))

    return Task(
        model=model, step_fn=_vision_step,
        train_batches=IndexedBatches(len(train_y), cfg.batch_size, cfg.seed, train_collate),
        val_batches=lambda: eval_batches(len(val_y), bs, lambda i: (val_x[i], val_y[i])),
        test_batches=lambda: eval_batches(len(splits.test_y), bs,
                                          lambda i: (splits.test_x[i], splits.test_y[i])),
        num_labels=splits.num_classes, majority=splits.majority_baseline, val_labels=val_y,
        targets=cfg.targets or default_vision_targets(model),
        head=cfg.modules_to_save or ["classifier"], skeleton=skeleton, describe=describe,
        save_extras=save_extras,
    )


def _augment(x: torch.Tensor, idx: list[int]) -> torch.Tensor:
    """Random horizontal flip + 2-pixel random crop, seeded by the example indices so a
    resumed run augments identically."""
    g = torch.Generator().manual_seed(int(sum(idx)) * 31 + len(idx))
    flip = torch.rand(x.shape[0], generator=g) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    dx, dy = torch.randint(0, 5, (2,), generator=g).tolist()
    return padded[..., dy:dy + x.shape[-2], dx:dx + x.shape[-1]]


def pretrain_vision(model: nn.Module, pre, cfg: ExperimentConfig, arch: dict,
                    accelerator: Any = None) -> dict:
    """Stage 1 of the notes' vision flow: train the base network on its own split, cached by
    a hash of everything that determines it."""

    key = json.dumps({"arch": arch, "data": cfg.data, "steps": cfg.pretrain_steps,
                      "lr": cfg.pretrain_lr, "fraction": cfg.pretrain_fraction,
                      "seed": cfg.seed, "bs": cfg.batch_size, "max_train": cfg.max_train,
                      "augment": cfg.augment}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = Path(cfg.cache_dir) / f"pretrain-{cfg.model}-{digest}.safetensors"
    info: dict[str, Any] = {"cache": str(path), "steps": cfg.pretrain_steps,
                            "train": len(pre.train_y)}

    def train() -> float:
        tx, ty = pre.train_x, pre.train_y
        batches = IndexedBatches(len(ty), cfg.batch_size, cfg.seed + 1,
                                 lambda i: (_augment(tx[i], i) if cfg.augment else tx[i], ty[i]))
        loop = LoopConfig(total_steps=cfg.pretrain_steps, lr=cfg.pretrain_lr,
                          eval_every=cfg.pretrain_steps, log_every=max(1, cfg.pretrain_steps // 10),
                          checkpoint_every=10**9, seed=cfg.seed, num_labels=pre.num_classes,
                          progress=cfg.progress)
        vx, vy = pre.val_x[:1000], pre.val_y[:1000]
        return train_loop(model, _vision_step, batches,
                          lambda: eval_batches(len(vy), cfg.eval_batch_size,
                                               lambda i: (vx[i], vy[i])),
                          loop, wrapped=False, accelerator=accelerator).seconds

    info.update(cached_stage(model, path, train, accelerator))
    acc = evaluate(model, _vision_step, eval_batches(
        len(pre.test_y), cfg.eval_batch_size, lambda i: (pre.test_x[i], pre.test_y[i])),
        progress=False)["acc"]
    info["test_acc"] = acc
    return info


def cached_stage(model: nn.Module, path: Path, train: Callable[[], float],
                 accelerator: Any = None) -> dict[str, Any]:
    """A cached training stage (vision pre-training, distillation teacher): load ``model`` from
    ``path`` if it exists, else run ``train()`` (returns seconds) and save the weights
    atomically from the main process."""
    from safetensors.torch import load_model, save_model

    if path.is_file():
        load_model(model, str(path))
        return {"cached": True}
    seconds = train()
    if accelerator is None or accelerator.is_main_process:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_model(model, str(tmp))
        os.replace(tmp, path)
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return {"cached": False, "seconds": seconds}


def load_task(cfg: ExperimentConfig, accelerator: Any = None) -> Task:
    task = load_text_task(cfg) if cfg.task == "text" else load_vision_task(cfg, accelerator)
    if cfg.dropout is not None:
        for m in task.model.modules():
            if isinstance(m, nn.Dropout):
                m.p = cfg.dropout
    return task


def apply_method(task: Task, cfg: ExperimentConfig) -> DecayConfig | None:
    """Make the model ready for the method: wrap it, or set the trainable flags."""
    model = task.model
    if cfg.method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return None
    if cfg.method == "head":
        for p in model.parameters():
            p.requires_grad_(False)
        for name, m in model.named_modules():
            if any(name == h or name.endswith("." + h) for h in task.head):
                for p in m.parameters():
                    p.requires_grad_(True)
        return None
    dcfg = cfg.decay_config(task.targets, task.head)
    if cfg.rank_budget is not None:  # per-layer ranks from the original weights, before wrap
        from .budget import budgeted_config
        dcfg = budgeted_config(model, dcfg, cfg.rank_budget, min_rank=cfg.rank_budget_min_rank)
    wrap(model, dcfg)
    return dcfg


# ----- one run ---------------------------------------------------------------------------------
def make_run_dir(cfg: ExperimentConfig, run_dir: str | os.PathLike | None = None) -> Path:
    if run_dir is not None:
        return Path(run_dir)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(cfg.output_dir) / f"{cfg.name}-{cfg.method}-r{cfg.rank}-s{cfg.seed}-{stamp}"


def run_experiment(cfg: ExperimentConfig, run_dir: str | os.PathLike | None = None, *,
                   resume: bool = False, plots: bool = True) -> dict[str, Any]:
    """Run one experiment into ``run_dir`` and return its results (also ``results.json``)."""
    run_dir = make_run_dir(cfg, run_dir)
    accelerator = make_accelerator()
    is_main = accelerator.is_main_process
    if resume:
        saved = ExperimentConfig.from_yaml(run_dir / "config.yaml")
        if saved.to_dict() != cfg.to_dict():
            diff = {k: (v, cfg.to_dict()[k]) for k, v in saved.to_dict().items()
                    if cfg.to_dict()[k] != v}
            raise ConfigError(f"cannot resume {run_dir} with a different config: {diff} "
                              "(saved, given); resume without overrides")
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"run directory {run_dir} already exists and is not empty; choose "
                          "another --run-dir or resume it with --resume")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t0 = time.time()
    torch.manual_seed(cfg.seed)
    task = load_task(cfg, accelerator)  # fails before any output is written
    total = cfg.steps or max(1, int(cfg.epochs * task.train_batches.per_epoch))
    train_step, teacher_info = task.step_fn, None
    if cfg.distills:
        teacher, teacher_info = train_teacher(task, cfg, total, accelerator)
        train_step = kd_step_for(task, cfg, teacher)
        torch.manual_seed(cfg.seed)  # adapters start the same whether the teacher was cached
    dcfg = apply_method(task, cfg)
    accelerator.wait_for_everyone()  # every process has checked run_dir before it is created
    summ = summary(task.model)
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        (run_dir / "summary.txt").write_text(summ.table() + "\n")
        if cfg.progress:
            tqdm.write(summ.table(max_rows=60))
    accelerator.wait_for_everyone()
    val_majority, val_prior = label_prior(task.val_labels, task.num_labels)
    loop = LoopConfig(
        total_steps=total, lr=cfg.learning_rate(), weight_decay=cfg.weight_decay,
        warmup_fraction=cfg.warmup_fraction, grad_clip=cfg.grad_clip,
        eval_every=cfg.eval_every or max(1, total // 8), log_every=cfg.log_every,
        checkpoint_every=cfg.checkpoint_every, seed=cfg.seed, num_labels=task.num_labels,
        majority=val_majority, prior_loss=val_prior, progress=cfg.progress)
    metrics_path = run_dir / "metrics.jsonl"

    def on_record(rec: dict) -> None:
        with open(metrics_path, "a") as f:
            f.write(json.dumps(rec) + "\n")

    if not resume and is_main:
        metrics_path.unlink(missing_ok=True)
    res = train_loop(task.model, train_step, task.train_batches, task.val_batches, loop,
                     run_dir=run_dir, wrapped=dcfg is not None, on_record=on_record,
                     accelerator=accelerator, eval_step_fn=task.step_fn)
    fingerprints = adapter_fingerprints(task.model, accelerator)
    if not is_main:  # only the main process evaluates on test and writes files
        accelerator.wait_for_everyone()
        return {"rank": accelerator.process_index, "fingerprints": fingerprints}
    # keep metrics.jsonl equal to the records (a resumed run restores them from the checkpoint)
    metrics_path.write_text("".join(json.dumps(r) + "\n" for r in res.records))
    model = task.model
    if dcfg is not None:
        set_progress(model, total, total)
    test = evaluate(model, task.step_fn, task.test_batches(), desc="test", progress=cfg.progress)
    results: dict[str, Any] = {
        "name": cfg.name, "method": cfg.method, "rank": cfg.rank if dcfg else None,
        "seed": cfg.seed, "steps": total, "lr": loop.lr, "w_free": cfg.wfree,
        "data": task.describe, "majority_baseline": task.majority,
        "val_majority_baseline": val_majority,
        "num_labels": task.num_labels,
        "schedule": dcfg.schedule.to_dict() if dcfg else None,
        "noise_scale": dcfg.noise_scale if dcfg else None,
        "decay_config": dcfg.to_dict() if dcfg else None,
        "test_acc": test["acc"], "test_loss": test["loss"],
        "final_val_acc": res.records[-1].get("val_acc") if res.records else None,
        "stuck_at_chance": res.stuck or abs(test["acc"] - task.majority) <= 0.01,
        "warnings": res.warnings + ([
            f"test accuracy {test['acc']:.3f} is at the majority class ({task.majority:.3f}): "
            "the model ignores its input"] if abs(test["acc"] - task.majority) <= 0.01 else []),
        "train_seconds": res.seconds, "resumed_from_step": res.resumed_from,
        "params": {"total_during_training": summ.total, "trainable": summ.trainable,
                   "wrapped_layers": len(summ.wrapped),
                   "wrapped_before": summ.wrapped_params_before,
                   "wrapped_after": summ.wrapped_params_after,
                   "wrapped_macs_per_position_before": summ.wrapped_macs_before,
                   "wrapped_macs_per_position_after": summ.wrapped_macs_after},
    }
    if dcfg is not None and cfg.rank_budget is not None:
        from .budget import budget_summary
        results["rank_budget"], results["ranks"] = budget_summary(model, cfg.rank_budget)
    if dcfg is not None:
        with as_exported(model):
            results["test_acc_wfree_view"] = evaluate(model, task.step_fn, task.test_batches(),
                                                      desc="test (W-free)",
                                                      progress=cfg.progress)["acc"]
    if dcfg is not None:
        save_adapter(model, run_dir / "adapter", extra={"steps": total})
    if cfg.wfree:
        results["params"]["deployed"] = summ.params_after_compression
        results["export"] = export_and_check(task, run_dir / "export", test["acc"], cfg)
    elif cfg.method == "lora":
        # W is kept: deployed = the dense model with B A merged into W
        results["params"]["deployed"] = summ.total - summ.trainable + _head_params(model, task)
    else:
        results["params"]["deployed"] = summ.total
    if teacher_info is not None:
        results["distillation"] = {"kd_weight": cfg.kd_weight,
                                   "kd_temperature": cfg.kd_temperature,
                                   "kd_feature_weight": cfg.kd_feature_weight,
                                   "teacher": teacher_info}
    results["processes"] = accelerator.num_processes
    results["adapter_fingerprints"] = fingerprints
    results["ranks_identical"] = len(set(fingerprints)) == 1
    results["wall_seconds"] = time.time() - t0
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    shutil.rmtree(run_dir / "checkpoint", ignore_errors=True)
    if plots:
        from .plots import plot_run
        results["figures"] = [p.name for p in plot_run(run_dir)]
    (run_dir / "report.md").write_text(render_report(results, summ.table()))
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    accelerator.wait_for_everyone()
    return results


#: ExperimentConfig fields that determine a distillation teacher (its cache key).
_TEACHER_KEYS = ("task", "model", "data", "text_column", "label_column", "max_train", "max_val",
                 "max_eval", "val_fraction", "seed", "batch_size", "max_length", "dropout",
                 "weight_decay", "warmup_fraction", "grad_clip", "width", "augment",
                 "pretrain_steps", "pretrain_fraction", "pretrain_lr")


def train_teacher(task: Task, cfg: ExperimentConfig, total: int,
                  accelerator: Any = None) -> tuple[nn.Module, dict[str, Any]]:
    """Stage 1 of distillation: fine-tune a copy of the (pre-trained) model in full on the
    training split, cached in ``cache_dir`` by a hash of everything that determines it."""
    import copy


    steps = cfg.teacher_steps or total
    lr = cfg.teacher_lr or DEFAULT_LR[cfg.task]["full"]
    key = json.dumps({**{k: getattr(cfg, k) for k in _TEACHER_KEYS}, "steps": steps, "lr": lr},
                     sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = Path(cfg.cache_dir) / f"teacher-{digest}.safetensors"
    teacher = copy.deepcopy(task.model)
    info: dict[str, Any] = {"cache": str(path), "steps": steps, "lr": lr}

    def train() -> float:
        if cfg.progress and (accelerator is None or accelerator.is_main_process):
            tqdm.write(f"== distillation teacher: full fine-tuning, {steps} steps, lr {lr:g} ==")
        for p in teacher.parameters():
            p.requires_grad_(True)
        loop = LoopConfig(total_steps=steps, lr=lr, weight_decay=cfg.weight_decay,
                          warmup_fraction=cfg.warmup_fraction, grad_clip=cfg.grad_clip,
                          eval_every=steps, log_every=max(1, steps // 10),
                          checkpoint_every=10**9, seed=cfg.seed, num_labels=task.num_labels,
                          progress=cfg.progress)
        return train_loop(teacher, task.step_fn, task.train_batches, task.val_batches, loop,
                          wrapped=False, accelerator=accelerator).seconds

    info.update(cached_stage(teacher, path, train, accelerator))
    for p in teacher.parameters():
        p.requires_grad_(False)
    teacher.eval()
    info["val_acc"] = evaluate(teacher, task.step_fn, task.val_batches(), progress=False)["acc"]
    info["test_acc"] = evaluate(teacher, task.step_fn, task.test_batches(), progress=False)["acc"]
    return teacher, info


def kd_step_for(task: Task, cfg: ExperimentConfig, teacher: nn.Module) -> Callable:
    from .distill import text_kd_step, vision_kd_step

    make = text_kd_step if cfg.task == "text" else vision_kd_step
    return make(teacher, cfg.kd_weight, cfg.kd_temperature, cfg.kd_feature_weight)


def make_accelerator() -> Any:
    """An ``accelerate.Accelerator``: one process normally; DDP (gloo on CPU) under
    ``accelerate launch`` or ``torchrun``."""
    from accelerate import Accelerator
    return Accelerator(cpu=not torch.cuda.is_available())


def adapter_fingerprints(model: nn.Module, accelerator: Any) -> list[str]:
    """SHA-256 of every process's trainable parameters, gathered on every process: equal
    fingerprints prove the processes hold bitwise-identical adapters."""
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        if p.requires_grad:
            h.update(name.encode())
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
    mine = h.hexdigest()[:16]
    if accelerator.num_processes == 1:
        return [mine]
    import torch.distributed as dist
    out: list[Any] = [None] * accelerator.num_processes
    dist.all_gather_object(out, mine)
    return [str(x) for x in out]


def _head_params(model: nn.Module, task: Task) -> int:
    return sum(p.numel() for n, p in model.named_parameters()
               if p.requires_grad and "lora_" not in n and not n.endswith(".C"))


def export_and_check(task: Task, out: Path, expected_acc: float,
                     cfg: ExperimentConfig) -> dict[str, Any]:
    """Compress, save, reload into a fresh dense skeleton and check the reloaded model
    reproduces the final test accuracy."""
    model = compress(task.model)
    save_compressed(model, out, extra={"experiment": cfg.to_dict()})
    task.save_extras(out)
    fresh = load_compressed(task.skeleton(), out)
    acc = evaluate(fresh, task.step_fn, task.test_batches(), desc="test (reloaded export)",
                   progress=cfg.progress)["acc"]
    size = sum(f.stat().st_size for f in out.iterdir() if f.suffix == ".safetensors")
    return {"dir": str(out), "reloaded_test_acc": acc, "matches": abs(acc - expected_acc) < 1e-9,
            "params": sum(p.numel() for p in fresh.parameters()), "bytes": size}


def render_report(r: dict[str, Any], table: str) -> str:
    p = r["params"]
    lines = [f"# decaylora run: {r['name']} / {r['method']}", ""]
    lines.append(f"- data: {r['data'].get('data')} (train {r['data'].get('train')}, "
                 f"val {r['data'].get('val')}, test {r['data'].get('test')})")
    lines.append(f"- steps: {r['steps']}, lr {r['lr']:.3g}, seed {r['seed']}, "
                 f"train time {r['train_seconds']:.0f} s (wall {r.get('wall_seconds', 0):.0f} s)")
    lines.append(f"- majority-class baseline: {r['majority_baseline']:.3f}")
    if "distillation" in r:
        kd, t = r["distillation"], r["distillation"]["teacher"]
        lines.append(f"- distilled from a fully fine-tuned teacher ({t['steps']} steps, lr "
                     f"{t['lr']:g}, {'cached' if t.get('cached') else 'trained now'}; teacher "
                     f"test accuracy {t['test_acc']:.4f}): kd_weight {kd['kd_weight']:g}, "
                     f"T {kd['kd_temperature']:g}, feature weight {kd['kd_feature_weight']:g}")
    lines.append("")
    lines.append("| | value |")
    lines.append("|---|---|")
    lines.append(f"| test accuracy (final model) | {r['test_acc']:.4f} |")
    if "test_acc_wfree_view" in r:
        lines.append(f"| test accuracy with W deleted | {r['test_acc_wfree_view']:.4f} |")
    if "export" in r:
        e = r["export"]
        lines.append(f"| test accuracy of the reloaded export | {e['reloaded_test_acc']:.4f} "
                     f"({'matches' if e['matches'] else 'DOES NOT MATCH'}) |")
        lines.append(f"| exported size | {e['bytes'] / 1e6:.1f} MB |")
    lines.append(f"| parameters during training | {p['total_during_training']:,} "
                 f"({p['trainable']:,} trainable) |")
    lines.append(f"| parameters deployed | {p['deployed']:,} |")
    if p["wrapped_layers"]:
        lines.append(f"| wrapped layers: parameters | {p['wrapped_before']:,} → "
                     f"{p['wrapped_after']:,} |")
        lines.append(f"| wrapped layers: MACs per token/pixel | "
                     f"{p['wrapped_macs_per_position_before']:,} → "
                     f"{p['wrapped_macs_per_position_after']:,} |")
    lines.append("")
    for w in r["warnings"]:
        lines.append(f"> **Warning:** {w}")
        lines.append("")
    for fig in r.get("figures", []):
        lines.append(f"![{fig}]({fig})")
    if r.get("ranks"):
        from .budget import format_ranks
        b = r["rank_budget"]
        lines += ["", "## Ranks", "",
                  f"Chosen per layer by singular-value energy from a budget of {b['budget']:g} of "
                  f"the wrapped layers' {b['dense_weights']:,} dense weights "
                  f"({b['budget_params']:,} parameters; A + B use {b['allocated_params']:,}):",
                  "", "```", *format_ranks(r["ranks"]), "```"]
    lines += ["", "## Parameters per module", "", "```", table, "```", ""]
    return "\n".join(lines)


# ----- compare ---------------------------------------------------------------------------------
def compare(cfg: ExperimentConfig, methods: list[str], seeds: list[int] | None = None,
            out_dir: str | os.PathLike | None = None,
            lr_grid: list[float] | None = None) -> dict[str, Any]:
    """Run every method with the same model, data, steps and evaluation (and each seed);
    write ``compare.md``, ``compare.json`` and overlay plots into ``out_dir``.

    ``lr_grid``: every method is run at every learning rate of the grid (and every seed) and
    reported at the rate with the best mean *validation* accuracy of its final model (the
    validation split is carved from the training data; the test split never picks anything).
    Without a grid each method uses its default rate (``DEFAULT_LR``) or ``cfg.lr``."""
    methods = [METHOD_ALIASES.get(m, m) for m in methods]
    for m in methods:
        if m not in METHODS:
            raise ConfigError(_unknown("method", m, METHODS))
    seeds = seeds or [cfg.seed]
    if lr_grid is not None:
        lr_grid = _check_lr_grid(lr_grid)
    out = Path(out_dir) if out_dir else Path(cfg.output_dir) / (
        f"compare-{cfg.name}-r{cfg.rank}-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    histories: dict[str, list[dict]] = {}
    for m in methods:
        by_lr: dict[float | None, list[dict]] = {}
        for lr in (lr_grid or [None]):
            for s in seeds:
                run_cfg = dataclasses.replace(cfg, method=m, seed=s,
                                              lr=cfg.lr if lr is None else lr)
                name = f"{m}-s{s}" if lr is None else f"{m}-lr{lr:g}-s{s}"
                by_lr.setdefault(lr, []).append(_run_or_reuse(run_cfg, out / name, f"{m}"
                                                              f"{'' if lr is None else f' lr {lr:g}'}"
                                                              f" (seed {s})"))
        best = _best_lr(by_lr) if lr_grid else None
        row = _compare_row(m, by_lr[best])
        if lr_grid:
            row["lr_grid_val_acc"] = {f"{lr:g}": _mean_val(rs) for lr, rs in by_lr.items()}
            row["lr_selected_on"] = "validation"
        rows.append(row)
        name = f"{m}-s{seeds[0]}" if best is None else f"{m}-lr{best:g}-s{seeds[0]}"
        histories[m] = [json.loads(line) for line in
                        (out / name / "metrics.jsonl").read_text().splitlines()]
    from .plots import plot_compare
    figures = [p.name for p in plot_compare(histories, rows, out)]
    table = render_compare(rows, cfg, seeds, lr_grid)
    (out / "compare.md").write_text(table + "\n" + "".join(f"\n![{f}]({f})\n" for f in figures))
    result = {"rows": rows, "seeds": seeds, "lr_grid": lr_grid, "config": cfg.to_dict(),
              "figures": figures}
    (out / "compare.json").write_text(json.dumps(result, indent=2))
    tqdm.write(table)
    return result


def _check_lr_grid(grid: list[float]) -> list[float]:
    try:
        values = [float(v) for v in grid]
    except (TypeError, ValueError):
        raise ConfigError(f"lr grid must be numbers, e.g. --lr-grid 1e-4,3e-4,1e-3; got "
                          f"{grid!r}") from None
    if not values or any(not (0 < v < 10) for v in values):
        raise ConfigError(f"every lr of the grid must be in (0, 10), got {grid!r}")
    if len(set(values)) != len(values):
        raise ConfigError(f"lr grid has repeated values: {grid!r}")
    return values


def _run_or_reuse(run_cfg: ExperimentConfig, run_dir: Path, label: str) -> dict[str, Any]:
    """A finished run is reused, an interrupted one resumed (so a rerun of ``compare``
    continues where it stopped)."""
    if (run_dir / "results.json").is_file():
        tqdm.write(f"== {label}: done before, reusing {run_dir} ==")
        return json.loads((run_dir / "results.json").read_text())
    tqdm.write(f"== {label} ==")
    if (run_dir / "checkpoint").is_dir():
        return run_experiment(run_cfg, run_dir, resume=True)
    shutil.rmtree(run_dir, ignore_errors=True)  # a run that died before its first checkpoint
    return run_experiment(run_cfg, run_dir)


def _mean_val(rs: list[dict]) -> float:
    vals = [r["final_val_acc"] for r in rs if r.get("final_val_acc") is not None]
    return sum(vals) / len(vals) if vals else float("-inf")


def _best_lr(by_lr: dict[Any, list[dict]]) -> Any:
    """The learning rate with the best mean final validation accuracy (ties: the smaller lr)."""
    return max(sorted(by_lr), key=lambda lr: _mean_val(by_lr[lr]))


def _compare_row(method: str, rs: list[dict]) -> dict[str, Any]:
    import statistics
    accs = [r["test_acc"] for r in rs]
    return {"method": method, "w_free": rs[0]["w_free"], "seeds": [r["seed"] for r in rs],
            "test_acc": statistics.mean(accs),
            "test_acc_std": statistics.stdev(accs) if len(accs) > 1 else None,
            "test_accs": accs, "lr": rs[0]["lr"], "val_acc": _mean_val(rs),
            "deployed_params": rs[0]["params"]["deployed"],
            "trainable_params": rs[0]["params"]["trainable"],
            "wrapped_after": rs[0]["params"]["wrapped_after"],
            "wrapped_before": rs[0]["params"]["wrapped_before"],
            "train_seconds": statistics.mean(r["train_seconds"] for r in rs),
            "stuck": any(r["stuck_at_chance"] for r in rs),
            "majority_baseline": rs[0]["majority_baseline"],
            "val_majority_baseline": rs[0].get("val_majority_baseline")}


def render_compare(rows: list[dict], cfg: ExperimentConfig, seeds: list[int],
                   lr_grid: list[float] | None = None) -> str:
    ranks = (f"per-layer ranks from a budget of {cfg.rank_budget:g} of the dense weights"
             if cfg.rank_budget is not None else f"rank {cfg.rank}")
    if cfg.rank_budget is not None and cfg.rank_budget_min_rank > 1:
        ranks += f" (each at least {cfg.rank_budget_min_rank})"
    lines = [f"## {cfg.model} on {cfg.data}, {ranks}, seeds {seeds}", ""]
    if lr_grid:
        lines += [f"Each method at its best learning rate of the grid {[f'{v:g}' for v in lr_grid]}"
                  ", chosen by mean validation accuracy (never by test accuracy).", ""]
    lines += ["| method | ends W-free | test acc | ± (std over seeds) | val acc | deployed params | "
              "trainable | lr | train s/run | note |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: -r["test_acc"]):
        std = f"{r['test_acc_std']:.3f}" if r["test_acc_std"] is not None else "–"
        note = "stuck at chance" if r["stuck"] else ""
        lines.append(f"| {r['method']} | {'yes' if r['w_free'] else 'no'} | "
                     f"{r['test_acc']:.3f} | {std} | {_fmt_acc(r.get('val_acc'))} | "
                     f"{r['deployed_params']:,} | "
                     f"{r['trainable_params']:,} | {r['lr']:.0e} | {r['train_seconds']:.0f} | "
                     f"{note} |")
    lines.append("")
    lines.append(f"Majority class: {rows[0]['majority_baseline']:.3f}.")
    return "\n".join(lines)


def _fmt_acc(v: float | None) -> str:
    return "–" if v is None or v == float("-inf") else f"{v:.3f}"
