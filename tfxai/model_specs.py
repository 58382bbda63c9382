"""What each registered model type is and accepts, without building one: its options and their
ranges, its in-model preprocessing, whether ImageNet weights exist. ``list_models()``,
``get_spec(name)``; :func:`tfxai.models.build_model` builds one.

Light on purpose (no TensorFlow): ``tfxai train --help`` lists the models, and a config names a
bad option, before TensorFlow loads. A spec names its Keras builder as ``"module:function"``,
imported only when a model is built.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

from .checks import check_choice, check_number
from .errors import ConfigError
from .registry import Registry

# The in-model preprocessing layers in front of the rescaling (tfxai.preprocessing), and the
# lung-field focus after them (tfxai.preprocessing.LungFocus): the values of the model options
# "preprocessing" and "focus".
PREPROCESSING = ("none", "standardize", "equalize", "local_contrast", "equalize_local")
FOCUS = ("none", "mask", "crop")


@dataclass(frozen=True)
class OptionRange:
    """The values a model option accepts: ``kind`` int or float, within [``low``, ``high``]."""

    kind: type
    low: float
    high: float

    def check(self, field: str, name: str, value) -> None:
        check_number(field, value, self.low, self.high, whole=self.kind is int, item=f"model option {name!r}")


@dataclass(frozen=True)
class Choice:
    """A model option that takes one of ``values``."""

    values: tuple[str, ...]

    def check(self, field: str, name: str, value) -> None:
        check_choice(field, value, self.values, item=f"model option {name!r}")


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about a model type.

    ``builder``: ``"module:function"`` of the Keras builder, called as ``function(input_shape,
    num_classes, weights=..., **options)``. ``preprocessing``: human-readable description of the
    in-model rescaling (goes into run configs). ``options``: the keyword options of its builder and
    the values they accept.
    """

    name: str
    builder: str
    preprocessing: str
    supports_imagenet: bool = False
    options: dict[str, OptionRange | Choice] = field(default_factory=dict)

    def build_function(self) -> Callable:
        """The builder, imported now (it loads TensorFlow)."""
        module, _, function = self.builder.partition(":")
        return getattr(importlib.import_module(module), function)

    def check_options(self, options: dict, field: str = "model_options") -> None:
        """ConfigError (``field``: the configuration field holding them) naming an unknown option
        or a value out of range."""
        if not isinstance(options, dict):
            raise ConfigError(field, f"must be a JSON object such as {{\"width\": 16}}, got {options!r}")
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ConfigError(field, f"unknown option(s) {unknown} for {self.name!r}; it accepts {sorted(self.options)}")
        for key, value in options.items():
            self.options[key].check(field, key, value)


_MODELS: Registry[ModelSpec] = Registry("model type")


# register_*(item) -> item; list_*() -> sorted names; get_*(name) -> item, or a ValueError naming the choices
register_model = _MODELS.register
list_models = _MODELS.names
get_spec = _MODELS.get


_DROPOUT = OptionRange(float, 0.0, 0.9)
_PREPROCESSING = Choice(PREPROCESSING)
_FOCUS = Choice(FOCUS)
register_model(ModelSpec(
    "custom_cnn", "tfxai.models:build_custom_cnn", preprocessing="x / 255",
    options={"width": OptionRange(int, 4, 512), "depth": OptionRange(int, 1, 6), "dropout": _DROPOUT,
             "preprocessing": _PREPROCESSING, "focus": _FOCUS},
))
register_model(ModelSpec(
    "resnet18", "tfxai.models:build_resnet18", preprocessing="x / 127.5 - 1",
    options={"width": OptionRange(int, 4, 512), "dropout": _DROPOUT, "preprocessing": _PREPROCESSING,
             "focus": _FOCUS},
))
register_model(ModelSpec(
    "mobilenet_v2", "tfxai.models:build_mobilenet_v2", preprocessing="grey repeated to RGB; x / 127.5 - 1",
    supports_imagenet=True,
    options={"alpha": OptionRange(float, 0.35, 1.4), "dropout": _DROPOUT,
             "trainable_backbone_layers": OptionRange(int, 0, 200), "padding": Choice(("same", "symmetric")),
             "preprocessing": _PREPROCESSING, "focus": _FOCUS},
))
