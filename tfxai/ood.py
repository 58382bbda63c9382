"""Out-of-distribution guard: is this image unlike the X-rays the model was trained on?

A classifier answers confidently on anything, a holiday photo included. The guard measures how
far an image's penultimate features (the input of the model's last Dense layer) lie from the
training images' features: a Mahalanobis distance in the space of their first principal
components (Lee et al. 2018 use class-conditional Gaussians on the same features; one Gaussian is
enough to flag non-X-rays and keeps the stored guard small). The threshold is the 99th
percentile of the distance on held-out validation images, so about 1 % of in-distribution images
are flagged. Blank (constant) images are flagged without the model.

The model's features are blind to what it was never taught to tell apart: an inverted X-ray or a
grey photo can land among the training features. So the guard has a second, model-free part
(``pixels``): the same distance on 16 x 16 grey thumbnails, which capture the overall brightness
layout of a frontal chest film (dark lungs either side of a bright mediastinum), thresholded at
the 99.5th validation percentile. An image is flagged when either part fires.

The guard is fitted at the end of ``tfxai train`` and stored inside the ``.keras`` file
(``tfxai_ood.npz`` in the zip); models trained before it existed load without it.
"""
from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import numpy as np

from ._keras import keras
from .io.model_files import read_model_entry, set_model_entry

log = logging.getLogger(__name__)

OOD_ENTRY = "tfxai_ood.npz"
FLAT_STD = 2.0  # grey levels: below this the image is blank (one colour), not an X-ray
THUMBNAIL = 16  # side of the grey thumbnails of the model-free part
PIXEL_COMPONENTS, PIXEL_QUANTILE = 16, 0.995


def thumbnails(images: np.ndarray) -> np.ndarray:
    """Raw-pixel images (N, S, S, C) -> grey THUMBNAIL x THUMBNAIL thumbnails in [0, 1], (N, 256)."""
    import cv2

    x = np.asarray(images, np.float32)
    if x.ndim != 4:
        raise ValueError(f"images must be (N, S, S, C), got shape {x.shape}")
    grey = x.mean(axis=3)
    out = [cv2.resize(im, (THUMBNAIL, THUMBNAIL), interpolation=cv2.INTER_AREA) for im in grey]
    return (np.stack(out) / 255.0).reshape(len(x), -1) if out else np.zeros((0, THUMBNAIL * THUMBNAIL), np.float32)


def feature_model(model: keras.Model) -> keras.Model:
    """A model from the input to the input of the last layer (the penultimate features, (N, D))."""
    head = model.layers[-1]
    if not isinstance(head, keras.layers.Dense):
        raise ValueError(f"{model.name!r} does not end in a Dense layer (got {type(head).__name__}); the OOD "
                         f"guard reads the features that enter the classifier's last Dense layer")
    return keras.Model(model.inputs, head.input, name=f"{model.name}_features")


def with_features(model: keras.Model) -> keras.Model:
    """``model`` with two outputs: the penultimate features (as :func:`feature_model`) and its own
    output, so prediction and the guard share one pass."""
    return keras.Model(model.inputs, [feature_model(model).output, model.output], name=f"{model.name}_and_features")


