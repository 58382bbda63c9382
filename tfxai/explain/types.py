"""What every explanation method returns (:class:`Explanation`), and the base they share
(:class:`Explainer`: the call shape, the input checks and the targets)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..checks import check_number

METHODS = ("gradcam", "gradcam++", "scorecam", "faster-scorecam", "smoothgrad", "lime")
CAM_METHODS = ("gradcam", "gradcam++", "scorecam", "faster-scorecam", "smoothgrad")  # need Keras
METHOD_TITLES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "scorecam": "Score-CAM",
                 "faster-scorecam": "Faster Score-CAM", "smoothgrad": "SmoothGrad", "lime": "LIME"}
# What deleted pixels become in the deletion curve, and what the insertion curve starts from
# (tfxai.explain.quality.faithfulness).
BASELINES = ("zero", "blur", "mean")


def parse_methods(text: str | None) -> tuple[str, ...]:
    """``"gradcam, lime"`` -> ("gradcam", "lime"): lower case, duplicates dropped, () for None or
    blank. Whoever runs them checks the names (:class:`tfxai.explain.settings.ExplainSettings`,
    ``tfxai serve``'s explanation jobs)."""
    return tuple(dict.fromkeys(m.strip().lower() for m in (text or "").split(",") if m.strip()))


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


class Explainer:
    """The base of every method, with the call shape they share:
    ``explain(images, targets=None) -> list[Explanation]``.

    The base owns the input checks: images float32 (N, H, W, C) raw pixels, or one (H, W, C)
    image; finite; of the model's ``input_shape`` when the method knows it. It owns the targets:
    one class index for every image or one per image, in [0, ``num_classes``) when the method
    knows the number of classes; None: the predicted class. ``batch_size``: images per model call,
    for every method. Subclasses set ``method``, ``input_shape`` and ``num_classes`` (None: unknown
    before the model runs), give ``params`` and implement ``_explain(x, targets)`` on the checked
    batch (targets int64 (N,) or None).
    """

    method = ""
    input_shape: tuple | None = None
    num_classes: int | None = None

    def __init__(self, batch_size: int = 64):
        check_number("batch_size", batch_size, 1, whole=True)
        self.batch_size = int(batch_size)

    @property
    def params(self) -> dict:
        return {}

    def explain(self, images, targets=None) -> list[Explanation]:
        """One :class:`Explanation` per image of ``images`` (checked and batched by the base), for
        ``targets`` (None: each image's predicted class)."""
        x = self._image_batch(images)
        return self._explain(x, self._target_array(targets, len(x)))

    def _explain(self, x: np.ndarray, targets: np.ndarray | None) -> list[Explanation]:
        raise NotImplementedError

    def _image_batch(self, images) -> np.ndarray:
        """float32 (N, H, W, C); ValueError naming the shape when it does not fit."""
        x = np.asarray(images, np.float32)
        want = self.input_shape or (None, None, None)
        if x.ndim == len(want):
            x = x[None]
        if x.ndim != len(want) + 1 or any(w is not None and w != s for w, s in zip(want, x.shape[1:])):
            dims = ", ".join("?" if w is None else str(w) for w in want) if self.input_shape else "H, W, C"
            raise ValueError(f"images must have shape (N, {dims}) for {self.method or type(self).__name__}, got "
                             f"{np.shape(images)}")
        if not np.isfinite(x).all():
            raise ValueError("images contain NaN or inf")
        return x

    def _target_array(self, targets, n: int) -> np.ndarray | None:
        """int64 (n,) class indices, one given for all images broadcast to each; None stays None."""
        if targets is None:
            return None
        t = np.asarray(targets, np.int64).reshape(-1)
        if t.size == 1 and n > 1:
            t = np.repeat(t, n)
        k = self.num_classes
        if t.size != n or (n and (t.min() < 0 or (k is not None and t.max() >= k))):
            span = f"in [0, {k - 1}]" if k is not None else ">= 0"
            raise ValueError(f"targets must be {n} class indices {span}, got {np.asarray(targets).tolist()!r}")
        return t


class HeatmapExplainer(Explainer):
    """Base of the batched methods (Grad-CAM and the tf-keras-vis ones): subclasses give
    ``_heatmaps(x, targets) -> (float32 (N, H, W) in [0, 1], probabilities (N, K), targets (N,))``
    on the checked batch; :meth:`heatmaps` is the same on raw input, and :meth:`explain` wraps it
    into :class:`Explanation` objects (seconds = batch time / N)."""

    def heatmaps(self, images, targets=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """images (N, H, W, C) raw pixels -> (heatmaps float32 (N, H, W) in [0, 1],
        probabilities float32 (N, K), explained targets int64 (N,)); targets default to the
        predicted class."""
        x = self._image_batch(images)
        return self._heatmaps(x, self._target_array(targets, len(x)))

    def _heatmaps(self, x: np.ndarray, targets: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _explain(self, x: np.ndarray, targets: np.ndarray | None) -> list[Explanation]:
        start = time.perf_counter()
        heat, probs, used = self._heatmaps(x, targets)
        per_image = (time.perf_counter() - start) / max(len(heat), 1)
        return [Explanation(h, self.method, int(t), float(p[t]), dict(self.params), per_image)
                for h, p, t in zip(heat, probs, used)]


def normalize_heatmap(heatmap: np.ndarray) -> np.ndarray:
    """Min-max scale each map to [0, 1]: float32 (..., H, W); a constant map becomes all zeros,
    NaN/inf become 0."""
    h = np.nan_to_num(np.asarray(heatmap, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    axes = (-2, -1)
    lo = h.min(axis=axes, keepdims=True)
    span = h.max(axis=axes, keepdims=True) - lo
    safe = np.where(span > 1e-12, span, 1.0)
    return np.where(span > 1e-12, (h - lo) / safe, 0.0).astype(np.float32)
