"""Evaluation of a trained classifier (Keras or TFLite) on a split or a folder.

``evaluate(classifier, images, labels, output_dir, ...)`` writes ``metrics.json``,
``predictions.csv``, ``roc_curve.png``, ``confusion_matrix.png`` and ``reliability_diagram.png``.
The decision threshold can be re-chosen on the validation split (for a target sensitivity),
and temperature scaling fitted there, never on the images being scored.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from . import data as data_lib, metrics as metrics_lib, plots
from .data.folders import patient_id
from .errors import DataError
from .files import write_csv, write_json
from .classifier import Classifier

log = logging.getLogger(__name__)

REPORT_FILES = ("metrics.json", "predictions.csv", "roc_curve.png", "confusion_matrix.png", "reliability_diagram.png")


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
            return run_splits(classifier, data_dir, progress).val
        return data_lib.load_npz_split(data_dir, split, size, ch, classifier.class_names)
    if split in ("val", "train"):
        return getattr(run_splits(classifier, data_dir, progress), split)
    return data_lib.load_folder_split(data_dir, split, size, ch, mode, classifier.class_names,
                                      progress=progress)


def run_splits(classifier: Classifier, data_dir: str, progress: bool = True) -> data_lib.DataSplits:
    """The train/val splits of ``data_dir`` as the model's training run made them (its
    ``val_fraction`` and split seed), decoded as the model takes images."""
    args = classifier.config.get("arguments", {})
    seed = args.get("split_seed") if args.get("split_seed") is not None else args.get("seed", 0)
    splits = data_lib.load_splits(data_dir, classifier.image_size, classifier.channels,
                                  classifier.resize_mode, float(args.get("val_fraction", 0.15)),
                                  int(seed), progress=progress)
    if [c.lower() for c in splits.class_names] != [c.lower() for c in classifier.class_names]:
        raise DataError(f"{data_dir!r} has classes {splits.class_names}, the model was trained on "
                        f"{classifier.class_names}")
    return splits


@dataclass(frozen=True)
class EvalOptions:
    """How to score. threshold: None uses the classifier's (chosen on validation at training
    time, or, for a :class:`tfxai.tta.TTAClassifier`, under its test-time augmentation). val:
    (images, labels) of the validation split, used to pick a threshold for ``target_sensitivity``
    and to fit the temperature when ``calibrate``. title: shown on the figures. n_boot: bootstrap
    resamples of the confidence intervals."""

    threshold: float | None = None
    val: tuple[np.ndarray, np.ndarray] | None = None
    target_sensitivity: float | None = None
    calibrate: bool = False
    title: str = ""
    n_boot: int = 1000


def carry_threshold(threshold: float, temperature: float) -> float:
    """A binary threshold on P(class 1) moved through temperature scaling (monotone in p): the same
    decisions on the rescaled probabilities."""
    return float(metrics_lib.apply_temperature(np.array([[1.0 - threshold, threshold]]), temperature)[0, 1])


def _decision(classifier: Classifier, proba, labels, val_proba, opts: EvalOptions, out: dict):
    """(probabilities, threshold, validation probabilities, probabilities before calibration or
    None), after temperature scaling and the threshold choice asked for; notes go into ``out``."""
    thr = classifier.threshold if opts.threshold is None else float(opts.threshold)
    before = None
    if opts.calibrate:
        if opts.val is None:
            raise DataError("calibration needs the validation split (--data-dir with the run's data)")
        out["temperature"] = metrics_lib.fit_temperature(opts.val[1], val_proba)
        out["uncalibrated_ece"], _ = metrics_lib.expected_calibration_error(labels, proba)
        before = proba
        proba = metrics_lib.apply_temperature(proba, out["temperature"])
        val_proba = metrics_lib.apply_temperature(val_proba, out["temperature"])
        if opts.threshold is None and opts.target_sensitivity is None and proba.shape[1] == 2:
            # The stored threshold was chosen on the probabilities before this temperature.
            thr = carry_threshold(thr, out["temperature"])
    if opts.target_sensitivity is not None and proba.shape[1] == 2:
        if opts.val is None:
            raise DataError("--target-sensitivity picks the threshold on the validation split: give --data-dir")
        thr = metrics_lib.threshold_for_sensitivity(opts.val[1], val_proba[:, 1], opts.target_sensitivity)
        out["threshold_source"] = f"validation split, target sensitivity {opts.target_sensitivity}"
    else:
        src = classifier.facts_source
        out["threshold_source"] = ("given" if opts.threshold is not None else src if src.startswith("re-chosen")
                                   else f"stored with the model ({src})")
        if opts.calibrate and opts.threshold is None and proba.shape[1] == 2:
            out["threshold_source"] += ", carried through the new temperature (the same decisions)"
    return proba, thr, val_proba, before


def _figures(out_dir: str, m: dict, names, labels, proba, thr, curves: dict, ece: float, title: str) -> dict:
    files = {
        "confusion_matrix": plots.confusion_matrix_plot(m["confusion_matrix"], names,
                                                         os.path.join(out_dir, "confusion_matrix.png"), title),
        "reliability_diagram": plots.reliability_diagram(curves, os.path.join(out_dir, "reliability_diagram.png"),
                                                         f"ECE {ece:.3f}"),
    }
    if proba.shape[1] == 2 and len(np.unique(labels)) == 2:
        files["roc_curve"] = plots.roc_pr_curves(labels, proba[:, 1], os.path.join(out_dir, "roc_curve.png"),
                                                 thr, title)
    return files


def evaluate(classifier: Classifier, images: np.ndarray, labels: np.ndarray, output_dir: str,
             paths: list[str] | None = None, options: EvalOptions | None = None) -> dict:
    """Score ``images`` (uint8 (N, S, S, C)) against ``labels`` and write the report files.

    Every metric gets a 95 % confidence interval (``ci95``: Wilson for proportions, a bootstrap
    over patients, taken from ``paths`` (:func:`tfxai.data.patient_id`; ``patients`` counts them),
    for ROC-AUC, PR-AUC and F1, left out when there are too few patients); images the
    out-of-distribution guard flags are counted (``ood_flagged``) and marked in predictions.csv.
    Returns the report dict (also in ``output_dir/metrics.json``).
    """
    opts = options or EvalOptions()
    os.makedirs(output_dir, exist_ok=True)
    names = classifier.class_names
    paths = list(paths) if paths is not None else [str(i) for i in range(len(labels))]

    out: dict = {"model": classifier.path, "kind": classifier.kind, "class_names": names,
                 "tta": getattr(classifier, "views", 1), "temperature": None}
    val_proba = classifier.predict_proba(opts.val[0]) if opts.val is not None else None
    proba, thr, val_proba, before = _decision(classifier, classifier.predict_proba(images), labels, val_proba, opts, out)
    m = metrics_lib.classification_metrics(labels, proba, thr)
    m["ece"], _ = metrics_lib.expected_calibration_error(labels, proba)
    ood = classifier.check_ood(images)
    patients = [patient_id(p) for p in paths]
    out.update(metrics=m, ci95=metrics_lib.confidence_intervals(labels, proba, thr, patients, opts.n_boot),
               patients=len(set(patients)),
               class_counts={c: int((labels == i).sum()) for i, c in enumerate(names)},
               ood_flagged=int(sum(r.flag for r in ood)), ood_guard=classifier.ood is not None)
    if val_proba is not None:
        out["val_metrics"] = metrics_lib.classification_metrics(opts.val[1], val_proba, thr)
    curves = {"after temperature scaling" if opts.calibrate else "model": (labels, proba)}
    if before is not None:
        curves["before"] = (labels, before)
    out["files"] = _figures(output_dir, m, names, labels, proba, thr, curves, m["ece"], opts.title)
    out["files"]["predictions"] = write_predictions_csv(os.path.join(output_dir, "predictions.csv"), paths, proba,
                                                        classifier.decide(proba, thr), names, labels, ood)
    write_json(os.path.join(output_dir, "metrics.json"), out)
    out["files"]["metrics"] = os.path.join(output_dir, "metrics.json")
    return out


def write_predictions_csv(path: str, paths, proba, decided, class_names, labels=None, ood=None) -> str:
    """``predictions.csv``: file, predicted, confidence, p_<class> ... (and true, correct), and with
    ``ood`` (one :class:`tfxai.ood.OODResult` per row) ood_score, ood_flag, ood_reason."""
    rows = []
    for i, p in enumerate(paths):
        row = {"file": p, "predicted": class_names[decided[i]], "confidence": f"{proba[i, decided[i]]:.4f}",
               **{f"p_{c}": f"{v:.4f}" for c, v in zip(class_names, proba[i])}}
        if labels is not None:
            row.update(true=class_names[labels[i]], correct=int(decided[i] == labels[i]))
        if ood is not None:
            row.update(ood_score="" if ood[i].score != ood[i].score else f"{ood[i].score:.3f}",
                       ood_flag=str(ood[i].flag).lower(), ood_reason=ood[i].reason)
        rows.append(row)
    columns = ["file", "predicted", "confidence", *[f"p_{c}" for c in class_names]]
    columns += ["true", "correct"] if labels is not None else []
    columns += ["ood_score", "ood_flag", "ood_reason"] if ood is not None else []
    return write_csv(path, rows, columns)
