"""LIME for one-channel X-rays through the ``lime`` package, fast and reproducible.

``lime.lime_image.LimeImageExplainer`` as shipped converts grey images to RGB, segments with
quickshift (an RGB method), deep-copies the image once per perturbation, builds every mask with a
Python loop over superpixels, and calls the model ten images at a time. Here:

* segmentation: SLIC on the single channel (``channel_axis=None``), about 50-150 superpixels;
* perturbations: all masks at once by indexing ``on_off[:, segments]``, no copies, no RGB;
* the model sees them in large batches (a compiled ``tf.function`` for Keras, or any
  ``predict_fn`` such as a TFLite classifier's ``predict_proba``);
* the fit is lime's own: ``LimeImageExplainer``'s kernel, cosine distances and
  ``LimeBase.explain_instance_with_data`` (weighted ridge regression), with lime's random state
  seeded from ``seed`` -- the same seed gives the same explanation.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

import numpy as np

from .._keras import compiled_call
from ..checks import check_number
from ..classifier import probabilities
from ..errors import ConfigError
from .types import Explainer, Explanation

log = logging.getLogger(__name__)

PredictFn = Callable[[np.ndarray], np.ndarray]


def keras_predict_fn(model, batch_size: int = 64) -> PredictFn:
    """A compiled forward pass: images float32 (N, H, W, C) in [0, 255] -> probabilities (N, K),
    run in batches of ``batch_size`` (one trace for every batch size)."""

    check_number("batch_size", batch_size, 1, whole=True)
    forward = compiled_call(model)

    def predict(images: np.ndarray) -> np.ndarray:
        x = np.asarray(images, np.float32)
        out = [forward(x[i:i + batch_size]).numpy()
               for i in range(0, len(x), batch_size)]
        return probabilities(np.concatenate(out))

    return predict


def slic_segments(image: np.ndarray, n_segments: int = 100, compactness: float = 0.1,
                  sigma: float = 1.0) -> np.ndarray:
    """SLIC superpixels of a grey (H, W) or (H, W, 1) image (RGB is averaged to grey):
    int32 (H, W) labels 0..S-1. ``compactness`` is for intensities scaled to [0, 1]."""
    from skimage.segmentation import slic

    img = np.asarray(image, np.float32)
    if img.ndim == 3:
        img = img.mean(axis=2)
    if img.ndim != 2:
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {np.shape(image)}")
    span = float(img.max() - img.min())
    img = (img - img.min()) / span if span > 0 else np.zeros_like(img)
    seg = slic(img, n_segments=int(n_segments), compactness=compactness, sigma=sigma,
               channel_axis=None, start_label=0, enforce_connectivity=True)
    _, seg = np.unique(seg, return_inverse=True)  # labels 0..S-1 without gaps
    return seg.reshape(img.shape).astype(np.int32)


def _segment_means(image: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """Each superpixel filled with its own mean (lime's default "hide" image), any channels."""
    n = int(segments.max()) + 1
    flat = segments.ravel()
    counts = np.bincount(flat, minlength=n).astype(np.float32)
    out = np.empty_like(image, dtype=np.float32)
    for c in range(image.shape[2]):
        means = np.bincount(flat, weights=image[..., c].ravel(), minlength=n) / np.maximum(counts, 1)
        out[..., c] = means[segments]
    return out


class LimeExplainer(Explainer):
    """LIME heatmaps from superpixel weights.

    predict_fn: images float32 (N, H, W, C) in [0, 255] -> probabilities (N, K)
    (:func:`keras_predict_fn`, or a TFLite classifier's ``predict_proba``).
    num_samples: perturbed images per explanation (lime's ``num_samples``, default 1000);
    n_segments: SLIC superpixels; hide: "mean" (each superpixel replaced by its mean, lime's
    default), "blur" or a constant grey value; batch_size: images per model call.

    ``explain(images, targets=None)`` (:class:`tfxai.explain.Explainer`; any image size, the
    number of classes known once the model has run) -> one :class:`Explanation` per image:
    heatmap float32 (H, W) in [0, 1] = positive superpixel weights / max; ``extras`` holds
    ``weights`` (one per superpixel, signed), ``top_positive`` / ``top_negative`` [(segment,
    weight), ...], ``score`` (R^2 of the local fit), ``segments`` (int32 (H, W)).
    """

    method = "lime"

    def __init__(self, predict_fn: PredictFn, num_samples: int = 1000, n_segments: int = 100,
                 seed: int = 0, batch_size: int = 64, hide: str | float = "mean",
                 kernel_width: float = 0.25, top_regions: int = 5, compactness: float = 0.1):
        super().__init__(batch_size)
        check_number("num_samples", num_samples, 10, whole=True)
        check_number("n_segments", n_segments, 2, 1000, whole=True)
        if isinstance(hide, str) and hide not in ("mean", "blur"):
            raise ConfigError("hide", f"must be 'mean', 'blur' or a grey value, got {hide!r}")
        if not isinstance(hide, str):
            check_number("hide", hide, 0, 255)  # a grey value
        self.predict_fn = predict_fn
        self.num_samples = int(num_samples)
        self.n_segments = int(n_segments)
        self.seed = int(seed)
        self.hide = hide
        self.kernel_width = float(kernel_width)
        self.top_regions = int(top_regions)
        self.compactness = float(compactness)

    @property
    def params(self) -> dict:
        return {"num_samples": self.num_samples, "n_segments": self.n_segments, "seed": self.seed,
                "hide": self.hide, "kernel_width": self.kernel_width,
                "batch_size": self.batch_size, "segmentation": "slic(channel_axis=None)"}

    def _hidden(self, image: np.ndarray, segments: np.ndarray) -> np.ndarray:
        if self.hide == "mean":
            return _segment_means(image, segments)
        if self.hide == "blur":
            import cv2

            k = max(3, (min(image.shape[:2]) // 8) | 1)
            return cv2.GaussianBlur(image, (k, k), 0).reshape(image.shape).astype(np.float32)
        return np.full(image.shape, float(self.hide), np.float32)

    def perturbations(self, on_off: np.ndarray, image: np.ndarray, hidden: np.ndarray,
                      segments: np.ndarray):
        """Yield float32 batches (B, H, W, C): superpixel s of sample i shows ``image`` where
        ``on_off[i, s]`` is 1 and ``hidden`` where it is 0. No per-sample copies or loops."""
        for i in range(0, len(on_off), self.batch_size):
            keep = on_off[i:i + self.batch_size][:, segments].astype(bool)[..., None]
            yield np.where(keep, image[None], hidden[None])

    def _explain(self, x: np.ndarray, targets: np.ndarray | None) -> list[Explanation]:
        return [self._explain_image(img, None if targets is None else int(targets[i])) for i, img in enumerate(x)]

    def _explain_image(self, img: np.ndarray, target: int | None) -> Explanation:
        """Explain one checked image float32 (H, W, C) raw pixels; target None = the predicted class."""
        from lime import lime_image
        from sklearn.metrics import pairwise_distances

        start = time.perf_counter()
        segments = slic_segments(img, self.n_segments, self.compactness)
        n_features = int(segments.max()) + 1
        hidden = self._hidden(img, segments)
        # lime's own explainer: its kernel, its random state (seeded), its ridge fit.
        lime_exp = lime_image.LimeImageExplainer(kernel_width=self.kernel_width,
                                                 feature_selection="none",
                                                 random_state=self.seed)
        rng = lime_exp.random_state
        on_off = rng.randint(0, 2, self.num_samples * n_features).reshape(
            self.num_samples, n_features)
        on_off[0, :] = 1  # the first sample is the unperturbed image, as in lime
        probs = np.concatenate([np.asarray(self.predict_fn(batch), np.float32)
                                for batch in self.perturbations(on_off, img, hidden, segments)])
        if probs.ndim != 2 or len(probs) != self.num_samples:
            raise ValueError(f"predict_fn must return (N, K) probabilities, got shape {probs.shape}")
        k = probs.shape[1]
        if target is None:
            target = int(probs[0].argmax())
        if not 0 <= int(target) < k:
            raise ValueError(f"target must be a class index in [0, {k - 1}], got {target!r}")
        distances = pairwise_distances(on_off, on_off[:1], metric="cosine").ravel()
        _, local_exp, score, _ = lime_exp.base.explain_instance_with_data(
            on_off, probs, distances, int(target), n_features, feature_selection="none")
        weights = np.zeros(n_features, np.float32)
        for seg, w in local_exp:
            weights[seg] = w
        positive = np.clip(weights, 0, None)
        heat = (positive / positive.max())[segments] if positive.max() > 0 else np.zeros(
            segments.shape, np.float32)
        order = np.argsort(-weights, kind="stable")
        top_pos = [(int(s), float(weights[s])) for s in order[:self.top_regions] if weights[s] > 0]
        top_neg = [(int(s), float(weights[s])) for s in order[::-1][:self.top_regions]
                   if weights[s] < 0]
        extras = {"weights": weights.tolist(), "top_positive": top_pos, "top_negative": top_neg,
                  "score": float(score), "num_segments": n_features, "segments": segments}
        return Explanation(heat.astype(np.float32), self.method, int(target),
                           float(probs[0, int(target)]), self.params,
                           time.perf_counter() - start, extras)


def region_mask(segments: np.ndarray, regions) -> np.ndarray:
    """bool (H, W) mask of the superpixels listed in ``regions`` ([(segment, weight), ...])."""
    return np.isin(segments, [int(s) for s, _ in regions])
