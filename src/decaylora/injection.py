"""Injection: find target layers by name/type, replace them by decay layers, freeze the rest;
and drive every wrapped layer from the training progress."""

from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Iterator

from torch import nn

from .config import DecayConfig
from .errors import InjectionError
from .layers import DecayLayer, decay_layer_class, geometry, noise_seed, supported

#: Attribute under which the config is stored on a wrapped model.
CONFIG_ATTR = "decaylora_config"


def _matches(name: str, pattern: list[str] | str) -> bool:
    if isinstance(pattern, str):
        return re.fullmatch(pattern, name) is not None
    return any(name == key or name.endswith("." + key) for key in pattern)


def _check_each_key_matches(what: str, keys: list[str] | str, names: list[str],
                            where: str = "module of the model", regex: bool = True) -> None:
    keys_list = [keys] if isinstance(keys, str) else keys
    for key in keys_list:
        if not any(_matches(n, [key] if not isinstance(keys, str) else key) for n in names):
            suffixes = sorted({p for n in names for p in _suffixes(n)})
            close = difflib.get_close_matches(key, suffixes, n=5, cutoff=0.5)
            hint = f" Close names: {', '.join(close)}." if close else ""
            raise InjectionError(
                f"{what} {key!r} matched no {where}.{hint} Use a module name "
                "(exact or a dotted suffix such as 'attention.self.query')"
                f"{' or a regex string' if regex else ''}; "
                "`decaylora summary` lists the model's modules."
            )


def _suffixes(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[i:]) for i in range(len(parts))]


def find_targets(model: nn.Module, config: DecayConfig) -> list[str]:
    """Qualified names of the modules ``wrap`` would replace (validated, in model order)."""
    names = [n for n, _ in model.named_modules() if n]
    modules = dict(model.named_modules())
    if config.target_modules is not None:
        _check_each_key_matches("target module", config.target_modules, names)
    if config.exclude_modules is not None:
        _check_each_key_matches("excluded module", config.exclude_modules, names)
    types = set(config.target_types or [])
    chosen = []
    for n in names:
        m = modules[n]
        if isinstance(m, DecayLayer) or any(n.startswith(c + ".") for c in chosen):
            continue
        if config.target_modules is not None and not _matches(n, config.target_modules):
            continue
        if types and type(m).__name__ not in types:
            continue
        if config.exclude_modules is not None and _matches(n, config.exclude_modules):
            continue
        if config.target_modules is None and not supported(m):
            continue
        chosen.append(n)
    if not chosen:
        kinds = sorted({type(m).__name__ for m in modules.values()})
        raise InjectionError(
            "no module matched the targets "
            f"(target_modules={config.target_modules!r}, target_types={config.target_types!r}). "
            f"The model has module types: {', '.join(kinds)}; supported: Linear, Conv2d, Conv1D."
        )
    return chosen


