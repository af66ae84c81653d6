"""Compression (delete W, keep only the low-rank factors) and safetensors save/load.

Files are safetensors (never pickle) plus a small JSON manifest. A compressed model is plain
PyTorch: every wrapped layer became ``nn.Sequential(A, B)`` (two ``nn.Linear`` or two
``nn.Conv2d``), so it loads without decaylora (see ``docs/export.md`` for the 15-line loader).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from .config import DecayConfig
from .errors import ExportError
from .injection import CONFIG_ATTR, _set_submodule, decay_layers, get_config, wrap
from .layers import DecayConv2d, DecayLayer

MANIFEST_ATTR = "decaylora_manifest"
COMPRESSED_FORMAT = "decaylora-compressed"
ADAPTER_FORMAT = "decaylora-adapter"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
ADAPTER_FILE = "adapter.safetensors"
MANIFEST_FILE = "decaylora.json"


def _module_spec(layer: DecayLayer) -> dict[str, Any]:
    spec: dict[str, Any] = {"r": layer.r, "bias": layer.C is not None}
    if isinstance(layer, DecayConv2d):
        a = layer.lora_A
        spec.update(kind="conv2d", in_channels=a.in_channels, out_channels=layer.lora_B.out_channels,
                    kernel_size=list(a.kernel_size), stride=list(a.stride),
                    padding=a.padding if isinstance(a.padding, str) else list(a.padding),
                    dilation=list(a.dilation), groups=a.groups, padding_mode=a.padding_mode)
    else:
        g = layer.geometry
        spec.update(kind="linear", in_features=g.in_features, out_features=g.out_features)
    return spec


def build_lowrank(spec: dict[str, Any]) -> nn.Sequential:
    """The empty compressed module described by a manifest entry."""
    r = spec["r"]
    if spec["kind"] == "conv2d":
        padding = spec["padding"] if isinstance(spec["padding"], str) else tuple(spec["padding"])
        a = nn.Conv2d(spec["in_channels"], r, tuple(spec["kernel_size"]),
                      stride=tuple(spec["stride"]), padding=padding,
                      dilation=tuple(spec["dilation"]), groups=spec["groups"], bias=False,
                      padding_mode=spec["padding_mode"])
        b = nn.Conv2d(r, spec["out_channels"], 1, groups=spec["groups"], bias=spec["bias"])
        return nn.Sequential(a, b)
    if spec["kind"] == "linear":
        return nn.Sequential(nn.Linear(spec["in_features"], r, bias=False),
                             nn.Linear(r, spec["out_features"], bias=spec["bias"]))
    raise ExportError(f"unknown compressed module kind {spec['kind']!r} in manifest")


def compress(model: nn.Module, *, force: bool = False) -> nn.Module:
    """Replace (in place) every wrapped layer by its plain low-rank module ``Sequential(A, B)``
    with the scale folded into B and C as B's bias. W and b are dropped. Refuses while d > 0
    (the frozen weights still contribute) unless ``force=True``. Returns the model."""
    config = get_config(model)
    layers = list(decay_layers(model))
    live = [(n, layer.d) for n, layer in layers if layer.d > 0.0]
    if live and not force:
        name, d = live[0]
        raise ExportError(
            f"{len(live)} wrapped layers still use their frozen weights (e.g. {name}: d={d:.3g}); "
            "compressing now would change the model. Train until the decay schedule reaches "
            "d = 0 (set_progress to the last step), or pass force=True to drop W anyway"
        )
    specs = {}
    for name, layer in layers:
        specs[name] = _module_spec(layer)
        _set_submodule(model, name, layer.to_compressed())
    manifest = {"format": COMPRESSED_FORMAT, "version": FORMAT_VERSION,
                "modules": specs, "config": config.to_dict()}
    setattr(model, MANIFEST_ATTR, manifest)
    delattr(model, CONFIG_ATTR)
    return model


def _atomic_dir_write(directory: str | os.PathLike, files: dict[str, Any]) -> Path:
    """Write files into ``directory``: every file to a temp file first, then all renamed into
    place, so an interrupted or failed save (e.g. disk full) never leaves a truncated file
    under a final name, nor new weights beside an old manifest. A directory this call created
    is removed again if the save fails."""
    directory = Path(directory)
    created = not directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(f"cannot create output directory {directory}: {e}") from None
    written: dict[str, str] = {}
    try:
        for fname, writer in files.items():
            try:
                fd, tmp = tempfile.mkstemp(prefix=f".{fname}.", suffix=".tmp", dir=directory)
                os.close(fd)
                written[fname] = tmp
                writer(tmp)
            except OSError as e:
                raise ExportError(
                    f"could not write {directory / fname}: {e}; nothing was saved (free disk "
                    "space or choose another directory, then save again)") from None
        for fname, tmp in written.items():
            os.replace(tmp, directory / fname)
    except BaseException:
        for tmp in written.values():
            Path(tmp).unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):
                directory.rmdir()  # only if empty
        raise
    return directory


def _write_json(data: dict) -> Any:
    def write(path: str) -> None:
        with open(path, "w") as f:
            json.dump(data, f, indent=2)
    return write


def _read_manifest(directory: Path, expected: str) -> dict:
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise ExportError(f"{path} not found: {directory} is not a decaylora {expected} directory")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ExportError(f"{path} is corrupt ({e}); re-export the model") from None
    if manifest.get("format") != expected:
        raise ExportError(f"{directory} holds a {manifest.get('format')!r}, not a {expected!r}")
    if manifest.get("version", 0) > FORMAT_VERSION:
        raise ExportError(f"{directory} was written by a newer decaylora (format "
                          f"v{manifest['version']}); upgrade decaylora")
    return manifest


def save_compressed(model: nn.Module, directory: str | os.PathLike,
                    extra: dict[str, Any] | None = None) -> Path:
    """Save a compressed model: ``model.safetensors`` + manifest ``decaylora.json``."""
    manifest = getattr(model, MANIFEST_ATTR, None)
    if manifest is None:
        raise ExportError("model is not compressed: call decaylora.compress(model) first")
    manifest = {**manifest, **(extra or {})}
    return _atomic_dir_write(directory, {
        WEIGHTS_FILE: lambda p: save_model(model, p, metadata={"format": "pt"}),
        MANIFEST_FILE: _write_json(manifest),
    })


def load_compressed(model: nn.Module, directory: str | os.PathLike) -> nn.Module:
    """Load a compressed model into ``model``, a dense skeleton of the same architecture
    (e.g. ``AutoModelForSequenceClassification.from_config(...)``): the wrapped layers are
    replaced by the low-rank modules named in the manifest, then all weights are loaded."""
    directory = Path(directory)
    manifest = _read_manifest(directory, COMPRESSED_FORMAT)
    modules = dict(model.named_modules())
    for name, spec in manifest["modules"].items():
        if name not in modules:
            raise ExportError(f"the model has no module {name!r} named in {directory}: "
                              "pass a skeleton of the architecture that was compressed")
        _set_submodule(model, name, build_lowrank(spec))
    try:
        missing, unexpected = load_model(model, directory / WEIGHTS_FILE, strict=False)
    except (SafetensorError, OSError) as e:
        raise ExportError(f"cannot read {directory / WEIGHTS_FILE} (corrupt or truncated?): {e}; "
                          "export the model again (`decaylora export RUN_DIR`)") from None
    if missing or unexpected:
        raise ExportError(f"weights in {directory} do not fit the model: missing {missing[:5]}, "
                          f"unexpected {unexpected[:5]}")
    setattr(model, MANIFEST_ATTR, manifest)
    return model


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Everything trained or scheduled: A, B, C, decay state and noise statistics of every
    wrapped layer, and the parameters of ``modules_to_save``. A tensor shared under several
    names (tied weights, e.g. GPT-2's ``lm_head`` and ``wte``) is kept once, under its first
    name: safetensors refuses shared tensors, and loading into the one tensor keeps the tie."""
    state = {}
    seen: set[int] = set()
    layer_names = [n for n, _ in decay_layers(model)]
    for name, t in model.state_dict(keep_vars=True).items():
        owner = name.rpartition(".")[0]
        in_layer = any(owner == n or owner.startswith(n + ".") for n in layer_names)
        is_base = ".base_layer." in name + "."
        if (in_layer and not is_base) or (isinstance(t, nn.Parameter) and t.requires_grad):
            if id(t) in seen:
                continue
            seen.add(id(t))
            state[name] = t.detach()
    return state


