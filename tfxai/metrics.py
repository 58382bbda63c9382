"""Clinical metrics, decision thresholds and calibration, from labels and predicted probabilities.

Threshold metrics come from the confusion matrix computed here; ROC-AUC and PR-AUC from
scikit-learn. ``tests/test_metrics.py`` checks every number against scikit-learn's own functions.
"""
from __future__ import annotations

import math

import numpy as np


def _check(y_true, proba):
    y = np.asarray(y_true).astype(np.int64).reshape(-1)
    p = np.asarray(proba, np.float64)
    if p.ndim == 1:
        p = np.stack([1 - p, p], axis=1)
    if p.ndim != 2 or len(p) != len(y):
        raise ValueError(f"proba must be (N, K) with N = {len(y)} labels, got shape {p.shape}")
    if len(y) == 0:
        raise ValueError("no predictions to score")
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(f"labels must be in [0, {p.shape[1] - 1}], got range [{y.min()}, {y.max()}]")
    return y, p


def confusion(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Confusion matrix, rows = true class, columns = predicted class (scikit-learn's convention)."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return cm


def _div(a: float, b: float) -> float:
    return float(a / b) if b else 0.0


def classification_metrics(y_true, proba, threshold: float = 0.5, positive: int = 1) -> dict:
    """Metrics for predicted probabilities ``proba`` (N, K), or (N,) for the positive class.

    Binary: the positive class (index 1, e.g. PNEUMONIA) is predicted when p >= threshold; returns
    accuracy, precision, sensitivity (= recall), specificity, f1, roc_auc, pr_auc (average
    precision), confusion_matrix, threshold, n. More classes: argmax, macro averages, one-vs-rest AUC.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    y, p = _check(y_true, proba)
    k = p.shape[1]
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
    if k == 2:
        pred = (p[:, positive] >= threshold).astype(np.int64)
        cm = confusion(y, pred, 2)
        tn, fp, fn, tp = cm.ravel()
        precision, sensitivity = _div(tp, tp + fp), _div(tp, tp + fn)
        both = len(np.unique(y)) == 2
        out = {
            "n": int(len(y)), "threshold": float(threshold),
            "accuracy": _div(tp + tn, len(y)),
            "precision": precision, "sensitivity": sensitivity, "recall": sensitivity,
            "specificity": _div(tn, tn + fp),
            "f1": _div(2 * precision * sensitivity, precision + sensitivity),
            "roc_auc": float(roc_auc_score(y, p[:, positive])) if both else float("nan"),
            "pr_auc": float(average_precision_score(y, p[:, positive])) if both else float("nan"),
            "confusion_matrix": cm.tolist(),
        }
        return out
    pred = p.argmax(axis=1)
    cm = confusion(y, pred, k)
    tp = np.diag(cm).astype(float)
    prec = np.array([_div(tp[i], cm[:, i].sum()) for i in range(k)])
    rec = np.array([_div(tp[i], cm[i].sum()) for i in range(k)])
    f1 = np.array([_div(2 * a * b, a + b) for a, b in zip(prec, rec)])
    present = len(np.unique(y)) == k
    return {
        "n": int(len(y)), "accuracy": _div(tp.sum(), len(y)),
        "precision": float(prec.mean()), "sensitivity": float(rec.mean()), "recall": float(rec.mean()),
        "f1": float(f1.mean()),
        "roc_auc": float(roc_auc_score(y, p, multi_class="ovr")) if present else float("nan"),
        "confusion_matrix": cm.tolist(),
    }


def threshold_for_sensitivity(y_true, p_pos, target: float) -> float:
    """The highest threshold whose sensitivity on (y_true, p_pos) is at least ``target``."""
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target sensitivity must be in (0, 1], got {target!r}")
    y = np.asarray(y_true).reshape(-1)
    pos = np.sort(np.asarray(p_pos, np.float64)[y == 1])[::-1]
    if len(pos) == 0:
        raise ValueError("no positive examples to set a sensitivity threshold on")
    k = int(math.ceil(target * len(pos)))  # need at least k positives at or above the threshold
    return float(pos[k - 1])


def threshold_youden(y_true, p_pos) -> float:
    """Threshold maximising sensitivity + specificity - 1 (Youden's J) on the ROC curve."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(np.asarray(y_true).reshape(-1), p_pos)
    best = int(np.argmax(tpr - fpr))
    return float(min(1.0, thr[best]))


def expected_calibration_error(y_true, proba, bins: int = 15) -> tuple[float, dict]:
    """ECE of the top-class confidence over equal-width bins; returns (ece, reliability table).

    The table has per bin: lower/upper edge, count, mean confidence, accuracy (for the diagram).
    """
    y, p = _check(y_true, proba)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    table = {"lower": edges[:-1].tolist(), "upper": edges[1:].tolist(), "count": [], "confidence": [],
             "accuracy": []}
    ece = 0.0
    for b in range(bins):
        sel = idx == b
        n = int(sel.sum())
        table["count"].append(n)
        table["confidence"].append(float(conf[sel].mean()) if n else float("nan"))
        table["accuracy"].append(float(correct[sel].mean()) if n else float("nan"))
        if n:
            ece += n / len(y) * abs(conf[sel].mean() - correct[sel].mean())
    return float(ece), table


def _logits(proba: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(proba, np.float64), 1e-7, 1 - 1e-7)
    return np.log(p)  # softmax(log p / T) is temperature scaling for any K, binary included


def apply_temperature(proba, temperature: float) -> np.ndarray:
    """Rescale probabilities (N, K) by a temperature: softmax(log(p) / T)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    z = _logits(proba) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def fit_temperature(y_true, proba) -> float:
    """Temperature T > 0 minimising the negative log-likelihood of ``apply_temperature(proba, T)``."""
    from scipy.optimize import minimize_scalar

    y, p = _check(y_true, proba)

    def nll(log_t):
        q = apply_temperature(p, float(np.exp(log_t)))
        return -np.mean(np.log(np.clip(q[np.arange(len(y)), y], 1e-12, 1)))

    res = minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded")
    return float(np.exp(res.x))
