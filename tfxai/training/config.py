"""``TrainConfig``: everything a training run depends on, checked when it is built (before any
work starts). Imports nothing heavy: ``tfxai train --help`` shows its defaults."""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from ..checks import check_bool, check_choice, check_number, check_text
from ..data.geometry import TRAIN_RESIZE_MODES
from ..errors import ConfigError
from ..metrics import THRESHOLD_POLICIES
from ..model_specs import get_spec, list_models

STRATEGIES = ("default", "mirrored", "multiworker")
SELECT_EPOCHS = ("val_loss", "last")  # which epoch becomes best_model.keras
LR_SCHEDULES = ("plateau", "cosine")  # reduce-on-plateau, or tfxai.training.schedules.CosineLearningRate
MAX_IMAGE_SIZE = 1024  # a 1024 px square already needs ~4 GB per batch of 32 for MobileNetV2 on a CPU


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved in ``run_config.json``. Every field is checked
    when the config is built (:class:`tfxai.errors.ConfigError` naming the first bad one).

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
    ``split_seed``: the seed of the patient-grouped validation split (None: ``seed``); runs that
    differ only in ``seed`` with one ``split_seed`` share their validation split, so that they can
    be averaged as an ensemble whose threshold is chosen there (:mod:`tfxai.ensemble`).
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
    split_seed: int | None = None

    @property
    def data_seed(self) -> int:
        """The seed of the validation split: ``split_seed``, or ``seed`` when it is None."""
        return self.seed if self.split_seed is None else self.split_seed

    def __post_init__(self):
        """Raise :class:`ConfigError` naming the first field that is out of range."""
        check_choice("model_type", self.model_type, list_models())
        for name, low in (("epochs", 1), ("batch_size", 1), ("patience", 0), ("lr_patience", 0),
                          ("freeze_epochs", 0), ("fine_tune_layers", 0), ("seed", 0)):
            check_number(name, getattr(self, name), low, whole=True)
        check_number("image_size", self.image_size, 16, MAX_IMAGE_SIZE, whole=True)
        check_number("split_seed", self.split_seed, 0, whole=True, optional=True)
        check_number("max_train_images", self.max_train_images, 2, whole=True, optional=True)
        check_choice("channels", self.channels, (1, 3))
        check_choice("resize_mode", self.resize_mode, TRAIN_RESIZE_MODES)
        check_number("learning_rate", self.learning_rate, 0, 1, low_open=True)
        for name in ("pretrained", "augment", "class_weighting", "balanced_validation", "calibrate",
                     "deterministic", "overwrite"):
            check_bool(name, getattr(self, name))
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_number("ema_decay", self.ema_decay, 0, 1, high_open=True)  # 0: no averaging
        check_choice("select_epoch", self.select_epoch, SELECT_EPOCHS)
        _check_augment_config(self.augment_config)
        check_text("recipe", self.recipe, optional=True)
        check_number("label_smoothing", self.label_smoothing, 0, 0.5, high_open=True)
        check_number("val_fraction", self.val_fraction, 0, 0.5, low_open=True, high_open=True)
        check_number("target_sensitivity", self.target_sensitivity, 0, 1, low_open=True)
        check_choice("strategy", self.strategy, STRATEGIES)
        check_choice("threshold_policy", self.threshold_policy, THRESHOLD_POLICIES)
        if self.pretrained and self.model_type != "mobilenet_v2":
            raise ConfigError("pretrained", f"ImageNet weights exist for mobilenet_v2 only, not {self.model_type!r}")
        get_spec(self.model_type).check_options(self.model_options)


def _check_augment_config(options) -> None:
    """ConfigError naming an unknown :class:`tfxai.data.AugmentConfig` field or a bad value (the
    dataclass checks its own fields; importing it loads TensorFlow, so only when there is one)."""
    if not isinstance(options, dict):
        raise ConfigError("augment_config", f"must be a JSON object such as {{\"aspect\": 0.2}}, got {options!r}")
    if not options:
        return
    from ..data.pipeline import AugmentConfig

    known = sorted(f.name for f in fields(AugmentConfig))
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError("augment_config", f"unknown field(s) {unknown}; AugmentConfig has {known}")
    try:
        AugmentConfig(**options)
    except ConfigError as err:  # AugmentConfig's field, named inside TrainConfig's
        raise ConfigError("augment_config", f"{err.field!r} {err.message}") from None
