"""An approximate lung-field mask from the X-ray alone, and how much Grad-CAM energy falls inside it.

:func:`lung_mask` is classical image processing (contrast normalisation, Otsu thresholding,
morphology, connected components), not a trained segmentation model. It is approximate: it finds
the two dark, air-filled regions inside the body of a frontal chest film. Dense consolidation can
make part of a lung as bright as soft tissue and then fall outside the mask, and a film without
two clear lung fields falls back to a fixed prior (two ellipses where lungs usually are). Use it
to check whether a model *looks at the chest*, e.g. that its heatmaps do not live under the
diaphragm, on the borders or on burnt-in markers, never to measure a lesion.

:func:`lung_energy_share` is the mean share of Grad-CAM heatmap energy inside that mask over a
set of images (:func:`tfxai.explain.quality.energy_in_mask`); compare it with the mask's share of
the image area (what a heatmap that ignores location would score).
"""
from __future__ import annotations

import numpy as np

from .gradcam import GradCAM
from .quality import energy_in_mask

_WORK_SIZE = 256
_ERODE = 9  # pixels at the 256-pixel working size
_MIN_AREA, _MAX_AREA = 0.08, 0.45  # plausible share of the film covered by both lungs


def _to_grey(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] in (1, 3):
        img = img.mean(axis=2) if img.shape[2] == 3 else img[:, :, 0]
    if img.ndim != 2 or min(img.shape) < 16:
        raise ValueError(f"image must be (H, W) or (H, W, 1|3) with sides >= 16, got shape {np.shape(image)}")
    img = img.astype(np.float32)
    lo, hi = float(img.min()), float(img.max())
    if hi <= lo:
        return np.zeros(img.shape, np.uint8)
    return ((img - lo) / (hi - lo) * 255.0 + 0.5).astype(np.uint8)


def prior_lung_mask(shape: tuple[int, int]) -> np.ndarray:
    """Two ellipses where the lungs of a centred frontal chest film usually are: bool (H, W)."""
    h, w = int(shape[0]), int(shape[1])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy, xx = yy / h, xx / w
    mask = np.zeros((h, w), bool)
    for cx in (0.30, 0.70):
        mask |= ((xx - cx) / 0.16) ** 2 + ((yy - 0.47) / 0.30) ** 2 <= 1.0
    return mask


def lung_mask(image: np.ndarray, return_fallback: bool = False):
    """Approximate lung fields of a frontal chest X-ray.

    image: (H, W) or (H, W, C) grey/RGB, any numeric dtype (scaled by its own range).
    Returns bool (H, W), True inside the estimated lungs; with ``return_fallback`` also a bool
    saying whether the fixed prior (:func:`prior_lung_mask`) was used because no plausible pair of
    lung regions was found. Classical steps, in order: the dark class (CLAHE, Otsu), the lung
    cores (deep erosion, components away from the border), their hulls mirrored about the midline.
    """
    import cv2

    grey = _to_grey(image)
    h0, w0 = grey.shape
    dark = _dark_class(grey)
    labels, found = _lung_cores(dark)
    mask = _lung_fields(dark, labels, found) if found else None
    fallback = mask is None or not _plausible(mask)
    if fallback:
        mask = prior_lung_mask((_WORK_SIZE, _WORK_SIZE))
    out = cv2.resize(mask.astype(np.uint8), (w0, h0), interpolation=cv2.INTER_NEAREST).astype(bool)
    return (out, fallback) if return_fallback else out