def features(model_or_features: keras.Model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Penultimate features float32 (N, D) of raw-pixel images (N, S, S, C)."""
    x = np.asarray(images, np.float32)
    out = [model_or_features(x[i:i + batch_size], training=False).numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)


@dataclass
class OODGuard:
    """Mahalanobis distance in a PCA space of training features.

    mean: (D,), components: (k, D) orthonormal rows, variances: (k,), threshold: distance above
    which an image is flagged. ``score(feats)`` -> float32 (N,).
    """

    mean: np.ndarray
    components: np.ndarray
    variances: np.ndarray
    threshold: float
    n_train: int = 0
    pixels: "OODGuard | None" = None  # the same distance on thumbnails (see the module docstring)

    @classmethod
    def fit(cls, train_features: np.ndarray, val_features: np.ndarray, components: int = 32,
            quantile: float = 0.99) -> "OODGuard":
        """Fit on training features (N, D); the threshold is ``quantile`` of the validation scores."""
        from sklearn.decomposition import PCA

        train_features = np.asarray(train_features, np.float64)
        if train_features.ndim != 2 or len(train_features) < 4:
            raise ValueError(f"need at least 4 training feature vectors (N, D), got shape {train_features.shape}")
        k = int(max(1, min(components, train_features.shape[1], len(train_features) - 1)))
        pca = PCA(n_components=k, random_state=0).fit(train_features)
        guard = cls(pca.mean_.astype(np.float32), pca.components_.astype(np.float32),
                    np.maximum(pca.explained_variance_, 1e-8).astype(np.float32), 0.0, len(train_features))
        scores = guard.score(val_features if len(val_features) else train_features)
        guard.threshold = float(np.quantile(scores, quantile))
        return guard

    def fit_pixels(self, train_images: np.ndarray, val_images: np.ndarray) -> "OODGuard":
        """Add the model-free part, fitted on the thumbnails of raw-pixel training images."""
        self.pixels = OODGuard.fit(thumbnails(train_images), thumbnails(val_images), PIXEL_COMPONENTS,
                                   PIXEL_QUANTILE)
        return self

    def score(self, feats: np.ndarray) -> np.ndarray:
        z = (np.asarray(feats, np.float32) - self.mean) @ self.components.T
        return np.sqrt(np.sum(z * z / self.variances, axis=1)).astype(np.float32)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        parts = {"": self, **({"pixel_": self.pixels} if self.pixels is not None else {})}
        np.savez(buf, **{f"{p}{k}": v for p, g in parts.items() for k, v in (
            ("mean", g.mean), ("components", g.components), ("variances", g.variances),
            ("threshold", np.float32(g.threshold)), ("n_train", np.int64(g.n_train)))})
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "OODGuard":
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            def part(p):
                return cls(z[f"{p}mean"], z[f"{p}components"], z[f"{p}variances"], float(z[f"{p}threshold"]),
                           int(z[f"{p}n_train"]))
            guard = part("")
            guard.pixels = part("pixel_") if "pixel_mean" in z.files else None  # older guards: features only
            return guard


FIT_IMAGES = 3000  # training images whose features fit a model's guard


def fit_model_guard(model: keras.Model, train_images: np.ndarray, val_images: np.ndarray, seed: int = 0,
                    max_images: int = FIT_IMAGES) -> tuple[OODGuard, float]:
    """The guard of ``model`` (both parts), fitted on (up to ``max_images``, drawn with ``seed``)
    raw-pixel training images (N, S, S, C) and thresholded on the validation images; and its
    false-alarm rate, the share of those validation images it flags (the model card's)."""
    idx = np.sort(np.random.default_rng(seed).permutation(len(train_images))[:max_images])
    feats = feature_model(model)
    val_feats = features(feats, val_images)
    guard = OODGuard.fit(features(feats, train_images[idx]), val_feats).fit_pixels(train_images[idx], val_images)
    flagged = [r.flag for r in guard_verdicts(guard, None, val_images, val_feats)]
    return guard, float(np.mean(flagged)) if flagged else 0.0


def guard_facts(guard: OODGuard, flag_rate: float | None = None, val_images: int | None = None) -> dict:
    """What the model facts say about a guard (``facts["ood"]``), with its false-alarm rate on the
    ``val_images`` validation images it was thresholded on."""
    return {"method": "Mahalanobis distance of penultimate features (PCA), and of 16x16 thumbnails",
            "components": int(len(guard.variances)), "threshold": guard.threshold,
            "thumbnail_threshold": guard.pixels.threshold if guard.pixels is not None else None,
            "fitted_on_images": guard.n_train, "val_flag_rate": flag_rate, "val_images": val_images}


def store_guard(model_path: str, guard: OODGuard) -> None:
    """Add (or replace) the guard inside the ``.keras`` file at ``model_path`` (atomically)."""
    set_model_entry(model_path, OOD_ENTRY, guard.to_bytes())


def read_guard(model_path: str) -> OODGuard | None:
    """The guard stored in a ``.keras`` file, or None (models trained before tfxai stored one)."""
    data = read_model_entry(model_path, OOD_ENTRY)
    if data is None:
        return None
    try:
        return OODGuard.from_bytes(data)
    except (OSError, ValueError, KeyError) as err:
        log.warning("%s: the out-of-distribution guard could not be read (%s); predicting without it",
                    model_path, err)
        return None


@dataclass(frozen=True)
class OODResult:
    """Per image: ``score`` (NaN when not computed), ``flag`` and the ``reason`` when flagged."""

    score: float
    flag: bool
    reason: str = ""
    pixel_score: float = float("nan")  # the model-free part's distance (NaN without it)


def guard_verdicts(guard: OODGuard | None, feature_fn, images: np.ndarray,
                 feats: np.ndarray | None = None) -> list[OODResult]:
    """The guard's verdict on raw-pixel images (N, S, S, C): blank images are flagged whatever the
    guard; with no guard every score is NaN and nothing else is flagged. ``feats``: the images'
    features when already computed (then ``feature_fn`` is not called)."""
    x = np.asarray(images)
    flat = x.reshape(len(x), -1).std(axis=1) < FLAT_STD
    scores = pix = np.full(len(x), np.nan)
    if guard is not None and len(x):
        scores = guard.score(features(feature_fn, x) if feats is None else feats)
        if guard.pixels is not None:
            pix = guard.pixels.score(thumbnails(x))
    out = []
    for s, p, blank in zip(scores, pix, flat):
        reason = ""
        if blank:
            reason = "blank image (a single grey level), not an X-ray"
        elif guard is not None and s > guard.threshold:
            reason = f"unlike the training X-rays (distance {s:.1f} > {guard.threshold:.1f})"
        elif guard is not None and guard.pixels is not None and p > guard.pixels.threshold:
            reason = (f"its overall brightness layout is unlike the training X-rays' (distance {p:.1f} > "
                      f"{guard.pixels.threshold:.1f}): inverted, rotated, cropped or not a chest X-ray?")
        out.append(OODResult(float(s), bool(reason), reason, float(p)))
    return out