def _check_layer(name: str, module: nn.Module, config: DecayConfig) -> None:
    g = geometry(module)  # raises for unsupported types
    r = config.rank_for(name)
    key = config.rank_key(name)
    fix = "r" if key is None else f"rank_pattern[{key!r}]"  # where this layer's rank comes from
    if g.groups > 1:
        if config.init == "svd":  # checked here, before wrap() touches the model
            raise InjectionError(
                f"{name}: init='svd' is not supported for grouped convolutions "
                f"({g.groups} groups); use init='lora' or exclude the layer"
            )
        if g.out_features == g.groups and g.fan_in == g.kernel:
            raise InjectionError(
                f"{name}: depthwise convolution ({g.groups} groups of one channel) has no "
                "low-rank form that saves anything; add it to exclude_modules"
            )
        if r % g.groups:
            raise InjectionError(
                f"{name}: rank {r} must be a multiple of the conv's groups ({g.groups}) so each "
                f"group gets an equal rank; try {fix}={max(g.groups, r - r % g.groups)}"
            )
    if r > g.max_rank:
        raise InjectionError(
            f"{name}: rank {r} is larger than the layer's full rank {g.max_rank} "
            f"(out={g.out_features}, fan_in={g.fan_in}); choose {fix} < {g.max_rank}"
        )
    if g.lowrank_macs(r) >= g.dense_macs() and not config.allow_larger:
        bound = g.out_features * g.fan_in / (g.fan_in + g.out_features // g.groups)
        raise InjectionError(
            f"{name}: rank {r} would make the layer larger after compression "
            f"({g.lowrank_macs(r):,} vs {g.dense_macs():,} weights); the layer shrinks only for "
            f"r < {bound:.1f}. Lower {fix}, exclude the layer, or set allow_larger=True"
        )


def wrap(model: nn.Module, config: DecayConfig) -> nn.Module:
    """Replace the target layers of ``model`` in place by decay layers and freeze everything
    except the adapters and ``config.modules_to_save``. Returns the model."""
    if not isinstance(config, DecayConfig):
        raise InjectionError(f"wrap() needs a DecayConfig, got {type(config).__name__}")
    if getattr(model, CONFIG_ATTR, None) is not None:
        raise InjectionError("model is already wrapped by decaylora; wrap a fresh model")
    targets = find_targets(model, config)
    modules = dict(model.named_modules())
    if config.rank_pattern:
        _check_each_key_matches("rank_pattern key", list(config.rank_pattern), targets,
                                where="wrapped layer", regex=False)
    for name in targets:
        _check_layer(name, modules[name], config)
    save_names: list[str] = []
    if config.modules_to_save:
        names = [n for n in modules if n]
        _check_each_key_matches("module to save", config.modules_to_save, names)
        save_names = [n for n in names if _matches(n, config.modules_to_save)]
    for p in model.parameters():
        p.requires_grad_(False)
    for index, name in enumerate(targets):
        base = modules[name]
        layer = decay_layer_class(base)(
            base, config.rank_for(name), config.scale_for(name), c_init=config.c_init,
            noise_stats=config.noise_stats, noise_scale=config.noise_scale, noise_seed=noise_seed(config.seed, index),
            init=config.init, noise_cap=config.noise_cap,
        )
        _set_submodule(model, name, layer)
    for name in save_names:
        for p in modules[name].parameters():
            p.requires_grad_(True)
    setattr(model, CONFIG_ATTR, config)
    set_progress(model, 0, 1)
    return model


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def decay_layers(model: nn.Module) -> Iterator[tuple[str, DecayLayer]]:
    """(name, layer) for every wrapped layer."""
    for name, m in model.named_modules():
        if isinstance(m, DecayLayer):
            yield name, m


def get_config(model: nn.Module) -> DecayConfig:
    config = getattr(model, CONFIG_ATTR, None)
    if config is None:
        raise InjectionError("model is not wrapped by decaylora: call decaylora.wrap first")
    return config


def set_progress(model: nn.Module, step: int, total_steps: int) -> float:
    """Set d and the noise state of every wrapped layer from training progress
    ``step / total_steps`` (the schedule in the model's config). Returns d."""
    if total_steps <= 0:
        raise InjectionError(f"total_steps must be positive, got {total_steps}")
    schedule = get_config(model).schedule
    p = min(max(step / total_steps, 0.0), 1.0)
    d, noisy = schedule.decay(p), schedule.noise_on(p)
    for _, layer in decay_layers(model):
        layer.set_state(d, noisy, step)
    return d


def set_decay(model: nn.Module, d: float, noise: bool = False, step: int = 0) -> None:
    """Set the decay state directly (tests, analysis); training uses ``set_progress``."""
    for _, layer in decay_layers(model):
        layer.set_state(d, noise, step)


@contextlib.contextmanager
def as_exported(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, every wrapped layer computes only ``s B A x + C``: the model as it
    would be after ``compress`` (use it to evaluate the W-free model during training)."""
    layers = [layer for _, layer in decay_layers(model)]
    previous = [layer.export_view for layer in layers]
    for layer in layers:
        layer.export_view = True
    try:
        yield model
    finally:
        for layer, prev in zip(layers, previous, strict=True):
            layer.export_view = prev
