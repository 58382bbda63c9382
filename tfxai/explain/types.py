"""What every explanation method returns (:class:`Explanation`) and the call shape they share."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

METHODS = ("gradcam", "gradcam++", "scorecam", "faster-scorecam", "smoothgrad", "lime")
CAM_METHODS = ("gradcam", "gradcam++", "scorecam", "faster-scorecam", "smoothgrad")  # need Keras
METHOD_TITLES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "scorecam": "Score-CAM",
                 "faster-scorecam": "Faster Score-CAM", "smoothgrad": "SmoothGrad", "lime": "LIME"}
# What deleted pixels become in the deletion curve, and what the insertion curve starts from
# (tfxai.explain.metrics.faithfulness).
BASELINES = ("zero", "blur", "mean")


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


class Explainer(Protocol):
    """The call shape of every method: ``explain(images (N, H, W, C) raw pixels, targets=None)``."""

    method: str

    def explain(self, images, targets=None) -> list[Explanation]: ...


class HeatmapExplainer:
    """Base of the batched methods: subclasses give ``method``, ``params`` and ``heatmaps(images,
    targets) -> (float32 (N, H, W) in [0, 1], probabilities (N, K), targets (N,))``;
    :meth:`explain` wraps them into :class:`Explanation` objects (seconds = batch time / N)."""

    method = ""

    @property
    def params(self) -> dict:
        return {}

    def heatmaps(self, images, targets=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError

    def explain(self, images, targets=None) -> list[Explanation]:
        start = time.perf_counter()
        heat, probs, used = self.heatmaps(images, targets)
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
