"""Evaluation of a trained classifier (Keras or TFLite) on a split or a folder.

``evaluate(classifier, images, labels, output_dir, ...)`` writes ``metrics.json``,
``predictions.csv``, ``roc_curve.png``, ``confusion_matrix.png`` and ``reliability_diagram.png``.
The decision threshold can be re-chosen on the validation split (for a target sensitivity),
and temperature scaling fitted there, never on the images being scored.
"""
from __future__ import annotations

import csv
import logging
import os

import numpy as np

from . import data as data_lib, metrics as metrics_lib, plots
from .errors import DataError
from .io import Classifier, write_atomic, write_json

log = logging.getLogger(__name__)


def load_eval_images(classifier: Classifier, data_dir: str | None = None, split: str = "test",
                     folder: str | None = None, progress: bool = True) -> data_lib.ImageSet:
    """Images to score, prepared the way the model was trained (size, channels, resize mode).

    ``folder``: a folder of class folders. ``data_dir`` + ``split``: the run's own splits; "val"
    reproduces the validation split used in training (same seed and fraction when it was carved).
    """
    size, ch, mode = classifier.image_size, classifier.channels, classifier.resize_mode
    if folder:
        return data_lib.load_image_folder(folder, size, ch, mode, classifier.class_names, progress)
    if not data_dir:
        raise DataError("give --data-dir (with --split) or --folder with the images to evaluate")
    if data_dir.lower().endswith(".npz"):
        if split == "val":
            return _run_splits(classifier, data_dir, progress).val
        return data_lib.load_npz_split(data_dir, split, size, ch, classifier.class_names)
    if split in ("val", "train"):
        return getattr(_run_splits(classifier, data_dir, progress), split)
    return data_lib.load_folder_split(data_dir, split, size, ch, mode, classifier.class_names,
                                      progress=progress)


def _run_splits(classifier: Classifier, data_dir: str, progress: bool) -> data_lib.DataSplits:
    args = classifier.config.get("arguments", {})
    splits = data_lib.load_splits(data_dir, classifier.image_size, classifier.channels,
                                  classifier.resize_mode, float(args.get("val_fraction", 0.15)),
                                  int(args.get("seed", 0)), progress=progress)
    if [c.lower() for c in splits.class_names] != [c.lower() for c in classifier.class_names]:
        raise DataError(f"{data_dir!r} has classes {splits.class_names}, the model was trained on "
                        f"{classifier.class_names}")
    return splits


TTA_AUGMENT = data_lib.AugmentConfig(rotation=4.0, zoom=0.05, shift=0.03, contrast=0.15, brightness=0.05,
                                     gamma=0.15)


def tta_proba(classifier: Classifier, images: np.ndarray, n: int = 8, seed: int = 0) -> np.ndarray:
    """Test-time augmentation: mean probabilities over the image and ``n - 1`` mild random
    variants (small shifts, zoom, contrast; seeded). (N, K) float32."""
    import tensorflow as tf

    if n < 1:
        raise ValueError(f"tta must be >= 1, got {n!r}")
    total = classifier.predict_proba(images).astype(np.float64)
    x = tf.constant(np.asarray(images, np.float32))
    for i in range(1, n):
        variant = data_lib.augment_batch(x, tf.constant([seed, i], tf.int64), TTA_AUGMENT).numpy()
        total += classifier.predict_proba(variant)
    return (total / n).astype(np.float32)


def evaluate(classifier: Classifier, images: np.ndarray, labels: np.ndarray, output_dir: str,
             paths: list[str] | None = None, threshold: float | None = None,
             val: tuple[np.ndarray, np.ndarray] | None = None, target_sensitivity: float | None = None,
             calibrate: bool = False, title: str = "", tta: int = 1) -> dict:
    """Score ``images`` (uint8 (N, S, S, C)) against ``labels`` and write the report files.

    threshold: None uses the classifier's (chosen on validation at training time).
    val: (images, labels) of the validation split, used to pick a threshold for
    ``target_sensitivity`` and to fit the temperature when ``calibrate``.
    tta: number of test-time augmented views averaged per image (1 = off).
    Returns the metrics dict (also in ``output_dir/metrics.json``).
    """
    os.makedirs(output_dir, exist_ok=True)
    def predict(x):
        return tta_proba(classifier, x, tta) if tta > 1 else classifier.predict_proba(x)

    proba = predict(images)
    names = classifier.class_names
    out: dict = {"model": classifier.path, "kind": classifier.kind, "class_names": names, "tta": tta}
    thr = classifier.threshold if threshold is None else float(threshold)
    val_proba = predict(val[0]) if val is not None else None
    temperature = None
    if calibrate:
        if val is None:
            raise DataError("calibration needs the validation split (--data-dir with the run's data)")
        temperature = metrics_lib.fit_temperature(val[1], val_proba)
        out["uncalibrated_ece"], before = metrics_lib.expected_calibration_error(labels, proba)
        proba = metrics_lib.apply_temperature(proba, temperature)
        val_proba = metrics_lib.apply_temperature(val_proba, temperature)
    if target_sensitivity is not None and proba.shape[1] == 2:
        if val is None:
            raise DataError("--target-sensitivity picks the threshold on the validation split: give --data-dir")
        thr = metrics_lib.threshold_for_sensitivity(val[1], val_proba[:, 1], target_sensitivity)
        out["threshold_source"] = f"validation split, target sensitivity {target_sensitivity}"
    else:
        out["threshold_source"] = "given" if threshold is not None else "from the model's run configuration"
    m = metrics_lib.classification_metrics(labels, proba, thr)
    ece, table = metrics_lib.expected_calibration_error(labels, proba)
    m["ece"] = ece
    out.update(metrics=m, temperature=temperature, class_counts={c: int((labels == i).sum()) for i, c in enumerate(names)})
    if val_proba is not None:
        out["val_metrics"] = metrics_lib.classification_metrics(val[1], val_proba, thr)

    diagram = {"after temperature scaling" if calibrate else "model": table}
    if calibrate:
        diagram["before"] = before
    out["files"] = {
        "confusion_matrix": plots.confusion_matrix_plot(m["confusion_matrix"], names,
                                                         os.path.join(output_dir, "confusion_matrix.png"), title),
        "reliability_diagram": plots.reliability_diagram(diagram, os.path.join(output_dir, "reliability_diagram.png"),
                                                         f"ECE {ece:.3f}"),
    }
    if proba.shape[1] == 2 and len(np.unique(labels)) == 2:
        out["files"]["roc_curve"] = plots.roc_pr_curves(labels, proba[:, 1], os.path.join(output_dir, "roc_curve.png"),
                                                        thr, title)
    decided = classifier.decide(proba, thr)
    out["files"]["predictions"] = write_predictions_csv(
        os.path.join(output_dir, "predictions.csv"), paths or [str(i) for i in range(len(labels))],
        proba, decided, names, labels)
    write_json(os.path.join(output_dir, "metrics.json"), out)
    out["files"]["metrics"] = os.path.join(output_dir, "metrics.json")
    return out


def write_predictions_csv(path: str, paths, proba, decided, class_names, labels=None) -> str:
    def writer(tmp):
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["file", "predicted", "confidence", *[f"p_{c}" for c in class_names]]
                       + (["true", "correct"] if labels is not None else []))
            for i, p in enumerate(paths):
                row = [p, class_names[decided[i]], f"{proba[i, decided[i]]:.4f}", *[f"{v:.4f}" for v in proba[i]]]
                if labels is not None:
                    row += [class_names[labels[i]], int(decided[i] == labels[i])]
                w.writerow(row)
    write_atomic(path, writer)
    return path
