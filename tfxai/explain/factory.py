"""``make_explainer(method, model, ...)``: any method by name, with the shared call shape."""
from __future__ import annotations

from .camvis import CamVisExplainer
from .gradcam import GradCAM
from .lime import LimeExplainer, keras_predict_fn
from .types import METHOD_TITLES, METHODS


def make_explainer(method: str, model=None, predict_fn=None, *, layer: str | None = None,
                   num_samples: int = 1000, seed: int = 0, batch_size: int = 64, **options):
    """The explainer for ``method`` (one of ``METHODS``), with the shared call shape
    ``explainer.explain(images, targets=None) -> list[Explanation]``.

    model: a tf_keras model (needed by every method except LIME); predict_fn: for LIME on a
    non-Keras classifier (e.g. TFLite), images float32 (N, H, W, C) in [0, 255] -> (N, K).
    batch_size: images per model call, for every method.
    """
    if method not in METHODS:
        raise ValueError(f"unknown explanation method {method!r}; choose from {list(METHODS)}")
    if method == "lime":
        if predict_fn is None:
            if model is None:
                raise ValueError("LIME needs a model or a predict_fn")
            predict_fn = keras_predict_fn(model, batch_size=batch_size)
        return LimeExplainer(predict_fn, num_samples=num_samples, seed=seed, batch_size=batch_size, **options)
    if model is None:
        raise ValueError(f"{METHOD_TITLES[method]} needs the Keras model (a .tflite file only supports LIME)")
    if method == "gradcam":
        return GradCAM(model, layer=layer, batch_size=batch_size, **options)
    return CamVisExplainer(model, method, layer=layer, seed=seed, batch_size=batch_size, **options)
