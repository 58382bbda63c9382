"""Explainability: every method is an :class:`Explainer` (one call shape, input checks and
targets) and returns the same :class:`Explanation`.

Methods: :class:`GradCAM` (from scratch, ``tf.GradientTape``), :class:`CamVisExplainer`
(Grad-CAM++, Score-CAM, Faster-ScoreCAM and SmoothGrad through tf-keras-vis) and
:class:`LimeExplainer` (the ``lime`` package, batched and seeded); :func:`make_explainer` builds
any of them by name. ``quality`` says how far a heatmap can be trusted (deletion/insertion,
pointing game, energy in mask, agreement, the cascading-randomisation sanity check); ``figures``
and ``report`` draw them; ``run`` explains a set of images (or compares two models) end to end.

The names below are re-exported lazily: importing this package loads no TensorFlow.
"""
from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    ".types": ("CAM_METHODS", "METHODS", "METHOD_TITLES", "Explainer", "Explanation", "HeatmapExplainer",
              "normalize_heatmap"),
    ".factory": ("make_explainer",),
    ".gradcam": ("GradCAM", "build_cam_graph", "find_target_layer"),
    ".camvis": ("CamVisExplainer",),
    ".lime": ("LimeExplainer", "keras_predict_fn", "slic_segments"),
}
__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
