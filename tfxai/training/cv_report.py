"""The report of a k-fold run (:mod:`tfxai.training.folds`): out-of-fold predictions, the threshold
chosen on them, every metric per fold with its mean, spread and 95 % interval, a table, a figure.

* ``oof_predictions.csv``: ``path, label, fold, p`` (P(class 1); ``p_<class>`` columns for more
  classes), every training image exactly once, predicted by the fold model that never saw it (as
  that model decides: after its temperature, when it has one);
* the threshold: the recipe's policy applied to the pooled OOF predictions, i.e. to probabilities of
  single models of this recipe on images they never trained or chose anything on; it is the
  operating point of *one* model of the recipe, not of the ensemble (averaged probabilities are less
  extreme: :mod:`tfxai.ensemble` chooses the ensemble's own);
* per fold, at that threshold: ROC-AUC, PR-AUC, accuracy, sensitivity, specificity, F1 (and at the
  fold model's own validation threshold); with a holdout pattern, the shift protocol's columns;
* across folds: mean, standard deviation and the 95 % t-interval of the mean. The folds share
  training images, so that interval understates the uncertainty about new data (Bengio and
  Grandvalet 2004): read it as how much the estimate moves between folds;
* pooled: the metrics of all OOF predictions together, with Wilson and patient-bootstrap intervals.
  Pooling (and one threshold for all) assumes the fold models' probabilities are on one scale; a
  pooled ROC-AUC well below the per-fold ones says they are not.
"""
from __future__ import annotations

import math
import os

import numpy as np

from .. import metrics as metrics_lib, plots
from ..data import patient_id
from ..io.atomic import write_csv, write_json
from ..tables import Column, format_table

OOF_NAME = "oof_predictions.csv"
CV_METRICS_NAME = "cv_metrics.json"
CV_PLOT_NAME = "cv_metrics.png"
FOLD_METRICS = ("roc_auc", "pr_auc", "accuracy", "sensitivity", "specificity", "f1")
SHIFT_METRICS = ("standard_auc", "shift_auc", "shift_spec", "synthetic_auc_mean", "synthetic_auc_worst", "synthetic_spec_mean",
                 "synthetic_spec_worst", "native_auc", "native_spec")


def summarize(values) -> dict:
    """{"mean", "sd", "ci95": [low, high], "n"} of per-fold values in [0, 1] (NaN and None left
    out): the 95 % interval is the mean's t-interval (mean +- t(0.975, n - 1) sd / sqrt(n)),
    clipped to [0, 1] (every metric here is a share or an area)."""
    from scipy.stats import t

    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
    if len(v) == 0:
        return {"mean": float("nan"), "sd": float("nan"), "ci95": [float("nan")] * 2, "n": 0}
    sd = float(v.std(ddof=1)) if len(v) > 1 else float("nan")
    half = float(t.ppf(0.975, len(v) - 1) * sd / math.sqrt(len(v))) if len(v) > 1 else float("nan")
    low, high = max(0.0, float(v.mean()) - half), min(1.0, float(v.mean()) + half)
    return {"mean": float(v.mean()), "sd": sd, "ci95": [low, high], "n": len(v)}


def oof_proba(data, members) -> np.ndarray:
    """(N, K) float32 probabilities of the training images, each from the fold model that never saw it."""
    train = data.splits.train
    proba = np.full((len(train), len(data.splits.class_names)), np.nan, np.float32)
    for k, member in enumerate(members):
        idx = np.flatnonzero(data.fold == k)
        proba[idx] = member.predict_proba(train.images[idx])
    if np.isnan(proba).any():
        raise RuntimeError("an image has no out-of-fold prediction")  # every image is in exactly one fold
    return proba


def _fold_rows(data, proba, threshold: float, members, shift) -> list[dict]:
    labels, rows = data.splits.train.labels, []
    for k, member in enumerate(members):
        idx = np.flatnonzero(data.fold == k)
        at = metrics_lib.classification_metrics(labels[idx], proba[idx], threshold)
        own = metrics_lib.classification_metrics(labels[idx], proba[idx], member.threshold)
        row = {"fold": k + 1, "n": len(idx), **{m: at.get(m) for m in FOLD_METRICS},
               "counts": {c: int((labels[idx] == i).sum()) for i, c in enumerate(data.splits.class_names)},
               "own_threshold": member.threshold, "at_own_threshold": {m: own.get(m) for m in FOLD_METRICS},
               "model": member.path}
        if shift is not None:
            row.update({m: shift[k].get(m) for m in SHIFT_METRICS}, synthetic_worst=shift[k].get("synthetic_worst"))
        rows.append(row)
    return rows


