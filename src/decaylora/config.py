"""``DecayConfig``: what to wrap and how the frozen path decays (the PEFT ``LoraConfig`` analogue)."""

from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from .errors import ConfigError
from .schedules import PRESET_SCHEDULES, DecaySchedule

NOISE_STATS = ("global", "per_output")
C_INITS = ("zeros", "copy", "none")
INITS = ("lora", "svd", "svd-residual")


@dataclass
class DecayConfig:
    """Configuration of ``decaylora.wrap``.

    Target selection (PEFT-style): ``target_modules`` is a list of names, each matching a module
    whose qualified name equals it or ends with ``"." + name``, or one string used as a regular
    expression that must match the whole qualified name. ``target_types`` (class names such as
    ``"Linear"``, ``"Conv2d"``, ``"Conv1D"``) selects by layer type; with both given a module
    must satisfy both. ``exclude_modules`` removes matches (same syntax). ``modules_to_save``
    names modules that stay fully trainable (e.g. the classifier head); everything else is frozen.

    Layer: rank ``r``, scale ``alpha / r`` (``alpha=None`` means ``alpha = r``);
    ``rank_pattern`` (as PEFT's) maps module names (exact or dotted suffix, the longest matching
    key wins) to a per-layer rank used instead of ``r``, with scale ``alpha / rank``
    (``decaylora.budget.allocate_ranks`` fills it from one parameter budget); ``c_init`` is the
    initial value of the new bias C (``"zeros"``, ``"copy"`` of the base bias, or ``"none"`` for
    no C); ``init="svd"`` starts B A at the rank-r truncated SVD of W instead of B = 0, and
    ``init="svd-residual"`` also leaves only the residual ``W - s B A`` in the frozen path.
    Noise: ``noise_stats`` is ``"global"`` (one mean/var per weight) or ``"per_output"`` (one per
    output unit); ``noise_scale`` multiplies its std (1 = the notes' moment matching);
    ``noise_cap`` (None: off; a number > 0) caps the std so that the noise's expected spectral
    norm stays <= ``noise_cap * d * ||W||_2`` (the signal d W dominates; at d = 0 the noise
    vanishes); ``seed`` seeds the per-step noise so runs and processes draw identical noise.
    """

    r: int = 16
    alpha: float | None = None
    target_modules: list[str] | str | None = None
    target_types: list[str] | None = None
    exclude_modules: list[str] | str | None = None
    modules_to_save: list[str] | None = None
    schedule: DecaySchedule = field(default_factory=DecaySchedule)
    noise_stats: str = "global"
    noise_scale: float = 1.0
    noise_cap: float | None = None
    c_init: str = "zeros"
    init: str = "lora"
    seed: int = 0
    allow_larger: bool = False
    rank_pattern: dict[str, int] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.schedule, dict):
            self.schedule = _build(DecaySchedule, self.schedule, "schedule")
        if not isinstance(self.schedule, DecaySchedule):
            raise ConfigError(f"schedule must be a DecaySchedule or dict, got {self.schedule!r}")
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r < 1:
            raise ConfigError(f"rank r must be a positive integer, got {self.r!r}; e.g. r=16")
        if self.alpha is not None and (
            isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or self.alpha <= 0
        ):
            raise ConfigError(f"alpha must be a positive number (or None for alpha = r), got {self.alpha!r}")
        if self.rank_pattern is not None:
            if not isinstance(self.rank_pattern, dict):
                raise ConfigError("rank_pattern must be a mapping of module name -> rank, e.g. "
                                  f"{{'layer.0.query': 8}}, got {type(self.rank_pattern).__name__}")
            for key, value in self.rank_pattern.items():
                if not isinstance(key, str) or not key:
                    raise ConfigError(f"rank_pattern keys must be module names, got {key!r}")
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ConfigError(f"rank_pattern[{key!r}] must be a positive integer rank, "
                                      f"got {value!r}")
            self.rank_pattern = dict(self.rank_pattern)
        _choice("noise_stats", self.noise_stats, NOISE_STATS)
        _choice("c_init", self.c_init, C_INITS)
        _choice("init", self.init, INITS)
        if not isinstance(self.noise_scale, (int, float)) or self.noise_scale < 0:
            raise ConfigError(f"noise_scale must be a number >= 0, got {self.noise_scale!r}")
        if self.noise_cap is not None and (
            isinstance(self.noise_cap, bool) or not isinstance(self.noise_cap, (int, float))
            or not math.isfinite(self.noise_cap) or self.noise_cap <= 0
        ):
            raise ConfigError(
                f"noise_cap must be a number > 0, or null/None for no cap, got {self.noise_cap!r}; e.g. "
                "noise_cap=0.5 keeps the noise's spectral norm at most half that of d·W")
        for name in ("target_modules", "exclude_modules"):
            v = getattr(self, name)
            if isinstance(v, tuple):
                setattr(self, name, list(v))
        for name in ("target_types", "modules_to_save"):
            v = getattr(self, name)
            if isinstance(v, str):
                setattr(self, name, [v])
        if self.target_modules is None and not self.target_types:
            raise ConfigError(
                "no targets: set target_modules (e.g. ['query', 'value']) and/or target_types "
                "(e.g. ['Linear'])"
            )

    @property
    def scale(self) -> float:
        return float(self.alpha if self.alpha is not None else self.r) / self.r

    def rank_key(self, name: str) -> str | None:
        """The ``rank_pattern`` key that sets the rank of module ``name`` (the longest key equal
        to ``name`` or a dotted suffix of it), or None when ``r`` applies."""
        keys = [k for k in self.rank_pattern or {} if name == k or name.endswith("." + k)]
        return max(keys, key=len) if keys else None

    def rank_for(self, name: str) -> int:
        """Rank of the wrapped layer ``name``: its ``rank_pattern`` entry, else ``r``."""
        key = self.rank_key(name)
        return self.r if key is None else self.rank_pattern[key]  # type: ignore[index]

    def scale_for(self, name: str) -> float:
        """Scale of the wrapped layer ``name``: ``alpha / rank`` (1 with ``alpha=None``)."""
        r = self.rank_for(name)
        return float(self.alpha if self.alpha is not None else r) / r

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["schedule"] = self.schedule.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DecayConfig:
        return _build(cls, data, "DecayConfig")

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> DecayConfig:
        """A named method configuration (see ``PRESETS``) with field overrides."""
        if name not in PRESETS:
            raise ConfigError(_unknown("preset", name, PRESETS))
        base = dict(PRESETS[name])
        sched = base.pop("schedule")
        if isinstance(overrides.get("schedule"), dict):
            changes = overrides.pop("schedule")
            _check_keys(DecaySchedule, changes, "schedule")
            sched = replace(sched, **changes)
        base.update(overrides)
        base.setdefault("schedule", sched)
        return cls(**base)