def _disk(r: int):
    import cv2

    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _dark_class(grey: np.ndarray) -> np.ndarray:
    """uint8 (S, S) at the working size, 1 where the film is dark (lungs and outside air)."""
    import cv2
    from skimage import filters

    s = _WORK_SIZE
    g = cv2.resize(grey, (s, s), interpolation=cv2.INTER_AREA)
    g = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4)).apply(g)
    g = cv2.GaussianBlur(g, (0, 0), 2.0)
    # Lungs and outside air are the dark class; Otsu on the central region so that black borders
    # or padding do not pull the threshold down.
    centre = g[s // 8: 7 * s // 8, s // 8: 7 * s // 8]
    t = filters.threshold_otsu(centre) if centre.max() > centre.min() else 128
    return (g < t).astype(np.uint8)


def _lung_cores(dark: np.ndarray) -> tuple[np.ndarray, list]:
    """(component labels of the eroded dark class, the regions taken as lungs: the largest on
    each side, each at least a fifth of the larger one; none when nothing plausible is left)."""
    import cv2
    from skimage import measure

    s = _WORK_SIZE
    # A deep erosion cuts the thin dark bridges between a lung and the outside air; regions that then
    # still touch the border are outside air or padding.
    labels = measure.label(cv2.erode(dark, _disk(_ERODE)), connectivity=1)
    border = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])).tolist())
    candidates = []
    for region in measure.regionprops(labels):
        if region.label in border:
            continue
        cy, cx = region.centroid
        if region.area >= 0.004 * s * s and 0.15 * s <= cy <= 0.8 * s and 0.1 * s <= cx <= 0.9 * s:
            candidates.append(region)
    candidates.sort(key=lambda r: r.area, reverse=True)
    left = [r for r in candidates if r.centroid[1] < 0.5 * s][:1]
    right = [r for r in candidates if r.centroid[1] >= 0.5 * s][:1]
    return labels, [r for r in left + right if r.area >= 0.2 * max(c.area for c in left + right)]


def _lung_fields(dark: np.ndarray, labels: np.ndarray, found: list) -> np.ndarray:
    """bool (S, S): each core grown back inside the dark class and filled to its convex hull (a lung
    with a bright consolidation stays one region), plus each hull mirrored about the body's midline
    (lungs are roughly mirror images: one too consolidated to look dark, or hidden by the heart, is
    still covered)."""
    import cv2

    s = _WORK_SIZE
    hulls = np.zeros((s, s), np.uint8)
    for r in found:
        grown = cv2.dilate((labels == r.label).astype(np.uint8), _disk(_ERODE + 2)) & dark
        cv2.fillConvexPoly(hulls, cv2.convexHull(cv2.findNonZero(grown)), 1)
    cols = np.flatnonzero(dark[s // 4: 3 * s // 4].mean(axis=0) < 0.9)
    mid = 0.5 * (cols.min() + cols.max()) if len(found) == 1 and len(cols) else None
    if mid is None:
        xs = np.flatnonzero(hulls.any(axis=0))
        mid = 0.5 * (xs.min() + xs.max())
    shift = int(round(2 * mid - (s - 1)))
    mirrored = np.roll(hulls[:, ::-1], shift, axis=1)
    if shift > 0:
        mirrored[:, :shift] = 0
    elif shift < 0:
        mirrored[:, shift:] = 0
    return (hulls | mirrored).astype(bool)


def _plausible(mask: np.ndarray) -> bool:
    """Not a sliver, not most of the film (else the prior is the better guess)."""
    rows = np.flatnonzero(mask.any(axis=1))
    return _MIN_AREA <= mask.mean() <= _MAX_AREA and rows.max() - rows.min() >= 0.3 * _WORK_SIZE


def lung_energy_share(model, images: np.ndarray, target: int = 1, max_images: int | None = 200,
                      seed: int = 0, batch_size: int = 32) -> dict:
    """Grad-CAM energy inside the estimated lung fields, averaged over images.

    model: a tf_keras classifier taking raw pixels (N, S, S, C) in [0, 255]; images: uint8 or
    float32 (N, S, S, C); target: the class explained (default 1, the finding: where the model
    sees pneumonia); max_images: a seeded random subset of that many (None: all).
    Returns {"energy": mean share in [0, 1], "area": mean mask share of the image (the level a
    location-blind map scores), "ratio": energy / area, "fallback": share of images where the
    prior mask was used, "n": images used}.
    """
    images = np.asarray(images)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"images must be a non-empty (N, S, S, C) array, got shape {images.shape}")
    idx = np.arange(len(images))
    if max_images is not None and len(images) > max_images:
        idx = np.sort(np.random.default_rng(seed).choice(len(images), int(max_images), replace=False))
    x = images[idx]
    heat, _, _ = GradCAM(model, batch_size=batch_size).heatmaps(x, np.full(len(x), int(target), np.int64))
    energies, areas, fallbacks = [], [], []
    for img, hm in zip(x, heat):
        mask, fb = lung_mask(img, return_fallback=True)
        energies.append(energy_in_mask(hm, mask))
        areas.append(mask.mean())
        fallbacks.append(fb)
    energy, area = float(np.mean(energies)), float(np.mean(areas))
    return {"energy": energy, "area": area, "ratio": energy / area if area > 0 else float("nan"),
            "fallback": float(np.mean(fallbacks)), "n": int(len(x))}
