"""How far an explanation can be trusted, in numbers: the quality of a heatmap.

* Faithfulness (Petsiuk et al. 2018, RISE): the deletion curve removes the most important pixels
  first (replacing them by a baseline) and follows the target probability; a faithful heatmap
  makes it drop fast (low area). The insertion curve reveals the most important pixels first on a
  blurred image; faithful = rises fast (high area). All steps go through the model in one batch.
* Localisation against known lesion masks (the synthetic data): pointing game (is the heatmap's
  maximum inside the lesion) and the share of heatmap energy inside the mask.
* Agreement between two heatmaps: Spearman rank correlation and IoU of their top-20% regions.
* Sanity check (Adebayo et al. 2018): randomise the model's weights layer by layer from the
  output down (cascading) and measure how similar the heatmaps stay (Spearman, SSIM). An
  explanation that does not change when the model is destroyed explains nothing about the model.

Pixel rankings break ties (flat LIME superpixels, zero CAM regions) at random with a given seed,
never by raster order, which would favour the top of the image.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .._keras import keras
from ..classifier import probabilities
from .types import BASELINES, normalize_heatmap

log = logging.getLogger(__name__)

PredictFn = Callable[[np.ndarray], np.ndarray]


def _check_pair(image: np.ndarray, heatmap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    img = np.asarray(image, np.float32)
    if img.ndim == 2:
        img = img[..., None]
    heat = np.asarray(heatmap, np.float32)
    if img.ndim != 3 or heat.shape != img.shape[:2]:
        raise ValueError(f"heatmap must be (H, W) matching image (H, W, C); got heatmap "
                         f"{heat.shape} and image {np.shape(image)}")
    return img, np.nan_to_num(heat, nan=0.0)


def pixel_order(heatmap: np.ndarray, seed: int = 0) -> np.ndarray:
    """Flat pixel indices, most important first; ties broken at random (seeded)."""
    h = np.asarray(heatmap, np.float64).ravel()
    tie = np.random.default_rng(seed).random(h.size)
    return np.lexsort((tie, -h))


def _baseline(img: np.ndarray, kind: str) -> np.ndarray:
    if kind == "zero":
        return np.zeros_like(img)
    if kind == "mean":
        return np.broadcast_to(img.mean(axis=(0, 1), keepdims=True), img.shape).astype(np.float32)
    if kind == "blur":
        import cv2

        k = max(3, (min(img.shape[:2]) // 4) | 1)  # heavy blur, as in RISE's insertion metric
        return cv2.GaussianBlur(img, (k, k), 0).reshape(img.shape).astype(np.float32)
    raise ValueError(f"baseline must be one of {BASELINES}, got {kind!r}")


@dataclass
class Curve:
    """fractions: share of pixels removed (deletion) or revealed (insertion), 0..1;
    scores: the target probability at each step; auc: trapezoidal area, in [0, 1]."""

    kind: str
    fractions: np.ndarray
    scores: np.ndarray
    auc: float

    def to_dict(self) -> dict:
        return {"kind": self.kind, "auc": self.auc, "fractions": self.fractions.tolist(),
                "scores": self.scores.tolist()}


def _auc(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def _step_images(img, order, fractions, start, end):
    """Images where the first ``fraction`` of ``order`` comes from ``end``, the rest from ``start``."""
    rank = np.empty(order.size, np.int64)
    rank[order] = np.arange(order.size)
    rank = rank.reshape(img.shape[:2])
    counts = np.round(fractions * order.size).astype(np.int64)
    swapped = rank[None] < counts[:, None, None]  # (steps, H, W)
    return np.where(swapped[..., None], end[None], start[None]).astype(np.float32)


def faithfulness(predict_fn: PredictFn, image: np.ndarray, heatmap: np.ndarray, target: int,
                 steps: int = 50, deletion_baseline: str = "zero",
                 insertion_baseline: str = "blur", seed: int = 0) -> dict[str, Curve]:
    """Deletion and insertion curves of one (H, W) heatmap for ``image`` (H, W, C) raw pixels.

    predict_fn: images float32 (N, H, W, C) -> probabilities (N, K). Returns
    {"deletion": Curve, "insertion": Curve}; both curves' 2 * (steps + 1) images go through
    ``predict_fn`` in one call.
    """
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps!r}")
    img, heat = _check_pair(image, heatmap)
    order = pixel_order(heat, seed)
    fractions = np.linspace(0.0, 1.0, steps + 1)
    deletion = _step_images(img, order, fractions, img, _baseline(img, deletion_baseline))
    insertion = _step_images(img, order, fractions, _baseline(img, insertion_baseline), img)
    probs = np.asarray(predict_fn(np.concatenate([deletion, insertion])), np.float32)
    if probs.ndim != 2 or not 0 <= int(target) < probs.shape[1]:
        raise ValueError(f"target {target!r} is not a class of predict_fn's output {probs.shape}")
    scores = probs[:, int(target)]
    d, i = scores[:steps + 1], scores[steps + 1:]
    return {"deletion": Curve("deletion", fractions, d, _auc(fractions, d)),
            "insertion": Curve("insertion", fractions, i, _auc(fractions, i))}


def deletion_auc(predict_fn: PredictFn, image, heatmap, target: int, steps: int = 50,
                 seed: int = 0) -> float:
    """Area under the deletion curve (lower = more faithful)."""
    return faithfulness(predict_fn, image, heatmap, target, steps, seed=seed)["deletion"].auc


def random_heatmap(shape: tuple[int, int], seed: int = 0, smoothness: float = 1 / 16) -> np.ndarray:
    """A random heatmap, float32 (H, W) in [0, 1], as smooth as a CAM: Gaussian-filtered noise
    with sigma = ``smoothness`` x the shorter side (0: independent pixels). The reference an
    explanation must beat; pixel-wise noise is not a fair one, because deleting scattered pixels
    (salt-and-pepper) throws a CNN off far faster than deleting any contiguous region."""

    noise = np.random.default_rng(seed).random(tuple(shape)).astype(np.float32)
    if smoothness > 0:
        from scipy.ndimage import gaussian_filter

        noise = gaussian_filter(noise, sigma=smoothness * min(shape), mode="reflect")
    return normalize_heatmap(noise)


def pointing_game(heatmap: np.ndarray, mask: np.ndarray, tolerance: int = 0) -> bool:
    """True if the heatmap's maximum lies inside ``mask`` (bool (H, W)), dilated by ``tolerance``
    pixels (Zhang et al. use 15 px at 224 px). A heatmap without any positive value scores False."""
    heat = np.nan_to_num(np.asarray(heatmap, np.float32))
    m = np.asarray(mask, bool)
    if heat.shape != m.shape:
        raise ValueError(f"heatmap {heat.shape} and mask {m.shape} must have the same shape")
    if not m.any() or heat.max() <= 0:
        return False
    if tolerance > 0:
        from scipy.ndimage import binary_dilation

        m = binary_dilation(m, iterations=int(tolerance))
    y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return bool(m[y, x])


def energy_in_mask(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Share of the heatmap's total energy (sum of values) inside ``mask``: in [0, 1]; a map that
    ignores location scores about the mask's area fraction. 0.0 for an all-zero heatmap."""
    heat = np.clip(np.nan_to_num(np.asarray(heatmap, np.float64)), 0, None)
    m = np.asarray(mask, bool)
    if heat.shape != m.shape:
        raise ValueError(f"heatmap {heat.shape} and mask {m.shape} must have the same shape")
    total = heat.sum()
    return float(heat[m].sum() / total) if total > 0 else 0.0


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two heatmaps of the same shape; 0.0 if either is constant."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"heatmaps must have the same shape, got {a.shape} and {b.shape}")
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


