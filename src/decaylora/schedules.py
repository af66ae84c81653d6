"""Decay-factor and noise schedules as pure functions of training progress ``p = step / total``.

The decay factor ``d`` fades the frozen pretrained path out (1 -> 0). The noise that
compensates for the lost weight moments follows from ``d`` (see ``layers``); the schedule only
decides *whether* it is on: it is cleared once ``d < clear_below`` ("clear stage"), or never
when ``clear_below`` is ``None`` (the notes' config A).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass

from .errors import ConfigError

#: Shapes of the decay factor between ``start`` and ``end``.
#: ``none`` keeps d = 1 forever (plain LoRA, W kept); ``off`` sets d = 0 from step 0
#: (W never used: the SVD / adapter-only baselines).
SHAPES = ("linear", "cosine", "sine", "none", "off")


@dataclass(frozen=True)
class DecaySchedule:
    """Warm-up (d = 1 for p < start), decay 1 -> 0 on [start, end], cool-down (d = 0 after end).

    ``shape`` picks the curve on [start, end] with t = (p - start) / (end - start):
    ``linear``: 1 - t; ``cosine``: (1 + cos(pi t)) / 2 (slow-fast-slow); ``sine``:
    1 - sin(pi t / 2) (fast first, slow at the end).

    ``noise``: add moment-matched noise while the frozen path decays.
    ``clear_below``: noise is switched off once d < clear_below (``None``: never).
    ``noise_end``: optional progress after which the noise is off regardless of d.
    """

    shape: str = "linear"
    start: float = 0.05
    end: float = 0.85
    noise: bool = False
    clear_below: float | None = 0.3
    noise_end: float | None = None

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            close = difflib.get_close_matches(str(self.shape), SHAPES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"unknown decay schedule shape {self.shape!r}{hint}; choose one of "
                f"{', '.join(SHAPES)}"
            )
        for name in ("start", "end"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or math.isnan(v):
                raise ConfigError(f"schedule {name} must be a number in [0, 1], got {v!r}")
        if not (0.0 <= self.start < self.end <= 1.0):
            raise ConfigError(
                f"schedule fractions out of order: need 0 <= start < end <= 1, got "
                f"start={self.start}, end={self.end}; e.g. start=0.05, end=0.85"
            )
        if self.clear_below is not None and not (0.0 <= self.clear_below <= 1.0):
            raise ConfigError(
                f"clear_below must be in [0, 1] or None (never clear), got {self.clear_below}"
            )
        if self.noise_end is not None and not (0.0 <= self.noise_end <= 1.0):
            raise ConfigError(f"noise_end must be in [0, 1] or None, got {self.noise_end}")

    def decay(self, p: float) -> float:
        """Decay factor d at progress p in [0, 1] (clamped)."""
        return decay_factor(p, self.shape, self.start, self.end)

    def noise_on(self, p: float) -> bool:
        """Whether the compensating noise is drawn at progress p."""
        if not self.noise or self.shape in ("none", "off"):
            return False
        if self.noise_end is not None and p >= self.noise_end:
            return False
        d = self.decay(p)
        if self.clear_below is not None and d < self.clear_below:
            return False
        return d < 1.0

    def to_dict(self) -> dict:
        return asdict(self)


def decay_factor(p: float, shape: str = "linear", start: float = 0.05, end: float = 0.85) -> float:
    """Pure function: d(p) for the given shape; 1 before ``start``, 0 from ``end`` on."""
    if shape == "none":
        return 1.0
    if shape == "off":
        return 0.0
    p = min(max(float(p), 0.0), 1.0)
    if p < start:
        return 1.0
    if p >= end:
        return 0.0
    t = (p - start) / (end - start)
    if shape == "linear":
        return 1.0 - t
    if shape == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    if shape == "sine":
        return 1.0 - math.sin(0.5 * math.pi * t)
    raise ConfigError(f"unknown decay schedule shape {shape!r}; choose one of {', '.join(SHAPES)}")


def noise_moments(d: float, mean: float, std: float, scale: float = 1.0) -> tuple[float, float]:
    """Mean and std of the noise N at decay d for a weight with moments (mean, std).

    N ~ Normal((1 - d) m, (1 - d^2) sigma^2), so that d W + N keeps mean m and variance sigma^2
    when N is independent of W. ``scale`` multiplies the std (1 = the notes' matching).
    """
    return (1.0 - d) * mean, scale * math.sqrt(max(1.0 - d * d, 0.0)) * std


#: The two configurations compared in the notes (METHOD.md, "Schedules").
PRESET_SCHEDULES: dict[str, DecaySchedule] = {
    # decay 0.10 -> 0.90, noise grows until 0.9 and is kept (no clear stage), no C.
    "A": DecaySchedule(shape="linear", start=0.10, end=0.90, noise=True, clear_below=None),
    # decay 0.05 -> 0.85, noise grows and vanishes once d < 0.3, C initialised at 0.
    "B": DecaySchedule(shape="linear", start=0.05, end=0.85, noise=True, clear_below=0.3),
}
