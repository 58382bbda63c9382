"""How to explain (:class:`ExplainSettings`), checked when built; light, so that ``tfxai explain
--help`` shows the methods and baselines without loading TensorFlow."""
from __future__ import annotations

from dataclasses import dataclass

from ..checks import check_bool, check_choice, check_number, check_text
from ..errors import ConfigError
from .types import BASELINES, METHODS

DEFAULT_METHODS = ("gradcam", "gradcam++", "scorecam", "lime")
SANITY_METHODS = ("gradcam", "gradcam++", "faster-scorecam", "smoothgrad")


@dataclass(frozen=True)
class ExplainSettings:
    """How to explain: methods, LIME samples and superpixels, seed, CAM layer, batch size (images
    per model call, for every method), deletion/insertion curve steps and baselines (one of
    ``BASELINES``), Faster Score-CAM channels, whether to measure, whether to run the sanity
    check, which class to explain (name or index; None = predicted). Every field is checked when
    built (:class:`tfxai.errors.ConfigError` naming it)."""

    methods: tuple[str, ...] = DEFAULT_METHODS
    num_samples: int = 1000
    n_segments: int = 100
    seed: int = 0
    layer: str | None = None
    batch_size: int = 64
    steps: int = 50
    deletion_baseline: str = "zero"
    insertion_baseline: str = "blur"
    max_n: int = 10
    metrics: bool = True
    sanity_check: bool = False
    target: str | None = None
    progress: bool = True

    def __post_init__(self):
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise ConfigError("methods", f"unknown method(s) {bad} in {list(self.methods)}; choose from "
                              f"{', '.join(METHODS)}")
        for name, low in (("num_samples", 10), ("n_segments", 1), ("seed", 0), ("batch_size", 1), ("steps", 2),
                          ("max_n", 1)):
            check_number(name, getattr(self, name), low, whole=True)
        for name in ("deletion_baseline", "insertion_baseline"):
            check_choice(name, getattr(self, name), BASELINES)
        for name in ("metrics", "sanity_check", "progress"):
            check_bool(name, getattr(self, name))
        check_text("layer", self.layer, optional=True)
        check_text("target", self.target, optional=True)
