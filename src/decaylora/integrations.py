"""Hugging Face ``transformers.Trainer`` integration.

A user who already trains with ``Trainer`` adds two lines and gets the method::

    import decaylora
    from decaylora.integrations import DecayLoraCallback

    decaylora.wrap(model, decaylora.DecayConfig.from_preset("default", r=16, ...))   # 1
    trainer = Trainer(model=model, args=args, train_dataset=train,
                      callbacks=[DecayLoraCallback()])                              # 2
    trainer.train()
    decaylora.compress(model)                 # d reached 0: delete the frozen weights
    decaylora.save_compressed(model, "out/")

The callback drives the decay schedule from the Trainer's progress
``state.global_step / state.max_steps`` (``max_steps`` is set by the Trainer before training
starts, also when training is given in epochs). The Trainer builds its optimizer from the
parameters with ``requires_grad``, which after ``wrap`` are only the adapters (A, B, C) and
``modules_to_save``.

This module imports ``transformers``; ``import decaylora`` does not import it.
"""

from __future__ import annotations

import warnings
from typing import Any

from torch import nn
from transformers import TrainerCallback

from .errors import DecayLoraError, InjectionError
from .injection import CONFIG_ATTR, decay_layers, set_progress

__all__ = ["DecayLoraCallback"]


def _wrapped_model(model: Any) -> nn.Module | None:
    """The decaylora-wrapped model, looking through DDP/accelerate ``.module`` wrappers."""
    seen = 0
    while model is not None and seen < 4:
        if getattr(model, CONFIG_ATTR, None) is not None:
            return model
        model = getattr(model, "module", None)
        seen += 1
    return None


class DecayLoraCallback(TrainerCallback):
    """Drive a decaylora-wrapped model's decay schedule from ``transformers.Trainer``.

    - ``on_train_begin``: refuses (``InjectionError``) a model that ``decaylora.wrap`` has not
      wrapped, and (``DecayLoraError``) a Trainer without a known number of steps.
    - ``on_step_begin``: ``set_progress(model, global_step, max_steps)``, so optimizer step
      ``k`` trains with ``d = schedule.decay(k / max_steps)`` and the noise of step ``k`` (the
      same noise for every micro-batch of a gradient-accumulation step).
    - ``on_step_end``: the same at the progress just reached, so logs, evaluations and
      checkpoints between steps see the state the next step will use (as decaylora's own loop).
    - ``on_train_end``: the final state, ``d`` at progress 1 (``d = 0`` for every W-free
      preset), so ``decaylora.compress(model)`` can follow directly.
    - ``on_log``: adds ``decaylora_d`` (the current decay factor) and ``decaylora_noise``
      (1 while the compensating noise is drawn, else 0) to the logs and to
      ``state.log_history``. Reporting integrations (``report_to``) are called before user
      callbacks, so they see these keys only if the callback is placed first:
      ``trainer.callback_handler.callbacks.insert(0, DecayLoraCallback())``.
    """

    def __init__(self) -> None:
        self.model: nn.Module | None = None

    # -- helpers --------------------------------------------------------------------------
    def _model(self, kwargs: dict[str, Any]) -> nn.Module | None:
        found = _wrapped_model(kwargs.get("model"))
        if found is not None:
            self.model = found
        return self.model

    def _set(self, state: Any, kwargs: dict[str, Any], step: int | None = None) -> None:
        model = self._model(kwargs)
        if model is None or not state.max_steps or state.max_steps <= 0:
            return
        set_progress(model, state.global_step if step is None else step, state.max_steps)

    # -- events ---------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        model = kwargs.get("model")
        found = _wrapped_model(model)
        if found is None:
            raise InjectionError(
                f"DecayLoraCallback: the Trainer's model ({type(model).__name__}) is not wrapped "
                "by decaylora (or was already compressed). Call decaylora.wrap(model, config) "
                "before creating the Trainer, or remove the callback"
            )
        if not state.max_steps or state.max_steps <= 0:
            raise DecayLoraError(
                f"DecayLoraCallback: the Trainer does not know the number of training steps "
                f"(state.max_steps={state.max_steps}); the decay schedule needs it. Set "
                "TrainingArguments(max_steps=...) or give a train_dataset with a length"
            )
        self.model = found
        self._set(state, kwargs)  # the state of the first step (or of the resumed step)

    def on_step_begin(self, args, state, control, **kwargs):
        self._set(state, kwargs)

    def on_step_end(self, args, state, control, **kwargs):
        self._set(state, kwargs)

    def on_train_end(self, args, state, control, **kwargs):
        if not state.max_steps or state.max_steps <= 0:
            return
        if state.global_step < state.max_steps:
            warnings.warn(
                f"DecayLoraCallback: training stopped at step {state.global_step} of "
                f"{state.max_steps}; the decay schedule is set to its final state (d at "
                "progress 1) anyway, which the model was not trained at. Check the W-free "
                "accuracy before compressing", stacklevel=2)
        self._set(state, kwargs, step=state.max_steps)

    def on_log(self, args, state, control, logs=None, **kwargs):
        model = self._model(kwargs)
        if model is None or logs is None:
            return
        layer = next((layer for _, layer in decay_layers(model)), None)
        if layer is None:  # compressed in the middle of training: nothing to report
            return
        extra = {"decaylora_d": float(layer.d), "decaylora_noise": int(bool(layer.noise_active))}
        logs.update(extra)
        # Trainer.log appended a copy of ``logs`` to the history before calling the callbacks
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(extra)