def save_adapter(model: nn.Module, directory: str | os.PathLike,
                 extra: dict[str, Any] | None = None) -> Path:
    """Save the adapters (``adapter.safetensors``) and the config (``decaylora.json``)."""
    config = get_config(model)
    state = {k: v.contiguous().cpu() for k, v in adapter_state_dict(model).items()}
    manifest = {"format": ADAPTER_FORMAT, "version": FORMAT_VERSION,
                "config": config.to_dict(), **(extra or {})}
    return _atomic_dir_write(directory, {
        ADAPTER_FILE: lambda p: save_file(state, p, metadata={"format": "pt"}),
        MANIFEST_FILE: _write_json(manifest),
    })


def load_adapter(model: nn.Module, directory: str | os.PathLike) -> nn.Module:
    """Load adapters saved by ``save_adapter``. An unwrapped model is wrapped first with the
    saved config; a wrapped one must have been wrapped with the same targets and rank."""
    directory = Path(directory)
    manifest = _read_manifest(directory, ADAPTER_FORMAT)
    config = DecayConfig.from_dict(manifest["config"])
    if getattr(model, CONFIG_ATTR, None) is None:
        wrap(model, config)
    try:
        tensors = load_file(directory / ADAPTER_FILE)
    except (SafetensorError, OSError) as e:
        raise ExportError(f"cannot read {directory / ADAPTER_FILE} (corrupt or truncated?): "
                          f"{e}; save the adapter again or restore a copy") from None
    expected = adapter_state_dict(model)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ExportError(f"adapter in {directory} does not fit the model: missing "
                          f"{missing[:5]}, unexpected {unexpected[:5]}")
    for k, v in tensors.items():
        if v.shape != expected[k].shape:
            raise ExportError(f"adapter tensor {k} has shape {tuple(v.shape)}, the model "
                              f"expects {tuple(expected[k].shape)} (different rank?)")
    with torch.no_grad():
        for k, v in tensors.items():
            expected[k].copy_(v)
    return model
