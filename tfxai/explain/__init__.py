"""Explainability: every method returns the same :class:`Explanation`.

Methods: :class:`GradCAM` (from scratch, ``tf.GradientTape``), :class:`CamVisExplainer`
(Grad-CAM++, Score-CAM, Faster-ScoreCAM and SmoothGrad through tf-keras-vis) and
:class:`LimeExplainer` (the ``lime`` package, batched and seeded). ``tfxai.explain.metrics`` says
how far a heatmap can be trusted (deletion/insertion, pointing game, energy in mask, agreement,
the cascading-randomisation sanity check); ``figures`` and ``report`` draw them.

Importing this package loads no TensorFlow: the explainers are imported when first used.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import numpy as np

METHODS = ("gradcam", "gradcam++", "scorecam", "faster-scorecam", "smoothgrad", "lime")
CAM_METHODS = ("gradcam", "gradcam++", "scorecam", "faster-scorecam", "smoothgrad")  # need Keras
METHOD_TITLES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "scorecam": "Score-CAM",
                 "faster-scorecam": "Faster Score-CAM", "smoothgrad": "SmoothGrad", "lime": "LIME"}


@dataclass
class Explanation:
    """One explanation of one image for one class.

    heatmap: float32 (H, W) on the model input, values in [0, 1], 1 = most important for ``target``.
    method: one of ``METHODS``; target: the explained class index (0..K-1);
    probability: the model's probability for ``target`` on the unperturbed image;
    params: the method's settings (layer, num_samples, seed ...); seconds: wall time per image.
    extras: method-specific details, e.g. LIME's top positive/negative regions.
    """

    heatmap: np.ndarray
    method: str
    target: int
    probability: float
    params: dict = field(default_factory=dict)
    seconds: float = 0.0
    extras: dict = field(default_factory=dict)

    def to_dict(self, with_heatmap: bool = False) -> dict:
        out = {"method": self.method, "target": int(self.target),
               "probability": float(self.probability), "params": self.params,
               "seconds": float(self.seconds), **{k: v for k, v in self.extras.items()
                                                  if k not in ("segments",)}}
        if with_heatmap:
            out["heatmap"] = self.heatmap.tolist()
        return out


def normalize_heatmap(heatmap: np.ndarray) -> np.ndarray:
    """Min-max scale each map to [0, 1]: float32 (..., H, W); a constant map becomes all zeros,
    NaN/inf become 0."""
    h = np.nan_to_num(np.asarray(heatmap, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    axes = (-2, -1)
    lo = h.min(axis=axes, keepdims=True)
    span = h.max(axis=axes, keepdims=True) - lo
    safe = np.where(span > 1e-12, span, 1.0)
    return np.where(span > 1e-12, (h - lo) / safe, 0.0).astype(np.float32)


def make_explainer(method: str, model=None, predict_fn=None, *, layer: str | None = None,
                   num_samples: int = 1000, seed: int = 0, batch_size: int = 64, **options):
    """The explainer for ``method`` (one of ``METHODS``), with the shared call shape
    ``explainer.explain(images, targets=None) -> list[Explanation]``.

    model: a tf_keras model (needed by every method except LIME); predict_fn: for LIME on a
    non-Keras classifier (e.g. TFLite), images float32 (N, H, W, C) in [0, 255] -> (N, K).
    """
    if method not in METHODS:
        raise ValueError(f"unknown explanation method {method!r}; choose from {list(METHODS)}")
    if method == "lime":
        from .lime import LimeExplainer, keras_predict_fn

        if predict_fn is None:
            if model is None:
                raise ValueError("LIME needs a model or a predict_fn")
            predict_fn = keras_predict_fn(model, batch_size=batch_size)
        return LimeExplainer(predict_fn, num_samples=num_samples, seed=seed,
                             batch_size=batch_size, **options)
    if model is None:
        raise ValueError(f"{METHOD_TITLES[method]} needs the Keras model (a .tflite file only "
                         f"supports LIME)")
    if method == "gradcam":
        from .gradcam import GradCAM

        return GradCAM(model, layer=layer, **options)
    from .camvis import CamVisExplainer

    return CamVisExplainer(model, method, layer=layer, seed=seed, **options)


_LAZY = {
    "GradCAM": "gradcam", "find_target_layer": "gradcam", "build_cam_graph": "gradcam",
    "CamVisExplainer": "camvis",
    "LimeExplainer": "lime", "keras_predict_fn": "lime", "slic_segments": "lime",
}


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CAM_METHODS", "METHODS", "METHOD_TITLES", "Explanation", "make_explainer", "normalize_heatmap", *_LAZY]
