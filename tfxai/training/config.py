"""``TrainConfig``: everything a training run depends on, checked before any work starts."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..data.geometry import TRAIN_RESIZE_MODES
from ..errors import ConfigError
from ..models import get_spec, list_models

STRATEGIES = ("default", "mirrored", "multiworker")
THRESHOLD_POLICIES = ("fixed", "sensitivity", "youden")
SELECT_EPOCHS = ("val_loss", "last")  # which epoch becomes best_model.keras
LR_SCHEDULES = ("plateau", "cosine")  # reduce-on-plateau, or tfxai.training.schedules.CosineLearningRate
MAX_IMAGE_SIZE = 1024  # a 1024 px square already needs ~4 GB per batch of 32 for MobileNetV2 on a CPU


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved in ``run_config.json``.

    ``learning_rate``: Adam's learning rate (finite, > 0). ``model_options``: the registry's options of
    ``model_type`` (e.g. ``{"width": 16}``). ``augment_config``: fields of
    :class:`tfxai.data.AugmentConfig` (e.g. ``{"aspect": 0.2}``). ``max_train_images``: train on a
    seeded random subset. ``balanced_validation``: every class weighs the same in the validation
    loss (early stopping, the best checkpoint). ``lr_schedule``: ``"plateau"`` (cut by 0.3 when the
    validation loss stalls) or ``"cosine"`` (decay over all epochs). ``ema_decay``: > 0 validates and
    saves an exponential moving average of the weights (``tfxai.training.schedules.WeightEMA``).
    ``select_epoch``: which epoch is saved as the model: ``"val_loss"`` (the lowest validation loss)
    or ``"last"`` (the end of the schedule, for a cosine schedule with weight averaging, whose last
    epoch held up better under shift than the lowest-loss one: scripts/benchmark_shift.py
    --every-epoch).
    ``resize_mode``: ``"auto"`` (squash at inference when every training file is square, else pad),
    or ``"pad"``/``"squash"``/``"crop"`` for training and inference alike (:mod:`tfxai.data.geometry`).
    ``recipe``: the name of the :mod:`tfxai.training.recipes` recipe these settings started from.
    """

    data_dir: str
    model_type: str = "custom_cnn"
    output_dir: str | None = None
    epochs: int = 20
    batch_size: int = 32
    image_size: int = 224
    channels: int = 1
    resize_mode: str = "auto"
    learning_rate: float = 1e-3
    seed: int = 0
    pretrained: bool = False
    weights: str | None = None
    model_options: dict = field(default_factory=dict)
    val_fraction: float = 0.15
    augment: bool = True
    augment_config: dict = field(default_factory=dict)
    class_weighting: bool = True
    label_smoothing: float = 0.0
    patience: int = 6
    lr_patience: int = 2
    balanced_validation: bool = False
    lr_schedule: str = "plateau"
    ema_decay: float = 0.0
    select_epoch: str = "val_loss"
    freeze_epochs: int = 3
    fine_tune_layers: int = 40
    threshold_policy: str = "fixed"
    target_sensitivity: float = 0.95
    calibrate: bool = False
    strategy: str = "default"
    deterministic: bool = True
    overwrite: bool = False
    cache_dir: str | None = "default"
    max_train_images: int | None = None
    verbose: int | None = None
    recipe: str | None = None

    def check(self) -> None:
        """Raise :class:`ConfigError` naming the first field that is out of range."""
        if self.model_type not in list_models():
            raise ConfigError("model_type", f"{self.model_type!r} is not one of {list_models()}")
        for name, low in (("epochs", 1), ("batch_size", 1), ("patience", 0), ("lr_patience", 0),
                          ("freeze_epochs", 0), ("fine_tune_layers", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(name, f"must be a whole number >= {low}, got {value!r}")
        if not isinstance(self.image_size, int) or not 16 <= self.image_size <= MAX_IMAGE_SIZE:
            raise ConfigError("image_size", f"must be a whole number of pixels in [16, {MAX_IMAGE_SIZE}], "
                                            f"got {self.image_size!r}")
        if self.max_train_images is not None and (not isinstance(self.max_train_images, int)
                                                  or self.max_train_images < 2):
            raise ConfigError("max_train_images", f"must be a whole number >= 2, got {self.max_train_images!r}")
        if self.channels not in (1, 3):
            raise ConfigError("channels", f"must be 1 or 3, got {self.channels!r}")
        if self.resize_mode not in TRAIN_RESIZE_MODES:
            raise ConfigError("resize_mode", f"must be one of {TRAIN_RESIZE_MODES}, got {self.resize_mode!r}")
        lr = self.learning_rate
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or not 0 < lr <= 1:
            raise ConfigError("learning_rate", f"must be a finite number in (0, 1], got {self.learning_rate!r}")
        if not isinstance(self.balanced_validation, bool):
            raise ConfigError("balanced_validation", f"must be true or false, got {self.balanced_validation!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError("lr_schedule", f"must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        decay = self.ema_decay
        if (isinstance(decay, bool) or not isinstance(decay, (int, float)) or not math.isfinite(decay)
                or not 0.0 <= decay < 1.0):
            raise ConfigError("ema_decay", f"must be a number in [0, 1) (0: no averaging), got {self.ema_decay!r}")
        if self.select_epoch not in SELECT_EPOCHS:
            raise ConfigError("select_epoch", f"must be one of {SELECT_EPOCHS}, got {self.select_epoch!r}")
        _check_augment_config(self.augment_config)
        if self.recipe is not None and (not isinstance(self.recipe, str) or not self.recipe.strip()):
            raise ConfigError("recipe", f"must be a recipe name or None, got {self.recipe!r}")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ConfigError("label_smoothing", f"must be in [0, 0.5), got {self.label_smoothing!r}")
        if not 0.0 < self.val_fraction < 0.5:
            raise ConfigError("val_fraction", f"must be in (0, 0.5), got {self.val_fraction!r}")
        if not 0.0 < self.target_sensitivity <= 1.0:
            raise ConfigError("target_sensitivity", f"must be in (0, 1], got {self.target_sensitivity!r}")
        if self.strategy not in STRATEGIES:
            raise ConfigError("strategy", f"must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.threshold_policy not in THRESHOLD_POLICIES:
            raise ConfigError("threshold_policy", f"must be one of {THRESHOLD_POLICIES}, got {self.threshold_policy!r}")
        if self.pretrained and self.model_type != "mobilenet_v2":
            raise ConfigError("pretrained", f"ImageNet weights exist for mobilenet_v2 only, not {self.model_type!r}")
        try:
            get_spec(self.model_type).check_options(self.model_options)
        except ValueError as err:
            raise ConfigError("model_options", str(err)) from None


def _check_augment_config(options) -> None:
    """ConfigError naming an unknown :class:`tfxai.data.AugmentConfig` field or a bad value."""
    from dataclasses import fields

    from ..data.pipeline import AugmentConfig

    known = {f.name: f.type for f in fields(AugmentConfig)}
    if not isinstance(options, dict):
        raise ConfigError("augment_config", f"must be a JSON object such as {{\"aspect\": 0.2}}, got {options!r}")
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError("augment_config", f"unknown field(s) {unknown}; AugmentConfig has {sorted(known)}")
    for key, value in options.items():
        if known[key] in (bool, "bool"):
            ok = isinstance(value, bool)
        else:
            ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
                  and value >= 0)
        if not ok:
            what = "true or false" if known[key] in (bool, "bool") else "a finite number >= 0"
            raise ConfigError("augment_config", f"{key!r} must be {what}, got {value!r}")
