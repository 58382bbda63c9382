"""Learning-rate schedules and weight averaging for training, as Keras callbacks.

* :class:`CosineLearningRate`: cosine decay from the base learning rate to ``final_fraction`` of
  it over all training steps, set per batch (an optional linear warm-up first). Used instead of
  reduce-on-plateau by ``TrainConfig(lr_schedule="cosine")``.
* :class:`WeightEMA`: an exponential moving average of every model weight (BatchNorm statistics
  included), updated after each training batch. Validation, checkpoints and therefore the saved
  best model use the averaged weights; training continues from the raw ones. Used by
  ``TrainConfig(ema_decay=0.998)``.
"""
from __future__ import annotations

import math

from .._keras import keras, tf


class CosineLearningRate(keras.callbacks.Callback):
    """lr(step) = base * (f + (1 - f) * (1 + cos(pi * t)) / 2), t = step / total_steps in [0, 1],
    after ``warmup_steps`` of linear increase from base / 10. Steps count from ``first_epoch`` (the
    start of a training phase) and survive a resumed run (the step is derived from the epoch)."""

    def __init__(self, base_lr: float, total_steps: int, steps_per_epoch: int, final_fraction: float = 0.01,
                 warmup_steps: int = 0, first_epoch: int = 0):
        super().__init__()
        if not base_lr > 0 or total_steps < 1 or steps_per_epoch < 1:
            raise ValueError(f"need base_lr > 0, total_steps >= 1, steps_per_epoch >= 1; got {base_lr!r}, "
                             f"{total_steps!r}, {steps_per_epoch!r}")
        if not 0.0 <= final_fraction <= 1.0:
            raise ValueError(f"final_fraction must be in [0, 1], got {final_fraction!r}")
        self.base_lr, self.total_steps, self.steps_per_epoch = float(base_lr), int(total_steps), int(steps_per_epoch)
        self.final_fraction, self.warmup_steps = float(final_fraction), int(warmup_steps)
        self.first_epoch = int(first_epoch)
        self._epoch = 0

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.base_lr * (0.1 + 0.9 * step / self.warmup_steps)
        span = max(1, self.total_steps - self.warmup_steps)
        t = min(1.0, (step - self.warmup_steps) / span)
        return self.base_lr * (self.final_fraction + (1 - self.final_fraction) * 0.5 * (1 + math.cos(math.pi * t)))

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch - self.first_epoch  # epochs count from the start of this phase

    def on_train_batch_begin(self, batch, logs=None):
        step = self._epoch * self.steps_per_epoch + batch
        keras.backend.set_value(self.model.optimizer.learning_rate, self.lr_at(step))


class WeightEMA(keras.callbacks.Callback):
    """Exponential moving average of the model's weights: shadow = d * shadow + (1 - d) * w after
    each batch, with d = min(decay, (1 + n) / (10 + n)) after n updates (a short start-up).

    The averaged weights are swapped in when validation starts and swapped out again at the end of
    the epoch, so every callback that runs at epoch end before this one (put it last) sees, scores
    and saves the averaged model.
    """

    def __init__(self, decay: float = 0.998):
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay!r}")
        self.decay = float(decay)
        self._shadow = None
        self._raw = None
        self._swapped = False

    def on_train_begin(self, logs=None):
        weights = self.model.weights
        self._shadow = [tf.Variable(w, trainable=False) for w in weights]
        self._raw = [tf.Variable(w, trainable=False) for w in weights]
        self._updates = tf.Variable(0.0, trainable=False)
        weights_, shadow, raw, updates, decay = weights, self._shadow, self._raw, self._updates, self.decay

        @tf.function
        def update():
            d = tf.minimum(decay, (1.0 + updates) / (10.0 + updates))
            for s, w in zip(shadow, weights_):
                s.assign(d * s + (1.0 - d) * tf.cast(w, s.dtype))
            updates.assign_add(1.0)

        @tf.function
        def swap_in():
            for r, s, w in zip(raw, shadow, weights_):
                r.assign(w)
                w.assign(s)

        @tf.function
        def swap_out():
            for r, w in zip(raw, weights_):
                w.assign(r)

        self._update, self._swap_in, self._swap_out = update, swap_in, swap_out

    def on_train_batch_end(self, batch, logs=None):
        self._update()

    def on_test_begin(self, logs=None):
        if self._shadow is not None and not self._swapped:
            self._swap_in()
            self._swapped = True

    def on_epoch_end(self, epoch, logs=None):
        if self._swapped:
            self._swap_out()
            self._swapped = False

    def on_train_end(self, logs=None):
        # Leave the averaged weights in the model: what a caller keeps after fit() is the EMA model.
        if self._shadow is not None:
            if self._swapped:
                self._swap_out()
                self._swapped = False
            self._swap_in()
            self._swapped = False
