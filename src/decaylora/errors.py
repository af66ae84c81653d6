"""Exception types. Every user-facing problem raises a subclass of DecayLoraError whose message
names the problem and the fix, so the CLI can print it without a traceback."""


class DecayLoraError(ValueError):
    """Base class of every error decaylora raises on bad input."""


class ConfigError(DecayLoraError):
    """An invalid DecayConfig, schedule or experiment configuration."""


class InjectionError(DecayLoraError):
    """A target module that cannot be found or wrapped."""


class ExportError(DecayLoraError):
    """A model that cannot be compressed, saved or loaded as asked."""
