"""decaylora: fine-tune a pretrained network and compress it in the same run.

Each target layer gets a low-rank adapter; the frozen pretrained weight is faded out on a
schedule (with optional moment-matched noise and a new bias C taking over); ``compress`` then
deletes the frozen weights, leaving a smaller, faster model made only of low-rank factors.
"""

from .budget import allocate_ranks, budgeted_config
from .config import PRESETS, DecayConfig
from .errors import ConfigError, DecayLoraError, ExportError, InjectionError
from .export import (
    build_lowrank,
    compress,
    load_adapter,
    load_compressed,
    save_adapter,
    save_compressed,
)
from .injection import (
    as_exported,
    decay_layers,
    find_targets,
    get_config,
    set_decay,
    set_progress,
    wrap,
)
from .inspection import Summary, summary
from .layers import DecayConv1D, DecayConv2d, DecayLayer, DecayLinear
from .schedules import PRESET_SCHEDULES, DecaySchedule, decay_factor

__version__ = "0.1.0"

__all__ = [
    "PRESETS", "PRESET_SCHEDULES", "ConfigError", "DecayConfig", "DecayConv1D", "DecayConv2d",
    "DecayLayer", "DecayLinear", "DecayLoraError", "DecaySchedule", "ExportError",
    "InjectionError", "Summary", "allocate_ranks", "as_exported", "budgeted_config",
    "build_lowrank", "compress", "decay_factor",
    "decay_layers", "find_targets", "get_config", "load_adapter", "load_compressed",
    "save_adapter", "save_compressed", "set_decay", "set_progress", "summary", "wrap",
]
