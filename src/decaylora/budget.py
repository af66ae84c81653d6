"""Rank budgets: per-layer ranks from one global parameter budget.

``allocate_ranks`` spends a budget of low-rank parameters (A + B, without C) greedily by the
singular-value energy of each target weight: every step gives one more rank to the layer whose
next normalised energy ``sigma_k^2 / sum_i sigma_i^2`` per parameter it costs
(``fan_in + out``) is highest. Layers whose spectrum is concentrated keep small ranks; layers
with a flat spectrum get more (docs/method.md, "Rank budgets").
"""

from __future__ import annotations

import heapq
import math
import re
from dataclasses import dataclass, replace

import torch
from torch import nn

from .config import DecayConfig
from .errors import ConfigError, InjectionError
from .injection import CONFIG_ATTR, decay_layers, find_targets
from .layers import Geometry, geometry


@dataclass(frozen=True)
class _Layer:
    name: str
    geometry: Geometry
    energies: list[float]   # normalised energy gained by each step of `unit` more ranks
    unit: int               # ranks per step (the conv's groups; 1 for linear layers)
    lo: int                 # smallest allowed rank
    hi: int                 # largest allowed rank

    @property
    def step_cost(self) -> int:
        """Parameters of ``unit`` more ranks: A gains unit rows of fan_in, B one column per
        output (``Geometry.lowrank_macs(r + unit) - lowrank_macs(r)``)."""
        return self.unit * self.geometry.fan_in + self.geometry.out_features


def dense_weight_count(model: nn.Module, config: DecayConfig) -> int:
    """Weights (``out * fan_in``, biases excluded) of the layers ``wrap(model, config)`` would
    replace: what a fractional ``budget`` is a fraction of."""
    modules = dict(model.named_modules())
    return sum(geometry(modules[n]).dense_macs() for n in find_targets(model, config))


def budget_params(budget: float | int, dense_weights: int) -> int:
    """The budget in parameters: an int is absolute; a float in (0, 1] is a fraction of
    ``dense_weights`` (rounded down)."""
    if isinstance(budget, bool) or not isinstance(budget, (int, float)):
        raise ConfigError(f"rank budget must be a fraction in (0, 1] (float) or a number of "
                          f"parameters (int), got {budget!r}")
    if isinstance(budget, int):
        if budget < 1:
            raise ConfigError(f"rank budget must be a positive number of parameters, got {budget}")
        return budget
    if not (0.0 < budget <= 1.0) or math.isnan(budget):
        raise ConfigError(f"rank budget must be a fraction in (0, 1] of the target layers' dense "
                          f"weights (e.g. 0.125 = 1/8), got {budget!r}; pass an int for an "
                          "absolute number of parameters")
    return int(math.floor(budget * dense_weights))


def _weight_2d(module: nn.Module, g: Geometry) -> torch.Tensor:
    w = module.weight.detach()
    if g.kind == "conv1d":  # transformers Conv1D stores (in, out)
        return w.t()
    return w.reshape(g.out_features, -1)


