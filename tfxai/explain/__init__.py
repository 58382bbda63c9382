"""Explainability: every method returns the same :class:`Explanation`.

Methods: :class:`GradCAM` (from scratch, ``tf.GradientTape``), :class:`CamVisExplainer`
(Grad-CAM++, Score-CAM, Faster-ScoreCAM and SmoothGrad through tf-keras-vis) and
:class:`LimeExplainer` (the ``lime`` package, batched and seeded); :func:`make_explainer` builds
any of them by name. ``metrics`` says how far a heatmap can be trusted (deletion/insertion,
pointing game, energy in mask, agreement, the cascading-randomisation sanity check); ``figures``
and ``report`` draw them; ``run`` explains a set of images (or compares two models) end to end.

The names below are re-exported lazily: importing this package loads no TensorFlow.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "types": ("CAM_METHODS", "METHODS", "METHOD_TITLES", "Explainer", "Explanation", "HeatmapExplainer",
              "normalize_heatmap"),
    "factory": ("make_explainer",),
    "gradcam": ("GradCAM", "build_cam_graph", "find_target_layer"),
    "camvis": ("CamVisExplainer",),
    "lime": ("LimeExplainer", "keras_predict_fn", "slic_segments"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
