"""Test-time augmentation that keeps its promise: a threshold is only ever applied to probabilities
produced the way it was chosen.

Averaging mildly augmented views of an image moves its probability. A threshold chosen without TTA
and applied to TTA probabilities decides differently from what was validated: on the held-back
Kermany test, P(pneumonia) rose and specificity fell from 0.816 to 0.517 at the stored threshold
(issue 19), while the ROC-AUC barely moved. So TTA is a classifier of its own
(:class:`TTAClassifier`): its probabilities are the mean of ``views`` views' raw probabilities
(the image and ``views - 1`` seeded variants, :data:`TTA_AUGMENT`), and :func:`tta_classifier`
chooses its threshold again, on the validation split, under the same TTA, by the model's own
policy (:class:`tfxai.training.decision.Policy`: e.g. the recipe's sensitivity target). The
model's temperature is never applied to TTA probabilities either: when the model was calibrated,
a temperature is refitted under TTA first. Without validation images there is no TTA threshold:
``evaluate --tta`` and ``predict --tta`` need ``--data-dir`` (the data the model was trained on),
unless ``--threshold`` gives one explicitly.

The out-of-distribution guard and Grad-CAM look at the image itself, not at its variants.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from . import data as data_lib, metrics as metrics_lib
from .checks import check_number
from .classifier import Classifier
from .errors import DataError
from .ood import OODResult
from .training.decision import Policy

TTA_AUGMENT = data_lib.AugmentConfig(rotation=4.0, zoom=0.05, shift=0.03, contrast=0.15, brightness=0.05,
                                     gamma=0.15)


def mean_over_views(predict, images: np.ndarray, views: int = 8, seed: int = 0) -> np.ndarray:
    """Mean of ``predict(x)`` (images (N, S, S, C) -> (N, K)) over the images and ``views - 1``
    seeded mild variants of them (:data:`TTA_AUGMENT`): float32 (N, K)."""
    from ._keras import tf

    check_number("views", views, 1, whole=True)
    total = np.asarray(predict(images), np.float64)
    x = tf.constant(np.asarray(images, np.float32))
    for i in range(1, views):
        variant = data_lib.augment_batch(x, tf.constant([seed, i], tf.int64), TTA_AUGMENT).numpy()
        total += predict(variant)
    return (total / views).astype(np.float32)


def tta_proba(classifier: Classifier, images: np.ndarray, n: int = 8, seed: int = 0) -> np.ndarray:
    """The mean of ``classifier.predict_proba`` over ``n`` views (see :func:`mean_over_views`)."""
    return mean_over_views(classifier.predict_proba, images, n, seed)


@dataclass
class TTAClassifier(Classifier):
    """``base`` (any :class:`Classifier`) behind test-time augmentation: ``raw_proba`` is the mean
    of the base's raw probabilities over ``views`` views; ``threshold`` and ``temperature`` belong
    to these probabilities (made by :func:`tta_classifier`, never copied from the base)."""

    base: Classifier | None = field(default=None, repr=False)
    views: int = 8
    seed: int = 0

    def raw_proba(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        return mean_over_views(lambda x: self.base.raw_proba(x, batch_size), images, self.views, self.seed)

    def raw_proba_and_ood(self, images: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, list[OODResult]]:
        return self.raw_proba(images, batch_size), self.base.check_ood(images)

    def check_ood(self, images: np.ndarray) -> list[OODResult]:
        return self.base.check_ood(images)


def tta_classifier(classifier: Classifier, val: tuple[np.ndarray, np.ndarray] | None, views: int = 8,
                   seed: int = 0, target_sensitivity: float | None = None, threshold: float | None = None,
                   calibrate: bool = False) -> TTAClassifier:
    """``classifier`` under ``views``-view TTA, with a temperature and threshold of its own.

    ``val``: (images uint8 (N, S, S, C), labels (N,)) of the validation split; the temperature
    (refitted when the model has one, or ``calibrate``) and the threshold (the model's stored policy,
    or ``target_sensitivity``) are chosen there on the TTA probabilities. ``threshold`` given: used
    as it is (the caller's choice; no temperature). DataError when neither validation images nor a
    threshold are given, or when the model does not record how its threshold was chosen.
    """
    check_number("views", views, 2, whole=True)  # 1 is no TTA
    base = classifier.base if isinstance(classifier, TTAClassifier) else classifier
    tta = TTAClassifier(**{f: getattr(base, f) for f in ("path", "class_names", "image_size", "channels",
                                                           "resize_mode", "facts", "model", "kind", "ood")},
                        threshold=0.5, temperature=None, base=base, views=views, seed=seed)
    if threshold is not None:
        return replace(tta, threshold=float(threshold), facts_source="given")
    if val is None:
        raise DataError(f"--tta {views} re-chooses the threshold on the validation split under the same test-time "
                        f"augmentation (a threshold chosen without it does not apply): give --data-dir (the data "
                        f"the model was trained on), or --threshold to apply your own")
    policy = Policy.from_facts(base.facts)
    if target_sensitivity is not None:
        policy = Policy("sensitivity", float(target_sensitivity), policy.calibrate if policy else False)
    if policy is None:
        raise DataError(f"{base.path}: the model does not record how its threshold was chosen, so --tta cannot choose "
                        f"it again; give --target-sensitivity (or --threshold)")
    images, labels = val
    proba = tta.raw_proba(images)
    if policy.calibrate or calibrate or base.temperature is not None:
        tta.temperature = metrics_lib.fit_temperature(labels, proba)
        proba = metrics_lib.apply_temperature(proba, tta.temperature)
    tta.threshold = metrics_lib.choose_threshold(labels, proba, policy.threshold_policy, policy.target_sensitivity)
    how = (f"target sensitivity {policy.target_sensitivity}" if policy.threshold_policy == "sensitivity"
           else policy.threshold_policy)
    tta.facts_source = f"re-chosen on the validation split under the same TTA ({views} views; {how})"
    return tta