def top_region(heatmap: np.ndarray, fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """bool (H, W): the ``fraction`` most important pixels (exactly round(fraction * H * W))."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    heat = np.asarray(heatmap)
    out = np.zeros(heat.size, bool)
    out[pixel_order(heat, seed)[:max(1, int(round(fraction * heat.size)))]] = True
    return out.reshape(heat.shape)


def top_region_iou(a: np.ndarray, b: np.ndarray, fraction: float = 0.2, seed: int = 0) -> float:
    """Intersection over union of the two heatmaps' top-``fraction`` regions, in [0, 1]."""
    ra, rb = top_region(a, fraction, seed), top_region(b, fraction, seed)
    return float((ra & rb).sum() / max(1, (ra | rb).sum()))


def agreement(heatmaps: dict[str, np.ndarray], fraction: float = 0.2) -> dict[str, dict]:
    """Pairwise agreement of methods' heatmaps for one image:
    {"gradcam|lime": {"spearman": .., "top_iou": ..}, ...}."""
    names = list(heatmaps)
    return {f"{a}|{b}": {"spearman": rank_correlation(heatmaps[a], heatmaps[b]),
                         "top_iou": top_region_iou(heatmaps[a], heatmaps[b], fraction)}
            for i, a in enumerate(names) for b in names[i + 1:]}


def compare_explanations(heat_a: np.ndarray, heat_b: np.ndarray,
                         faith_a: dict | None = None, faith_b: dict | None = None,
                         fraction: float = 0.2) -> dict[str, float]:
    """How far an explanation moved between two models (e.g. Keras vs its pruned TFLite):
    spearman, top_iou, and (given :func:`faithfulness` results or {"deletion_auc": ..,
    "insertion_auc": ..} dicts) the change B - A in deletion and insertion areas."""
    out = {"spearman": rank_correlation(heat_a, heat_b),
           "top_iou": top_region_iou(heat_a, heat_b, fraction)}
    if faith_a is not None and faith_b is not None:
        for kind in ("deletion", "insertion"):
            a, b = _area(faith_a, kind), _area(faith_b, kind)
            out[f"delta_{kind}_auc"] = b - a
    return out


def _area(faith: dict, kind: str) -> float:
    value = faith.get(kind, faith.get(f"{kind}_auc"))
    return float(value.auc if isinstance(value, Curve) else value)


# ----------------------------------------------------------------------------- sanity check
def randomizable_layers(model) -> list[tuple[str, object]]:
    """(path, layer) of every layer with trainable weights, from the output down, nested models
    expanded in place."""

    out = []
    for layer in reversed(model.layers):
        if isinstance(layer, keras.Model):
            out += [(f"{layer.name}/{p}", lay) for p, lay in randomizable_layers(layer)]
        elif layer.trainable_weights:
            out.append((layer.name, layer))
    return out


def randomize_layer(layer, rng: np.random.Generator) -> None:
    """Re-draw a layer's trainable weights: kernels (2-D or more) from N(0, std of the trained
    kernel), so activations keep their scale; vectors (biases, BatchNorm gamma/beta) randomly
    permuted, which keeps gamma positive. Moving statistics are left alone."""
    trainable = {id(v) for v in layer.trainable_weights}
    for var in layer.weights:
        if id(var) not in trainable:
            continue
        w = var.numpy()
        if w.ndim >= 2:
            new = rng.normal(0.0, max(float(w.std()), 1e-3), w.shape)
        else:
            new = rng.permutation(w)
        var.assign(new.astype(w.dtype))


@dataclass
class SanityCheckResult:
    """steps[i]: the layers randomised so far (cumulative from the output), steps[0] = "none";
    spearman[i], ssim[i]: mean similarity of the heatmaps at step i to the trained model's."""

    steps: list[str]
    spearman: list[float]
    ssim: list[float]
    per_image_spearman: list[list[float]] = field(default_factory=list)

    @property
    def final_spearman(self) -> float:
        return self.spearman[-1]

    def to_dict(self) -> dict:
        return {"steps": self.steps, "spearman": self.spearman, "ssim": self.ssim,
                "per_image_spearman": self.per_image_spearman}


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    side = min(a.shape)
    win = min(7, side if side % 2 else side - 1)
    return float(structural_similarity(a, b, data_range=1.0, win_size=win))


def sanity_check(model, images: np.ndarray,
                 explain_fn: Callable[[object, np.ndarray, np.ndarray], np.ndarray],
                 targets=None, seed: int = 0, max_steps: int | None = 8) -> SanityCheckResult:
    """Cascading model-parameter randomisation (Adebayo et al. 2018).

    explain_fn(model, images, targets) -> heatmaps float32 (N, H, W) in [0, 1], e.g.
    ``lambda m, x, t: GradCAM(m).heatmaps(x, t)[0]``. The model's weights are randomised in
    place and restored afterwards, also on error (do not use the model elsewhere meanwhile);
    ``explain_fn`` always receives this same model object, so an explainer built once for it
    can be reused (compiled functions read the current weights).
    targets: classes to explain (default: the trained model's predictions, kept fixed).
    max_steps: group the layers into at most this many cumulative steps (None: one per layer).
    """

    x = np.asarray(images, np.float32)
    if targets is None:
        targets = probabilities(model(x, training=False).numpy()).argmax(axis=1)
    targets = np.asarray(targets, np.int64)
    if targets.size == 1:
        targets = np.repeat(targets.reshape(-1), len(x))
    reference = np.asarray(explain_fn(model, x, targets), np.float32)
    layers = randomizable_layers(model)
    if not layers:
        raise ValueError(f"model {model.name!r} has no trainable weights to randomise")
    groups = [g for g in np.array_split(np.arange(len(layers)),
                                        min(len(layers), max_steps or len(layers))) if len(g)]
    rng = np.random.default_rng(seed)
    steps, rho, ssim, per_image = ["none"], [1.0], [1.0], [[1.0] * len(x)]
    # Randomised in place and restored in ``finally``: cloning (keras.models.clone_model) fails
    # for models holding constants or nested backbones, restoring works for every model.
    saved = model.get_weights()
    try:
        for group in groups:
            for i in group:
                randomize_layer(layers[i][1], rng)
            heat = np.asarray(explain_fn(model, x, targets), np.float32)
            r = [rank_correlation(a, b) for a, b in zip(reference, heat)]
            steps.append(layers[group[-1]][0])
            rho.append(float(np.mean(r)))
            ssim.append(float(np.mean([_ssim(a, b) for a, b in zip(reference, heat)])))
            per_image.append(r)
            log.debug("sanity check: randomised down to %s: spearman %.3f", steps[-1], rho[-1])
    finally:
        model.set_weights(saved)
    return SanityCheckResult(steps, rho, ssim, per_image)