def write_oof_csv(path: str, data, proba: np.ndarray) -> str:
    """``oof_predictions.csv``: path, label, fold (1-based), p (or p_<class> for more classes)."""
    names, train = data.splits.class_names, data.splits.train
    binary = len(names) == 2
    probs = ({"p": lambda i: f"{proba[i, 1]:.6f}"} if binary else
             {f"p_{c}": (lambda i, j=j: f"{proba[i, j]:.6f}") for j, c in enumerate(names)})
    rows = [{"path": p, "label": names[int(train.labels[i])], "fold": int(data.fold[i]) + 1,
             **{col: fmt(i) for col, fmt in probs.items()}} for i, p in enumerate(train.paths)]
    return write_csv(path, rows, ["path", "label", "fold", *probs])


def cv_report(data, members, policy, out: str, ensemble: dict, shift=None) -> dict:
    """Write ``oof_predictions.csv``, ``cv_metrics.json`` and ``cv_metrics.png`` into ``out`` for
    the fold models ``members`` (:class:`tfxai.classifier.Classifier`, fold order) of ``data``
    (:class:`tfxai.training.folds.CVData`); ``policy`` chooses the OOF threshold; ``ensemble``: the
    ensemble's facts; ``shift``: per-fold protocol scores. Returns the cv_metrics.json dict."""
    labels = data.splits.train.labels
    proba = oof_proba(data, members)
    threshold = metrics_lib.choose_threshold(labels, proba, policy.threshold_policy, policy.target_sensitivity)
    rows = _fold_rows(data, proba, threshold, members, shift)
    keys = FOLD_METRICS + (SHIFT_METRICS if shift is not None else ())
    pooled = metrics_lib.classification_metrics(labels, proba, threshold)
    groups = [patient_id(p) for p in data.splits.train.paths]
    result = {
        "folds": len(members), "training_images": len(labels), "validation_images": len(data.splits.val),
        "data": data.splits.source, "per_fold": rows, "summary": {k: summarize([r[k] for r in rows]) for k in keys},
        "oof": {"n": len(labels), "threshold": threshold, "threshold_policy": policy.to_dict(),
                "threshold_source": f"the recipe's policy on the out-of-fold predictions of {len(labels)} images",
                "metrics": pooled, "ci95": metrics_lib.confidence_intervals(labels, proba, threshold, groups)},
        "ensemble": ensemble,
        "files": {"oof_predictions": write_oof_csv(os.path.join(out, OOF_NAME), data, proba)},
    }
    if proba.shape[1] == 2:
        curves = [(labels[data.fold == k], proba[data.fold == k, 1]) for k in range(len(members))]
        result["files"]["plot"] = plots.cv_curves(curves, rows, os.path.join(out, CV_PLOT_NAME), threshold,
                                                  f"{len(members)}-fold cross-validation")
    write_json(os.path.join(out, CV_METRICS_NAME), result)
    return result


def _cell(value) -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.3f}"


_TITLES = {"roc_auc": "ROC-AUC", "pr_auc": "PR-AUC", "f1": "F1", "standard_auc": "standard-val AUC",
           "shift_auc": "batch-shift AUC",
           "shift_spec": "batch-shift spec", "synthetic_auc_mean": "synth AUC mean",
           "synthetic_auc_worst": "synth AUC worst", "synthetic_spec_mean": "synth spec mean",
           "synthetic_spec_worst": "synth spec worst", "native_auc": "native AUC", "native_spec": "native spec"}


def cv_table(metrics: dict, shift: bool = False) -> str:
    """A console table of a ``cv_metrics.json`` dict: one row per fold, then the mean, SD and 95 %
    interval across folds; the out-of-fold metrics with a pooled row, or (``shift``) the shift
    protocol's columns."""
    keys = [k for k in (SHIFT_METRICS if shift else FOLD_METRICS) if k in metrics["summary"]]
    rows = [{"fold": str(r["fold"]), "n": str(r["n"]), **{k: _cell(r[k]) for k in keys}} for r in metrics["per_fold"]]
    s = metrics["summary"]
    rows += [{"fold": "mean", **{k: _cell(s[k]["mean"]) for k in keys}},
             {"fold": "SD", **{k: _cell(s[k]["sd"]) for k in keys}},
             {"fold": "95% CI", **{k: f"{_cell(s[k]['ci95'][0])}-{_cell(s[k]['ci95'][1])}" for k in keys}}]
    if not shift:
        rows.append({"fold": "pooled", "n": str(metrics["oof"]["n"]),
                     **{k: _cell(metrics["oof"]["metrics"].get(k)) for k in keys}})
    columns = [Column("fold", "fold"), Column("images", "n"), *(Column(_TITLES.get(k, k), k) for k in keys)]
    return format_table(rows, columns)