def energy_shares(module: nn.Module, g: Geometry | None = None) -> list[float]:
    """Per step of ``groups`` ranks, the share of the weight's energy it adds: the k-th
    singular value squared of every group's ``(out/groups, fan_in)`` block, summed over groups,
    over the total (so the sum of the first r/groups entries is what rank r keeps)."""
    g = geometry(module) if g is None else g
    w = _weight_2d(module, g).float().reshape(g.groups, g.out_features // g.groups, g.fan_in)
    s2 = torch.linalg.svdvals(w).double().pow(2)  # (groups, k), each row descending
    total = float(s2.sum())
    per_step = s2.sum(dim=0)
    if total == 0.0:  # an all-zero weight: no rank is worth anything
        return [0.0] * per_step.numel()
    return (per_step / total).tolist()


def _layers(model: nn.Module, config: DecayConfig, min_rank: int,
            max_rank: int | None) -> list[_Layer]:
    if getattr(model, CONFIG_ATTR, None) is not None:
        raise ConfigError("allocate_ranks needs the unwrapped model (it reads the original "
                          "weights W); call it before decaylora.wrap")
    modules = dict(model.named_modules())
    out = []
    for name in find_targets(model, config):
        module = modules[name]
        g = geometry(module)
        unit = g.groups
        if unit > 1 and g.out_features == g.groups and g.fan_in == g.kernel:
            raise InjectionError(f"{name}: depthwise convolution has no low-rank form that saves "
                                 "anything; add it to exclude_modules")
        hi = g.max_rank if max_rank is None else min(g.max_rank, max_rank)
        hi -= hi % unit
        if not config.allow_larger:  # the largest rank at which the layer still shrinks
            while hi > 0 and g.lowrank_macs(hi) >= g.dense_macs():
                hi -= unit
        lo = -(-min_rank // unit) * unit  # min_rank rounded up to a multiple of the groups
        if hi < lo:
            raise ConfigError(
                f"{name}: cannot give it min_rank={min_rank}: the largest rank it allows is {hi} "
                f"(out={g.out_features}, fan_in={g.fan_in}, groups={g.groups}; a layer must stay "
                "smaller than dense unless allow_larger=True). Lower min_rank or exclude the "
                "layer")
        out.append(_Layer(name, g, energy_shares(module, g), unit, lo, hi))
    return out


def allocate_ranks(model: nn.Module, config: DecayConfig, budget: float | int, *,
                   min_rank: int = 1, max_rank: int | None = None) -> dict[str, int]:
    """Per-layer ranks for the layers ``wrap(model, config)`` would replace, spending
    ``budget`` low-rank parameters (A + B, without C).

    ``budget``: a float in (0, 1] is a fraction of those layers' dense weight count
    (``out * fan_in``, biases excluded); an int is an absolute number of parameters. Every
    layer gets at least ``min_rank``; then ranks are added one at a time (``groups`` at a time
    for grouped convs, one per group) to the layer with the highest next normalised
    singular-value energy per parameter, among the layers that can still grow (rank below its
    full rank, ``max_rank`` and the rank at which it would stop shrinking) and whose next rank
    still fits the budget. Ties go to the layer earlier in the model. Deterministic.

    Returns ``{qualified layer name: rank}`` in model order; ``budgeted_config`` puts it into
    ``DecayConfig.rank_pattern``.
    """
    if isinstance(min_rank, bool) or not isinstance(min_rank, int) or min_rank < 1:
        raise ConfigError(f"min_rank must be a positive integer, got {min_rank!r}")
    if max_rank is not None and (isinstance(max_rank, bool) or not isinstance(max_rank, int)
                                 or max_rank < min_rank):
        raise ConfigError(f"max_rank must be an integer >= min_rank ({min_rank}) or None, "
                          f"got {max_rank!r}")
    if isinstance(budget, bool) or not isinstance(budget, (int, float)):
        budget_params(budget, 0)  # raises with the message
    layers = _layers(model, config, min_rank, max_rank)
    total = budget_params(budget, sum(la.geometry.dense_macs() for la in layers))
    ranks = [la.lo for la in layers]
    spent = sum(la.geometry.lowrank_macs(la.lo) for la in layers)
    if spent > total:
        raise ConfigError(
            f"rank budget of {total:,} parameters is smaller than the {spent:,} that min_rank="
            f"{min_rank} on each of the {len(layers)} target layers needs; raise the budget or "
            "lower min_rank (--rank-budget-min-rank in runs)")
    # max-heap on (energy per parameter, earlier layer first)
    heap: list[tuple[float, int]] = []

    def push(i: int) -> None:
        la = layers[i]
        if ranks[i] < la.hi:
            heapq.heappush(heap, (-la.energies[ranks[i] // la.unit] / la.step_cost, i))

    for i in range(len(layers)):
        push(i)
    while heap:
        _, i = heapq.heappop(heap)
        cost = layers[i].step_cost
        if spent + cost > total:
            continue  # the remaining budget only shrinks: this layer can never grow again
        spent += cost
        ranks[i] += layers[i].unit
        push(i)
    return {la.name: r for la, r in zip(layers, ranks, strict=True)}


def budgeted_config(model: nn.Module, config: DecayConfig, budget: float | int, *,
                    min_rank: int = 1, max_rank: int | None = None) -> DecayConfig:
    """``config`` with ``rank_pattern`` set to ``allocate_ranks(model, config, budget, ...)``."""
    ranks = allocate_ranks(model, config, budget, min_rank=min_rank, max_rank=max_rank)
    return replace(config, rank_pattern=ranks)


def allocated_params(model: nn.Module) -> int:
    """Low-rank parameters (A + B, without C) of a wrapped model's adapters."""
    return sum(layer.geometry.lowrank_macs(layer.r) for _, layer in decay_layers(model))


def budget_summary(model: nn.Module, budget: float | int) -> tuple[dict, dict[str, int]]:
    """For a model wrapped with a budgeted config: ``({"budget", "dense_weights",
    "budget_params", "allocated_params"}, {layer name: rank})`` (what a run's results.json
    records)."""
    layers = list(decay_layers(model))
    dense = sum(layer.geometry.dense_macs() for _, layer in layers)
    info = {"budget": budget, "dense_weights": dense,
            "budget_params": budget_params(budget, dense),
            "allocated_params": allocated_params(model)}
    return info, {name: layer.r for name, layer in layers}


def format_ranks(ranks: dict[str, int]) -> list[str]:
    """Compact lines for a report: names that differ only in their first number (the layer
    index, shown as ``*``) share a line listing the rank of each run of indices, e.g.
    ``encoder.layer.*.attention.self.query: r=8 (* = 0-3), r=12 (* = 4,5)``."""
    groups: dict[str, list[tuple[str, int]]] = {}
    for name, r in ranks.items():
        m = re.search(r"(^|\.)(\d+)(\.|$)", name)
        if m is None:
            groups.setdefault(name, []).append(("", r))
        else:
            key = name[: m.start(2)] + "*" + name[m.end(2):]
            groups.setdefault(key, []).append((m.group(2), r))
    lines = []
    for key, items in groups.items():
        if len(items) == 1 and items[0][0] == "":
            lines.append(f"{key}: r={items[0][1]}")
            continue
        runs: list[list[tuple[str, int]]] = []
        for item in items:
            if runs and runs[-1][-1][1] == item[1]:
                runs[-1].append(item)
            else:
                runs.append([item])
        parts = []
        for run in runs:
            idx = [int(i) for i, _ in run]
            if len(idx) >= 3 and idx == list(range(idx[0], idx[0] + len(idx))):
                where = f"{idx[0]}-{idx[-1]}"
            else:
                where = ",".join(i for i, _ in run)
            parts.append(f"r={run[0][1]} (* = {where})")
        lines.append(f"{key}: {', '.join(parts)}")
    return lines


__all__ = ["allocate_ranks", "allocated_params", "budget_params", "budget_summary",
           "budgeted_config", "dense_weight_count", "energy_shares", "format_ranks"]