#: Method presets. ``default`` is decay + C without noise (the best W-free configuration
#: measured so far); ``notes-a``/``notes-b`` reproduce the notes' two configurations exactly.
PRESETS: dict[str, dict[str, Any]] = {
    "default": dict(schedule=DecaySchedule("linear", 0.05, 0.85, noise=False), c_init="zeros"),
    "decay": dict(schedule=DecaySchedule("linear", 0.05, 0.85, noise=False), c_init="none"),
    "decay+c": dict(schedule=DecaySchedule("linear", 0.05, 0.85, noise=False), c_init="zeros"),
    "decay+noise": dict(
        schedule=DecaySchedule("linear", 0.05, 0.85, noise=True, clear_below=0.3), c_init="none"
    ),
    "decay+noise+c": dict(schedule=PRESET_SCHEDULES["B"], c_init="zeros"),
    # The notes' noise with its std capped: expected ||N - mean||_2 <= 0.5 d ||W||_2, so d W
    # dominates the effective weight (the uncapped noise drowned it: METHOD.md, calibration).
    "decay+capped-noise": dict(
        schedule=DecaySchedule("linear", 0.05, 0.85, noise=True, clear_below=0.3),
        c_init="zeros", noise_cap=0.5,
    ),
    "notes-a": dict(schedule=PRESET_SCHEDULES["A"], c_init="none", noise_stats="global"),
    "notes-b": dict(schedule=PRESET_SCHEDULES["B"], c_init="zeros", noise_stats="global"),
    # Baselines through the same layer: LoRA keeps W forever; SVD drops W at step 0.
    "lora": dict(schedule=DecaySchedule("none"), c_init="none"),
    "svd": dict(schedule=DecaySchedule("off"), c_init="copy", init="svd"),
    # B A starts at the truncated SVD of W; only the residual W - s B A decays (the function is
    # unchanged at step 0).
    "svd-residual": dict(schedule=DecaySchedule("linear", 0.05, 0.85, noise=False),
                         c_init="copy", init="svd-residual"),
}


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(_unknown(name, value, allowed))


def _unknown(what: str, value: Any, allowed: Any) -> str:
    allowed = list(allowed)
    close = difflib.get_close_matches(str(value), allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {what} {value!r}{hint}; choose one of: {', '.join(map(str, allowed))}"


def _check_keys(cls: type, data: dict[str, Any], what: str) -> None:
    """Reject keys of ``data`` that are not fields of the dataclass, with a suggestion."""
    if not isinstance(data, dict):
        raise ConfigError(f"{what} must be a mapping, got {type(data).__name__}")
    names = [f.name for f in fields(cls)]
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown {what} key {key!r}{hint}; valid keys: {', '.join(names)}")


def _build(cls: type, data: dict[str, Any], what: str) -> Any:
    """Construct a dataclass from a dict, rejecting unknown keys with a suggestion."""
    _check_keys(cls, data, what)
    try:
        return cls(**data)
    except TypeError as e:  # pragma: no cover - defensive, keys are checked above
        raise ConfigError(f"invalid {what}: {e}") from None
